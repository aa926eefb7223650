"""protfit.load / predict / embed / eval, from Python and from the command line."""

import json

import numpy as np
import pandas as pd
import pytest

import protfit
from protfit.cli import main
from protfit.config import apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.inference import load


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for problem, extra in [
        ("single_label_classification", ["data.label_names=[KR,DE,FW]"]),
        ("multi_label_classification", []),
        ("regression", ["model.method=freeze", "model.pooler=light_attention"]),
    ]:
        data = write_synthetic_dataset(
            root / f"data_{problem}", problem, seed=2, n_train=120, n_validation=40, n_test=50
        )
        raw = {
            "data": {"path": str(data), "problem_type": problem, "batch_size": 8},
            "model": {"name": "tiny-esm2", "method": "full", "head": {"hidden_dims": [16]}},
            "train": {"epochs": 2, "progress": False},
            "evaluation": {"bootstrap": {"resamples": 20}},
            "output": {"dir": str(root), "name": problem},
        }
        cfg = build_config(apply_overrides(raw, extra))
        runs[problem] = (protfit.train(cfg).run_dir, data)
    return runs


@pytest.mark.parametrize(
    "problem", ["single_label_classification", "multi_label_classification", "regression"]
)
def test_cli_python_and_original_test_predictions_agree_exactly(trained_runs, tmp_path, problem):
    run_dir, data = trained_runs[problem]
    original = pd.read_csv(run_dir / "test_predictions.csv")
    assert main(["predict", str(run_dir), str(data / "test.csv"), "-o", str(tmp_path / "cli.csv")]) == 0
    from_cli = pd.read_csv(tmp_path / "cli.csv")
    from_python = protfit.load(run_dir).predict(pd.read_csv(data / "test.csv")["aa_seq"].tolist())
    value_columns = [c for c in original.columns if c.startswith(("prob_", "score_")) or c == "prediction"]
    assert value_columns
    for column in value_columns:
        # CSV keeps the shortest text of each float32; compared as float32 the values are bit-identical
        if original[column].dtype.kind == "f":
            expected = original[column].to_numpy().astype(np.float32)
            assert np.array_equal(from_cli[column].to_numpy().astype(np.float32), expected), column
            assert np.array_equal(from_python[column].to_numpy().astype(np.float32), expected), column
        else:  # multi-label label sets as text; an empty set reads back from CSV as NaN
            expected = original[column].fillna("").astype(str).tolist()
            assert from_cli[column].fillna("").astype(str).tolist() == expected, column
            assert from_python[column].fillna("").astype(str).tolist() == expected, column


def test_class_names_appear_in_predictions(trained_runs, tmp_path):
    run_dir, _ = trained_runs["single_label_classification"]
    table = load(run_dir).predict(["KRKRKRKRKRKRAAAKRKR", "DEDEDEDEDEAADEDE"])
    assert set(table["prediction_name"]) <= {"KR", "DE", "FW"}
    assert {"prob_KR", "prob_DE", "prob_FW"} <= set(table.columns)
    assert np.allclose(table[["prob_KR", "prob_DE", "prob_FW"]].sum(axis=1), 1.0, atol=1e-5)


def test_embed_returns_pooled_vectors_in_input_order(trained_runs):
    model = load(trained_runs["regression"][0])
    sequences = ["MKTAYIAKQR", "MKV", "ACDEFGHIKLMNPQRSTVWY" * 3]
    together = model.embed(sequences)
    alone = np.stack([model.embed([sequence])[0] for sequence in sequences])
    assert together.shape[0] == 3 and together.shape[1] > 0
    assert np.allclose(together, alone, atol=1e-5)


def test_bad_prediction_input_is_reported_by_name_and_row(trained_runs, tmp_path):
    run_dir, _ = trained_runs["regression"]
    fasta = tmp_path / "bad.fasta"
    fasta.write_text(">ok_one\nMKTAYIAK\n>broken_one\nMKT*AYI\n")
    assert main(["predict", str(run_dir), str(fasta), "-o", str(tmp_path / "out.csv")]) == 2
    assert not (tmp_path / "out.csv").exists()


def test_bad_prediction_input_message(trained_runs, tmp_path, capsys):
    run_dir, _ = trained_runs["regression"]
    fasta = tmp_path / "bad.fasta"
    fasta.write_text(">ok_one\nMKTAYIAK\n>broken_one\nMKT*AYI\n")
    main(["predict", str(run_dir), str(fasta), "-o", str(tmp_path / "out.csv")])
    message = capsys.readouterr().err
    assert "bad.fasta" in message and "row 2" in message and "*" in message


def test_eval_writes_metrics_with_intervals_and_plots(trained_runs, tmp_path):
    run_dir, data = trained_runs["single_label_classification"]
    assert (
        main(["eval", str(run_dir), "--data", str(data / "validation.csv"), "-o", str(tmp_path / "ev")]) == 0
    )
    metrics = json.loads((tmp_path / "ev" / "eval_metrics.json").read_text())["metrics"]
    for entry in metrics.values():
        assert entry["low"] <= entry["value"] <= entry["high"]
    assert (tmp_path / "ev" / "confusion_matrix.png").exists()
    assert (tmp_path / "ev" / "eval_metrics.csv").exists()
    assert (
        main(["eval", str(trained_runs["regression"][0]), "--split", "test", "-o", str(tmp_path / "reg")])
        == 0
    )
    assert (tmp_path / "reg" / "predicted_vs_true.png").exists()


def test_eval_on_the_test_split_matches_the_run_summary(trained_runs, tmp_path):
    run_dir, _ = trained_runs["regression"]
    summary = json.loads((run_dir / "summary.json").read_text())
    main(["eval", str(run_dir), "--split", "test", "-o", str(tmp_path / "ev")])
    metrics = json.loads((tmp_path / "ev" / "eval_metrics.json").read_text())["metrics"]
    assert metrics == summary["test_metrics"]


def test_eval_says_which_checkpoint_and_epoch_it_used(trained_runs, tmp_path, capsys):
    run_dir, _ = trained_runs["regression"]
    best_epoch = json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    assert main(["eval", str(run_dir), "--split", "test", "-o", str(tmp_path / "ev")]) == 0
    assert f"checkpoint: best (epoch {best_epoch})" in capsys.readouterr().out
    written = json.loads((tmp_path / "ev" / "eval_metrics.json").read_text())
    assert written["checkpoint"] == {"name": "best", "epoch": best_epoch}


def test_eval_during_training_names_the_epoch_it_evaluated(trained_runs, tmp_path, capsys):
    from protfit.plugins import Plugin

    _, data = trained_runs["regression"]
    out = tmp_path / "ev"

    class EvalAfterEpochOne(Plugin):
        name = "eval_during_training"

        def on_epoch_end(self, state):
            if state.epoch == 1:  # the training process holds the run's lock meanwhile
                assert main(["eval", str(state.run_dir), "--split", "validation", "-o", str(out)]) == 0

    raw = {
        "data": {"path": str(data), "problem_type": "regression", "batch_size": 8},
        "model": {"name": "tiny-esm2", "method": "full", "head": {"hidden_dims": [16]}},
        "train": {"epochs": 2, "progress": False, "early_stopping": {"patience": None}},
        "evaluation": {"bootstrap": {"resamples": 20}},
        "output": {"dir": str(tmp_path), "name": "run"},
    }
    protfit.train(build_config(raw), plugins=[EvalAfterEpochOne()])
    said = capsys.readouterr().out
    assert "checkpoint: best (epoch 1; the run has not finished: a later epoch may replace it)" in said
    assert json.loads((out / "eval_metrics.json").read_text())["checkpoint"] == {"name": "best", "epoch": 1}


def test_a_second_eval_into_the_same_folder_is_refused(trained_runs, tmp_path, capsys):
    import os
    import socket

    run_dir, _ = trained_runs["regression"]
    out = tmp_path / "ev"
    out.mkdir()
    # a live process of this host (the one that started pytest) holds the eval folder
    holder = {"pid": os.getppid(), "hostname": socket.gethostname(), "created": "now"}
    (out / "eval.lock").write_text(json.dumps(holder))
    assert main(["eval", str(run_dir), "--split", "test", "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"eval folder {out} is in use by process {os.getppid()}" in error and "Traceback" not in error
    assert not (out / "eval_metrics.json").exists()


def test_ten_thousand_sequences_stream_through_one_model_load(trained_runs, tmp_path, monkeypatch):
    from protfit import inference

    builds = []
    original_build = inference.build_model
    monkeypatch.setattr(inference, "build_model", lambda *a, **k: builds.append(1) or original_build(*a, **k))
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    fasta = tmp_path / "many.fasta"
    fasta.write_text(
        "".join(
            f">s{i}\n{''.join(rng.choice(letters, size=int(rng.integers(8, 20))))}\n" for i in range(10_000)
        )
    )
    run_dir, _ = trained_runs["regression"]
    assert main(["predict", str(run_dir), str(fasta), "-o", str(tmp_path / "many.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "many.csv")) == 10_000
    assert len(builds) == 1


def test_python_api_validates_user_frames_like_files(trained_runs):
    from protfit.data.errors import DataError

    model = load(trained_runs["regression"][0])
    table = model.predict(pd.DataFrame({"aa_seq": ["MKTAYIAK", "mktayiakqr"]}))  # no name column, lower case
    assert len(table) == 2 and table["name"].is_unique
    assert table["prediction"].notna().all()
    with pytest.raises(DataError, match=r"the DataFrame, row 2, field 'aa_seq'"):
        model.predict(pd.DataFrame({"aa_seq": ["MKTAYIAK", "MKT*YIAK"]}))


def test_cli_predict_shows_a_progress_bar(trained_runs, tmp_path, capsys):
    run_dir, data = trained_runs["regression"]
    assert main(["predict", str(run_dir), str(data / "test.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    assert "predict" in capsys.readouterr().err  # tqdm writes stage, percent, elapsed and ETA to stderr


GB1 = "MQYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"


def _gb1_variants(count: int, seed: int) -> list[str]:
    """Equal-length variants of GB1 with one to three substitutions each."""
    rng = np.random.default_rng(seed)
    residues = list("ACDEFGHIKLMNPQRSTVWY")
    variants = []
    for _ in range(count):
        sequence = list(GB1)
        for position in rng.choice(len(GB1), size=rng.integers(1, 4), replace=False):
            sequence[position] = rng.choice(residues)
        variants.append("".join(sequence))
    return variants


@pytest.fixture(scope="module")
def gb1_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gb1")
    rng = np.random.default_rng(0)
    for split, count in (("train", 60), ("validation", 20), ("test", 20)):
        sequences = _gb1_variants(count, seed={"train": 1, "validation": 2, "test": 3}[split])
        pd.DataFrame({"aa_seq": sequences, "label": rng.normal(size=count)}).to_csv(
            root / f"{split}.csv", index=False
        )
    raw = {
        "data": {"path": str(root), "problem_type": "regression", "batch_size": 16},
        "model": {"name": "onehot", "method": "full"},
        "train": {"epochs": 1, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 10}},
        "output": {"dir": str(root / "runs"), "name": "gb1"},
    }
    return protfit.train(build_config(raw)).run_dir


def test_inputs_outside_the_training_data_get_a_note(gb1_run, tmp_path):
    long_protein = "".join(np.random.default_rng(5).choice(list("ACDEFGHIKLMNPQRSTVWY"), size=600))
    variant = GB1[:10] + "A" + GB1[11:]
    table = load(gb1_run).predict(["MKV", long_protein, variant])
    notes = table["domain_note"].tolist()
    assert "length 3 outside training lengths 56" in notes[0]
    assert "length 600 outside training lengths 56" in notes[1]
    assert "composition unlike training" in notes[1]
    assert notes[2] == ""  # a single substitution of the training protein is inside

    fasta = tmp_path / "inputs.fasta"
    fasta.write_text(f">short\nMKV\n>variant\n{variant}\n")
    assert main(["predict", str(gb1_run), str(fasta), "-o", str(tmp_path / "out.csv")]) == 0
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert written["domain_note"].tolist()[0].startswith("length 3 outside")
    assert written["domain_note"].tolist()[1] == ""


def test_a_run_without_training_statistics_predicts_without_a_note(gb1_run, tmp_path, caplog):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(gb1_run, old)
    meta = json.loads((old / "model_meta.json").read_text())
    del meta["training_domain"]
    (old / "model_meta.json").write_text(json.dumps(meta))
    with caplog.at_level("INFO", logger="protfit"):
        table = load(old).predict(["MKV"])
    assert "domain_note" not in table.columns
    assert "no domain note" in caplog.text
