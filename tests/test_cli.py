"""The command line: the smoke example end to end, and user errors as one clear line (exit 2)."""

import json
from pathlib import Path

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
