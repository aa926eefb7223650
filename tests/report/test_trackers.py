"""Experiment trackers: a 1-epoch tiny run logs to TensorBoard, MLflow (local store) and W&B (offline)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from protfit.config import ConfigError, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.report.trackers import check_trackers
from protfit.training.train import train


def config(tmp_path: Path, trackers: list[str]) -> dict:
    data = write_synthetic_dataset(tmp_path / "data", "single_label_classification", 32, 16, 16, max_len=40)
    return {
        "data": {"path": str(data), "problem_type": "single_label_classification", "batch_size": 8},
        "model": {"name": "tiny-esm2", "method": "full", "head": {"hidden_dims": [8]}},
        "train": {"epochs": 1, "learning_rate": 1e-3, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 10}},
        # keep_last: the finished run is resumed for a second epoch below
        "output": {
            "dir": str(tmp_path / "runs"),
            "name": "tracked",
            "trackers": trackers,
            "checkpoints": {"keep_last": True},
        },
    }


def test_each_tracker_writes_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for package in ("tensorboard", "mlflow", "wandb"):
        pytest.importorskip(package)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(build_config(config(tmp_path, ["tensorboard", "mlflow", "wandb"])))
    run_dir = result.run_dir

    # TensorBoard: per-step loss and lr, per-epoch metrics, final test metrics, read back from the events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "train/step_loss",
        "train/lr",
        "epoch/val_loss",
        "epoch/val_mcc",
        "test/mcc",
        "test/mcc_low",
    } <= scalars
    assert len(events.Scalars("train/step_loss")) == 4  # 32 sequences / batch 8
    assert "config" in events.Tags()["tensors"] or "config/text_summary" in events.Tags()["tensors"]

    # MLflow: the run in RUN_DIR/mlflow.db with params, metric history and the final test metrics
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("protfit")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert run.data.params["train.learning_rate"] == "0.001"
    assert run.data.metrics["test.mcc"] == pytest.approx(result.summary["test_metrics"]["mcc"]["value"])
    assert len(client.get_metric_history(run.info.run_id, "train.step_loss")) == 4
    assert run.data.tags["baselines.verdict"] == result.summary["verdict"]

    # W&B offline: a run folder with its .wandb log
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))
    saved = json.loads((run_dir / "trackers.json").read_text())
    assert saved["wandb"] in offline.name and saved["mlflow"] == run.info.run_id

    # resumed for a second epoch: the same MLflow and W&B runs continue, TensorBoard gets steps 5-8
    train(None, ["train.epochs=2"], resume_from=run_dir)
    (run,) = client.search_runs([experiment.experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch.val_loss")] == [4, 8]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/step_loss")] == list(range(1, 9))
    assert all(saved["wandb"] in folder.name for folder in (run_dir / "wandb").glob("offline-run-*"))


def test_unknown_or_missing_tracker_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = config(tmp_path, ["tensorbord"])
    with pytest.raises(
        ConfigError, match="unknown experiment tracker 'tensorbord'.*did you mean 'tensorboard'"
    ):
        build_config(raw)
    raw["output"]["trackers"] = ["wandb"]
    cfg = build_config(raw)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"needs the wandb package.*pip install wandb"):
        check_trackers(cfg)
    with pytest.raises(ConfigError, match="pip install wandb"):
        train(cfg)  # refused before any work: no run folder
    assert not (tmp_path / "runs").exists()
