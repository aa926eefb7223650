"""The comparison as one self-contained HTML file: table, recommendation and plots as PNG data URIs.

Plots: validation curves of every run overlaid; training vs validation per run (the training-split
metric when the history has it, else the losses); parallel coordinates of the settings that differ;
for a sweep with an Optuna study (``study.db``), Optuna's parameter importances and parallel
coordinate plot (skipped with a note when optuna is not installed). ``write_outputs`` writes it with
the other files of a comparison (markdown, CSV, recommended config).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from protfit.report.compare import (
    Comparison,
    RunRow,
    csv_frame,
    footnotes,
    markdown_table,
    recommendation_reason,
    recommendation_yaml,
    table_rows,
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; }
tr.rank1 td { background: #eef8ee; }
figure { margin: 1.5em 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
.note { color: #666; font-size: 13px; }
"""


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _series(row: RunRow, key: str) -> tuple[list[int], list[float]]:
    epochs, values = [], []
    for record in row.history:
        value = record.get(key)
        if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
            epochs.append(record["epoch"])
            values.append(float(value))
    return epochs, values


def validation_curves(comparison: Comparison) -> str:
    key = "val_loss" if comparison.monitor == "loss" else f"val_{comparison.monitor}"
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for row in comparison.rows:
        epochs, values = _series(row, key)
        if epochs:
            (line,) = axis.plot(epochs, values, marker=".", label=f"#{row.rank} {row.name}")
            if row.best_epoch in epochs:
                axis.plot(
                    [row.best_epoch], [values[epochs.index(row.best_epoch)]], "o", color=line.get_color()
                )
    axis.set(
        xlabel="epoch", ylabel=f"validation {comparison.monitor}", title="Validation curves (o: best epoch)"
    )
    if len(comparison.rows) <= 12:
        axis.legend(fontsize=7)
    return _png(figure)


def train_vs_validation(comparison: Comparison) -> str:
    rows = comparison.rows
    columns = min(3, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3 * lines), squeeze=False)
    monitor = comparison.monitor
    for axis, row in zip(axes.flat, rows, strict=False):
        train_key = "train_eval_loss" if monitor == "loss" else f"train_{monitor}"
        if _series(row, train_key)[0]:
            pairs, ylabel = [(train_key, "train"), (f"val_{monitor}", "validation")], monitor
        else:  # older runs: no training-split metric, compare the losses
            pairs, ylabel = [("train_loss", "train (running)"), ("val_loss", "validation")], "loss"
        for key, label in pairs:
            epochs, values = _series(row, key)
            axis.plot(epochs, values, marker=".", label=label)
        if row.best_epoch is not None:
            axis.axvline(row.best_epoch, color="grey", linestyle=":", linewidth=1)
        axis.set_title(f"#{row.rank} {row.name} ({row.verdict})", fontsize=9)
        axis.set_xlabel("epoch", fontsize=8)
        axis.set_ylabel(ylabel, fontsize=8)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(rows) :]:
        axis.set_visible(False)
    figure.tight_layout()
    return _png(figure)


def parallel_coordinates(comparison: Comparison) -> str | None:
    """One axis per differing setting plus the validation value; lines coloured by that value."""
    keys = comparison.keys
    rows = [row for row in comparison.rows if row.best_val is not None]
    if not keys or len(rows) < 2:
        return None
    axes_values: list[list[float]] = []
    tick_labels: list[list[str] | None] = []  # categorical choices, or the numeric range
    for key in keys:
        raw = [row.params.get(key) for row in rows]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
            numbers = [float(v) for v in raw]
            span = f"{min(numbers):.3g} – {max(numbers):.3g}"
            if all(v > 0 for v in numbers) and max(numbers) / min(numbers) > 100:
                numbers = [math.log10(v) for v in numbers]  # learning rates, weight decays: log axis
                span += " (log)"
            axes_values.append(numbers)
            tick_labels.append([span])
        else:
            labels = sorted({str(v) for v in raw})
            axes_values.append([float(labels.index(str(v))) for v in raw])
            tick_labels.append(labels)
    axes_values.append([float(row.best_val) for row in rows])  # type: ignore[arg-type]
    tick_labels.append(None)
    names = [*keys, f"val {comparison.monitor}"]
    scaled = []
    for values in axes_values:
        low, high = min(values), max(values)
        scaled.append([0.5 if high == low else (v - low) / (high - low) for v in values])
    figure, axis = plt.subplots(figsize=(max(5, 1.8 * len(names)), 4))
    colours = plt.get_cmap("viridis")
    score = scaled[-1] if comparison.mode == "max" else [1 - v for v in scaled[-1]]
    for index, row in enumerate(rows):
        axis.plot(
            range(len(names)), [column[index] for column in scaled], color=colours(score[index]), alpha=0.8
        )
        if index < 5:  # the five best are named; more labels would overlap
            axis.text(len(names) - 1 + 0.05, scaled[-1][index], row.name, fontsize=7, va="center")
    ranges = []
    for values, labels in zip(axes_values, tick_labels, strict=True):
        ranges.append(" / ".join(labels) if labels else f"{min(values):.4g} – {max(values):.4g}")
    axis.set_xticks(
        range(len(names)),
        [
            f"{name.split('.')[-1] if len(name) > 18 else name}\n{span}"
            for name, span in zip(names, ranges, strict=True)
        ],
        fontsize=7,
    )
    axis.set_yticks([])
    axis.set_title("Parallel coordinates (colour: validation value, yellow = best)")
    return _png(figure)


def optuna_plots(sweep_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Optuna's parameter importances and parallel coordinates for the sweep's study, if possible."""
    notes: list[str] = []
    study_file = sweep_dir / "study.db"
    settings_file = sweep_dir / "sweep.yaml"
    if not study_file.is_file():
        return [], [f"{sweep_dir}: no study.db, so no Optuna plots"]
    try:
        import optuna
        from optuna.visualization import matplotlib as optuna_matplotlib
    except ImportError:
        return [], ["optuna is not installed: parameter importance plots skipped (pip install optuna)"]
    import warnings

    import yaml

    name = None
    if settings_file.is_file():
        name = ((yaml.safe_load(settings_file.read_text()) or {}).get("study") or {}).get("name")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{study_file.resolve()}"
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception as error:  # a study file written by something else
        return [], [f"{study_file}: could not open the Optuna study ({error})"]
    from functools import partial

    from optuna.importance import FanovaImportanceEvaluator

    plots = []
    importances = partial(
        optuna_matplotlib.plot_param_importances, evaluator=FanovaImportanceEvaluator(seed=0)
    )
    for title, function in (
        ("Parameter importance (Optuna, fANOVA)", importances),
        ("Parallel coordinates (Optuna)", optuna_matplotlib.plot_parallel_coordinate),
    ):
        try:
            # Optuna's plots switch the global matplotlib style: keep that inside this block
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")
                axis = function(study)
            figure = axis.figure if hasattr(axis, "figure") else axis.flat[0].figure
            plots.append((f"{title}: {sweep_dir.name}", _png(figure)))
        except Exception as error:  # too few complete trials, a single parameter, ...
            notes.append(f"{title} skipped for {sweep_dir.name}: {error}")
    return plots, notes


def build_html(comparison: Comparison) -> str:
    header, cells = table_rows(comparison)
    plots: list[tuple[str, str]] = [
        ("Validation curves", validation_curves(comparison)),
        ("Training vs validation per run", train_vs_validation(comparison)),
    ]
    parallel = parallel_coordinates(comparison)
    if parallel:
        plots.append(("Parallel coordinates of the settings that differ", parallel))
    notes = list(footnotes(comparison))
    for sweep in comparison.sweeps:
        extra, extra_notes = optuna_plots(sweep)
        plots.extend(extra)
        notes.extend(extra_notes)

    escape = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>protfit compare</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Run comparison ({len(comparison.rows)} runs, {escape(comparison.problem_type)})</h1>",
    ]
    if comparison.recommended is not None:
        best = comparison.recommended
        parts.append(
            f"<h2>Recommendation</h2><p><b>{escape(best.name)}</b>: {escape(recommendation_reason(comparison))}.</p>"
            f"<details><summary>recommended config (YAML)</summary><pre>{escape(recommendation_yaml(comparison))}</pre></details>"
        )
    parts.append('<h2>Plots</h2><ul id="contents">')
    parts += [f'<li><a href="#plot-{i}">{escape(title)}</a></li>' for i, (title, _) in enumerate(plots)]
    parts.append("</ul><h2>Runs</h2><table><thead><tr>")
    parts += [f"<th>{escape(name)}</th>" for name in header]
    parts.append("</tr></thead><tbody>")
    for row, values in zip(comparison.rows, cells, strict=True):
        css = ' class="rank1"' if row.rank == 1 else ""
        parts.append(f"<tr{css}>" + "".join(f"<td>{escape(value)}</td>" for value in values) + "</tr>")
    parts.append('</tbody></table><ul class="note">')
    parts += [f"<li>{escape(note)}</li>" for note in notes]
    parts.append("</ul>")
    for index, (title, uri) in enumerate(plots):
        parts.append(
            f'<figure id="plot-{index}"><img src="{uri}" alt="{escape(title)}"><figcaption>{escape(title)}</figcaption></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(comparison: Comparison, path: Path) -> Path:
    path.write_text(build_html(comparison), encoding="utf-8")
    return path


def write_outputs(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """compare.md, compare.csv, compare.html and recommended.yaml in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "markdown": out_dir / "compare.md",
        "csv": out_dir / "compare.csv",
        "html": out_dir / "compare.html",
    }
    written["markdown"].write_text(markdown_table(comparison))
    csv_frame(comparison).to_csv(written["csv"], index=False)
    write_html(comparison, written["html"])
    if comparison.recommended is not None:
        written["recommended"] = out_dir / "recommended.yaml"
        written["recommended"].write_text(recommendation_yaml(comparison))
    return written
