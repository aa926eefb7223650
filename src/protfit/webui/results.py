"""What the UI shows of a run folder and of a dataset: tables and figures read from protfit's own
files (history.jsonl, summary.json, test_results.csv, model_stats.json) and from
:func:`protfit.data.loading.load_dataset_splits` — nothing here computes a training result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from protfit.data.loading import DatasetSplits
from protfit.report.compare import format_value
from protfit.report.confidence import format_with_interval
from protfit.report.plots import loss_figure, metrics_figure
from protfit.report.run_dir import read_summary
from protfit.report.summary import format_gap

# ---- dataset preview ---------------------------------------------------------------------------


def split_sizes(splits: DatasetSplits) -> pd.DataFrame:
    rows = []
    for split in splits.present():
        lengths = split.frame["aa_seq"].str.len()
        rows.append(
            {
                "split": split.name,
                "sequences": len(split),
                "min length": int(lengths.min()),
                "median length": float(lengths.median()),
                "max length": int(lengths.max()),
                "source": split.source,
            }
        )
    return pd.DataFrame(rows)


def data_checks(splits: DatasetSplits) -> str:
    """The data report as sentences: shared sequences, duplicates, truncation, residues mapped to X."""
    report = splits.report
    lines = [f"**Data checks** — {splits.problem_type}, {splits.num_labels} label(s)"]
    shared = {pair: count for pair, count in report.get("shared_sequences", {}).items() if count}
    lines.append(
        "- ⚠ sequences shared between splits: "
        + ", ".join(f"{p} {c}" for p, c in shared.items())
        + " (scores on shared sequences reward memorisation)"
        if shared
        else "- no sequence is shared between splits"
    )
    for key, text in (
        ("duplicate_sequences_within", "duplicate sequences within a split"),
        ("truncated", f"sequences truncated to data.max_seq_len={report.get('max_seq_len')}"),
        ("residues_mapped_to_x", "unknown residues mapped to X"),
    ):
        counts = {name: count for name, count in report.get(key, {}).items() if count}
        lines.append(
            f"- {text}: " + ", ".join(f"{n} {c}" for n, c in counts.items()) if counts else f"- no {text}"
        )
    lines.append(
        "- residues, labels and columns validated (a problem stops the preview with file, row and field)"
    )
    return "\n".join(lines)


def length_histogram(splits: DatasetSplits) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(5, 3))
    for split in splits.present():
        axis.hist(split.frame["aa_seq"].str.len(), bins=20, alpha=0.5, label=split.name)
    axis.set_xlabel("sequence length")
    axis.set_ylabel("sequences")
    axis.legend()
    figure.tight_layout()
    plt.close(figure)
    return figure


def label_distribution(splits: DatasetSplits) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(5, 3))
    if splits.problem_type == "regression":
        for split in splits.present():
            axis.hist(split.frame["label"].astype(float), bins=20, alpha=0.5, label=split.name)
        axis.set_xlabel("label value")
    else:
        counts = splits.report.get("label_counts", {})
        names = splits.label_names or [str(index) for index in range(splits.num_labels)]
        width = 0.8 / max(len(counts), 1)
        for offset, (split, values) in enumerate(counts.items()):
            positions = [index + offset * width for index in range(len(values))]
            axis.bar(positions, values, width=width, label=split)
        axis.set_xticks([index + 0.4 - width / 2 for index in range(len(names))], names)
        axis.set_xlabel("label")
    axis.set_ylabel("count")
    axis.legend()
    figure.tight_layout()
    plt.close(figure)
    return figure


def sample_rows(splits: DatasetSplits, count: int = 5) -> pd.DataFrame:
    frame = splits.train.frame.head(count).copy()
    frame["aa_seq"] = frame["aa_seq"].map(lambda seq: seq if len(seq) <= 60 else seq[:57] + "...")
    if "label" in frame:
        frame["label"] = frame["label"].map(str)
    return frame.drop(columns=["row"], errors="ignore")


# ---- a run folder ------------------------------------------------------------------------------


def _legend_outside(figure: plt.Figure | None) -> plt.Figure | None:
    """Move the legend right of the axes: inside, it covered the curves of a many-metric run."""
    if figure is None:
        return None
    axis = figure.axes[0]
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    figure.tight_layout()
    return figure


def loss_plot(history: list[dict[str, Any]]) -> plt.Figure | None:
    return _legend_outside(loss_figure(history, size=(6, 3))) if history else None


def metric_plot(history: list[dict[str, Any]]) -> plt.Figure | None:
    names = [key.removeprefix("val_") for key in (history[0] if history else {}) if key.startswith("val_")]
    names = [name for name in names if name != "loss"]
    return _legend_outside(metrics_figure(history, names, size=(6, 3))) if names else None


def _undefined(model: str) -> str:
    """Why a test metric is nan (:mod:`protfit.metrics`: a correlation of constant predictions, AUROC
    with one class present, an empty split); the constant baseline predicts a constant by design."""
    if model == "constant":
        return "– (undefined: constant predictions)"
    return "– (undefined: constant predictions or a single class in the test labels)"


def metric_cell(value: float, low: float, high: float, undefined: str) -> str:
    """``0.812 [0.794, 0.829]``; a nan value is ``undefined``; a value without an interval says why."""
    if not math.isfinite(value):
        return undefined
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{format_with_interval(value)} (no interval: undefined on most resamples)"
    return format_with_interval(value, (low, high))


def results_table(run_dir: Path) -> pd.DataFrame | None:
    """test_results.csv as model/baselines × metrics, each cell `value [low, high]` (3 decimals, or 4
    significant digits for small values), "–" with the reason where a metric is undefined."""
    path = run_dir / "test_results.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    frame["cell"] = [
        metric_cell(float(row.value), float(row.low), float(row.high), _undefined(str(row.model)))
        for row in frame.itertuples(index=False)
    ]
    table = frame.pivot(index="model", columns="metric", values="cell")
    order = list(dict.fromkeys(frame["model"]))
    return table.reindex(order)[list(dict.fromkeys(frame["metric"]))].reset_index()


def model_stats_table(run_dir: Path) -> pd.DataFrame | None:
    path = run_dir / "model_stats.json"
    if not path.is_file():
        return None
    stats = json.loads(path.read_text())
    rows = [
        {"component": name, "parameters": part["total"], "trainable": part["trainable"]}
        for name, part in stats.get("components", {}).items()
    ]
    rows.append({"component": "total", "parameters": stats["total"], "trainable": stats["trainable"]})
    frame = pd.DataFrame(rows)
    frame["trainable %"] = (100 * frame["trainable"] / frame["parameters"].clip(lower=1)).round(2)
    return frame


def _diagnosis_lines(diagnosis: dict[str, Any], monitor: str) -> list[str]:
    """summary.json's ``diagnostics`` (regularization/diagnostics.py) as the CLI prints them."""
    lines = []
    if diagnosis.get("verdict") is not None:
        at_best = diagnosis.get("verdict_at_best_epoch")
        best_note = f"; {at_best} at the best epoch" if at_best and at_best != diagnosis["verdict"] else ""
        lines.append(
            f"- **overfitting: {diagnosis['verdict']}** (the worst verdict from the best epoch on{best_note}; "
            f"train − validation {monitor} {format_gap(diagnosis.get('gap_metric'))} at the best epoch)"
        )
    if diagnosis.get("undertrained"):
        lines.append("- **undertrained**: validation was still improving at the end; more epochs may help")
    if diagnosis.get("collapsed"):
        lines.append(f"- **collapsed**: {'; '.join(diagnosis.get('collapse') or [])}")
    advice = diagnosis.get("advice") or []
    if advice:
        lines.append("\n**What to try next** (the run's own advice):")
        lines.extend(f"- {tip}" for tip in advice)
    return lines


def summary_text(run_dir: Path) -> str:
    """The run's own verdicts, read from summary.json: nothing here is computed from the curves."""
    summary = read_summary(run_dir)
    if summary is None:
        return ""
    monitor = summary.get("monitor")
    best = summary.get("best_val_metric")
    shown = (
        format_with_interval(best)
        if best is not None
        else "undefined (nan); the epoch with the lowest loss was kept"
    )
    best_epoch = (
        f"**Best epoch {summary['best_epoch']}** of {summary.get('epochs_run')} (validation {monitor} {shown})"
        if summary.get("best_epoch") is not None
        else f"**No best epoch**: {summary.get('epochs_run') or 0} epochs run"
    )
    lines = [
        f"{best_epoch}{', stopped early' if summary.get('stopped_early') else ''}, "
        f"{format_value(summary.get('wall_time_s'))} s"
    ]
    if summary.get("verdict"):
        lines.append(f"- baselines verdict: {summary['verdict']}")
    lines.extend(_diagnosis_lines(summary.get("diagnostics") or {}, str(monitor)))
    lines.extend(f"- ⚠ {warning}" for warning in summary.get("warnings", []))
    return "\n".join(lines)
