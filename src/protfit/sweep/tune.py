"""`protfit tune`: the whole hand-tuning loop in one resumable command.

    untuned run   the starting config as given: the reference, and its overfitting diagnosis
    lr_find       the learning-rate range test on the starting config: a suggested rate
    sweep         N trials over the learning rate around the suggestion, head dropout and weight
                  decay, with ranges chosen from the untuned run's diagnosis (below)
    compare       the trials ranked by validation (docs/compare.md): the recommended config
    final         the recommended config trained again, on 3 seeds when the budget is >= 10 trials
    report        tuned vs untuned vs the sanity baselines, on validation and test

TUNE_DIR/
  tune.yaml       the starting config and the budget (``--resume`` needs nothing else)
  untuned/        run folder of the starting config
  lr_find/        lr_find.csv / .png / .json
  sweep/          a `protfit sweep` folder (trials/, study.db, trials.csv, best.json)
  compare/        compare.md / .csv / .html and recommended.yaml
  final/seed-S/   run folders of the recommended config
  tune.md, tune.json   the closing comparison

Every stage leaves its result on disk and is skipped when ``--resume`` finds it; a run cut off in the
middle continues from its last epoch, the sweep from its study. So a tune killed at any moment
resumes without redoing finished work.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from protfit.config import ConfigError, RunConfig, build_config
from protfit.report.run_dir import write_json

TUNE_FILE = "tune.yaml"
# Sweep range of the learning rate: this factor below and above the range test's suggestion (the
# steepest-descent point sits roughly a decade below where the loss blows up, so ×5 stays below it).
LR_FACTOR = 5.0
# Final runs: three seeds once the sweep has at least this many trials (three more runs are then at
# most 30 % extra); fewer trials get one final run.
MULTI_SEED_BUDGET = 10
FINAL_SEEDS = 3


@dataclass
class TuneResult:
    folder: Path
    recommended: dict[str, Any]
    summary: dict[str, Any]


def search_space(base: RunConfig, suggestion: float, verdict: str) -> tuple[dict[str, Any], str]:
    """(sweep space, why) for the base config, the range test's suggestion and the untuned verdict.

    overfitting (mild/severe): more regularization than the start: head dropout from the start's
    value to 0.8, weight decay from the start's (at least 1e-4) to 0.3.
    underfit: less: dropout 0 to the start's value, weight decay 1e-6 to the start's (at least 1e-5).
    otherwise (none, or no diagnosis): the `quick` preset's ranges, dropout 0-0.5, decay 1e-5-1e-1.
    """
    dropout, decay = base.model.head.dropout, base.train.weight_decay
    space: dict[str, Any] = {
        "train.learning_rate": {
            "type": "float",
            "low": suggestion / LR_FACTOR,
            "high": suggestion * LR_FACTOR,
            "log": True,
        }
    }
    if verdict in ("mild", "severe"):
        why = f"the untuned run overfits ({verdict}): searching more dropout and weight decay than it had"
        space["model.head.dropout"] = {"type": "float", "low": dropout, "high": max(0.8, dropout)}
        space["train.weight_decay"] = {"type": "float", "low": max(decay, 1e-4), "high": 0.3, "log": True}
    elif verdict == "underfit":
        why = "the untuned run underfits: searching less dropout and weight decay than it had"
        space["model.head.dropout"] = {"type": "float", "low": 0.0, "high": max(dropout, 0.05)}
        space["train.weight_decay"] = {"type": "float", "low": 1e-6, "high": max(decay, 1e-5), "log": True}
    else:
        reason = "no overfitting" if verdict == "none" else "no overfitting diagnosis (n/a)"
        why = f"the untuned run shows {reason}: the quick preset's dropout and weight-decay ranges"
        space["model.head.dropout"] = {"type": "float", "low": 0.0, "high": 0.5}
        space["train.weight_decay"] = {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}
    return space, why


def final_seeds(budget: int, seed: int) -> list[int]:
    return [seed + offset for offset in range(FINAL_SEEDS if budget >= MULTI_SEED_BUDGET else 1)]


def run_once(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Train ``raw`` into ``folder`` unless it is finished there; continue it when it was cut off."""
    from protfit.training.train import train

    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    if (folder / "config.yaml").is_file():
        return train(None, resume_from=folder).summary
    raw = copy.deepcopy(raw)
    raw.setdefault("output", {}).update(dir=str(folder.parent), name=folder.name, overwrite=True)
    return train(build_config(raw, f"tune: {folder.name}")).summary


def start_tune(config: RunConfig, budget: int, folder: Path) -> None:
    """Write TUNE_DIR/tune.yaml (refusing a folder that is already something else)."""
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1 trial (got {budget})")
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"tune folder {folder} already exists; continue it with `protfit tune --resume {folder}` "
            "or choose another --output"
        )
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"budget": budget, "config": config.model_dump(mode="json")}
    (folder / TUNE_FILE).write_text(yaml.safe_dump(payload, sort_keys=False))


def tune(folder: str | Path, *, range_test: Any = None) -> TuneResult:
    """Run (or resume) every stage of the tune in ``folder`` (created by :func:`start_tune`)."""
    from protfit.report.compare import compare_runs, recommended_config, write_outputs
    from protfit.sweep.config import build_sweep_config
    from protfit.sweep.lr_find import lr_find
    from protfit.sweep.study import open_sweep_folder, prepare_sweep, run_sweep

    folder = Path(folder).resolve()
    if not (folder / TUNE_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a tune folder (no {TUNE_FILE})")
    plan = yaml.safe_load((folder / TUNE_FILE).read_text())
    budget, raw = int(plan["budget"]), plan["config"]
    base = build_config(copy.deepcopy(raw), str(folder / TUNE_FILE))

    print(f"[tune 1/5] untuned run of the starting config -> {folder / 'untuned'}")
    untuned = run_once(raw, folder / "untuned")
    untuned_row = compare_runs([folder / "untuned"]).rows[0]

    print(f"[tune 2/5] learning-rate range test -> {folder / 'lr_find'}")
    found = folder / "lr_find" / "lr_find.json"
    if found.is_file():
        suggestion = float(json.loads(found.read_text())["suggested_lr"])
    else:
        lr_raw = copy.deepcopy(raw)
        lr_raw["output"].update(dir=str(folder), name="lr_find", overwrite=True)
        result, _ = lr_find(build_config(lr_raw), settings=range_test, out_dir=folder / "lr_find")
        suggestion = result.suggestion
    space, why = search_space(base, suggestion, untuned_row.verdict)
    print(f"  suggested learning rate {suggestion:.3g}; {why}")

    print(f"[tune 3/5] sweep of {budget} trials -> {folder / 'sweep'}")
    sweep_folder = folder / "sweep"
    if (sweep_folder / "sweep.yaml").is_file():
        sweep = open_sweep_folder(sweep_folder)
        run_sweep(sweep, resume=True)
    else:
        startup = max(1, min(10, budget // 2))
        sweep_config = build_sweep_config(
            {
                "base": copy.deepcopy(raw),
                "space": space,
                "n_trials": budget,
                "sampler": {"name": "tpe", "seed": base.train.seed, "n_startup_trials": startup},
                "pruner": {"name": "median", "n_startup_trials": startup},
                "output": {"dir": str(folder), "name": "sweep"},
            },
            "tune",
        )
        run_sweep(prepare_sweep(sweep_config, "tune", sweep_folder))

    print(f"[tune 4/5] comparison of the trials -> {folder / 'compare'}")
    comparison = compare_runs([sweep_folder])
    write_outputs(comparison, folder / "compare")
    recommended = recommended_config(comparison)
    from protfit.report.compare import recommendation_reason

    reason = recommendation_reason(comparison)
    print(f"  recommended: {comparison.recommended.name} — {reason}")  # type: ignore[union-attr]

    seeds = final_seeds(budget, base.train.seed)
    print(f"[tune 5/5] the recommended config on seed(s) {seeds} -> {folder / 'final'}")
    finals = {}
    for seed in seeds:
        final_raw = copy.deepcopy(recommended)
        final_raw["train"]["seed"] = seed
        finals[seed] = run_once(final_raw, folder / "final" / f"seed-{seed}")

    summary = closing_summary(base, untuned, finals, reason, comparison.recommended.name)  # type: ignore[union-attr]
    write_json(folder / "tune.json", summary)
    text = format_closing(summary)
    (folder / "tune.md").write_text(text + "\n")
    (folder / "recommended.yaml").write_text((folder / "compare" / "recommended.yaml").read_text())
    print(text)
    print(f"recommended config: {folder / 'recommended.yaml'}  (protfit train {folder / 'recommended.yaml'})")
    return TuneResult(folder=folder, recommended=recommended, summary=summary)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _metric(summary: dict[str, Any], name: str) -> dict[str, float] | None:
    return (summary.get("test_metrics") or {}).get(name)


def closing_summary(
    base: RunConfig,
    untuned: dict[str, Any],
    finals: dict[int, dict[str, Any]],
    reason: str,
    trial: str,
) -> dict[str, Any]:
    """Validation and test of untuned vs tuned (mean and sd over seeds) and the sanity baselines."""
    metric = base.monitor if base.monitor != "loss" else base.metric_names[0]
    tuned_val = [s["best_val_metric"] for s in finals.values() if s.get("best_val_metric") is not None]
    tuned_test = [m["value"] for s in finals.values() if (m := _metric(s, metric)) is not None]
    first = next(iter(finals.values()))
    # baselines whose metric is defined (a constant prediction has no Spearman)
    baselines = {
        name: entry["metrics"].get(metric)
        for name, entry in (first.get("baselines") or untuned.get("baselines") or {}).items()
        if _finite((entry.get("metrics", {}).get(metric) or {}).get("value"))
    }
    return {
        "metric": metric,
        "monitor": base.monitor,
        "recommended_trial": trial,
        "reason": reason,
        "untuned": {"val": untuned.get("best_val_metric"), "test": _metric(untuned, metric)},
        "tuned": {
            "seeds": list(finals),
            "val": tuned_val,
            "val_mean": statistics.fmean(tuned_val) if tuned_val else None,
            "test": [_metric(s, metric) for s in finals.values()],
            "test_mean": statistics.fmean(tuned_test) if tuned_test else None,
            "test_sd": statistics.stdev(tuned_test) if len(tuned_test) > 1 else None,
        },
        "baselines": baselines,
        "verdicts": {str(seed): s.get("verdict") for seed, s in finals.items()},
    }


def _entry(entry: dict[str, float] | None) -> str:
    if not entry or entry.get("value") is None or math.isnan(entry["value"]):
        return "–"
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def format_closing(summary: dict[str, Any]) -> str:
    metric, tuned, untuned = summary["metric"], summary["tuned"], summary["untuned"]
    val = lambda value: "–" if value is None else f"{value:.4f}"  # noqa: E731
    lines = [
        f"## Tuned vs untuned vs baselines ({metric}; validation = best epoch, test with 95% bootstrap CI)",
        "",
        f"| model | validation {summary['monitor']} | test {metric} |",
        "|---|---|---|",
        f"| untuned (starting config) | {val(untuned['val'])} | {_entry(untuned['test'])} |",
    ]
    for seed, value, test in zip(tuned["seeds"], tuned["val"], tuned["test"], strict=False):
        lines.append(f"| tuned, seed {seed} | {val(value)} | {_entry(test)} |")
    if len(tuned["seeds"]) > 1 and tuned["test_mean"] is not None:
        sd = f" ± {tuned['test_sd']:.3f} (sd over seeds)" if tuned["test_sd"] is not None else ""
        lines.append(
            f"| tuned, mean of {len(tuned['seeds'])} seeds | {val(tuned['val_mean'])} | {tuned['test_mean']:.3f}{sd} |"
        )
    for name, entry in summary["baselines"].items():
        lines.append(f"| baseline: {name} | – | {_entry(entry)} |")
    lines += ["", f"recommended: {summary['recommended_trial']} — {summary['reason']}"]
    for seed, verdict in summary["verdicts"].items():
        if verdict:
            lines.append(f"seed {seed}: {verdict}")
    return "\n".join(lines)
