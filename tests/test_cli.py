"""The command line: the smoke example end to end, and user errors as one clear line (exit 2)."""

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from protfit.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_smoke_example_learns_its_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["train", "examples/smoke.yaml", f"output.dir={tmp_path}", "train.progress=false"]) == 0
    summary = json.loads((tmp_path / "smoke" / "summary.json").read_text())
    assert summary["test_metrics"]["accuracy"]["value"] > 0.8  # three balanced classes: chance is 0.33


def test_config_typo_is_one_line_naming_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["train", "examples/smoke.yaml", "train.learnig_rate=0.1", f"output.dir={tmp_path}"]) == 2
    error = capsys.readouterr().err
    assert "unknown key 'train.learnig_rate'" in error and "learning_rate" in error
    assert "Traceback" not in error


def test_data_error_names_file_row_and_field(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("aa_seq,label\nMKTAYIAK,0\nMKT1YIAK,1\n")
    (data / "validation.csv").write_text("aa_seq,label\nMKTAYIAK,0\nMKTAYIAK,1\n")
    code = main(["train", str(REPO / "examples/smoke.yaml"), f"data.path={data}", f"output.dir={tmp_path}"])
    error = capsys.readouterr().err
    assert code == 2
    assert "train.csv" in error and "row 2" in error and "aa_seq" in error


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a protfit run folder" in capsys.readouterr().err


def test_models_lists_families_and_offline_aliases(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    for word in ["esm", "bert", "t5", "onehot", "antiberty", "tiny-esm2"]:
        assert word in listing


@pytest.mark.parametrize("argv", [["train"], ["eval"], ["predict", "x"]])
def test_missing_arguments_are_reported(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2


def test_unknown_model_name_fails_at_once_with_suggestions_and_no_run_folder(tmp_path, capsys, monkeypatch):
    import protfit.models.backbone  # imports are not what is timed
    import protfit.training.train  # noqa: F401

    monkeypatch.chdir(REPO)
    started = time.perf_counter()
    code = main(["train", "examples/smoke.yaml", "model.name=esm3", f"output.dir={tmp_path / 'runs'}"])
    elapsed = time.perf_counter() - started
    error = capsys.readouterr().err
    assert code == 2 and elapsed < 1.0, elapsed
    assert "model 'esm3' is not an alias" in error and "did you mean tiny-esm2" in error
    assert "Traceback" not in error
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_dir_stops_train_before_any_work(tmp_path, capsys, monkeypatch):
    import protfit.training.train as recipe

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(recipe, "train", lambda *args, **kwargs: pytest.fail("train() must not start"))
    from protfit.report import run_dir

    real_probe = run_dir.can_create_files_in
    monkeypatch.setattr(
        run_dir, "can_create_files_in", lambda path: Path(path) != tmp_path and real_probe(path)
    )
    assert main(["train", "examples/smoke.yaml", f"output.dir={tmp_path / 'runs'}"]) == 2
    error = capsys.readouterr().err
    assert f"output.dir {tmp_path / 'runs'} is not writable" in error and "Traceback" not in error


def test_a_diverging_loss_is_one_line_and_verbose_shows_the_traceback(capsys, monkeypatch):
    import protfit.training.train as recipe

    def diverge(*args, **kwargs):
        raise FloatingPointError("training loss became nan in epoch 1; lower train.learning_rate")

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(recipe, "train", diverge)
    assert main(["train", "examples/smoke.yaml"]) == 2
    error = capsys.readouterr().err
    assert (
        error.strip()
        == "protfit train: error: training loss became nan in epoch 1; lower train.learning_rate"
    )
    with pytest.raises(FloatingPointError):
        main(["-v", "train", "examples/smoke.yaml"])


def test_a_permission_error_names_the_path(capsys, monkeypatch):
    import protfit.training.train as recipe

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "runs/smoke/history.csv")

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(recipe, "train", refuse)
    assert main(["train", "examples/smoke.yaml"]) == 2
    error = capsys.readouterr().err
    assert "runs/smoke/history.csv: permission denied" in error and "Errno" not in error


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing/dir/out.csv", "folder {tmp}/missing/dir does not exist"), (".", "-o {tmp} is a folder")],
)
def test_predict_checks_its_output_path_before_predicting(tmp_path, capsys, target, message):
    # The run folder is not even a run: the output path is checked before anything loads.
    output = (tmp_path / target).resolve() if target == "." else tmp_path / target
    code = main(["predict", str(tmp_path / "no-run"), "seqs.fasta", "-o", str(output)])
    error = capsys.readouterr().err
    assert code == 2 and message.format(tmp=tmp_path) in error and "Traceback" not in error


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_predict_into_a_folder_that_takes_no_files_is_refused_before_loading(tmp_path, capsys):
    # /proc passes a permission-bit check (and root passes it everywhere); creating a file there fails
    code = main(["predict", str(tmp_path / "no-run"), "seqs.fasta", "-o", "/proc/x.csv"])
    error = capsys.readouterr().err
    assert code == 2 and "-o /proc/x.csv is not writable" in error and "Traceback" not in error


def test_eval_output_onto_an_existing_file_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("")
    assert main(["eval", str(tmp_path / "no-run"), "-o", str(tmp_path / "taken")]) == 2
    error = capsys.readouterr().err
    assert f"-o {tmp_path / 'taken'} is a file" in error and "Errno" not in error


def test_overrides_may_follow_an_option(monkeypatch):
    from protfit import cli

    seen = {}
    monkeypatch.setattr(cli, "_train", lambda args: seen.update(vars(args)))
    assert cli.main(["train", "run.yaml", "--resume", "RUN", "train.epochs=3"]) == 0
    assert seen["overrides"] == ["train.epochs=3"] and seen["resume"] == "RUN"
    with pytest.raises(SystemExit):
        cli.main(["train", "run.yaml", "--bogus", "x"])


def test_score_writes_zero_shot_scores_and_says_which_reference(tmp_path, capsys):
    fasta = tmp_path / "variants.fasta"
    fasta.write_text(">wt\nMKTAYIAKQR\n>y5w\nMKTAWIAKQR\n>short\nMKTAYIA\n")
    out = tmp_path / "scores.csv"
    argv = [
        "score",
        "tiny-bert",
        str(fasta),
        "-o",
        str(out),
        "--reference",
        "MKTAYIAKQR",
        "--batch-size",
        "4",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "reference: the given sequence (--reference) (10 residues)" in printed
    table = pd.read_csv(out)
    assert table["method"].tolist() == ["masked_marginal", "masked_marginal", "pll_difference"]
    assert table["zero_shot_score"][0] == 0.0 and table["substitutions"].tolist()[:2] == [0, 1]
    # without --reference a bare model scores against the input's own consensus
    assert main(["score", "tiny-bert", str(fasta), "-o", str(out)]) == 0
    assert "consensus of the 2 input sequences of length 10" in capsys.readouterr().out


def test_score_a_run_folder_uses_its_data_reference_sequence(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.csv").write_text("aa_seq,label\nMKTAYIAKQR,1.0\nMKTAWIAKQR,0.5\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"data: {{path: {data}, problem_type: regression, reference_sequence: MKTAWIAKQR}}\n"
        "model: {name: onehot, zero_shot_model: tiny-bert}\n"
    )
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), str(data / "test.csv"), "-o", str(out)]) == 0
    assert "reference: data.reference_sequence (10 residues)" in capsys.readouterr().out
    assert pd.read_csv(out)["substitutions"].tolist() == [1, 0]


def test_score_refuses_models_without_masked_lm_and_bad_references_in_one_line(tmp_path, capsys):
    fasta = tmp_path / "two.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nMKTAWIAKQR\n")
    out = str(tmp_path / "scores.csv")
    assert main(["score", "onehot", str(fasta), "-o", out]) == 2
    assert "one-hot encoder" in capsys.readouterr().err
    assert main(["score", "tiny-bert", str(fasta), "-o", out, "--reference", str(fasta)]) == 2
    assert "holds 2 sequences; give a file with exactly one" in capsys.readouterr().err
    assert main(["score", "tiny-bert", str(fasta), "-o", out, "--reference", "MKT-1"]) == 2
    assert "neither a file nor a sequence" in capsys.readouterr().err
