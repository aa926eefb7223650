"""Which sweep trials keep their weights: the best ``output.keep_best_weights`` complete trials.

A trial's weights (its run folders' ``checkpoints/``, all seeds and folds) are deleted as soon as the
trial can no longer be among the best: a pruned, failed, interrupted or collapsed trial never ranks,
and a complete trial outside the top N never re-enters it, because later trials only push it down.
Waiting and running trials are never touched, so a trial in progress (on any worker) keeps its files.
Metrics, history, predictions, plots and logs stay in every trial folder. Called before every claim
and when a sweep ends (also on `--resume`, for trials of a sweep killed in between).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from protfit.sweep.report import best_trial
from protfit.training.checkpoint import REMOVED_NOTE

if TYPE_CHECKING:
    from protfit.sweep.study import Sweep


def kept_trials(sweep: Sweep, study: optuna.Study) -> set[int]:
    """Numbers of the trials that keep their weights (every trial when keep_best_weights is null)."""
    trials = study.get_trials(deepcopy=False)
    keep = sweep.config.output.keep_best_weights
    if keep is None:
        return {trial.number for trial in trials}
    sign = -1.0 if sweep.direction == "maximize" else 1.0
    # collapsed trials are FAIL: never ranked, never kept
    complete = sorted(
        (trial for trial in trials if trial.state == TrialState.COMPLETE),
        key=lambda trial: (sign * trial.value, trial.number),
    )
    kept = {trial.number for trial in complete[:keep]}
    best = best_trial(study)
    if keep and best is not None:  # ties: best.json's trial keeps its weights whatever the order
        kept.add(best.number)
    return kept


def remove_weights(sweep: Sweep, study: optuna.Study) -> set[int]:
    """Delete the checkpoints of every finished trial that is not kept; returns the kept trials."""
    kept = kept_trials(sweep, study)
    note = (
        f"deleted by the sweep {sweep.folder}: only its {sweep.config.output.keep_best_weights} best trial(s) "
        "keep their weights (sweep output.keep_best_weights); this trial's metrics, history and "
        "predictions are kept, and `protfit train` on its config.yaml trains it again"
    )
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    for trial in study.get_trials(deepcopy=False, states=finished):
        if trial.number in kept or "run_dir" not in trial.user_attrs:
            continue
        # the trial's run folder, or its seed-*/fold-* run folders (and any shuffled-label baseline)
        for checkpoints in Path(trial.user_attrs["run_dir"]).glob("**/checkpoints"):
            contents = [path for path in checkpoints.iterdir() if path.name != REMOVED_NOTE]
            if not contents:
                continue
            # ignore_errors / missing_ok: parallel workers of one sweep may clean the same trial at once
            for path in contents:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            (checkpoints / REMOVED_NOTE).write_text(note + "\n")
    return kept
