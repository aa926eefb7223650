"""Collapse: a model whose predictions on a split are those of a constant predictor.

A collapsed run (often after an exploding learning rate: the head saturates and every input gets the
bias) has an undefined or chance-level monitored metric at its best epoch. It is marked
``collapsed`` in ``summary.diagnostics``, its verdict says so, a sweep records its trial as failed
with that reason, and `protfit compare` never ranks it above a run with a real value.

The rule, per split:

- regression: the predictions' standard deviation is below ``RELATIVE_SPREAD`` of the labels' (or
  numerically zero when the labels are constant too). Deliberately strict: a model whose
  predictions vary by 0.1 % of the labels' spread can still rank them (Spearman); only a numerically
  constant output is a constant predictor.
- classification: every row gets the same probabilities; or, when the monitored metric scores hard
  labels (accuracy, precision, recall, f1, mcc), every row gets the same predicted class (label set
  for multi-label) -- for such a metric that model is the constant predictor. AUROC and F-max read
  the probabilities, so one argmax class with varying probabilities is not collapse for them.
"""

from __future__ import annotations

import numpy as np

from protfit.metrics import REGRESSION, predicted_labels

RELATIVE_SPREAD = 1e-6
ABSOLUTE_SPREAD = 1e-9
PROBABILITY_METRICS = ("auroc", "f1_max", "loss")


def collapse_reason(
    outputs: np.ndarray | None,
    targets: np.ndarray | None,
    problem_type: str,
    monitor: str,
    split: str,
    threshold: float = 0.5,
) -> str | None:
    """Why the predictions on ``split`` are a constant predictor's, or None when they are not."""
    if outputs is None or len(outputs) < 2:
        return None
    outputs = np.asarray(outputs, dtype=np.float64)
    if problem_type == REGRESSION:
        spread = float(outputs.reshape(len(outputs), -1).std(axis=0).max())
        reference = float(np.asarray(targets, dtype=np.float64).std()) if targets is not None else 0.0
        if spread <= max(RELATIVE_SPREAD * reference, ABSOLUTE_SPREAD):
            return (
                f"constant {split} predictions ({float(outputs.mean()):.4g} for all {len(outputs)} "
                f"sequences; sd {spread:.2g} vs the labels' {reference:.2g})"
            )
        return None
    rows = outputs.reshape(len(outputs), -1)
    if float(np.abs(rows - rows.mean(axis=0)).max()) <= ABSOLUTE_SPREAD:
        return f"the same {split} probabilities for all {len(outputs)} sequences"
    if monitor in PROBABILITY_METRICS:
        return None
    labels = predicted_labels(outputs, problem_type, threshold)
    if len(np.unique(labels, axis=0)) == 1:
        what = f"class {labels[0]}" if labels.ndim == 1 else f"label set {np.flatnonzero(labels[0]).tolist()}"
        return f"{what} predicted for all {len(outputs)} {split} sequences ({monitor} scores a constant predictor)"
    return None
