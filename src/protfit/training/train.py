"""The training recipe: one run, read top to bottom.

    setup_run (data, model, method, loaders/cache, optimizer, schedule)   training/setup.py
      -> run folder                                                        report/run_dir.py
      -> fit (epochs: train, validate, keep the best, checkpoint)         training/loop.py
      -> test (best weights, bootstrap intervals)                          below
      -> sanity baselines -> report (summary.json, closing lines)         report/

The run folder is created only after setup succeeded, so a bad model name or a data error leaves
nothing behind. Other entry points (the LR range test, sweep trials, the shuffled-label baseline)
call the same stages.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protfit.config import ConfigError, RunConfig, apply_overrides, build_config, load_config, save_config
from protfit.data.domain import training_domain
from protfit.data.loading import DatasetSplits
from protfit.metrics import targets_from_frame
from protfit.models.methods import format_model_statistics
from protfit.models.protein_model import load_trainable_state_dict
from protfit.plugins import Plugin
from protfit.registry import plugin_modules
from protfit.report.baselines import BaselineResult, fit_sanity_baselines
from protfit.report.confidence import metrics_with_intervals
from protfit.report.run_dir import (
    CONFIG_FILE,
    RunLock,
    create_run_dir,
    ensure_writable,
    environment,
    load_run_plugins,
    write_json,
)
from protfit.report.summary import report
from protfit.report.trackers import check_trackers, close_trackers
from protfit.training.checkpoint import load_model_state, recover_checkpoint, remove_checkpoint
from protfit.training.collapse import collapse_reason
from protfit.training.evaluation import evaluate, write_predictions
from protfit.training.loop import fit
from protfit.training.lr_range_test import write_range_test
from protfit.training.setup import RunParts, setup_run
from protfit.training.zero_shot_baseline import zero_shot_baselines

logger = logging.getLogger("protfit")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM (schedulers, container runtimes) ends a run like Ctrl-C: what is saved stays saved."""


# Overrides a resumed run may take: they change how long or how verbosely it goes on, not what it
# trains. Anything else (model, data, method, learning rate...) would continue weights under a
# config they were not trained with.
RESUMABLE_KEYS = (
    "train.epochs",
    "train.early_stopping.",
    "train.progress",
    "evaluation.",
    "output.trackers",
    "output.checkpoints.",
)


def resolve_config(config: RunConfig | str | Path | None, overrides: list[str] | None) -> RunConfig:
    """A RunConfig from a file or an existing RunConfig, with ``key=value`` overrides applied to either."""
    if isinstance(config, RunConfig):
        if not overrides:
            return config
        return build_config(apply_overrides(config.model_dump(mode="json"), overrides), "overrides")
    return load_config(config, overrides)


def train(
    config: RunConfig | str | Path | None,
    overrides: list[str] | None = None,
    *,
    resume_from: str | Path | None = None,
    plugins: list[Plugin] | None = None,
) -> RunResult:
    """Train, validate and test one model; everything lands in the run directory."""
    started = time.perf_counter()
    resume = resume_from is not None
    if resume:
        run_dir: Path | None = Path(resume_from)
        cfg = resume_config(run_dir, overrides)
        check_resumable(run_dir)
        ensure_writable(run_dir, "run folder")
    else:
        cfg, run_dir = resolve_config(config, overrides), None
        ensure_writable(cfg.output.dir, "output.dir")
    check_trackers(cfg)  # a tracker whose package is missing stops the run before any work

    parts = setup_run(cfg, plugins=plugins, warn_ignored=not resume)
    run_dir = _shared_run_dir(parts, run_dir)
    logger.info("run folder: %s", run_dir)
    # one writer per run folder: the main process holds the lock for the whole run
    lock = RunLock(run_dir) if parts.accelerator.is_main_process else nullcontext()
    with lock, _sigterm_as_interrupt():
        return _run(parts, run_dir, resume, started)


def _run(parts: RunParts, run_dir: Path, resume: bool, started: float) -> RunResult:
    """From a created (or resumed) run folder to the report; the caller holds the run's lock."""
    cfg = parts.cfg
    if resume:
        # No completed epoch (interrupted or failed in epoch 1): nothing to continue, so the run
        # starts again from scratch in its folder, under its own config. A `last.tmp` counts only when
        # complete (a kill between the renames); one cut off mid-write (a full disk) is not a checkpoint.
        resume = recover_checkpoint(run_dir / "checkpoints" / "last")
        if not resume:
            print(
                f"{run_dir} has no completed epoch to continue from (no checkpoints/last): starting it again from scratch"
            )
            _clear_outputs(run_dir)
        elif parts.accelerator.is_main_process:
            save_config(cfg, run_dir / CONFIG_FILE)  # the overrides applied on resume are recorded
    if parts.accelerator.is_main_process:
        write_run_files(parts, run_dir)
        if parts.lr_find is not None:
            write_range_test(parts.lr_find, run_dir)

    try:
        summary: dict[str, Any] = {"run_dir": str(run_dir), **fit(parts, run_dir, resume=resume)}
    except KeyboardInterrupt as interrupt:
        _say_what_is_saved(run_dir, interrupt)
        raise
    summary.update(model_stats=parts.stats, embedding_cache=parts.embedding_cache)
    if parts.lr_find is not None:
        summary["lr_find"] = parts.lr_find.as_dict()
    for plugin in parts.plugins:  # plug-ins may add summary entries (overfitting diagnostics, DP epsilon)
        summary.update(plugin.summary_entries(summary))
    tested = test(parts, run_dir, summary["best_epoch"])
    summary.update(tested.summary)
    summary["diagnostics"] = {**summary.get("diagnostics", {}), **collapse_diagnosis(cfg, summary, tested)}

    baselines: list[BaselineResult] = []
    splits = parts.splits
    if splits.test is not None and cfg.evaluation.baselines.enabled and "test_metrics" in summary:
        baselines = fit_sanity_baselines(
            splits.train.frame,
            splits.validation.frame,
            splits.test.frame,
            cfg.data.problem_type,
            splits.num_labels,
            cfg.metric_names,
            cfg.evaluation.bootstrap,
            cfg.evaluation.multi_label_threshold,
        )
        zero_shot, skipped, scored = zero_shot_baselines(parts)
        baselines += zero_shot
        summary["skipped_baselines"] = skipped
        if scored:
            summary["zero_shot"] = scored
        if cfg.evaluation.baselines.shuffled_labels:
            baselines.append(shuffled_label_baseline(cfg, splits, run_dir))
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    if parts.accelerator.is_main_process:
        report(cfg, summary, baselines, run_dir, tested.outputs, tested.targets)
        close_trackers(parts.plugins, summary)  # final test metrics and diagnostics, then close
        if not cfg.output.checkpoints.keep_last:
            # finished: `last` served only --resume, and holds the optimizer state (with AdamW twice
            # the trained weights again); the shuffled-label baseline's weights are never loaded again
            remove_checkpoint(run_dir / "checkpoints" / "last")
            shutil.rmtree(run_dir / "baselines" / "shuffled_labels" / "checkpoints", ignore_errors=True)
    return RunResult(run_dir=run_dir, summary=summary)


def resume_config(run_dir: Path, overrides: list[str] | None) -> RunConfig:
    """The run's own config with the overrides a resumed run may take (RESUMABLE_KEYS)."""
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a protfit run folder (no {CONFIG_FILE})")
    load_run_plugins(run_dir)
    refused = [
        item for item in overrides or [] if not item.split("=", 1)[0].strip().startswith(RESUMABLE_KEYS)
    ]
    if refused:
        raise ConfigError(
            f"--resume continues the run under its own config; {', '.join(refused)} would change what it "
            f"trains. On resume only these may change: {', '.join(RESUMABLE_KEYS)} "
            "(start a new run for anything else)"
        )
    return load_config(run_dir / CONFIG_FILE, overrides)


def check_resumable(run_dir: Path) -> None:
    """Refuse to continue a finished run whose `last` was removed: there is no optimizer state to go on
    with, and starting again from scratch would delete its results."""
    if (run_dir / "summary.json").is_file() and not recover_checkpoint(run_dir / "checkpoints" / "last"):
        raise FileNotFoundError(
            f"{run_dir} has finished and its checkpoints/last (the optimizer state --resume continues from) "
            "was removed as output.checkpoints.keep_last=false; train longer in a new run (more "
            "train.epochs), with output.checkpoints.keep_last=true to extend runs later"
        )


def _clear_outputs(run_dir: Path) -> None:
    for name in ("checkpoints", "history.csv", "history.jsonl", "summary.json", "test_results.csv"):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (run_dir / "checkpoints").mkdir()


def _say_what_is_saved(run_dir: Path, interrupt: KeyboardInterrupt) -> None:
    cause = "terminated (SIGTERM)" if isinstance(interrupt, RunInterrupted) else "interrupted"
    if (run_dir / "checkpoints" / "last").exists():
        print(
            f"\n{cause}: completed epochs are saved in {run_dir}; "
            f"continue with `protfit train --resume {run_dir}`"
        )
    else:
        print(
            f"\n{cause} before the first epoch completed: nothing to keep; "
            f"`protfit train --resume {run_dir}` starts it again from scratch under the same config"
        )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C for the duration of a run (main thread only: signals go there)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise RunInterrupted()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _shared_run_dir(parts: RunParts, run_dir: Path | None) -> Path:
    """The main process creates the run folder; the others learn its name from it."""
    from accelerate.utils import broadcast_object_list

    accelerator = parts.accelerator
    if run_dir is None and accelerator.is_main_process:
        run_dir = create_run_dir(parts.cfg, run_environment(parts))
    if accelerator.num_processes > 1:
        run_dir = Path(broadcast_object_list([str(run_dir) if run_dir else None])[0])
    assert run_dir is not None
    return run_dir


def run_environment(parts: RunParts) -> dict[str, Any]:
    """The environment run.json records (`report.run_dir.environment`), with this run's device."""
    import torch

    device = parts.accelerator.device
    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return environment(f"{device}{name}", torch.get_num_threads(), parts.accelerator.num_processes)


def write_run_files(parts: RunParts, run_dir: Path) -> None:
    """What prediction needs besides weights (labels, scaling, family) and the model statistics."""
    cfg, splits = parts.cfg, parts.splits
    write_json(run_dir / "data_report.json", splits.report)
    write_json(
        run_dir / "model_meta.json",
        {
            "problem_type": cfg.data.problem_type,
            "num_labels": splits.num_labels,
            "label_names": splits.label_names,
            "label_scaling": parts.scaling.as_dict(),
            "family": parts.unwrapped_model.backbone.family,
            # imported again by eval / predict / export / protfit.load / --resume before the config
            "plugin_modules": plugin_modules(),
            "extra_features": parts.extra_feature_states,
            "trainable_overrides": parts.trainable_overrides,
            # what predictions are compared with to note inputs outside the training data
            "training_domain": training_domain(splits.train.frame["aa_seq"].tolist()),
        },
    )
    write_json(run_dir / "model_stats.json", parts.stats)
    print(format_model_statistics(parts.stats))


def collapse_diagnosis(cfg: RunConfig, summary: dict[str, Any], tested: TestResult) -> dict[str, Any]:
    """``collapsed`` and its reasons: constant predictions on validation at the best epoch or on test
    (training/collapse.py), or a monitored metric undefined at every epoch."""
    reasons = []
    best = next((r for r in summary.get("history", []) if r["epoch"] == summary.get("best_epoch")), {})
    if best.get("collapsed"):
        reasons.append(f"epoch {best['epoch']}: {best['collapsed']}")
    elif summary.get("selected_by") == "val_loss":
        reasons.append(f"validation {cfg.monitor} was undefined (nan) at every epoch")
    test_reason = collapse_reason(
        tested.outputs,
        tested.targets,
        cfg.data.problem_type,
        cfg.monitor,
        "test",
        cfg.evaluation.multi_label_threshold,
    )
    if test_reason:
        reasons.append(test_reason)
    return {"collapsed": bool(reasons), "collapse": reasons}


@dataclass
class TestResult:
    summary: dict[str, Any]
    outputs: np.ndarray | None = None
    targets: np.ndarray | None = None


def test(parts: RunParts, run_dir: Path, best_epoch: int | None) -> TestResult:
    """Test split with the best epoch's weights (as saved: averaged weights where a plug-in keeps
    them), metrics with bootstrap intervals, per-sequence predictions."""
    cfg, splits = parts.cfg, parts.splits
    if splits.test is None:
        return TestResult({})
    if best_epoch is None:
        # never test weights this run did not select (a stale `best` from an earlier run, or none)
        return TestResult({"warnings": ["no epoch had a finite validation value to select by: test skipped"]})
    model = parts.unwrapped_model
    load_trainable_state_dict(model, load_model_state(run_dir / "checkpoints" / "best"))
    result = evaluate(
        model,
        parts.loaders["test"],
        parts.criterion,
        parts.scaling,
        parts.accelerator,
        cfg.data.problem_type,
        progress="test" if cfg.train.progress else None,
    )
    targets = targets_from_frame(splits.test.frame, cfg.data.problem_type, splits.num_labels)
    metrics = metrics_with_intervals(
        cfg.metric_names,
        cfg.data.problem_type,
        result.outputs,
        targets,
        splits.num_labels,
        cfg.evaluation.bootstrap,
        cfg.evaluation.multi_label_threshold,
    )
    if parts.accelerator.is_main_process:
        write_predictions(
            run_dir / "test_predictions.csv",
            splits.test.frame,
            result.outputs,
            cfg.data.problem_type,
            splits.label_names,
            cfg.evaluation.multi_label_threshold,
        )
    return TestResult({"test_loss": result.loss, "test_metrics": metrics}, result.outputs, targets)


def shuffled_label_baseline(cfg: RunConfig, splits: DatasetSplits, run_dir: Path) -> BaselineResult:
    """The same model trained on permuted training labels: it must fall to chance."""
    rng = np.random.default_rng(cfg.train.seed)
    train_frame = splits.train.frame.copy()
    train_frame["label"] = train_frame["label"].to_numpy()[rng.permutation(len(train_frame))]
    shuffled = DatasetSplits(
        train=type(splits.train)(
            name="train", source=splits.train.source + " (labels shuffled)", frame=train_frame
        ),
        validation=splits.validation,
        test=splits.test,
        problem_type=splits.problem_type,
        num_labels=splits.num_labels,
        label_names=splits.label_names,
        report=splits.report,
    )
    folder = run_dir / "baselines" / "shuffled_labels"
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    print("training the shuffled-label baseline (evaluation.baselines.shuffled_labels=true)")
    parts = setup_run(cfg, splits=shuffled, warn_ignored=False)
    fitted = fit(parts, folder)
    tested = test(parts, folder, fitted["best_epoch"])
    return BaselineResult(
        name="shuffled_labels",
        description="this model trained on shuffled training labels (should be at chance)",
        test_outputs=tested.outputs,
        metrics=tested.summary.get("test_metrics", {}),
    )
