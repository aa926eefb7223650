"""Two data-parallel CPU processes (gloo) give the results of one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from protfit.config import apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.training.train import train

# Same global batch: one process accumulates 2 micro-batches of 8 per optimizer step; two processes
# each forward one micro-batch of 8 and DDP averages their gradients. 48 rows = 6 batches, an even
# number, so no process gets a padded last round. No dropout anywhere (masks differ between
# processes): a frozen backbone runs in eval mode, and the head's dropout is 0. The frozen features
# come from the embedding cache, which the main process builds first.
TOLERANCE = 1e-4


def config(data_dir, out_dir, name, accumulation):
    raw = {
        "data": {"path": str(data_dir), "problem_type": "single_label_classification", "batch_size": 8},
        "model": {"name": "tiny-esm2", "method": "freeze", "head": {"hidden_dims": [16], "dropout": 0.0}},
        "train": {
            "epochs": 2,
            "learning_rate": 1e-2,
            "progress": False,
            "gradient_accumulation_steps": accumulation,
            "early_stopping": {"patience": None},
        },
        "evaluation": {"bootstrap": {"resamples": 20}, "baselines": {"enabled": False}},
        "output": {"dir": str(out_dir), "name": name},
    }
    return raw


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    data = write_synthetic_dataset(
        tmp_path / "data", "single_label_classification", n_train=48, n_validation=20, n_test=22, seed=5
    )
    single = train(build_config(apply_overrides(config(data, tmp_path, "one", 2), [])))

    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config(data, tmp_path, "two", 1)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "protfit", "train", str(path), "--num-processes", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    double = json.loads((tmp_path / "two" / "summary.json").read_text())

    assert len(double["history"]) == 2
    for one, two in zip(single.summary["history"], double["history"], strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy", "val_mcc", "val_auroc", "lr"):
            assert two[key] == pytest.approx(one[key], abs=TOLERANCE), key
    for name, entry in single.summary["test_metrics"].items():
        assert double["test_metrics"][name]["value"] == pytest.approx(entry["value"], abs=TOLERANCE), name
    # every test row predicted exactly once (no duplicates from the padded last round, none dropped)
    predictions = (tmp_path / "two" / "test_predictions.csv").read_text().strip().splitlines()
    assert len(predictions) == 1 + 22
