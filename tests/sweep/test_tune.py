"""`protfit tune` on a tiny one-hot model: finishes within its budget, resumes after kill -9."""

from __future__ import annotations

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
    recommended = load_config(folder / "recommended.yaml")
    assert recommended.output.name is None
    assert main(["train", str(folder / "recommended.yaml"), "train.epochs=1", "output.name=check"]) == 0
    assert (folder / "final" / "seed-42" / "summary.json").is_file()
    closing = (folder / "tune.md").read_text()
    assert "| untuned (starting config) |" in closing and "| tuned, seed 42 |" in closing
    assert "| baseline: constant |" in closing
    assert (folder / "compare" / "compare.html").is_file()
