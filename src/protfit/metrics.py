"""Evaluation metrics, chosen by problem type, computed with torchmetrics on numpy predictions.

Inputs are the model's ``outputs`` (see "Predictions" in docs/architecture.md) and ``targets``:

* single-label: outputs (N, K) class probabilities, targets (N,) int
* multi-label: outputs (N, K) per-class probabilities, targets (N, K) 0/1
* regression: outputs (N,), targets (N,)

What each name means (also in :data:`METRIC_DESCRIPTIONS`, which reports print):

* Single-label. ``accuracy`` = share of argmax predictions that are right. ``precision``,
  ``recall``, ``f1``: with two classes, the score of the positive class (label 1); with more,
  the **macro** average over classes (never micro, which would equal accuracy). ``mcc`` =
  multiclass Matthews correlation (0.0 for a constant predictor). ``auroc`` from probabilities,
  never from argmax labels: binary = AUROC of p(class 1); multiclass = macro one-vs-rest AUROC
  over the classes present in the targets.
* Multi-label, at ``threshold`` (label predicted when p >= threshold): ``accuracy``,
  ``precision``, ``recall``, ``f1``, ``mcc`` are computed per label and **macro**-averaged over
  labels (``accuracy`` is therefore per-label accuracy, not exact-match subset accuracy).
  ``auroc`` = macro AUROC over labels, skipping labels whose targets hold a single class (AUROC is
  undefined there). ``f1_max`` = protein-centric F-max over thresholds 0.01..0.99 (CAFA).
* Regression: ``spearman``, ``pearson``, ``mse``, ``mae``, ``r2`` (coefficient of determination).

A metric that is undefined on the given data (AUROC with one class present, correlation of a
constant, any metric of an empty set) is ``float('nan')``, never a made-up number. Precision,
recall and F1 follow scikit-learn's ``zero_division=0`` convention (a class never predicted has
precision 0), and MCC is 0.0 when its denominator vanishes, as in scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional import (
    mean_absolute_error,
    mean_squared_error,
    pearson_corrcoef,
    r2_score,
    spearman_corrcoef,
)
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_confusion_matrix,
    binary_f1_score,
    binary_precision,
    binary_recall,
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multilabel_accuracy,
    multilabel_auroc,
    multilabel_f1_score,
    multilabel_precision,
    multilabel_recall,
)

from protfit.config import METRICS_BY_PROBLEM, MINIMISED_METRICS

SINGLE = "single_label_classification"
MULTI = "multi_label_classification"
REGRESSION = "regression"

# Keyed by problem type; "binary_classification" is single-label with exactly two classes, where
# precision/recall/f1 are positive-class scores instead of macro averages.
METRIC_DESCRIPTIONS: dict[str, dict[str, str]] = {
    SINGLE: {
        "accuracy": "accuracy: share of samples whose argmax class is right",
        "precision": "precision: macro precision over classes",
        "recall": "recall: macro recall over classes",
        "f1": "f1: macro F1 over classes",
        "mcc": "mcc: multiclass Matthews correlation (0 = no better than constant)",
        "auroc": "auroc: macro one-vs-rest AUROC from class probabilities (classes present in the targets)",
    },
    "binary_classification": {
        "accuracy": "accuracy: share of samples whose argmax class is right",
        "precision": "precision: precision of the positive class (label 1)",
        "recall": "recall: recall of the positive class (label 1)",
        "f1": "f1: F1 of the positive class (label 1)",
        "mcc": "mcc: Matthews correlation (0 = no better than constant)",
        "auroc": "auroc: AUROC of p(label 1)",
    },
    MULTI: {
        "accuracy": "accuracy: per-label accuracy at the threshold, macro over labels",
        "precision": "precision: per-label precision at the threshold, macro over labels",
        "recall": "recall: per-label recall at the threshold, macro over labels",
        "f1": "f1: per-label F1 at the threshold, macro over labels",
        "mcc": "mcc: per-label Matthews correlation at the threshold, macro over labels",
        "auroc": "auroc: macro AUROC over labels (labels with one class in the targets skipped)",
        "f1_max": "f1_max: protein-centric F-max over thresholds 0.01-0.99 (CAFA)",
    },
    REGRESSION: {
        "spearman": "spearman: Spearman rank correlation",
        "pearson": "pearson: Pearson correlation",
        "mse": "mse: mean squared error (lower is better)",
        "mae": "mae: mean absolute error (lower is better)",
        "r2": "r2: coefficient of determination",
    },
}

NAN = float("nan")


def metric_description(name: str, problem_type: str, num_labels: int) -> str:
    """The one-line meaning of ``name`` for this problem (binary single-label differs from multiclass)."""
    key = "binary_classification" if problem_type == SINGLE and num_labels == 2 else problem_type
    return METRIC_DESCRIPTIONS[key][name]


def metric_mode(name: str) -> Literal["min", "max"]:
    """Whether a smaller (``min``) or larger (``max``) value of ``name`` is better."""
    return "min" if name in MINIMISED_METRICS else "max"


def outputs_from_logits(logits: torch.Tensor, problem_type: str) -> np.ndarray:
    """Turn model logits into the ``outputs`` every metric, interval and baseline takes."""
    logits = logits.detach().to(torch.float32).cpu()
    if problem_type == SINGLE:
        return torch.softmax(logits, dim=-1).numpy()
    if problem_type == MULTI:
        return torch.sigmoid(logits).numpy()
    if problem_type == REGRESSION:
        return logits.reshape(-1).numpy()
    raise ValueError(f"unknown problem type '{problem_type}'")


def predicted_labels(outputs: np.ndarray, problem_type: str, threshold: float = 0.5) -> np.ndarray:
    """Hard predictions: argmax class (single-label), 0/1 per label at ``threshold``, or the values."""
    outputs = np.asarray(outputs)
    if problem_type == SINGLE:
        return outputs.argmax(axis=-1)
    if problem_type == MULTI:
        return (outputs >= threshold).astype(np.int64)
    if problem_type == REGRESSION:
        return outputs.reshape(-1)
    raise ValueError(f"unknown problem type '{problem_type}'")


def _value(tensor: torch.Tensor) -> float:
    value = float(tensor)
    return value if math.isfinite(value) else NAN


def _matthews(confusion: torch.Tensor) -> float:
    """Matthews correlation from a (K, K) confusion matrix, 0.0 when the denominator vanishes.

    Hand-written because torchmetrics' reduction patches the two-class degenerate cases with an
    epsilon: a constant predictor scores 0.18 instead of 0 (the peer tool's 0.129 bug).
    Formula as in scikit-learn's ``matthews_corrcoef`` (Gorodkin's multiclass R_K).
    """
    confusion = confusion.to(torch.float64)
    true_per_class = confusion.sum(dim=1)
    predicted_per_class = confusion.sum(dim=0)
    correct = torch.trace(confusion)
    total = confusion.sum()
    covariance = correct * total - (true_per_class * predicted_per_class).sum()
    variance_pred = total**2 - (predicted_per_class**2).sum()
    variance_true = total**2 - (true_per_class**2).sum()
    denominator = variance_pred * variance_true
    if denominator == 0:
        return 0.0
    return float(covariance / torch.sqrt(denominator))


def _present_class_mean(per_class: torch.Tensor, defined: torch.Tensor) -> float:
    if not bool(defined.any()):
        return NAN
    return float(per_class[defined].mean())


def _single_label(names: Sequence[str], outputs: np.ndarray, targets: np.ndarray, num_labels: int):
    probabilities = torch.as_tensor(outputs, dtype=torch.float64)
    target = torch.as_tensor(targets, dtype=torch.long)
    preds = probabilities.argmax(dim=-1)
    binary = num_labels == 2
    common = {"validate_args": False}
    classes = {"num_classes": num_labels, "average": "macro", **common}

    def auroc() -> float:
        # scikit-learn refuses multiclass AUROC unless every class occurs; we average the
        # one-vs-rest AUROC over the classes that occur (at least one positive and one negative).
        counts = torch.bincount(target, minlength=num_labels)
        defined = (counts > 0) & (counts < len(target))
        if binary:
            return _value(binary_auroc(probabilities[:, 1], target, **common)) if defined[1] else NAN
        per_class = multiclass_auroc(probabilities, target, num_labels, average="none", **common)
        return _present_class_mean(per_class, defined)

    table: dict[str, Callable[[], float]] = {
        "accuracy": lambda: _value(multiclass_accuracy(preds, target, num_labels, average="micro", **common)),
        "precision": lambda: _value(
            binary_precision(preds, target, **common)
            if binary
            else multiclass_precision(preds, target, **classes)
        ),
        "recall": lambda: _value(
            binary_recall(preds, target, **common) if binary else multiclass_recall(preds, target, **classes)
        ),
        "f1": lambda: _value(
            binary_f1_score(preds, target, **common)
            if binary
            else multiclass_f1_score(preds, target, **classes)
        ),
        "mcc": lambda: _matthews(multiclass_confusion_matrix(preds, target, num_labels, **common)),
        "auroc": auroc,
    }
    return {name: table[name]() for name in names}


FMAX_THRESHOLDS = np.arange(1, 100) / 100


def fmax_terms(outputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-protein, per-threshold pieces of F-max, so resamples can reweight proteins cheaply.

    Counting in threshold bins instead of comparing every (protein, label, threshold) keeps memory
    at N x 99 however many labels there are.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    truth = np.asarray(targets) > 0
    n_proteins, n_thresholds = len(outputs), len(FMAX_THRESHOLDS)
    # bins[n, k] = how many thresholds t satisfy p >= t: label k of protein n is predicted at the
    # first bins[n, k] thresholds.
    bins = np.searchsorted(FMAX_THRESHOLDS, outputs, side="right")
    flat = (np.arange(n_proteins)[:, None] * (n_thresholds + 1) + bins).ravel()
    size = n_proteins * (n_thresholds + 1)
    shape = (n_proteins, n_thresholds + 1)
    per_bin_all = np.bincount(flat, minlength=size).reshape(shape)
    per_bin_true = np.bincount(flat, weights=truth.ravel().astype(np.float64), minlength=size).reshape(shape)
    n_predicted = np.cumsum(per_bin_all[:, ::-1], axis=1)[:, ::-1][:, 1:]
    true_positive = np.cumsum(per_bin_true[:, ::-1], axis=1)[:, ::-1][:, 1:]
    n_true = truth.sum(axis=1)
    annotated = n_true > 0
    covered = n_predicted > 0
    return {
        "covered": covered.astype(np.float64),
        "precision": np.divide(true_positive, n_predicted, out=np.zeros(true_positive.shape), where=covered),
        "recall": np.divide(
            true_positive, n_true[:, None], out=np.zeros(true_positive.shape), where=annotated[:, None]
        ),
        "annotated": annotated.astype(np.float64),
    }


def fmax_from_terms(terms: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """F-max for each row of ``weights`` (B, N): how often each protein occurs in a (re)sample."""
    weights = np.asarray(weights, dtype=np.float64)
    coverage = weights @ terms["covered"]
    annotated = weights @ terms["annotated"]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = (weights @ terms["precision"]) / coverage
        recall = (weights @ terms["recall"]) / annotated[:, None]
        f_scores = 2 * precision * recall / (precision + recall)
    f_scores = np.where((precision + recall) == 0, 0.0, f_scores)
    # a threshold at which no protein has a prediction has no precision: it is skipped
    f_scores = np.where(coverage > 0, f_scores, -np.inf)
    best = np.maximum(f_scores.max(axis=1), 0.0)
    return np.where(annotated > 0, best, np.nan)


def protein_centric_fmax(outputs: np.ndarray, targets: np.ndarray) -> float:
    """CAFA-style protein-centric F-max (Radivojac et al. 2013), hand-written: torchmetrics has none.

    For each threshold t in 0.01..0.99 a label is predicted when p >= t. Precision is averaged
    over the proteins with at least one predicted label, recall over the proteins with at least
    one true label (every CAFA benchmark protein has one; recall is undefined for the others).
    F(t) = 2PR / (P + R); F-max is the best F(t). Thresholds where no protein has a prediction are
    skipped; if that is all of them, F-max is 0 (recall is 0 everywhere). nan without true labels.
    """
    return float(fmax_from_terms(fmax_terms(outputs, targets), np.ones((1, len(outputs))))[0])


def _multi_label(
    names: Sequence[str], outputs: np.ndarray, targets: np.ndarray, num_labels: int, threshold: float
):
    probabilities = torch.as_tensor(outputs, dtype=torch.float64)
    target = torch.as_tensor(targets, dtype=torch.long)
    # Threshold once here (p >= t) so every metric and predicted_labels agree on the boundary.
    preds = torch.as_tensor(predicted_labels(outputs, MULTI, threshold))
    labels = {"num_labels": num_labels, "average": "macro", "validate_args": False}

    def auroc() -> float:
        positives = target.sum(dim=0)
        defined = (positives > 0) & (positives < len(target))
        per_label = multilabel_auroc(probabilities, target, num_labels, average="none", validate_args=False)
        return _present_class_mean(per_label, defined)

    def mcc() -> float:
        scores = [
            _matthews(binary_confusion_matrix(preds[:, j], target[:, j], validate_args=False))
            for j in range(num_labels)
        ]
        return float(np.mean(scores))

    table: dict[str, Callable[[], float]] = {
        "accuracy": lambda: _value(multilabel_accuracy(preds, target, **labels)),
        "precision": lambda: _value(multilabel_precision(preds, target, **labels)),
        "recall": lambda: _value(multilabel_recall(preds, target, **labels)),
        "f1": lambda: _value(multilabel_f1_score(preds, target, **labels)),
        "mcc": mcc,
        "auroc": auroc,
        "f1_max": lambda: protein_centric_fmax(outputs, targets),
    }
    return {name: table[name]() for name in names}


def _regression(names: Sequence[str], outputs: np.ndarray, targets: np.ndarray):
    preds = torch.as_tensor(np.asarray(outputs, dtype=np.float64).reshape(-1))
    target = torch.as_tensor(np.asarray(targets, dtype=np.float64).reshape(-1))
    enough = len(target) >= 2
    # Correlations of a constant and R2 of a constant target are undefined: say nan rather than
    # torchmetrics' warning-and-0 or scikit-learn's forced 0/1.
    # (max > min, not std > 0: the std of a constant can round to 1e-17).
    target_varies = enough and bool(target.max() > target.min())
    varies = target_varies and bool(preds.max() > preds.min())
    table: dict[str, Callable[[], float]] = {
        "spearman": lambda: _value(spearman_corrcoef(preds, target)) if varies else NAN,
        "pearson": lambda: _value(pearson_corrcoef(preds, target)) if varies else NAN,
        "mse": lambda: _value(mean_squared_error(preds, target)),
        "mae": lambda: _value(mean_absolute_error(preds, target)),
        "r2": lambda: _value(r2_score(preds, target)) if target_varies else NAN,
    }
    return {name: table[name]() for name in names}


def check_metric_inputs(
    names: Sequence[str], problem_type: str, outputs: np.ndarray, targets: np.ndarray, num_labels: int
) -> None:
    """Raise ValueError saying what is wrong with metric names or prediction/target shapes."""
    if problem_type not in METRICS_BY_PROBLEM:
        raise ValueError(f"unknown problem type '{problem_type}'; choose from {sorted(METRICS_BY_PROBLEM)}")
    unknown = [name for name in names if name not in METRICS_BY_PROBLEM[problem_type]]
    if unknown:
        raise ValueError(
            f"{unknown} not {problem_type} metrics; choose from {sorted(METRICS_BY_PROBLEM[problem_type])}"
        )
    if problem_type == REGRESSION:
        if outputs.size != targets.size:
            raise ValueError(f"{outputs.size} predictions for {targets.size} targets")
        return
    if outputs.ndim != 2 or outputs.shape[1] != num_labels:
        raise ValueError(f"{problem_type} outputs must have shape (N, {num_labels}); got {outputs.shape}")
    expected = (len(outputs),) if problem_type == SINGLE else outputs.shape
    if targets.shape != expected:
        raise ValueError(f"{problem_type} targets must have shape {expected}; got {targets.shape}")
    if targets.size == 0:
        return
    if problem_type == SINGLE and (targets.min() < 0 or targets.max() >= num_labels):
        raise ValueError(
            f"single-label targets must be class indices 0..{num_labels - 1}; got {targets.min()}..{targets.max()}"
        )
    if problem_type == MULTI and not np.isin(targets, (0, 1)).all():
        raise ValueError("multi-label targets must be a 0/1 matrix (one column per label)")


def has_undefined_outputs(outputs: np.ndarray) -> bool:
    """nan/inf predictions (a diverged model): every metric is then nan, never e.g. argmax = class 0."""
    return outputs.size > 0 and not bool(np.isfinite(outputs).all())


def compute_metrics(
    names: list[str],
    problem_type: str,
    outputs: np.ndarray,
    targets: np.ndarray,
    num_labels: int,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Compute each metric in ``names`` (see the module docstring for exact definitions)."""
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    check_metric_inputs(names, problem_type, outputs, targets, num_labels)
    if len(targets) == 0 or has_undefined_outputs(outputs):
        return {name: NAN for name in names}
    with warnings.catch_warnings():
        # torchmetrics warns on the degenerate cases handled above; the nan already says it.
        warnings.simplefilter("ignore", UserWarning)
        if problem_type == SINGLE:
            return _single_label(names, outputs, targets, num_labels)
        if problem_type == MULTI:
            return _multi_label(names, outputs, targets, num_labels, threshold)
        return _regression(names, outputs, targets)


def targets_from_frame(frame: pd.DataFrame, problem_type: str, num_labels: int) -> np.ndarray:
    """Labels as metrics take them, at full precision (the collator's tensors are float32)."""
    labels = frame["label"].tolist()
    if problem_type == MULTI:
        multi_hot = np.zeros((len(labels), num_labels), dtype=np.int64)
        for row, indices in enumerate(labels):
            multi_hot[row, list(indices)] = 1
        return multi_hot
    return np.asarray(labels, dtype=np.float64 if problem_type == REGRESSION else np.int64)
