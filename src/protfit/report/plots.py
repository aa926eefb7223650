"""Learning curves as PNG files (matplotlib without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _curves(
    records: list[dict[str, Any]], series: dict[str, str], ylabel: str, title: str, size: tuple[float, float]
) -> plt.Figure:
    """One line per ``label -> history key`` over the epochs (a missing value is a gap), closed so it
    can be saved or handed to a UI without staying in pyplot's registry."""
    figure, axis = plt.subplots(figsize=size)
    epochs = [row["epoch"] for row in records]
    for label, key in series.items():
        values = [row.get(key) for row in records]
        axis.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", label=label)
    axis.set(xlabel="epoch", ylabel=ylabel, title=title)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend()
    figure.tight_layout()
    plt.close(figure)
    return figure


def loss_figure(records: list[dict[str, Any]], size: tuple[float, float] = (6, 4)) -> plt.Figure:
    return _curves(records, {"train": "train_loss", "validation": "val_loss"}, "loss", "Loss per epoch", size)


def metrics_figure(
    records: list[dict[str, Any]], metric_names: list[str], size: tuple[float, float] = (6, 4)
) -> plt.Figure:
    series = {name: f"val_{name}" for name in metric_names}
    return _curves(records, series, "value", "Validation metrics per epoch", size)


def plot_history(records: list[dict[str, Any]], metric_names: list[str], run_dir: Path) -> list[Path]:
    if not records:
        return []
    written = []
    for figure, name in (
        (loss_figure(records), "loss.png"),
        (metrics_figure(records, metric_names), "metrics.png"),
    ):
        figure.savefig(run_dir / name, dpi=100)
        written.append(run_dir / name)
    return written


def plot_evaluation(
    outputs,
    targets,
    problem_type: str,
    label_names: list[str] | None,
    out_dir: Path,
    threshold: float = 0.5,
) -> Path:
    """Confusion matrix (single-label), per-label confusion counts (multi-label, a label counts as
    predicted at ``threshold``: evaluation.multi_label_threshold) or predicted vs true."""
    import numpy as np

    figure, axis = plt.subplots(figsize=(6, 5))
    if problem_type == "regression":
        axis.scatter(targets, outputs, s=6, alpha=0.5)
        low, high = float(min(targets.min(), outputs.min())), float(max(targets.max(), outputs.max()))
        axis.plot([low, high], [low, high], color="grey", linewidth=1)
        axis.set(xlabel="true", ylabel="predicted", title="Predicted vs true")
        path = out_dir / "predicted_vs_true.png"
    else:
        from sklearn.metrics import ConfusionMatrixDisplay

        if problem_type == "single_label_classification":
            classes = outputs.shape[1]
            names = label_names or [str(index) for index in range(classes)]
            ConfusionMatrixDisplay.from_predictions(
                targets,
                outputs.argmax(axis=1),
                labels=list(range(classes)),
                display_labels=names,
                ax=axis,
                colorbar=False,
                xticks_rotation=45,
            )
            axis.set_title("Confusion matrix")
        else:
            predicted = (outputs >= threshold).astype(int)
            counts = np.array([[((targets == t) & (predicted == p)).sum() for p in (0, 1)] for t in (0, 1)])
            ConfusionMatrixDisplay(counts, display_labels=["absent", "present"]).plot(ax=axis, colorbar=False)
            axis.set_title(f"Label decisions at threshold {threshold:g}, all labels pooled")
        path = out_dir / "confusion_matrix.png"
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
