"""The run's final report: test results table, summary.json and the closing lines; the epoch log line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from protfit.config import RunConfig
from protfit.metrics import metric_mode
from protfit.report.baselines import (
    BaselineResult,
    constant_prediction_warning,
    format_baseline_table,
    verdict,
)
from protfit.report.confidence import format_with_interval
from protfit.report.run_dir import write_json


def format_gap(gap: float | None) -> str:
    """A train - val gap, ``n/a`` when undefined (the monitored metric is nan on validation)."""
    return "n/a" if gap is None or math.isnan(gap) else f"{gap:+.4f}"


def format_epoch_line(record: dict[str, Any], cfg: RunConfig, improved: bool) -> str:
    metrics = "  ".join(f"val_{name} {record[f'val_{name}']:.4f}" for name in cfg.metric_names)
    marker = "  *best*" if improved else ""
    gap = (
        f"  gap {format_gap(record['gap_metric'])} overfitting {record['overfitting']}"
        if "overfitting" in record
        else ""
    )
    return (
        f"epoch {record['epoch']}/{cfg.train.epochs}  train_loss {record['train_loss']:.4f}  "
        f"val_loss {record['val_loss']:.4f}  {metrics}  lr {record['lr']:.2e}{gap}  "
        f"{record['epoch_time_s']:.1f}s{marker}"
    )


def report(
    cfg: RunConfig,
    summary: dict[str, Any],
    baselines: list[BaselineResult],
    run_dir: Path,
    test_outputs: Any = None,
    test_targets: Any = None,
) -> None:
    """Write test_results.csv and summary.json, and print the closing lines of the run."""
    rows = []
    if "test_metrics" in summary:
        for name, entry in summary["test_metrics"].items():
            rows.append({"model": "model", "metric": name, **entry})
        for baseline in baselines:
            for name, entry in baseline.metrics.items():
                rows.append({"model": baseline.name, "metric": name, **entry})
        pd.DataFrame(rows).to_csv(run_dir / "test_results.csv", index=False)
        primary = cfg.monitor if cfg.monitor in summary["test_metrics"] else cfg.metric_names[0]
        summary["baselines"] = {
            baseline.name: {"description": baseline.description, "metrics": baseline.metrics}
            for baseline in baselines
        }
        summary["verdict"] = (
            verdict(summary["test_metrics"], baselines, primary, metric_mode(primary)) if baselines else None
        )
        warning = constant_prediction_warning(
            test_outputs,
            cfg.data.problem_type,
            targets=test_targets,
            threshold=cfg.evaluation.multi_label_threshold,
        )
        summary["warnings"] = [*summary.get("warnings", []), *([warning] if warning else [])]
    collapse = (summary.get("diagnostics") or {}).get("collapse") or []
    if collapse:
        summary["verdict"] = f"collapsed: {'; '.join(collapse)}" + (
            f" (vs baselines: {summary['verdict']})" if summary.get("verdict") else ""
        )
        summary["warnings"] = [
            *summary.get("warnings", []),
            "the model collapsed to a constant predictor; lower train.learning_rate or check the labels",
        ]
    write_json(run_dir / "summary.json", summary)

    print()
    if summary["best_epoch"] is not None:
        value = summary["best_val_metric"]
        shown = (
            f"{value:.4f}"
            if value is not None
            else "undefined (nan); the epoch with the lowest loss was kept"
        )
        print(f"best epoch {summary['best_epoch']} ({summary['monitor']} {shown} on validation)")
    if "test_metrics" in summary:
        print("test metrics (bootstrap 95% interval):")
        for name, entry in summary["test_metrics"].items():
            print(f"  {name:<10} {format_with_interval(entry['value'], (entry['low'], entry['high']))}")
        if baselines:
            print(format_baseline_table(summary["test_metrics"], baselines))
    if summary.get("verdict"):
        print(f"verdict: {summary['verdict']}")
    if "test_metrics" not in summary:
        print("no test split: test metrics skipped")
    diagnosis = summary.get("diagnostics") or {}
    if diagnosis.get("verdict") is not None:
        late = "; undertrained (validation still improving at the end)" if diagnosis["undertrained"] else ""
        print(
            f"overfitting: {diagnosis['verdict']} (train - val {format_gap(diagnosis['gap_metric'])} at the best epoch){late}"
        )
        for tip in diagnosis["advice"]:
            print(f"  try: {tip}")
    for warning in summary.get("warnings", []):
        print(f"WARNING: {warning}")
    print(f"run folder: {run_dir}")
