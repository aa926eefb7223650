"""output.checkpoints: how often `last` is written, and that a finished run keeps only `best`."""

import time

import pytest

from protfit.config import ConfigError, apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.inference import load
from protfit.plugins import Plugin
from protfit.training import loop
from protfit.training.loop import last_due
from protfit.training.train import train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "regression", "regression", seed=1)


def config(data, out_dir, *overrides):
    raw = {
        "data": {"path": str(data), "problem_type": "regression", "batch_size": 32},
        "model": {"name": "onehot", "method": "full", "head": {"hidden_dims": [16]}},
        "train": {
            "epochs": 5,
            "learning_rate": 3e-3,
            "progress": False,
            "early_stopping": {"patience": None},
        },
        "evaluation": {"bootstrap": {"resamples": 20}, "baselines": {"enabled": False}},
        "output": {"dir": str(out_dir), "name": "run"},
    }
    return build_config(apply_overrides(raw, list(overrides)))


def history_without_times(result):
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in result.summary["history"]]


@pytest.fixture(name="saved")
def saved_fixture(monkeypatch):
    """(checkpoint name, epoch) of every checkpoint the training loop writes."""
    written = []
    save = loop.save_checkpoint

    def record(folder, *args, **kwargs):
        written.append((folder.name, kwargs["epoch"]))
        save(folder, *args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", record)
    return written


class InterruptAfter(Plugin):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_finished_run_keeps_best_drops_last_and_refuses_to_be_extended(data, tmp_path):
    result = train(
        config(
            data,
            tmp_path,
            "train.epochs=2",
            "evaluation.baselines.enabled=true",
            "evaluation.baselines.shuffled_labels=true",
        )
    )
    checkpoints = result.run_dir / "checkpoints"
    assert (checkpoints / "best").is_dir() and not (checkpoints / "last").exists()
    # the shuffled-label baseline's weights are never loaded again; its history stays
    baseline = result.run_dir / "baselines" / "shuffled_labels"
    assert not (baseline / "checkpoints").exists() and (baseline / "history.csv").is_file()
    with pytest.raises(FileNotFoundError, match=r"has finished and its checkpoints/last .*keep_last=false"):
        train(None, ["train.epochs=4"], resume_from=result.run_dir)
    assert (result.run_dir / "summary.json").is_file()  # refused, not started again from scratch
    with pytest.raises(FileNotFoundError, match="keeps it only with output.checkpoints.keep_last=true"):
        load(result.run_dir, "last")


def test_last_every_n_epochs_and_a_resume_from_the_newest(data, tmp_path, saved):
    every_2 = ("output.checkpoints.last_every_epochs=2",)
    uninterrupted = train(config(data, tmp_path / "a", *every_2))
    assert [epoch for name, epoch in saved if name == "last"] == [2, 4]
    saved.clear()
    with pytest.raises(KeyboardInterrupt):
        train(config(data, tmp_path / "b", *every_2), plugins=[InterruptAfter(3)])
    assert [epoch for name, epoch in saved if name == "last"] == [2]  # epoch 3 is trained again
    saved.clear()
    # the policy may change on resume (it does not change what is trained)
    resumed = train(None, ["output.checkpoints.keep_last=true"], resume_from=tmp_path / "b" / "run")
    assert [epoch for name, epoch in saved if name == "last"] == [4, 5]  # the final epoch too: kept
    assert history_without_times(resumed) == history_without_times(uninterrupted)
    assert resumed.summary["test_metrics"] == uninterrupted.summary["test_metrics"]
    assert (tmp_path / "b" / "run" / "checkpoints" / "last").is_dir()


def test_no_last_at_all_when_both_schedules_are_off(data, tmp_path, saved):
    off = ("output.checkpoints.last_every_epochs=null",)
    train(config(data, tmp_path, *off, "train.epochs=2"))
    assert {name for name, _ in saved} == {"best"}


def test_last_by_minutes():
    cfg = build_config(
        {
            "data": {"path": "x", "problem_type": "regression"},
            "model": {"name": "onehot"},
            "output": {"checkpoints": {"last_every_epochs": None, "last_every_minutes": 1}},
        }
    )
    assert not last_due(cfg, 1, False, time.monotonic() - 30)
    assert last_due(cfg, 1, False, time.monotonic() - 61)
    assert not last_due(cfg, 1, True, time.monotonic() - 30)  # the final epoch only when kept


def test_minutes_next_to_every_epoch_is_refused(data, tmp_path):
    with pytest.raises(ConfigError, match="last_every_minutes does nothing while last_every_epochs is 1"):
        config(data, tmp_path, "output.checkpoints.last_every_minutes=5")
