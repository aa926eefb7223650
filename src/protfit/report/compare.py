"""Compare finished runs (or a sweep's trials): one table, an overfitting verdict, a rank and stars.

What ``protfit compare`` reads from each run folder (written by the recipe): ``config.yaml``,
``history.jsonl`` (or ``history.csv``) and, when the run finished, ``summary.json``. Runs that stopped
before testing (a pruned sweep trial) still get a row from their history.

The rules (also in docs/compare.md):

* **Selection is by validation only.** Test columns are shown, never used to rank.
* **Overfitting verdict** at the best epoch: the run's own diagnostics (``summary.json``
  ``diagnostics.verdict``, or the history row's ``overfitting``) when present; else, when the history
  has the training-split metric, the fallback rule below; else ``n/a``. ``underfit`` replaces the
  verdict when the training metric itself stays low (:func:`is_underfit`).
* **Rank**: runs whose verdict is neither ``severe`` nor ``underfit`` first, ordered by best
  validation metric in the monitor's direction; values equal to 4 decimals count as a tie, broken by
  the smaller gap; the ``severe`` and ``underfit`` runs follow in the same order, runs without a
  validation value last. (An underfit run has not learned its own training split: ranking it first
  recommended a run 0.26 Spearman below the best one in docs/tuning.md's example.) A ``collapsed`` run (constant predictions, or
  its monitored metric undefined at its best epoch: training/collapse.py) ranks after every run
  with a real value and is never recommended.
* **Stars**: 5 for rank 1; every other run ``round(1 + 4 * (v - worst) / (best - worst))`` clipped to
  1..4, with ``v`` its validation value, ``best`` rank 1's and ``worst`` the worst in the table
  (all oriented so that larger is better); at most 2 for ``severe`` and ``underfit`` runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protfit.config import rerun_config
from protfit.report.run_dir import read_history, read_run_info, read_summary

# --- documented thresholds ---------------------------------------------------------------------------
# Two validation values equal at this many decimals are a tie (metrics are reported to 4 decimals, and
# a difference below that is far inside any bootstrap interval on a realistic validation split).
TIE_DECIMALS = 4
# Fallback overfitting rule, used only for runs without their own diagnostics verdict. The gap is
# training minus validation of the monitored metric (positive: the training split is better); for
# metrics where smaller is better (loss, mse, mae) it is relative to the validation value.
MILD_GAP = 0.05
SEVERE_GAP = 0.15
# A bounded metric this close to perfect on the training split has memorised it (train acc 1.000).
MEMORISED = 0.99
# Underfit: the training metric covers less than this share of the way from chance to perfect.
UNDERFIT_SHARE = 0.5
# Metrics whose perfect value is 1 (all "max" metrics protfit computes).
BOUNDED_MAX = {"accuracy", "precision", "recall", "f1", "mcc", "auroc", "f1_max", "spearman", "pearson", "r2"}
# Chance level when the run has no constant baseline to read it from.
DEFAULT_CHANCE = {"auroc": 0.5}
# Config keys that always differ and say nothing about the model.
IGNORED_KEYS = ("output.", "train.progress")
# Ranked after the healthy runs, with at most two stars.
DEMOTED = ("severe", "underfit")
DEMOTED_WORDS = {"severe": "severe overfitting", "underfit": "underfitting"}


class CompareError(ValueError):
    """Nothing to compare, or runs that cannot be compared (different tasks or metrics)."""


@dataclass
class RunRow:
    """One run of the comparison: what was read and what was derived from it."""

    name: str
    run_dir: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any] | None
    problem_type: str
    monitor: str
    mode: str
    best_epoch: int | None = None
    best_val: float | None = None
    train_metric: float | None = None
    gap: float | None = None
    gap_loss: float | None = None
    gap_loss_source: str = ""
    verdict: str = "n/a"
    verdict_source: str = ""
    test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline_verdict: str | None = None
    wall_time_s: float | None = None
    rank: int = 0
    stars: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.summary is not None


# --- reading run folders -----------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (
        (path / "history.jsonl").is_file()
        or (path / "history.csv").is_file()
        or (path / "summary.json").is_file()
    )


def find_runs(paths: list[str | Path]) -> tuple[list[tuple[str, Path]], list[Path]]:
    """(name, run folder) for every run under ``paths``, and the sweep folders among them.

    A path is a run folder, a sweep folder (its ``trials/`` holds run folders, possibly one per seed
    or fold: ``trials/trial-0007/seed-0``) or any folder whose sub-folders are run folders.
    """
    found: list[tuple[str, Path]] = []
    sweeps: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise CompareError(f"{path} is not a folder (give run folders or a sweep folder)")
        if is_run_dir(path):
            found.append((path.name, path))
            continue
        root = path / "trials" if (path / "trials").is_dir() else path
        if root.name == "trials":
            sweeps.append(path)
        inner = sorted(folder for folder in root.rglob("*") if folder.is_dir() and is_run_dir(folder))
        inner = [folder for folder in inner if "baselines" not in folder.relative_to(root).parts]
        if not inner:
            raise CompareError(
                f"{path} holds no run folders (a run folder has config.yaml and history.jsonl / summary.json)"
            )
        found.extend((str(folder.relative_to(root)), folder) for folder in inner)
    names = [name for name, _ in found]
    if len(set(names)) < len(names):  # two runs called the same in different places: use their paths
        found = [(str(folder), folder) for _, folder in found]
    return found, sweeps


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _monitor_of(config: dict[str, Any]) -> str:
    from protfit.config import DEFAULT_MONITOR

    stopping = (config.get("train") or {}).get("early_stopping") or {}
    return stopping.get("monitor") or DEFAULT_MONITOR[config["data"]["problem_type"]]


def _mode_of(monitor: str) -> str:
    if monitor == "loss":
        return "min"
    from protfit.metrics import metric_mode

    return metric_mode(monitor)


def load_run(name: str, run_dir: Path) -> RunRow:
    """Read one run folder into a :class:`RunRow` and derive its verdict (rank and stars come later)."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    summary = read_summary(run_dir)
    history = read_history(run_dir)
    if not history and summary:
        history = list(summary.get("history") or [])
    # the configured monitor: a run whose metric was undefined (nan) selected by loss instead, and
    # its summary says "loss"; it is still compared on the configured metric, from its history
    monitor = _monitor_of(config)
    mode = _mode_of(monitor)
    row = RunRow(
        name=name,
        run_dir=run_dir,
        config=config,
        history=history,
        summary=summary,
        problem_type=config["data"]["problem_type"],
        monitor=monitor,
        mode=mode,
    )
    _fill_best_epoch(row)
    _fill_gaps(row)
    row.verdict, row.verdict_source = overfitting_verdict(row)
    collapse = collapse_of(row)
    if collapse:
        row.verdict, row.verdict_source = "collapsed", collapse
    if summary:
        row.test_metrics = summary.get("test_metrics") or {}
        row.baseline_verdict = summary.get("verdict")
        row.wall_time_s = _number(summary.get("wall_time_s"))
    else:
        row.wall_time_s = sum(_number(r.get("epoch_time_s")) or 0.0 for r in history) or None
    return row


def _val_key(monitor: str) -> str:
    return "val_loss" if monitor == "loss" else f"val_{monitor}"


def _train_key(monitor: str) -> str:
    return "train_eval_loss" if monitor == "loss" else f"train_{monitor}"


def best_record(row: RunRow) -> dict[str, Any] | None:
    if row.best_epoch is None:
        return None
    return next((r for r in row.history if r.get("epoch") == row.best_epoch), None)


def _fill_best_epoch(row: RunRow) -> None:
    summary = row.summary or {}
    if summary.get("best_epoch") is not None and summary.get("monitor") in (None, row.monitor):
        row.best_epoch = int(summary["best_epoch"])
        row.best_val = _number(summary.get("best_val_metric"))
        if row.best_val is None and (record := best_record(row)):
            row.best_val = _number(record.get(_val_key(row.monitor)))
        return
    # an unfinished run (pruned trial) or one that fell back to loss: the best epoch from the history
    key = _val_key(row.monitor)
    scored = [(r["epoch"], _number(r.get(key))) for r in row.history]
    scored = [(epoch, value) for epoch, value in scored if value is not None]
    if scored:
        pick = max if row.mode == "max" else min
        row.best_epoch, row.best_val = pick(scored, key=lambda item: item[1])


def _fill_gaps(row: RunRow) -> None:
    """Training metric, metric gap (positive: training split better) and loss gap at the best epoch."""
    record = best_record(row) or {}
    diagnostics = (row.summary or {}).get("diagnostics") or {}
    from_diagnostics = diagnostics.get("best_epoch") in (None, row.best_epoch)
    train = _number(diagnostics.get("train_metric")) if from_diagnostics else None
    if train is None:
        train = _number(record.get(_train_key(row.monitor)))
    row.train_metric = train
    gap = _number(diagnostics.get("gap_metric")) if from_diagnostics else None
    if gap is None:
        gap = _number(record.get("gap_metric"))
    if gap is None and train is not None and row.best_val is not None:
        gap = train - row.best_val if row.mode == "max" else row.best_val - train
    row.gap = gap
    gap_loss = _number(diagnostics.get("gap_loss")) if from_diagnostics else None
    if gap_loss is None:
        gap_loss = _number(record.get("gap_loss"))
    row.gap_loss_source = "train_eval_loss"
    if gap_loss is None and _number(record.get("val_loss")) is not None:
        eval_loss = _number(record.get("train_eval_loss"))
        if eval_loss is None:
            # older runs: the running training loss (with dropout on), so the gap is understated
            eval_loss, row.gap_loss_source = _number(record.get("train_loss")), "train_loss"
        if eval_loss is not None:
            gap_loss = _number(record["val_loss"]) - eval_loss
    row.gap_loss = gap_loss


# --- verdicts ----------------------------------------------------------------------------------------


def collapse_of(row: RunRow) -> str | None:
    """Why the run is a constant predictor (training/collapse.py): its summary's diagnosis, or for a
    run without summary (a pruned trial) its best epoch's history record; None when it is not."""
    diagnostics = (row.summary or {}).get("diagnostics") or {}
    if diagnostics.get("collapsed"):
        return "; ".join(diagnostics.get("collapse") or ["collapsed"])
    if row.summary is None and (record := best_record(row)) and record.get("collapsed"):
        return str(record["collapsed"])
    return None


def chance_level(row: RunRow) -> float | None:
    """The monitored metric of a model that ignores its input: the constant baseline's test value,
    or the metric's textbook value (AUROC 0.5, correlations and MCC 0)."""
    baselines = (row.summary or {}).get("baselines") or {}
    constant = ((baselines.get("constant") or {}).get("metrics") or {}).get(row.monitor) or {}
    value = _number(constant.get("value"))
    if value is not None:
        return value
    if row.mode == "max" and row.monitor in BOUNDED_MAX:
        return DEFAULT_CHANCE.get(row.monitor, 0.0)
    return None


def is_underfit(row: RunRow) -> bool:
    """The training metric at the best epoch covers less than half the way from chance to perfect.

    Max metrics (perfect = 1): ``train < chance + 0.5 * (1 - chance)``; e.g. accuracy with a 33 %
    majority class is underfit below 0.665 on its own training split, MCC / Spearman below 0.5.
    Min metrics (perfect = 0; mse, mae): ``train > 0.5 * chance`` with chance the constant baseline's
    error. Unknown (no training metric, no chance level) is never underfit.
    """
    chance = chance_level(row)
    if row.train_metric is None or chance is None:
        return False
    if row.mode == "max":
        return row.train_metric < chance + UNDERFIT_SHARE * (1.0 - chance)
    return row.train_metric > UNDERFIT_SHARE * chance


def fallback_verdict(row: RunRow) -> str:
    """none / mild / severe from the gap when the run has no diagnostics of its own (see module doc)."""
    if row.gap is None:
        return "n/a"
    gap = row.gap
    if row.mode == "min" and row.best_val is not None:
        gap = gap / max(abs(row.best_val), 1e-12)
    memorised = row.mode == "max" and row.monitor in BOUNDED_MAX and (row.train_metric or 0.0) >= MEMORISED
    if gap > SEVERE_GAP or (memorised and gap > MILD_GAP):
        return "severe"
    return "mild" if gap > MILD_GAP else "none"


def overfitting_verdict(row: RunRow) -> tuple[str, str]:
    """(verdict, where it came from): diagnostics, history, fallback rule; ``underfit`` overrides."""
    diagnostics = (row.summary or {}).get("diagnostics") or {}
    record = best_record(row) or {}
    if diagnostics.get("verdict") in ("none", "mild", "severe"):
        verdict, source = diagnostics["verdict"], "diagnostics"
    elif record.get("overfitting") in ("none", "mild", "severe"):
        verdict, source = record["overfitting"], "history"
    else:
        verdict, source = fallback_verdict(row), "gap rule"
    if is_underfit(row):
        return "underfit", source
    return verdict, source if verdict != "n/a" else "no training-split metric"


# --- the comparison ----------------------------------------------------------------------------------


@dataclass
class Comparison:
    rows: list[RunRow]  # in rank order
    keys: list[str]  # config keys that differ between the runs
    monitor: str
    mode: str
    problem_type: str
    sweeps: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def recommended(self) -> RunRow | None:
        """Rank 1, unless it has no validation value or collapsed: a constant predictor is never
        recommended, whatever its value."""
        if self.rows and self.rows[0].best_val is not None and self.rows[0].verdict != "collapsed":
            return self.rows[0]
        return None


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def differing_keys(rows: list[RunRow]) -> list[str]:
    """Config keys whose values are not the same in every run (missing counts as a value)."""
    flats = [flatten(row.config) for row in rows]
    keys = sorted({key for flat in flats for key in flat})
    differ = []
    for key in keys:
        if key.startswith(IGNORED_KEYS):
            continue
        values = {json.dumps(flat.get(key, "<unset>"), sort_keys=True) for flat in flats}
        if len(values) > 1:
            differ.append(key)
    return differ


def check_same_task(rows: list[RunRow]) -> None:
    """Refuse runs of different problem types, label counts or monitored metrics, naming them."""

    def task(row: RunRow) -> tuple[Any, ...]:
        # the label count the run trained with (model_meta.json), also when the config left it to inference
        meta = row.run_dir / "model_meta.json"
        labels = json.loads(meta.read_text()).get("num_labels") if meta.is_file() else None
        if labels is None:
            labels = row.config["data"].get("num_labels")
        if row.problem_type == "regression":
            labels = 1
        return (row.problem_type, labels, row.monitor)

    groups: dict[tuple[Any, ...], list[str]] = {}
    for row in rows:
        groups.setdefault(task(row), []).append(row.name)
    if len(groups) > 1:
        described = "; ".join(
            f"{problem}, num_labels {labels}, monitor {monitor}: {', '.join(names)}"
            for (problem, labels, monitor), names in groups.items()
        )
        raise CompareError(
            "cannot compare runs of different tasks or metrics (selection by validation "
            f"{'/'.join(sorted({key[2] for key in groups}))} is only meaningful on one task): {described}. "
            "Compare each group separately, or set train.early_stopping.monitor to the same metric."
        )


def _oriented(row: RunRow) -> float:
    """The validation value with larger = better."""
    assert row.best_val is not None
    return row.best_val if row.mode == "max" else -row.best_val


def rank_rows(rows: list[RunRow]) -> list[RunRow]:
    """Order, rank and star the runs (rules in the module doc)."""

    def order(row: RunRow) -> tuple[Any, ...]:
        gap = row.gap if row.gap is not None else math.inf
        return (
            row.best_val is None,
            row.verdict == "collapsed",
            row.verdict in DEMOTED,
            -round(_oriented(row), TIE_DECIMALS) if row.best_val is not None else 0.0,
            gap,
            row.name,
        )

    ranked = sorted(rows, key=order)
    scored = [row for row in ranked if row.best_val is not None]
    best = _oriented(scored[0]) if scored else 0.0
    worst = min((_oriented(row) for row in scored), default=0.0)
    for position, row in enumerate(ranked, start=1):
        row.rank = position
        if row.best_val is None or row.verdict == "collapsed":
            row.stars = 1
            continue
        if position == 1:
            row.stars = 5
        else:
            share = 1.0 if best == worst else (_oriented(row) - worst) / (best - worst)
            row.stars = max(1, min(4, math.floor(1 + 4 * share + 0.5)))
        if row.verdict in DEMOTED:
            row.stars = min(row.stars, 2)
    return ranked


def compare_runs(paths: list[str | Path]) -> Comparison:
    """Read, check, rank: the comparison of the runs under ``paths``."""
    found, sweeps = find_runs(paths)
    if not found:
        raise CompareError("no runs to compare")
    rows = [load_run(name, folder) for name, folder in found]
    check_same_task(rows)
    keys = differing_keys(rows)
    for row in rows:
        flat = flatten(row.config)
        row.params = {key: flat.get(key) for key in keys}
    notes = []
    data_keys = [key for key in keys if key.startswith("data.") and key.endswith(("path", "_file"))]
    if data_keys:
        notes.append(
            f"the runs read different data ({', '.join(data_keys)}): their validation values come from "
            "different validation sets"
        )
    unfinished = [row.name for row in rows if not row.finished]
    if unfinished:
        notes.append(f"not finished (pruned or interrupted; no test): {', '.join(unfinished)}")
    differences = environment_differences(rows)
    if differences:
        notes.append(
            f"the runs ran in different environments (run.json): {'; '.join(differences)}; their numbers "
            "can differ for that reason alone"
        )
    first = rows[0]
    return Comparison(
        rows=rank_rows(rows),
        keys=keys,
        monitor=first.monitor,
        mode=first.mode,
        problem_type=first.problem_type,
        sweeps=sweeps,
        notes=notes,
    )


def environment_differences(rows: list[RunRow]) -> list[str]:
    """One entry per environment item (package, Python, protfit's commit, threads, device) on which the
    runs that recorded an environment differ, e.g. ``torch 2.13.0 (a, b) vs 2.12.0 (c)``."""
    recorded: dict[str, dict[str, Any]] = {}
    for row in rows:
        environment = (read_run_info(row.run_dir) or {}).get("environment")
        if environment:  # runs created before run.json recorded one have nothing to compare
            packages = environment.get("packages") or {}
            recorded[row.name] = {
                "python": environment.get("python"),
                **packages,
                "protfit commit": environment.get("protfit_git_commit"),
                "torch threads": environment.get("torch_threads"),
                "device": environment.get("device"),
                "processes": environment.get("processes"),
            }
    differences = []
    for key in dict.fromkeys(key for entry in recorded.values() for key in entry):
        runs_by_value: dict[str, list[str]] = {}
        for name, entry in recorded.items():
            runs_by_value.setdefault(str(entry.get(key)), []).append(name)
        if len(runs_by_value) > 1:
            shown = " vs ".join(f"{value} ({', '.join(names)})" for value, names in runs_by_value.items())
            differences.append(f"{key} {shown}")
    return differences


# --- recommendation ----------------------------------------------------------------------------------


def recommended_config(comparison: Comparison) -> dict[str, Any]:
    """The rank-1 run's resolved config, ready to run again in a fresh run folder (`rerun_config`)."""
    row = comparison.recommended
    if row is None:
        raise CompareError("no run has a validation value: nothing to recommend")
    return rerun_config(row.config)


def recommendation_yaml(comparison: Comparison) -> str:
    row = comparison.recommended
    assert row is not None
    header = (
        f"# recommended by `protfit compare` ({_metric_label(comparison)} {row.best_val:.4f} on validation, "
        f"run {row.name})\n# {recommendation_reason(comparison)}\n"
    )
    return header + yaml.safe_dump(recommended_config(comparison), sort_keys=False)


def _metric_label(comparison: Comparison) -> str:
    return comparison.monitor if comparison.monitor == "loss" else comparison.monitor.upper()


def format_value(value: Any, decimals: int | None = None) -> str:
    """One formatter for every table and line of compare and sweep: a setting with 4 significant
    digits (0.001599 -> 0.0016 would hide a learning rate), a metric with ``decimals`` fixed
    decimals (the precision every report prints), lists as JSON, and "–" for a missing or
    undefined (nan) value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def recommendation_reason(comparison: Comparison) -> str:
    """One sentence: why rank 1, and what its configuration changed against its closest rival."""
    best = comparison.recommended
    if best is None:
        return "no run has a validation value that is not a collapsed (constant) predictor's"
    label = _metric_label(comparison)
    demoted = {row.verdict for row in comparison.rows} & set(DEMOTED)
    flaws = " or ".join(DEMOTED_WORDS[verdict] for verdict in DEMOTED if verdict in demoted)
    if best.verdict in DEMOTED:
        reason = f"best validation {label}, but every run has {flaws}"
    elif demoted:
        reason = f"best validation {label} among runs without {flaws}"
    else:
        reason = f"best validation {label}"
    others = [row for row in comparison.rows if row is not best and row.best_val is not None]
    if not others:
        return reason

    # the closest rival: fewest differing settings, then the larger gap (the more telling contrast)
    def distance(row: RunRow) -> tuple[int, float]:
        changed = [key for key in comparison.keys if row.params.get(key) != best.params.get(key)]
        return len(changed), -(row.gap or 0.0)

    rival = min(others, key=distance)
    changed = [key for key in comparison.keys if rival.params.get(key) != best.params.get(key)]
    if not changed:
        return reason
    settings = ", ".join(f"{_short(key)} {format_value(best.params.get(key))}" for key in changed[:3])
    before = ", ".join(f"{format_value(rival.params.get(key))}" for key in changed[:3])
    if best.gap is not None and rival.gap is not None and rival.gap > best.gap + 1e-9:
        return f"{reason}; {settings} (vs {before} in {rival.name}) closed the gap from {rival.gap:.2f} to {best.gap:.2f}"
    difference = abs(best.best_val - rival.best_val)  # type: ignore[operator]
    return f"{reason}; {settings} (vs {before} in {rival.name}) gained {difference:.3f} validation {label}"


def _short(key: str) -> str:
    """``model.head.dropout`` -> ``dropout``; kept whole when the last part alone is ambiguous."""
    parts = key.split(".")
    return parts[-1] if parts[-1] not in ("name", "type", "path") else ".".join(parts[-2:])


# --- tables ------------------------------------------------------------------------------------------


def _interval(entry: dict[str, Any] | None) -> str:
    if not entry or _number(entry.get("value")) is None:
        return "–"
    low, high = _number(entry.get("low")), _number(entry.get("high"))
    if low is None or high is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} [{low:.3f}, {high:.3f}]"


def short_baseline_verdict(text: str | None) -> str:
    if not text:
        return "n/a"
    if text.startswith("collapsed:"):  # a constant predictor "beats" nothing, whatever its numbers
        return "collapsed"
    if "do not overlap" in text:
        return "beats baselines"
    if "intervals overlap" in text or "not tested" in text:
        return "ahead, CIs overlap"
    if "does not beat" in text:
        return "below a baseline"
    return "n/a"


def _float(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_rows(comparison: Comparison, *, all_test_metrics: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells (rank order) shared by the terminal, Markdown and HTML tables."""
    monitor = comparison.monitor
    test_names: list[str] = []
    for row in comparison.rows:
        for name in row.test_metrics:
            if name not in test_names:
                test_names.append(name)
    if not all_test_metrics:
        test_names = [name for name in test_names if name == monitor] or test_names[:1]
    header = [
        "rank",
        "stars",
        "run",
        *comparison.keys,
        f"val {monitor} (best)",
        "epoch",
        f"train {monitor}",
        "gap",
        "loss gap",
        "overfitting",
        *[f"test {name} [95% CI]" for name in test_names],
        "vs baselines",
        "wall time",
    ]
    cells = []
    for row in comparison.rows:
        cells.append(
            [
                str(row.rank),
                stars_text(row.stars),
                row.name,
                *[format_value(row.params.get(key)) for key in comparison.keys],
                _float(row.best_val, 4),
                "–" if row.best_epoch is None else str(row.best_epoch),
                _float(row.train_metric),
                _float(row.gap, 3),
                _float(row.gap_loss, 3)
                + ("*" if row.gap_loss is not None and row.gap_loss_source == "train_loss" else ""),
                row.verdict,
                *[_interval(row.test_metrics.get(name)) for name in test_names],
                short_baseline_verdict(row.baseline_verdict),
                _duration(row.wall_time_s),
            ]
        )
    return header, cells


def stars_text(stars: int) -> str:
    return "★" * stars + "☆" * (5 - stars)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def footnotes(comparison: Comparison) -> list[str]:
    lines = [
        f"selection by validation {comparison.monitor} only ({'higher' if comparison.mode == 'max' else 'lower'} is "
        "better); test columns are shown, never used to rank",
        "gap: training minus validation metric at the best epoch (positive: training split better); "
        "loss gap: validation loss minus training-split loss",
    ]
    if any(row.gap_loss_source == "train_loss" and row.gap_loss is not None for row in comparison.rows):
        lines.append("* loss gap from the running training loss (no train_eval_loss in the history)")
    return lines + comparison.notes


def markdown_table(comparison: Comparison) -> str:
    header, cells = table_rows(comparison)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in footnotes(comparison)) + "\n"


def csv_frame(comparison: Comparison):
    """One row per run with raw numbers (every test metric with low/high) for spreadsheets."""
    import pandas as pd

    records = []
    for row in comparison.rows:
        record: dict[str, Any] = {
            "rank": row.rank,
            "stars": row.stars,
            "run": row.name,
            "run_dir": str(row.run_dir),
        }
        record.update({key: format_value(row.params.get(key)) for key in comparison.keys})
        record.update(
            {
                "monitor": row.monitor,
                "best_val": row.best_val,
                "best_epoch": row.best_epoch,
                "train_metric": row.train_metric,
                "gap": row.gap,
                "gap_loss": row.gap_loss,
                "overfitting": row.verdict,
                "overfitting_source": row.verdict_source,
            }
        )
        for name, entry in row.test_metrics.items():
            record[f"test_{name}"] = entry.get("value")
            record[f"test_{name}_low"] = entry.get("low")
            record[f"test_{name}_high"] = entry.get("high")
        record["baseline_verdict"] = row.baseline_verdict
        record["wall_time_s"] = row.wall_time_s
        records.append(record)
    return pd.DataFrame(records)


def terminal_table(comparison: Comparison) -> str:
    """The table for a terminal: rich when installed (it is a transformers dependency), else plain."""
    header, cells = table_rows(comparison, all_test_metrics=False)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich comes with transformers' dependencies
        widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(lines + footnotes(comparison))
    table = Table(show_lines=False, header_style="bold")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in cells:
        table.add_row(*row)
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(header)]
    console = Console(width=max(120, sum(width + 3 for width in widths) + 1), record=True, file=_Null())
    console.print(table)
    for note in footnotes(comparison):
        console.print(note, markup=False, highlight=False)
    return console.export_text()


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None: ...


def default_output_dir(comparison: Comparison, paths: list[str | Path]) -> Path:
    """``SWEEP_DIR/compare`` for one sweep; else ``compare`` next to the runs (their common parent)."""
    if len(paths) == 1 and comparison.sweeps:
        return Path(paths[0]) / "compare"
    import os

    parents = [str(row.run_dir.resolve().parent) for row in comparison.rows]
    common = Path(os.path.commonpath(parents))
    return (common if common != Path(common.anchor) else Path.cwd()) / "compare"
