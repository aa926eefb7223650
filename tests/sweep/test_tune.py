"""`protfit tune` on a tiny one-hot model: finishes within its budget, resumes after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

from protfit.cli import main
from protfit.config import load_config
from protfit.data.synthetic import write_synthetic_dataset

SRC = Path(__file__).resolve().parents[2] / "src"


def test_tune_resumes_after_a_kill_and_stays_within_its_budget(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", "single_label_classification", 48, 24, 24, max_len=40)
    config = tmp_path / "start.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(data), "problem_type": "single_label_classification", "batch_size": 8},
                "model": {"name": "onehot", "method": "full", "head": {"hidden_dims": [16]}},
                "train": {"epochs": 3, "learning_rate": 1e-3, "progress": False},
                "evaluation": {"bootstrap": {"resamples": 20}},
                "output": {"dir": str(tmp_path / "runs")},
            }
        )
    )
    folder = tmp_path / "tune"
    command = [sys.executable, "-m", "protfit", "tune", str(config), "--budget", "3", "--lr-steps", "20"]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [*command, "-o", str(folder)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first_trial = folder / "sweep" / "trials" / "trial-0000" / "summary.json"
    deadline = time.time() + 120
    while not first_trial.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first_trial.is_file(), "the tune was killed before its first trial finished"
    assert not (folder / "tune.json").is_file()
    untuned = (folder / "untuned" / "summary.json").stat().st_mtime_ns

    assert main(["tune", "--resume", str(folder), "--lr-steps", "20"]) == 0

    assert (folder / "untuned" / "summary.json").stat().st_mtime_ns == untuned  # not trained again
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{folder / 'sweep' / 'study.db'}")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3  # the budget, also across the kill
    # trial 0 is the starting config
    start = {
        "train.learning_rate": 1e-3,
        "model.head.dropout": 0.1,
        "train.weight_decay": 0.01,
        # searched too when the start ran all its epochs with its best within its patience
        "train.epochs": 3,
        "train.early_stopping.patience": 5,
        "train.scheduler.name": "linear",
    }
    params = study.trials[0].params
    assert set(start) - set(params) <= {
        "train.epochs",
        "train.early_stopping.patience",
        "train.scheduler.name",
    }
    assert params == {key: start[key] for key in params}
    recommended = load_config(folder / "recommended.yaml")
    assert recommended.output.name is None
    assert main(["train", str(folder / "recommended.yaml"), "train.epochs=1", "output.name=check"]) == 0
    summary = json.loads((folder / "tune.json").read_text())
    # budget < 10: the start and the best finished trial (none when the others were pruned), each on
    # seeds 42 and 43; the chosen candidate's runs are the final ones
    assert summary["candidates"][0]["name"] == "start" and len(summary["candidates"]) <= 2
    assert all(len(candidate["run_dirs"]) == 2 for candidate in summary["candidates"])
    assert (folder / "confirm" / "start" / "seed-43" / "summary.json").is_file()
    assert all((Path(run) / "summary.json").is_file() for run in summary["tuned"]["run_dirs"])
    # every final run has its weights, also when the sweep deleted the chosen trial's (keep_best_weights)
    assert all((Path(run) / "checkpoints" / "best").is_dir() for run in summary["tuned"]["run_dirs"])
    closing = (folder / "tune.md").read_text()
    assert (
        "| untuned (starting config) |" in closing and ", seed 42 |" in closing and ", seed 43 |" in closing
    )
    assert "| baseline: constant |" in closing
    assert (folder / "compare" / "compare.html").is_file()


def test_an_overfitting_start_adds_regularizers_to_the_search_space(tmp_path):
    from protfit.config import build_config
    from protfit.sweep.tune_space import Diagnosis, search_space

    raw = {
        "data": {"path": str(tmp_path), "problem_type": "single_label_classification"},
        "model": {"name": "tiny-esm2"},
    }
    found = {"suggested_lr": 1e-3, "trusted": True, "end_lr": 1.0}
    space = search_space(build_config(raw), 1e-3, found, Diagnosis("severe"))
    assert space.params["regularization.ema.enabled"]["choices"] == [False, True]
    assert space.params["regularization.label_smoothing.enabled"]["choices"] == [False, True]
    assert "ema and label_smoothing" in " ".join(space.why)
    raw["data"]["problem_type"] = "regression"
    space = search_space(build_config(raw), 1e-3, found, Diagnosis("severe"))
    assert "regularization.label_smoothing.enabled" not in space.params
    assert (
        "regularization.ema.enabled"
        not in search_space(build_config(raw), 1e-3, found, Diagnosis("none")).params
    )


def test_equal_length_variants_with_a_scoring_model_search_the_zero_shot_feature(tmp_path):
    from protfit.config import build_config
    from protfit.sweep.config import CategoricalParam
    from protfit.sweep.space import check_space
    from protfit.sweep.tune_space import Diagnosis, search_space

    raw = {
        "data": {"path": str(tmp_path), "problem_type": "regression", "max_seq_len": 20},
        "model": {"name": "onehot", "pooler": "flatten", "zero_shot_model": "tiny-esm2"},
    }
    found = {"suggested_lr": 1e-3, "trusted": True, "end_lr": 1.0}
    space = search_space(build_config(raw), 1e-3, found, Diagnosis("none", equal_lengths=True))
    assert space.params["model.extra_features"]["choices"] == [[], ["zero_shot"]]
    assert space.start["model.extra_features"] == []
    param = CategoricalParam(**space.params["model.extra_features"])
    check_space({"model.extra_features": param}, raw, "tune")  # every choice is a valid run config
    other_lengths = Diagnosis("none", equal_lengths=False)
    assert "model.extra_features" not in search_space(build_config(raw), 1e-3, found, other_lengths).params
    del raw["model"]["zero_shot_model"]
    equal = Diagnosis("none", equal_lengths=True)
    assert "model.extra_features" not in search_space(build_config(raw), 1e-3, found, equal).params
    # no model.zero_shot_model, but the untuned run has a zero-shot baseline: its backbone scored them
    raw["model"] = {"name": "tiny-esm2", "pooler": "mean"}
    scored = Diagnosis("none", equal_lengths=True, zero_shot_scored=True)
    space = search_space(build_config(raw), 1e-3, found, scored)
    assert space.params["model.extra_features"]["choices"] == [[], ["zero_shot"]]
    assert any("zero-shot score of tiny-esm2" in line for line in space.why)


def test_a_frozen_backbone_on_equal_length_variants_searches_the_onehot_feature(tmp_path):
    from protfit.config import build_config
    from protfit.sweep.config import CategoricalParam
    from protfit.sweep.space import check_space
    from protfit.sweep.tune_space import Diagnosis, search_space

    raw = {
        "data": {"path": str(tmp_path), "problem_type": "regression", "max_seq_len": 20},
        "model": {"name": "tiny-esm2", "method": "freeze", "pooler": "mean", "zero_shot_model": "tiny-esm2"},
    }
    found = {"suggested_lr": 1e-3, "trusted": True, "end_lr": 1.0}
    equal = Diagnosis("none", equal_lengths=True, length=20)
    space = search_space(build_config(raw), 1e-3, found, equal)
    choices = [[], ["zero_shot"], ["onehot"], ["zero_shot", "onehot"]]
    assert space.params["model.extra_features"]["choices"] == choices
    assert space.start["model.extra_features"] == []
    param = CategoricalParam(**space.params["model.extra_features"])
    check_space({"model.extra_features": param}, raw, "tune")  # every choice is a valid run config
    del raw["model"]["zero_shot_model"]
    assert search_space(build_config(raw), 1e-3, found, equal).params["model.extra_features"]["choices"] == [
        [],
        ["onehot"],
    ]
    # fine-tuned backbones learn the residues themselves; other lengths or no max_seq_len: no block
    for changed, diagnosis in (
        ({**raw["model"], "method": "full"}, equal),
        (raw["model"], Diagnosis("none", equal_lengths=False)),
    ):
        config = build_config({**raw, "model": changed})
        assert "model.extra_features" not in search_space(config, 1e-3, found, diagnosis).params
    # no max_seq_len, or one far above the length (a block of padding): not searched, and why
    for limit in (None, 1022):
        config = build_config({**raw, "data": {**raw["data"], "max_seq_len": limit}})
        space = search_space(config, 1e-3, found, equal)
        assert "model.extra_features" not in space.params
        assert any("set data.max_seq_len to the variants' length, 20" in line for line in space.why)
