"""One trial: the run config from the trial's parameters, one training run per seed or fold, pruning.

Imported by sweep workers only after they have set their thread count (importing torch first would
fix it too early).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch

from protfit.config import RunConfig
from protfit.data.loading import load_dataset_splits
from protfit.plugins import Plugin, TrainingState
from protfit.report.plots import plot_history
from protfit.report.run_dir import read_history
from protfit.training.train import train


class TrialCollapsed(Exception):
    """The trial's model is a constant predictor (training/collapse.py): a failed trial with that
    reason, never ranked, whatever its monitored value."""


class PruningReporter(Plugin):
    """Report the monitored validation value after every epoch; stop the run when Optuna prunes it."""

    name = "sweep_pruning"

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.last_epoch = 0

    def on_epoch_end(self, state: TrainingState) -> None:
        record = state.epoch_record
        monitor = state.config.monitor
        value = record["val_loss"] if monitor == "loss" else record[f"val_{monitor}"]
        self.last_epoch = int(record["epoch"])
        if value is None or not math.isfinite(value):
            return  # Optuna refuses NaN reports; the run's own divergence check stops it
        self.trial.report(float(value), self.last_epoch)
        if self.trial.should_prune():
            # the recipe redraws its curves only every few seconds: bring them up to date first
            records = read_history(Path(state.run_dir))
            if records:
                plot_history(records, state.config.metric_names, Path(state.run_dir))
            raise optuna.TrialPruned(f"pruned after epoch {self.last_epoch} ({monitor} {value:.4f})")


@contextlib.contextmanager
def quiet_logger(name: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def write_folds(cfg: RunConfig, folds: int, folder: Path) -> list[Path]:
    """k-fold splits of train+validation as fold-<i>/{train,validation}.csv; the test split as test.csv.

    Single-label classification is stratified (every fold keeps the class shares); other problem types
    use plain shuffled folds. Folds are written once per sweep, so every trial sees the same folds and
    trials compare on equal terms.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    data = cfg.data
    splits = load_dataset_splits(data)
    pool = pd.concat([splits.train.frame, splits.validation.frame], ignore_index=True)
    if len(pool) < folds:
        raise ValueError(
            f"objective.cv={folds} needs at least {folds} train+validation rows (got {len(pool)})"
        )
    if data.problem_type == "single_label_classification":
        counts = pool["label"].value_counts()
        if counts.min() < folds:
            raise ValueError(
                f"objective.cv={folds}: class {counts.idxmin()} has only {counts.min()} train+validation rows, "
                f"fewer than the folds; lower objective.cv"
            )
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.train.seed)
        indices = splitter.split(pool, pool["label"])
    else:
        indices = KFold(n_splits=folds, shuffle=True, random_state=cfg.train.seed).split(pool)

    def to_file(frame: pd.DataFrame, path: Path) -> None:
        columns = {"name": data.name_column, "aa_seq": data.sequence_column, "label": data.label_column}
        columns.update({"foldseek_seq": data.foldseek_column, "ss8_seq": data.ss8_column})
        table = frame[[column for column in columns if column in frame]].copy()
        if data.problem_type == "multi_label_classification" and "label" in table:
            table["label"] = table["label"].map(lambda labels: ",".join(str(label) for label in labels))
        table.rename(columns=columns).to_csv(path, index=False)

    folder.mkdir(parents=True, exist_ok=True)
    if splits.test is not None:
        to_file(splits.test.frame, folder / "test.csv")
    paths = []
    for index, (train_rows, validation_rows) in enumerate(indices):
        fold = folder / f"fold-{index}"
        fold.mkdir(exist_ok=True)
        to_file(pool.iloc[train_rows], fold / "train.csv")
        to_file(pool.iloc[validation_rows], fold / "validation.csv")
        paths.append(fold)
    return paths


def run_plan(
    seeds: list[int] | None, fold_dirs: list[Path] | None, test_file: Path | None
) -> list[tuple[str, dict]]:
    """(sub-folder name, extra overrides) per training run of a trial; one unnamed run by default."""
    if seeds:
        return [(f"seed-{seed}", {"train.seed": seed}) for seed in seeds]
    if fold_dirs:
        extra = {"data.train_file": None, "data.validation_file": None, "data.test_file": None}
        return [
            (
                fold.name,
                {**extra, "data.path": str(fold), "data.test_file": str(test_file) if test_file else None},
            )
            for fold in fold_dirs
        ]
    return [("", {})]


def run_trial(
    trial: optuna.Trial,
    params: dict[str, Any],
    build: Any,
    trials_dir: Path,
    plan: list[tuple[str, dict]],
) -> float:
    """Train every run of the trial; store per-run values, mean and spread as user attrs; return the mean."""
    name = f"trial-{trial.number:04d}"
    started = time.perf_counter()
    values: list[float] = []
    run_dirs: list[str] = []
    trial.set_user_attr("run_dir", str(trials_dir / name))
    trial.set_user_attr("torch_threads", torch.get_num_threads())
    log = trials_dir / f"{name}.log"
    reporter = PruningReporter(trial)
    try:
        # the run's own output goes to trial-0007.log; the sweep prints one line per trial
        with log.open("a") as handle, contextlib.redirect_stdout(handle), quiet_logger("protfit"):
            for index, (sub, extra) in enumerate(plan):
                overrides = {
                    **params,
                    **extra,
                    "output.dir": str(trials_dir / name) if sub else str(trials_dir),
                    "output.name": sub or name,
                    "train.progress": False,
                    # a killed trial is run again from its start, never resumed: no optimizer state on
                    # disk (a finished trial still writes it with the base's output.checkpoints.keep_last)
                    "output.checkpoints.last_every_epochs": None,
                    "output.checkpoints.last_every_minutes": None,
                }
                cfg: RunConfig = build(overrides)
                run_dirs.append(str(Path(overrides["output.dir"]) / overrides["output.name"]))
                # pruning decisions come from the first run: a trial's reports must form one curve
                result = train(cfg, plugins=[reporter] if index == 0 else [])
                collapse = (result.summary.get("diagnostics") or {}).get("collapse")
                if collapse:
                    raise TrialCollapsed(f"{sub or name}: {'; '.join(collapse)}")
                # the monitored metric at the best epoch, never a fallback's value (EarlyStopping)
                value = result.summary["best_val_metric"]
                if value is None or not math.isfinite(value):
                    raise FloatingPointError(f"{sub or name}: the monitored validation value is {value}")
                values.append(float(value))
                if index == 0 and "test_metrics" in result.summary:
                    trial.set_user_attr("test_metrics", result.summary["test_metrics"])
    except TrialCollapsed:
        trial.set_user_attr("run_dirs", run_dirs)
        trial.set_user_attr("epochs_run", reporter.last_epoch)
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - started, 2))
        raise
    except optuna.TrialPruned:
        trial.set_user_attr("pruned_at_epoch", reporter.last_epoch)
        trial.set_user_attr("run_dirs", run_dirs)
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - started, 2))
        raise
    except FloatingPointError as error:
        # a learning rate that blows the loss up is an answer, not a crash: recorded as pruned
        trial.set_user_attr("diverged", str(error))
        trial.set_user_attr("pruned_at_epoch", reporter.last_epoch)
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - started, 2))
        raise optuna.TrialPruned(str(error)) from None
    mean = statistics.fmean(values)
    trial.set_user_attr("values", values)
    trial.set_user_attr("run_dirs", run_dirs)
    trial.set_user_attr("mean", mean)
    trial.set_user_attr("sd", statistics.stdev(values) if len(values) > 1 else None)
    trial.set_user_attr("epochs_run", reporter.last_epoch)
    trial.set_user_attr("wall_time_s", round(time.perf_counter() - started, 2))
    return mean
