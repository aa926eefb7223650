"""`protfit sweep` from the command line: presets, overrides, resume, clear errors."""

import json

import yaml

from protfit.cli import main


def test_preset_sweep_needs_no_hand_written_space(tmp_path, base_config, capsys):
    base = tmp_path / "run.yaml"
    base.write_text(yaml.safe_dump(base_config(epochs=1)))
    code = main(
        [
            "sweep",
            "--preset",
            "quick",
            "--base",
            str(base),
            "n_trials=2",
            f"output.dir={tmp_path}",
            "output.name=s",
        ]
    )
    assert code == 0
    output = capsys.readouterr().out
    assert "trial 1/2" in output and "trial 2/2" in output and "best:" in output
    saved = yaml.safe_load((tmp_path / "s" / "sweep.yaml").read_text())
    assert saved["preset"] == "quick" and saved["base"]["train"]["epochs"] == 1
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert set(best["best"]["params"]) == {"train.learning_rate", "model.head.dropout", "train.weight_decay"}
    # resume of a finished sweep: nothing runs; raising n_trials runs the difference
    assert main(["sweep", "--resume", str(tmp_path / "s"), "n_trials=3"]) == 0
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    assert best["counts"]["complete"] == 3


def test_errors_are_reported_with_the_file_and_field(tmp_path, sweep_raw, capsys):
    path = tmp_path / "bad.yaml"
    raw = sweep_raw(tmp_path)
    raw["sampler"] = {"name": "bayes"}
    path.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "'sampler.name'" in error and "tpe" in error
    assert main(["sweep", "--resume", str(tmp_path / "nothing")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err
    assert main(["sweep", "--list-presets"]) == 0
    assert "standard" in capsys.readouterr().out
