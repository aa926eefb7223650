"""What a sweep reports: the live line per trial, trials.csv, best.json, the final table and Optuna's plots.

Workers of one sweep (and of a shared study) write the same report files, so every file is written
with `atomic_write`: a reader never sees half a file.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from protfit.report.compare import format_value
from protfit.report.run_dir import atomic_write
from protfit.sweep.storage import counts, finished

if TYPE_CHECKING:
    from protfit.sweep.study import Sweep


def format_params(params: dict[str, Any]) -> str:
    """``learning_rate=0.016 dropout=0.31 ema.enabled=True``: the last part of each key, or the last
    two where the last part alone says nothing (``enabled``, ``name``: ``scheduler.name=constant``)
    or is shared by two keys."""
    last = [key.split(".")[-1] for key in params]
    parts = []
    for key, value in params.items():
        short = key.split(".")[-1]
        if short in ("enabled", "name", "type", "path") or last.count(short) > 1:
            short = ".".join(key.split(".")[-2:])
        parts.append(f"{short}={value:.3g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def report_trial(
    sweep: Sweep, study: optuna.Study, number: int, state: str, note: str | None, started: float
) -> None:
    """The live line: trial k/N, its state and value, parameters, the best so far."""
    trial = study.get_trials(deepcopy=False)[number]
    done = counts(study)
    value = trial.value if state == "complete" else None
    spread = trial.user_attrs.get("sd")
    shown = format_value(value, decimals=4) + (f" ± {spread:.4f}" if spread and value is not None else "")
    if state == "pruned":
        shown = f"at epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
    best = best_trial(study)
    best_text = f"best {format_value(best.value, decimals=4)} (#{best.number})" if best else "best –"
    line = (
        f"trial {finished(done)}/{sweep.config.n_trials} #{number} {state} {sweep.base.monitor} {shown}  "
        f"{format_params(trial.params)}  | {best_text}  {time.perf_counter() - started:.1f}s"
    )
    if state == "collapsed":
        shown = "collapsed (a constant predictor; not ranked)"
    if state in ("failed", "collapsed") and note:
        line += f"\n  {'error' if state == 'failed' else 'why'}: {note}"
    print(line, flush=True)


def trials_table(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        epochs = attrs.get("pruned_at_epoch") if trial.state == TrialState.PRUNED else attrs.get("epochs_run")
        rows.append(
            {
                "trial": trial.number,
                "state": "collapsed" if attrs.get("collapsed") else trial.state.name.lower(),
                "value": trial.value if trial.state == TrialState.COMPLETE else None,
                "sd": attrs.get("sd"),
                "epochs": epochs,
                "wall_time_s": attrs.get("wall_time_s"),
                **trial.params,
                "run_dir": attrs.get("run_dir"),
                "note": attrs.get("error")
                or (f"collapsed: {attrs['collapsed']}" if attrs.get("collapsed") else None)
                or attrs.get("diverged")
                or ("interrupted" if attrs.get("interrupted") else None)
                # failed without a reason of its own: Optuna failed it when its worker's heartbeat stopped
                or ("worker died (no heartbeat)" if trial.state == TrialState.FAIL else None),
            }
        )
    return pd.DataFrame(rows)


def write_report(sweep: Sweep, study: optuna.Study, wall_time_s: float) -> dict[str, Any] | None:
    table = trials_table(study)
    atomic_write(sweep.folder / "trials.csv", lambda path: table.to_csv(path, index=False))
    state = counts(study)
    best = best_trial(study)
    summary: dict[str, Any] | None = None
    if best is not None:
        summary = {
            "trial": best.number,
            "monitor": sweep.base.monitor,
            "direction": sweep.direction,
            "value": best.value,
            "sd": best.user_attrs.get("sd"),
            "values": best.user_attrs.get("values"),
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
            "test_metrics": best.user_attrs.get("test_metrics"),
        }
    report = {
        "best": summary,
        "counts": state,
        "n_trials": sweep.config.n_trials,
        "wall_time_s": round(wall_time_s, 2),
    }
    atomic_write(
        sweep.folder / "best.json", lambda path: path.write_text(json.dumps(report, indent=2, default=str))
    )
    write_plots(study, sweep.folder)
    print()
    columns = [column for column in table.columns if column not in ("run_dir", "note")]
    print(table[columns].to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    print(
        f"\n{finished(state)}/{sweep.config.n_trials} trials finished ({state['complete']} complete, "
        f"{state['pruned']} pruned, {state['collapsed']} collapsed, {state['fail']} failed) in {wall_time_s:.1f}s"
    )
    if finished(state) < sweep.config.n_trials:
        print(f"not all trials ran; continue with `protfit sweep --resume {sweep.folder}`")
    if summary:
        print(
            f"best: trial {summary['trial']}  {sweep.base.monitor} {summary['value']:.4f}  "
            f"{format_params(summary['params'])}\n  run folder: {summary['run_dir']}"
        )
    print(f"sweep folder: {sweep.folder}")
    return summary


def write_plots(study: optuna.Study, folder: Path) -> None:
    """Optuna's optimization history and parameter importances (skipped when there is too little data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = {"optimization_history": optuna_plots.plot_optimization_history}
    if len(complete) >= 2 and any(len(trial.params) for trial in complete):
        plots["param_importances"] = optuna_plots.plot_param_importances
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" notices, equal-importance notes
                axis = plot(study)
            axis.figure.tight_layout()
            atomic_write(
                folder / f"{name}.png", lambda path, figure=axis.figure: figure.savefig(path, dpi=110)
            )
            plt.close(axis.figure)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. constant values
            print(f"({name} plot skipped: {error})")
