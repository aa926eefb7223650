"""`protfit tune`: the whole hand-tuning loop in one resumable command, never worse than its start.

    untuned run   the starting config as given: the reference, and its diagnosis
    lr_find       the learning-rate range test on the starting config: a suggested rate
    sweep         --budget trials; trial 0 is the starting config; ranges from the diagnosis
                  (tune_space.py: learning rate, regularization, epochs/schedule, pooler, batch size)
    compare       the trials ranked by validation (docs/compare.md); collapsed trials never rank
    confirm       the start and the top trials again on more seeds; the recommendation is the best
                  mean validation value, and the start unless a candidate beats it by more than the
                  seed spread (one seed is an anecdote: the best of 20 single-seed trials is partly luck)
    report        tuned vs untuned vs the sanity baselines, on validation and test

TUNE_DIR/
  tune.yaml       the starting config and the budget (``--resume`` needs nothing else)
  untuned/        run folder of the starting config (the start's first seed)
  lr_find/        lr_find.csv / .png / .json
  sweep/          a `protfit sweep` folder (trials/, study.db, trials.csv, best.json)
  compare/        compare.md / .csv / .html of the trials
  confirm/NAME/seed-S/   the candidates (``start``, ``trial-0007``...) on the extra seeds
  tune.md, tune.json, recommended.yaml   the closing comparison and the recommended config

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

from protfit.config import ConfigError, RunConfig, build_config, rerun_config
from protfit.report.run_dir import read_summary, write_json
from protfit.sweep.tune_space import Diagnosis, Space, search_space

TUNE_FILE = "tune.yaml"
START = "start"
# Confirmation: with a budget of at least MULTI_SEED_BUDGET trials, the start and the TOP_K best trials
# each run on CONFIRM_SEEDS seeds in all (2 x (TOP_K + 1) = 8 runs on top of the budget, 40 % of 20);
# smaller budgets confirm the best trial against the start on 2 seeds.
MULTI_SEED_BUDGET = 10
TOP_K = 3
CONFIRM_SEEDS = 3


@dataclass
class TuneResult:
    folder: Path
    recommended: dict[str, Any]
    summary: dict[str, Any]


@dataclass
class Candidate:
    """A config confirmed on several seeds: the start, or a sweep trial."""

    name: str
    raw: dict[str, Any]
    runs: dict[int, Path]  # seed -> run folder
    summaries: dict[int, dict[str, Any]]

    @property
    def values(self) -> list[float | None]:
        return [s.get("best_val_metric") for s in self.summaries.values()]

    @property
    def collapsed(self) -> bool:
        return any((s.get("diagnostics") or {}).get("collapsed") for s in self.summaries.values())

    @property
    def valid(self) -> bool:
        return not self.collapsed and all(_finite(v) for v in self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.valid else None  # type: ignore[arg-type]

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.valid and len(self.values) > 1 else 0.0  # type: ignore[arg-type]


def confirm_plan(budget: int, seed: int) -> tuple[int, list[int]]:
    """(trials confirmed besides the start, all seeds of a candidate)."""
    if budget >= MULTI_SEED_BUDGET:
        return TOP_K, [seed + offset for offset in range(CONFIRM_SEEDS)]
    return 1, [seed, seed + 1]


def run_once(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Train ``raw`` into ``folder`` unless it is finished there; continue it when it was cut off."""
    from protfit.training.train import train

    if (summary := read_summary(folder)) is not None:
        return summary
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


def diagnose(base: RunConfig, folder: Path, summary: dict[str, Any]) -> Diagnosis:
    """The untuned run's verdict (as `protfit compare` reads it), undertraining and data shape."""
    from protfit.data.loading import load_dataset_splits
    from protfit.report.compare import compare_runs

    splits = load_dataset_splits(base.data)
    lengths = {len(s) for split in (splits.train, splits.validation) for s in split.frame["aa_seq"]}
    return Diagnosis(
        verdict=compare_runs([folder]).rows[0].verdict,
        undertrained=bool((summary.get("diagnostics") or {}).get("undertrained"))
        or late_best(summary, base.train.early_stopping.patience),
        train_rows=len(splits.train.frame),
        equal_lengths=len(lengths) == 1,
        length=next(iter(lengths)) if len(lengths) == 1 else None,
        # the run scored its variants zero-shot (its own masked LM, or model.zero_shot_model)
        zero_shot_scored="zero_shot" in (summary.get("baselines") or {}),
    )


def late_best(summary: dict[str, Any], patience: int | None) -> bool:
    """Early stopping did not end the run: it used all its epochs and its best epoch is within the last
    ``patience`` of them (the last tenth without early stopping), so by the run's own criterion it was
    still improving when the epochs ran out (tune_space.py)."""
    best, run = summary.get("best_epoch"), summary.get("epochs_run") or 0
    window = patience or max(1, run // 10)
    return best is not None and not summary.get("stopped_early") and best > run - window


def longest_training(space: Space, base: RunConfig) -> int:
    """The most epochs a trial of ``space`` can train."""
    return max(space.params.get("train.epochs", {}).get("choices", [base.train.epochs]))


def range_test_result(raw: dict[str, Any], folder: Path, settings: Any) -> dict[str, Any]:
    """lr_find/lr_find.json, running the range test when it is not there yet."""
    from protfit.sweep.lr_find import lr_find

    found = folder / "lr_find" / "lr_find.json"
    if not found.is_file():
        lr_raw = copy.deepcopy(raw)
        lr_raw["output"].update(dir=str(folder), name="lr_find", overwrite=True)
        lr_find(build_config(lr_raw), settings=settings, out_dir=folder / "lr_find")
    return json.loads(found.read_text())


def tune(folder: str | Path, *, range_test: Any = None) -> TuneResult:
    """Run (or resume) every stage of the tune in ``folder`` (created by :func:`start_tune`)."""
    from protfit.report.compare import compare_runs, recommendation_reason
    from protfit.report.compare_html import write_outputs
    from protfit.sweep.config import build_sweep_config
    from protfit.sweep.study import open_sweep_folder, prepare_sweep, run_sweep

    folder = Path(folder).resolve()
    if not (folder / TUNE_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a tune folder (no {TUNE_FILE})")
    plan = yaml.safe_load((folder / TUNE_FILE).read_text())
    budget, raw = int(plan["budget"]), plan["config"]
    base = build_config(copy.deepcopy(raw), str(folder / TUNE_FILE))
    seed = base.train.seed

    print(f"[tune 1/6] untuned run of the starting config -> {folder / 'untuned'}")
    untuned = run_once(raw, folder / "untuned")
    diagnosis = diagnose(base, folder / "untuned", untuned)
    start_lr = (
        float(untuned["lr_find"]["suggested_lr"])
        if base.train.learning_rate == "auto"
        else float(base.train.learning_rate)
    )

    print(f"[tune 2/6] learning-rate range test -> {folder / 'lr_find'}")
    found = range_test_result(raw, folder, range_test)
    suggestion, trusted = float(found["suggested_lr"]), bool(found.get("trusted", True))
    if found.get("note"):
        print(f"  WARNING: {found['note']}")
    space = search_space(base, start_lr, found, diagnosis)
    print(f"  suggested learning rate {suggestion:.3g}; searching: " + "; ".join(space.why))

    print(f"[tune 3/6] sweep of {budget} trials (trial 0: the starting config) -> {folder / 'sweep'}")
    sweep_folder = folder / "sweep"
    if (sweep_folder / "sweep.yaml").is_file():
        run_sweep(open_sweep_folder(sweep_folder), resume=True)
    else:
        startup = max(1, min(10, budget // 2))
        # no pruning in the first tenth of the longest training searched: early on the median favours
        # fast starters (high rates, small batches), not the trials that end best (GB1 three_vs_rest:
        # with a tenth of the start's 30 epochs, every trial after the 10 startup ones was pruned at
        # epoch 3 of 150, the best of the sweep among the kind it cut)
        warmup = max(1, longest_training(space, base) // 10)
        sweep_config = build_sweep_config(
            {
                "base": copy.deepcopy(raw),
                "space": space.params,
                "enqueue": [space.start],
                "n_trials": budget,
                "sampler": {"name": "tpe", "seed": seed, "n_startup_trials": startup},
                "pruner": {"name": "median", "n_startup_trials": startup, "n_warmup_steps": warmup},
                "output": {"dir": str(folder), "name": "sweep"},
            },
            "tune",
        )
        run_sweep(prepare_sweep(sweep_config, "tune", sweep_folder))

    print(f"[tune 4/6] comparison of the trials -> {folder / 'compare'}")
    comparison = compare_runs([sweep_folder])
    write_outputs(comparison, folder / "compare")
    collapsed = [row.name for row in comparison.rows if row.verdict == "collapsed"]
    if collapsed:
        print(f"  collapsed (constant predictions; never ranked): {', '.join(collapsed)}")

    top, seeds = confirm_plan(budget, seed)
    trials = [
        row
        for row in comparison.rows
        if row.finished
        and row.best_val is not None
        and row.verdict != "collapsed"
        and row.name != "trial-0000"
    ][:top]
    print(
        f"[tune 5/6] the start and {', '.join(r.name for r in trials) or 'no trial'} on seeds {seeds} -> {folder / 'confirm'}"
    )
    candidates = [confirm(START, raw, folder / "untuned", untuned, seeds, folder)]
    for row in trials:
        summary = read_summary(row.run_dir) or {}
        # its own runs on the other seeds write `last` again (a trial writes none): a cut-off tune resumes them
        candidates.append(confirm(row.name, rerun_config(row.config), row.run_dir, summary, seeds, folder))
    chosen, why = choose(candidates, base.monitor_mode)
    print(f"  recommended: {chosen.name} — {why}")
    with_weights(chosen, folder)

    reason = why if chosen.name == START else f"{why}; in the sweep: {recommendation_reason(comparison)}"
    summary = closing_summary(base, untuned, chosen, candidates, reason)
    summary["lr"] = {
        "start": start_lr,
        "suggestion": suggestion,
        "rule": found.get("rule"),
        "trusted": trusted,
        "note": found.get("note"),
        "low": space.params["train.learning_rate"]["low"],
        "high": space.params["train.learning_rate"]["high"],
        # the rate of the trial with the best single-seed validation value (the calibration's reference)
        "best_trial": best_trial_lr(comparison),
        "recommended": chosen.raw["train"]["learning_rate"] if chosen.name != START else start_lr,
    }
    summary["search"] = {"space": space.params, "why": space.why}
    summary["collapsed_trials"] = collapsed
    summary["wall_time_s"] = stage_time(folder, candidates)
    write_json(folder / "tune.json", summary)
    text = format_closing(summary)
    (folder / "tune.md").write_text(text + "\n")
    recommended = rerun_config(chosen.raw)
    header = f"# recommended by `protfit tune` ({chosen.name}): {why}\n"
    (folder / "recommended.yaml").write_text(header + yaml.safe_dump(recommended, sort_keys=False))
    print(f"[tune 6/6] report -> {folder / 'tune.md'}")
    print(text)
    print(f"recommended config: {folder / 'recommended.yaml'}  (protfit train {folder / 'recommended.yaml'})")
    return TuneResult(folder=folder, recommended=recommended, summary=summary)


def best_trial_lr(comparison: Any) -> float | None:
    """The learning rate of the sweep trial with the best validation value (collapsed ones excluded)."""
    sign = 1.0 if comparison.mode == "max" else -1.0
    scored = [r for r in comparison.rows if r.best_val is not None and r.verdict != "collapsed"]
    if not scored:
        return None
    return float(max(scored, key=lambda row: sign * row.best_val).config["train"]["learning_rate"])


def stage_time(folder: Path, candidates: list[Candidate]) -> float:
    """Seconds the tune's runs took, summed from what each recorded (so a resumed tune counts each
    run once): the untuned run, every sweep trial (trials.csv) and the confirmation runs; the range
    test (a few seconds) and model loading between runs are not counted."""
    import pandas as pd

    total = float((read_summary(folder / "untuned") or {}).get("wall_time_s") or 0.0)
    trials = folder / "sweep" / "trials.csv"
    total += float(pd.read_csv(trials)["wall_time_s"].fillna(0).sum()) if trials.is_file() else 0.0
    for candidate in candidates:
        for run in list(candidate.runs.values())[1:]:
            total += float((read_summary(run) or {}).get("wall_time_s") or 0.0)
    return round(total, 1)


def confirm(
    name: str, raw: dict[str, Any], first: Path, summary: dict[str, Any], seeds: list[int], folder: Path
) -> Candidate:
    """The candidate on every seed: its existing run for the first seed, new runs for the others."""
    runs, summaries = {seeds[0]: first}, {seeds[0]: summary}
    for seed in seeds[1:]:
        seeded = copy.deepcopy(raw)
        seeded["train"]["seed"] = seed
        runs[seed] = folder / "confirm" / name / f"seed-{seed}"
        summaries[seed] = run_once(seeded, runs[seed])
    return Candidate(name=name, raw=raw, runs=runs, summaries=summaries)


def with_weights(chosen: Candidate, folder: Path) -> None:
    """The recommended candidate's first-seed run is its sweep trial, whose weights the sweep may have
    deleted (output.keep_best_weights keeps the best trials by value; the confirmation can choose
    another): that seed is then trained again (the same numbers on CPU) so every final run has weights."""
    seed, run = next(iter(chosen.runs.items()))
    if (run / "checkpoints" / "best").is_dir():
        return
    seeded = copy.deepcopy(chosen.raw)
    seeded["train"]["seed"] = seed
    chosen.runs[seed] = folder / "confirm" / chosen.name / f"seed-{seed}"
    chosen.summaries[seed] = run_once(seeded, chosen.runs[seed])


def choose(candidates: list[Candidate], mode: str) -> tuple[Candidate, str]:
    """The best mean validation value; the start unless a candidate beats it by more than the seed spread."""
    start = candidates[0]
    sign = 1.0 if mode == "max" else -1.0
    valid = [c for c in candidates if c.valid]
    if not valid:
        return start, "every candidate collapsed or has no validation value on some seed: keeping the start"
    best = max(valid, key=lambda c: sign * c.mean)  # type: ignore[operator]
    seeds = len(best.values)
    if best is start:
        return start, f"the start has the best mean validation value over {seeds} seeds ({start.mean:.4f})"
    if not start.valid:
        return (
            best,
            f"the start collapsed or has no validation value; best mean over {seeds} seeds ({best.mean:.4f})",
        )
    margin = sign * (best.mean - start.mean)  # type: ignore[operator]
    spread = max(best.sd, start.sd)
    if margin <= spread:
        return start, (
            f"no candidate beats the start by more than the seed spread: best {best.name} "
            f"{best.mean:.4f} ± {best.sd:.4f} vs start {start.mean:.4f} ± {start.sd:.4f} over {seeds} seeds"
        )
    return best, (
        f"best mean validation over {seeds} seeds: {best.mean:.4f} ± {best.sd:.4f} vs the start's "
        f"{start.mean:.4f} ± {start.sd:.4f} (+{margin:.4f}, more than the seed spread {spread:.4f})"
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _metric(summary: dict[str, Any], name: str) -> dict[str, float] | None:
    return (summary.get("test_metrics") or {}).get(name)


def closing_summary(
    base: RunConfig,
    untuned: dict[str, Any],
    chosen: Candidate,
    candidates: list[Candidate],
    reason: str,
) -> dict[str, Any]:
    """Validation and test of untuned vs tuned (the chosen candidate's seeds: mean and sd), every
    candidate's validation values, and the sanity baselines."""
    metric = base.monitor if base.monitor != "loss" else base.metric_names[0]
    finals = chosen.summaries
    tuned_val = [s["best_val_metric"] for s in finals.values() if _finite(s.get("best_val_metric"))]
    tuned_test = [m["value"] for s in finals.values() if (m := _metric(s, metric)) and _finite(m["value"])]
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
        "recommended": {"name": chosen.name, "is_start": chosen.name == START, "reason": reason},
        "untuned": {"val": untuned.get("best_val_metric"), "test": _metric(untuned, metric)},
        "tuned": {
            "seeds": list(finals),
            "run_dirs": [str(path) for path in chosen.runs.values()],
            "val": tuned_val,
            "val_mean": statistics.fmean(tuned_val) if tuned_val else None,
            "test": [_metric(s, metric) for s in finals.values()],
            "test_mean": statistics.fmean(tuned_test) if tuned_test else None,
            "test_sd": statistics.stdev(tuned_test) if len(tuned_test) > 1 else None,
        },
        "candidates": [
            {
                "name": c.name,
                "val": c.values,
                "val_mean": c.mean,
                "val_sd": c.sd if c.valid else None,
                "collapsed": c.collapsed,
                "run_dirs": [str(path) for path in c.runs.values()],
            }
            for c in candidates
        ],
        "baselines": baselines,
        "verdicts": {str(seed): s.get("verdict") for seed, s in finals.items()},
    }


def _entry(entry: dict[str, float] | None) -> str:
    if not entry or not _finite(entry.get("value")):
        return "–"
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def format_closing(summary: dict[str, Any]) -> str:
    metric, tuned, untuned = summary["metric"], summary["tuned"], summary["untuned"]
    val = lambda value: "–" if not _finite(value) else f"{value:.4f}"  # noqa: E731
    chosen = summary["recommended"]["name"]
    label = "start (recommended)" if chosen == START else f"tuned ({chosen})"
    lines = [
        f"## Tuned vs untuned vs baselines ({metric}; validation = best epoch, test with 95% bootstrap CI)",
        "",
        f"| model | validation {summary['monitor']} | test {metric} |",
        "|---|---|---|",
        f"| untuned (starting config) | {val(untuned['val'])} | {_entry(untuned['test'])} |",
    ]
    for seed, test, run in zip(tuned["seeds"], tuned["test"], tuned["run_dirs"], strict=True):
        value = (read_summary(Path(run)) or {}).get("best_val_metric")
        lines.append(f"| {label}, seed {seed} | {val(value)} | {_entry(test)} |")
    if len(tuned["seeds"]) > 1 and tuned["test_mean"] is not None:
        sd = f" ± {tuned['test_sd']:.3f} (sd over seeds)" if tuned["test_sd"] is not None else ""
        lines.append(
            f"| {label}, mean of {len(tuned['seeds'])} seeds | {val(tuned['val_mean'])} | {tuned['test_mean']:.3f}{sd} |"
        )
    for name, entry in summary["baselines"].items():
        lines.append(f"| baseline: {name} | – | {_entry(entry)} |")
    lines += [
        "",
        "Candidates confirmed on every seed (selection by mean validation only):",
        "",
        f"| candidate | validation {summary['monitor']} per seed | mean ± sd |",
        "|---|---|---|",
    ]
    for candidate in summary["candidates"]:
        values = ", ".join(val(value) for value in candidate["val"])
        mean = (
            "collapsed"
            if candidate["collapsed"]
            else f"{candidate['val_mean']:.4f} ± {candidate['val_sd']:.4f}"
            if candidate["val_mean"] is not None
            else "–"
        )
        lines.append(f"| {candidate['name']} | {values} | {mean} |")
    lines += ["", f"recommended: {chosen} — {summary['recommended']['reason']}"]
    lr = summary.get("lr")
    if lr:
        lines.append(
            f"learning rate: start {lr['start']:.3g}, range test {lr['suggestion']:.3g} ({lr['rule']}), "
            f"searched {lr['low']:.3g}-{lr['high']:.3g}, recommended {lr['recommended']:.3g}"
        )
        if lr.get("note"):
            lines.append(f"range test: {lr['note']}")
    if summary.get("collapsed_trials"):
        lines.append(f"collapsed trials (never ranked): {', '.join(summary['collapsed_trials'])}")
    for seed, verdict in summary["verdicts"].items():
        if verdict:
            lines.append(f"seed {seed}: {verdict}")
    return "\n".join(lines)
