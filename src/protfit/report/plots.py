"""Learning curves as PNG files (matplotlib without a display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
        axis.plot(epochs, [float("nan") if value is None else value for value in values], marker="o", label=name)
    axis.set(xlabel="epoch", ylabel="value", title="Validation metrics per epoch")
    axis.legend()
    figure.tight_layout()
    figure.savefig(run_dir / "metrics.png", dpi=100)
    plt.close(figure)
    written.append(run_dir / "metrics.png")
    return written
