"""What the UI shows of a run folder and of a dataset: tables and figures read from protfit's own
files (history.jsonl, summary.json, test_results.csv, model_stats.json) and from
:func:`protfit.data.loading.load_dataset_splits` — nothing here computes a training result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from protfit.data.loading import DatasetSplits
from protfit.report.confidence import format_with_interval
from protfit.report.plots import loss_figure, metrics_figure
from protfit.report.run_dir import read_summary

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


def loss_plot(history: list[dict[str, Any]]) -> plt.Figure | None:
    return loss_figure(history, size=(5, 3)) if history else None


def metric_plot(history: list[dict[str, Any]]) -> plt.Figure | None:
    names = [key.removeprefix("val_") for key in (history[0] if history else {}) if key.startswith("val_")]
    names = [name for name in names if name != "loss"]
    return metrics_figure(history, names, size=(5, 3)) if names else None


def overfitting_verdict(history: list[dict[str, Any]]) -> str:
    """A plain reading of the learning curves: does validation loss rise while training loss falls?"""
    losses = [(row["epoch"], row.get("train_loss"), row.get("val_loss")) for row in history]
    losses = [item for item in losses if item[1] is not None and item[2] is not None]
    if len(losses) < 2:
        return "overfitting: too few epochs to tell"
    best_epoch, _, best_val = min(losses, key=lambda item: item[2])
    last_epoch, last_train, last_val = losses[-1]
    train_at_best = next(train for epoch, train, _ in losses if epoch == best_epoch)
    if best_epoch < last_epoch and last_val > best_val * 1.05 and last_train < train_at_best:
        return (
            f"overfitting: validation loss lowest at epoch {best_epoch} ({best_val:.4f}) and rising since "
            f"({last_val:.4f} at epoch {last_epoch}) while training loss keeps falling; the best checkpoint "
            f"is the one tested"
        )
    return f"no sign of overfitting: validation loss lowest at epoch {best_epoch} of {last_epoch}"


def results_table(run_dir: Path) -> pd.DataFrame | None:
    """test_results.csv as model/baselines × metrics, each cell `value [low, high]`."""
    path = run_dir / "test_results.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    frame["cell"] = [
        format_with_interval(row.value, (row.low, row.high)) for row in frame.itertuples(index=False)
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


def summary_text(run_dir: Path) -> str:
    summary = read_summary(run_dir)
    if summary is None:
        return ""
    lines = [
        f"**Best epoch {summary.get('best_epoch')}** ({summary.get('monitor')} "
        f"{summary.get('best_val_metric')} on validation), {summary.get('epochs_run')} epochs run"
        f"{' (stopped early)' if summary.get('stopped_early') else ''}, {summary.get('wall_time_s')} s",
    ]
    if summary.get("verdict"):
        lines.append(f"- verdict: {summary['verdict']}")
    lines.extend(f"- ⚠ {warning}" for warning in summary.get("warnings", []))
    return "\n".join(lines)
