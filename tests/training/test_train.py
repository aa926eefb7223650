"""End-to-end runs of the training recipe on tiny local models and synthetic data."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from protfit.config import ConfigError, apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.metrics import MetricInputs, register_metric
from protfit.models.protein_model import build_model
from protfit.plugins import Plugin
from protfit.registry import METRICS
from protfit.training.train import train

PROBLEMS = ["single_label_classification", "multi_label_classification", "regression"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {problem: write_synthetic_dataset(root / problem, problem, seed=1) for problem in PROBLEMS}


def make_config(data_dir, out_dir, problem="single_label_classification", *overrides):
    raw = {
        "data": {"path": str(data_dir), "problem_type": problem, "batch_size": 16},
        "model": {"name": "tiny-esm2", "method": "full", "head": {"hidden_dims": [32]}},
        "train": {"epochs": 3, "learning_rate": 3e-3, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 50}},
        "output": {"dir": str(out_dir), "name": "run"},
    }
    return build_config(apply_overrides(raw, list(overrides)))


def strip_times(rows):
    return [{key: value for key, value in row.items() if key != "epoch_time_s"} for row in rows]


def test_smoke_run_learns_the_synthetic_rule_and_fills_the_run_folder(datasets, tmp_path):
    cfg = make_config(
        datasets["single_label_classification"], tmp_path, "single_label_classification", "train.epochs=8"
    )
    result = train(cfg)
    run = result.run_dir
    for name in [
        "config.yaml",
        "history.csv",
        "history.jsonl",
        "model_stats.json",
        "data_report.json",
        "test_results.csv",
        "test_predictions.csv",
        "summary.json",
        "loss.png",
        "metrics.png",
        "model_meta.json",
        "checkpoints/best/model.safetensors",
    ]:
        assert (run / name).exists(), name
    assert not (run / "checkpoints" / "last").exists()  # finished: the optimizer state is dropped
    environment = json.loads((run / "run.json").read_text())["environment"]
    assert (environment["device"], environment["torch_threads"]) == ("cpu", torch.get_num_threads())
    assert environment["packages"]["torch"] == torch.__version__
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_metrics"]["accuracy"]["value"] > 0.8  # chance is 1/3
    low, high = summary["test_metrics"]["accuracy"]["low"], summary["test_metrics"]["accuracy"]["high"]
    assert low <= summary["test_metrics"]["accuracy"]["value"] <= high
    assert {"constant", "composition_linear"} <= set(summary["baselines"])
    assert summary["verdict"]
    assert len(pd.read_csv(run / "history.csv")) == summary["epochs_run"]
    results = pd.read_csv(run / "test_results.csv")
    assert {"model", "metric", "value", "low", "high"} <= set(results.columns)
    assert len(pd.read_csv(run / "test_predictions.csv")) == 60


def test_same_seed_gives_identical_metrics(datasets, tmp_path):
    # pitfall: the peer parsed --seed and never applied it
    first = train(make_config(datasets["regression"], tmp_path / "a", "regression", "train.epochs=2"))
    second = train(make_config(datasets["regression"], tmp_path / "b", "regression", "train.epochs=2"))
    other = train(
        make_config(datasets["regression"], tmp_path / "c", "regression", "train.epochs=2", "train.seed=7")
    )
    assert strip_times(first.summary["history"]) == strip_times(second.summary["history"])
    assert first.summary["test_metrics"] == second.summary["test_metrics"]
    assert first.summary["test_metrics"] != other.summary["test_metrics"]


def test_full_fine_tuning_moves_backbone_weights_and_freeze_does_not(datasets, tmp_path):
    # pitfall: the peer's "full" left the PLM weights bit-identical
    cfg = make_config(datasets["regression"], tmp_path / "full", "regression", "train.epochs=1")
    initial = build_model(cfg, 1).state_dict()
    full = train(cfg)
    trained = load_file(full.run_dir / "checkpoints/best/model.safetensors")
    attention_weights = [
        key for key in trained if key.startswith("backbone.") and key.endswith("query.weight")
    ]
    assert attention_weights
    for key in attention_weights:
        assert not torch.equal(trained[key], initial[key]), key
    frozen = train(
        make_config(
            datasets["regression"], tmp_path / "freeze", "regression", "train.epochs=1", "model.method=freeze"
        )
    )
    frozen_keys = load_file(frozen.run_dir / "checkpoints/best/model.safetensors")
    assert not [key for key in frozen_keys if key.startswith("backbone.")]
    stats = frozen.summary["model_stats"]
    assert 0 < stats["trainable"] < stats["total"]


@pytest.mark.parametrize("problem", PROBLEMS)
def test_every_problem_type_trains_in_token_budget_mode(datasets, tmp_path, problem):
    result = train(
        make_config(datasets[problem], tmp_path, problem, "train.epochs=2", "data.max_tokens_per_batch=600")
    )
    history = result.summary["history"]
    assert len(history) == 2 and all(math.isfinite(row["train_loss"]) for row in history)
    assert history[-1]["padding_fraction"] < 0.3
    assert set(result.summary["test_metrics"]) == set(
        make_config(datasets[problem], tmp_path, problem).metric_names
    )


def test_accumulation_schedule_ends_at_zero_on_the_last_step(datasets, tmp_path):
    # pitfall: schedule counted in micro-batches, stepped per optimizer step -> final LR still half the peak
    result = train(
        make_config(
            datasets["regression"],
            tmp_path,
            "regression",
            "train.epochs=2",
            "train.gradient_accumulation_steps=3",
            "train.early_stopping.patience=null",
            "train.scheduler.name=linear",
        )
    )
    assert result.summary["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)


class InterruptAfter(Plugin):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_continues_exactly_where_the_interrupted_run_stopped(datasets, tmp_path):
    args = (
        "regression",
        "train.epochs=4",
        "train.early_stopping.patience=null",
        "train.scheduler.name=cosine",
    )
    uninterrupted = train(make_config(datasets["regression"], tmp_path / "a", *args))
    interrupted_cfg = make_config(datasets["regression"], tmp_path / "b", *args)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted_cfg, plugins=[InterruptAfter(2)])
    run_dir = tmp_path / "b" / "run"
    assert len(pd.read_csv(run_dir / "history.csv")) == 2  # completed epochs survive the abort
    resumed = train(None, resume_from=run_dir)

    assert strip_times(resumed.summary["history"]) == strip_times(uninterrupted.summary["history"])
    assert resumed.summary["test_metrics"] == uninterrupted.summary["test_metrics"]


def test_a_signal_while_an_epoch_is_saved_keeps_history_and_checkpoint_in_step(
    datasets, tmp_path, monkeypatch
):
    # The web UI's Abort (SIGTERM) landing between an epoch's history line and its checkpoint left a
    # line for an unsaved epoch; --resume re-trained it and rewrote the line (a flaky browser test).
    import os
    import signal

    from protfit.training import loop
    from protfit.training.train import RunInterrupted

    args = ("regression", "train.epochs=3", "train.early_stopping.patience=null")
    uninterrupted = train(make_config(datasets["regression"], tmp_path / "a", *args))
    save_checkpoint = loop.save_checkpoint

    def signal_while_saving(folder, *positional, **keywords):
        if folder.name == "last" and keywords["progress"]["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        save_checkpoint(folder, *positional, **keywords)

    monkeypatch.setattr(loop, "save_checkpoint", signal_while_saving)
    with pytest.raises(RunInterrupted):
        train(make_config(datasets["regression"], tmp_path / "b", *args))
    monkeypatch.undo()
    run_dir = tmp_path / "b" / "run"
    saved = json.loads((run_dir / "checkpoints" / "last" / "training_state.json").read_text())
    history = (run_dir / "history.jsonl").read_text().splitlines()
    assert saved["progress"]["epoch"] == len(history) == 2  # the epoch was saved whole before stopping
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    resumed = train(None, resume_from=run_dir)
    assert (run_dir / "history.jsonl").read_text().splitlines()[:2] == history
    assert strip_times(resumed.summary["history"]) == strip_times(uninterrupted.summary["history"])


def test_early_stopping_on_loss_restores_the_lowest_loss_epoch(datasets, tmp_path):
    result = train(
        make_config(
            datasets["regression"],
            tmp_path,
            "regression",
            "train.epochs=4",
            "train.early_stopping.monitor=loss",
            "train.early_stopping.patience=1",
            "train.learning_rate=0.05",
            "train.scheduler.name=none",
        )
    )
    history = result.summary["history"]
    best = min(history, key=lambda row: row["val_loss"])
    assert result.summary["best_epoch"] == best["epoch"]
    assert result.summary["best_val_metric"] == pytest.approx(best["val_loss"])


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-t5", "onehot"])
def test_other_families_train(datasets, tmp_path, model):
    result = train(
        make_config(
            datasets["single_label_classification"],
            tmp_path,
            "single_label_classification",
            "train.epochs=1",
            f"model.name={model}",
        )
    )
    assert math.isfinite(result.summary["history"][0]["train_loss"])


def test_impossible_device_settings_fail_before_any_work(datasets, tmp_path):
    with pytest.raises(RuntimeError, match="fp16 needs a CUDA GPU"):
        train(
            make_config(
                datasets["regression"],
                tmp_path,
                "regression",
                "train.mixed_precision=fp16",
                "train.device=cpu",
            )
        )
    assert not (tmp_path / "run").exists()


def test_existing_run_folder_is_never_overwritten_by_default(datasets, tmp_path):
    cfg = make_config(datasets["regression"], tmp_path, "regression", "train.epochs=1")
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)


def test_run_without_output_name_gets_a_unique_folder(datasets, tmp_path):
    # pitfall: the peer crashed when no output name was given
    cfg = make_config(datasets["regression"], tmp_path, "regression", "train.epochs=1", "output.name=null")
    result = train(cfg)
    assert result.run_dir.parent == tmp_path
    assert result.run_dir.name.startswith("tiny-esm2-full-")
    assert (result.run_dir / "summary.json").exists()


# ---- interruption, resume and NaN monitors (run-folder integrity) ---------------------------------


class FailInEpoch(Plugin):
    name = "fail"

    def __init__(self, error):
        self.error = error

    def on_epoch_start(self, state):
        raise self.error


def test_interrupted_in_epoch_one_resume_restarts_from_scratch(datasets, tmp_path, capsys):
    cfg = make_config(datasets["regression"], tmp_path, "regression", "train.epochs=2")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, plugins=[FailInEpoch(KeyboardInterrupt())])
    assert "before the first epoch completed: nothing to keep" in capsys.readouterr().out
    run_dir = tmp_path / "run"
    resumed = train(None, resume_from=run_dir)
    assert (
        "no completed epoch to continue from (no checkpoints/last): starting it again from scratch"
        in capsys.readouterr().out
    )
    fresh = train(make_config(datasets["regression"], tmp_path / "fresh", "regression", "train.epochs=2"))
    assert strip_times(resumed.summary["history"]) == strip_times(fresh.summary["history"])


def test_a_failed_first_epoch_is_resumable_too(datasets, tmp_path):
    cfg = make_config(datasets["regression"], tmp_path, "regression", "train.epochs=1")
    with pytest.raises(FloatingPointError):
        train(cfg, plugins=[FailInEpoch(FloatingPointError("diverged"))])
    assert train(None, resume_from=tmp_path / "run").summary["epochs_run"] == 1


def disk_full_after(monkeypatch, writes):
    """Checkpoint files fit until ``writes`` of them were written into `last`; then the disk is full."""
    import errno

    from protfit.training import checkpoint

    save_file, written = checkpoint.save_file, []

    def save_or_fail(tensors, path):
        if path.parent.name == "last.tmp":
            if len(written) >= writes:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            written.append(path)
        save_file(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", save_or_fail)


def write_run_yaml(data_dir, out_dir, epochs):
    import yaml

    config = {
        "data": {"path": str(data_dir), "problem_type": "regression", "batch_size": 16},
        "model": {"name": "tiny-esm2", "method": "full", "head": {"hidden_dims": [32]}},
        "train": {
            "epochs": epochs,
            "learning_rate": 3e-3,
            "progress": False,
            "early_stopping": {"patience": None},
        },
        "evaluation": {"bootstrap": {"resamples": 50}},
        "output": {"dir": str(out_dir), "name": "run"},
    }
    path = out_dir / "run.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes(
    datasets, tmp_path, monkeypatch, capsys
):
    from protfit.cli import main
    from protfit.training.checkpoint import checkpoint_epoch, is_complete

    uninterrupted = train(str(write_run_yaml(datasets["regression"], tmp_path / "a", 3)))
    disk_full_after(monkeypatch, writes=2)  # epoch 1's `last` (weights + training state) fits, epoch 2's not
    config = write_run_yaml(datasets["regression"], tmp_path / "b", 3)
    capsys.readouterr()
    assert main(["train", str(config)]) == 2
    error = capsys.readouterr().err
    last = tmp_path / "b" / "run" / "checkpoints" / "last"
    assert error.count("\n") == 1 and "Traceback" not in error
    assert (
        f"no space left on the device to write checkpoint {last} (about " in error and " MB needed)" in error
    )
    assert is_complete(last) and checkpoint_epoch(last) == 1  # the previous checkpoint is kept whole
    assert not last.with_name("last.tmp").exists()
    assert len((last.parent.parent / "history.jsonl").read_text().splitlines()) == 1
    monkeypatch.undo()  # space freed
    assert main(["train", "--resume", str(last.parent.parent)]) == 0
    resumed = [json.loads(line) for line in (last.parent.parent / "history.jsonl").read_text().splitlines()]
    assert strip_times(resumed) == strip_times(uninterrupted.summary["history"])


def test_resume_ignores_a_half_written_last_checkpoint(datasets, tmp_path, monkeypatch, capsys):
    # the disk filled while epoch 1's `last` was written: `best` exists, `last` does not, and a cut-off
    # `last.tmp` may be left (a kill); --resume found "no checkpoint at .../last/model.safetensors"
    from protfit.cli import main

    disk_full_after(monkeypatch, writes=0)
    config = write_run_yaml(datasets["regression"], tmp_path, 2)
    assert main(["train", str(config)]) == 2
    monkeypatch.undo()
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "best").is_dir() and not (checkpoints / "last").exists()
    (checkpoints / "last.tmp").mkdir(exist_ok=True)
    (checkpoints / "last.tmp" / "model.safetensors").write_bytes(b"")
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert (
        "no completed epoch to continue from (no checkpoints/last): starting it again from scratch"
        in capsys.readouterr().out
    )
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 2


def test_resume_overrides_are_recorded_and_the_schedule_continues(datasets, tmp_path):
    args = ("train.epochs=2", "train.early_stopping.patience=null", "train.scheduler.warmup_steps=3")
    cfg = make_config(
        datasets["regression"], tmp_path, "regression", *args, "output.checkpoints.keep_last=true"
    )
    first = train(cfg)
    assert (first.run_dir / "checkpoints" / "last").is_dir()  # kept: the finished run can be extended
    last_lr = first.summary["history"][-1]["lr"]
    resumed = train(None, ["train.epochs=4"], resume_from=first.run_dir)
    saved = (first.run_dir / "config.yaml").read_text()
    assert "epochs: 4" in saved
    lrs = [row["lr"] for row in resumed.summary["history"]]
    assert len(lrs) == 4 and lrs[:2] == [row["lr"] for row in first.summary["history"]]
    # no second warm-up: the longer linear schedule continues from the step reached
    steps_per_epoch = 240 // 16
    total, peak = 4 * steps_per_epoch, 3e-3
    expected = peak * (total - 3 * steps_per_epoch) / (total - 3)
    assert lrs[2] == pytest.approx(expected, rel=1e-6) and lrs[2] > last_lr


def test_resume_refuses_overrides_that_change_what_is_trained(datasets, tmp_path):
    first = train(make_config(datasets["regression"], tmp_path, "regression", "train.epochs=1"))
    with pytest.raises(ConfigError, match="model.method=lora would change what it trains"):
        train(None, ["model.method=lora"], resume_from=first.run_dir)


def test_a_nan_monitor_keeps_the_lowest_loss_epoch_but_not_the_loss_as_its_value(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", "regression", n_train=40, n_validation=8, n_test=8)
    frame = pd.read_csv(data / "validation.csv")
    frame["label"] = 1.5  # a constant label: Spearman is undefined on validation
    frame.to_csv(data / "validation.csv", index=False)
    result = train(make_config(data, tmp_path, "regression", "train.epochs=2"))
    summary = result.summary
    best = min(summary["history"], key=lambda row: row["val_loss"])
    assert summary["best_epoch"] == best["epoch"] and summary["selected_by"] == "val_loss"
    # the monitored metric stays the monitored metric: undefined, never the loss in its place
    assert summary["monitor"] == "spearman" and summary["best_val_metric"] is None
    assert summary["best_val_loss"] == pytest.approx(best["val_loss"])
    assert "test_metrics" in summary
    assert summary["diagnostics"]["collapsed"]  # undefined at its best epoch: no value to rank it by


def test_sigterm_ends_a_run_like_ctrl_c(datasets, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import yaml

    config = {
        "data": {"path": str(datasets["regression"]), "problem_type": "regression", "batch_size": 16},
        "model": {"name": "tiny-esm2", "method": "full"},
        "train": {"epochs": 200, "progress": False},
        "output": {"dir": str(tmp_path), "name": "run"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "protfit", "train", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in process.stdout:  # wait for the first completed epoch
        if line.startswith("epoch 1/200"):
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM): completed epochs are saved" in out and "terminated" in err
    assert (tmp_path / "run" / "checkpoints" / "last").is_dir()
    assert not (tmp_path / "run" / "run.lock").exists()  # the lock is released


def test_a_metric_registered_by_the_user_is_validated_monitored_and_tested(datasets, tmp_path, monkeypatch):
    METRICS.names()  # built-ins loaded before the copy that the test's metric goes into
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))

    @register_metric("within_half", "regression", "share of predictions within 0.5 of the target")
    def within_half(inputs: MetricInputs) -> float:
        return float(np.mean(np.abs(inputs.outputs - inputs.targets) <= 0.5))

    cfg = make_config(
        datasets["regression"],
        tmp_path,
        "regression",
        "model.name=onehot",
        "model.method=freeze",
        "train.epochs=2",
        "evaluation.metrics=[within_half, mse]",
        "train.early_stopping.monitor=within_half",
    )
    summary = json.loads((train(cfg).run_dir / "summary.json").read_text())
    tested = summary["test_metrics"]["within_half"]
    assert 0.0 <= tested["low"] <= tested["value"] <= tested["high"] <= 1.0
    assert "within_half" in summary["baselines"]["constant"]["metrics"]
