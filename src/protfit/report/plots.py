"""Learning curves as PNG files (matplotlib without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_history(records: list[dict[str, Any]], metric_names: list[str], run_dir: Path) -> list[Path]:
    if not records:
        return []
    epochs = [row["epoch"] for row in records]
    written = []

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(epochs, [row["train_loss"] for row in records], marker="o", label="train")
    axis.plot(epochs, [row["val_loss"] for row in records], marker="o", label="validation")
    axis.set(xlabel="epoch", ylabel="loss", title="Loss per epoch")
    axis.legend()
    figure.tight_layout()
    figure.savefig(run_dir / "loss.png", dpi=100)
    plt.close(figure)
    written.append(run_dir / "loss.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    for name in metric_names:
        values = [row.get(f"val_{name}") for row in records]
        axis.plot(
            epochs, [float("nan") if value is None else value for value in values], marker="o", label=name
        )
    axis.set(xlabel="epoch", ylabel="value", title="Validation metrics per epoch")
    axis.legend()
    figure.tight_layout()
    figure.savefig(run_dir / "metrics.png", dpi=100)
    plt.close(figure)
    written.append(run_dir / "metrics.png")
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
