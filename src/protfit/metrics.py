"""Evaluation metrics, chosen by problem type, computed with torchmetrics on numpy predictions.

Inputs are the model's ``outputs`` (see "Predictions" in docs/architecture.md) and ``targets``:

* single-label: outputs (N, K) class probabilities, targets (N,) int
* multi-label: outputs (N, K) per-class probabilities, targets (N, K) 0/1
* regression: outputs (N,), targets (N,)

What each name means (also in each registered metric's description, which reports print):

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

torch and torchmetrics are imported inside the functions that compute: the config checks metric
names against this registry, and a config error must answer before torch loads (issue #27).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import torch

from protfit.registry import METRICS

SINGLE = "single_label_classification"
MULTI = "multi_label_classification"
REGRESSION = "regression"

NAN = float("nan")


@dataclass
class MetricInputs:
    """One call's predictions and targets, converted once and shared by every metric of the call."""

    outputs: np.ndarray
    targets: np.ndarray
    num_labels: int
    threshold: float
    cache: dict[str, object] = field(default_factory=dict)

    def prepared(self, key: str, build: Callable[[], object]) -> object:
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]


@dataclass
class Metric:
    """A metric name, its direction, and one implementation (plus description) per problem type."""

    name: str
    mode: Literal["min", "max"]
    compute: dict[str, Callable[[MetricInputs], float]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


def register_metric(
    name: str, problem_type: str, description: str, *, mode: Literal["min", "max"] = "max", binary: str = ""
) -> Callable[[Callable[[MetricInputs], float]], Callable[[MetricInputs], float]]:
    """``@register_metric("mcc", SINGLE, "...")`` on ``fn(inputs: MetricInputs) -> float``.

    This is the one place a metric is added: the config validates names against it, reports print
    its description, early stopping reads its direction, and bootstrap intervals use it (through a
    vectorised formula in report/confidence.py where one exists, else by recomputing it per resample).
    ``binary`` describes the two-class single-label case where it differs.
    """

    def decorator(function: Callable[[MetricInputs], float]) -> Callable[[MetricInputs], float]:
        direction = "lower" if mode == "min" else "higher"
        metric: Metric = METRICS.setdefault(name, lambda: Metric(name, mode), f"{direction} is better")
        metric.compute[problem_type] = function
        metric.descriptions[problem_type] = f"{name}: {description}"
        if binary:
            metric.descriptions["binary_classification"] = f"{name}: {binary}"
        return function

    return decorator


def metrics_for(problem_type: str) -> list[str]:
    """The metric names defined for a problem type."""
    return [entry.name for entry in METRICS.entries() if problem_type in entry.item.compute]


def metric_description(name: str, problem_type: str, num_labels: int) -> str:
    """The one-line meaning of ``name`` for this problem (binary single-label differs from multiclass)."""
    descriptions = METRICS.get(name).descriptions
    if problem_type == SINGLE and num_labels == 2 and "binary_classification" in descriptions:
        return descriptions["binary_classification"]
    return descriptions[problem_type]


def metric_mode(name: str) -> Literal["min", "max"]:
    """Whether a smaller (``min``) or larger (``max``) value of ``name`` is better (``loss``: min)."""
    return "min" if name == "loss" else METRICS.get(name).mode


def outputs_from_logits(logits: torch.Tensor, problem_type: str) -> np.ndarray:
    """Turn model logits into the ``outputs`` every metric, interval and baseline takes."""
    import torch

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
    import torch

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


def _classes(inputs: MetricInputs) -> dict[str, torch.Tensor]:
    import torch

    def build() -> dict[str, torch.Tensor]:
        probabilities = torch.as_tensor(inputs.outputs, dtype=torch.float64)
        return {
            "probabilities": probabilities,
            "target": torch.as_tensor(inputs.targets, dtype=torch.long),
            "preds": probabilities.argmax(dim=-1),
        }

    return inputs.prepared("single", build)  # type: ignore[return-value]


_QUIET = {"validate_args": False}


def _macro(inputs: MetricInputs) -> dict:
    return {"num_classes": inputs.num_labels, "average": "macro", **_QUIET}


@register_metric("accuracy", SINGLE, "share of samples whose argmax class is right")
def _single_accuracy(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multiclass_accuracy

    t = _classes(inputs)
    return _value(multiclass_accuracy(t["preds"], t["target"], inputs.num_labels, average="micro", **_QUIET))


@register_metric(
    "precision", SINGLE, "macro precision over classes", binary="precision of the positive class (label 1)"
)
def _single_precision(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import binary_precision, multiclass_precision

    t = _classes(inputs)
    if inputs.num_labels == 2:
        return _value(binary_precision(t["preds"], t["target"], **_QUIET))
    return _value(multiclass_precision(t["preds"], t["target"], **_macro(inputs)))


@register_metric(
    "recall", SINGLE, "macro recall over classes", binary="recall of the positive class (label 1)"
)
def _single_recall(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import binary_recall, multiclass_recall

    t = _classes(inputs)
    if inputs.num_labels == 2:
        return _value(binary_recall(t["preds"], t["target"], **_QUIET))
    return _value(multiclass_recall(t["preds"], t["target"], **_macro(inputs)))


@register_metric("f1", SINGLE, "macro F1 over classes", binary="F1 of the positive class (label 1)")
def _single_f1(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import binary_f1_score, multiclass_f1_score

    t = _classes(inputs)
    if inputs.num_labels == 2:
        return _value(binary_f1_score(t["preds"], t["target"], **_QUIET))
    return _value(multiclass_f1_score(t["preds"], t["target"], **_macro(inputs)))


@register_metric(
    "mcc",
    SINGLE,
    "multiclass Matthews correlation (0 = no better than constant)",
    binary="Matthews correlation (0 = no better than constant)",
)
def _single_mcc(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    t = _classes(inputs)
    return _matthews(multiclass_confusion_matrix(t["preds"], t["target"], inputs.num_labels, **_QUIET))


@register_metric(
    "auroc",
    SINGLE,
    "macro one-vs-rest AUROC from class probabilities (classes present in the targets)",
    binary="AUROC of p(label 1)",
)
def _single_auroc(inputs: MetricInputs) -> float:
    # scikit-learn refuses multiclass AUROC unless every class occurs; we average the
    # one-vs-rest AUROC over the classes that occur (at least one positive and one negative).
    import torch
    from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

    t = _classes(inputs)
    target, num_labels = t["target"], inputs.num_labels
    counts = torch.bincount(target, minlength=num_labels)
    defined = (counts > 0) & (counts < len(target))
    if num_labels == 2:
        return _value(binary_auroc(t["probabilities"][:, 1], target, **_QUIET)) if defined[1] else NAN
    per_class = multiclass_auroc(t["probabilities"], target, num_labels, average="none", **_QUIET)
    return _present_class_mean(per_class, defined)


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


def _labels(inputs: MetricInputs) -> dict[str, torch.Tensor]:
    import torch

    def build() -> dict[str, torch.Tensor]:
        return {
            "probabilities": torch.as_tensor(inputs.outputs, dtype=torch.float64),
            "target": torch.as_tensor(inputs.targets, dtype=torch.long),
            # Threshold once here (p >= t) so every metric and predicted_labels agree on the boundary.
            "preds": torch.as_tensor(predicted_labels(inputs.outputs, MULTI, inputs.threshold)),
        }

    return inputs.prepared("multi", build)  # type: ignore[return-value]


def _per_label(inputs: MetricInputs) -> dict:
    return {"num_labels": inputs.num_labels, "average": "macro", **_QUIET}


@register_metric("accuracy", MULTI, "per-label accuracy at the threshold, macro over labels")
def _multi_accuracy(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multilabel_accuracy

    t = _labels(inputs)
    return _value(multilabel_accuracy(t["preds"], t["target"], **_per_label(inputs)))


@register_metric("precision", MULTI, "per-label precision at the threshold, macro over labels")
def _multi_precision(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multilabel_precision

    t = _labels(inputs)
    return _value(multilabel_precision(t["preds"], t["target"], **_per_label(inputs)))


@register_metric("recall", MULTI, "per-label recall at the threshold, macro over labels")
def _multi_recall(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multilabel_recall

    t = _labels(inputs)
    return _value(multilabel_recall(t["preds"], t["target"], **_per_label(inputs)))


@register_metric("f1", MULTI, "per-label F1 at the threshold, macro over labels")
def _multi_f1(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multilabel_f1_score

    t = _labels(inputs)
    return _value(multilabel_f1_score(t["preds"], t["target"], **_per_label(inputs)))


@register_metric("mcc", MULTI, "per-label Matthews correlation at the threshold, macro over labels")
def _multi_mcc(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import binary_confusion_matrix

    t = _labels(inputs)
    scores = [
        _matthews(binary_confusion_matrix(t["preds"][:, j], t["target"][:, j], **_QUIET))
        for j in range(inputs.num_labels)
    ]
    return float(np.mean(scores))


@register_metric("auroc", MULTI, "macro AUROC over labels (labels with one class in the targets skipped)")
def _multi_auroc(inputs: MetricInputs) -> float:
    from torchmetrics.functional.classification import multilabel_auroc

    t = _labels(inputs)
    target = t["target"]
    positives = target.sum(dim=0)
    defined = (positives > 0) & (positives < len(target))
    per_label = multilabel_auroc(t["probabilities"], target, inputs.num_labels, average="none", **_QUIET)
    return _present_class_mean(per_label, defined)


@register_metric("f1_max", MULTI, "protein-centric F-max over thresholds 0.01-0.99 (CAFA)")
def _multi_fmax(inputs: MetricInputs) -> float:
    return protein_centric_fmax(inputs.outputs, inputs.targets)


def _values(inputs: MetricInputs) -> dict[str, object]:
    import torch

    def build() -> dict[str, object]:
        preds = torch.as_tensor(np.asarray(inputs.outputs, dtype=np.float64).reshape(-1))
        target = torch.as_tensor(np.asarray(inputs.targets, dtype=np.float64).reshape(-1))
        enough = len(target) >= 2
        # Correlations of a constant and R2 of a constant target are undefined: say nan rather than
        # torchmetrics' warning-and-0 or scikit-learn's forced 0/1.
        # (max > min, not std > 0: the std of a constant can round to 1e-17).
        target_varies = enough and bool(target.max() > target.min())
        varies = target_varies and bool(preds.max() > preds.min())
        return {"preds": preds, "target": target, "target_varies": target_varies, "varies": varies}

    return inputs.prepared("regression", build)  # type: ignore[return-value]


@register_metric("spearman", REGRESSION, "Spearman rank correlation")
def _spearman(inputs: MetricInputs) -> float:
    from torchmetrics.functional import spearman_corrcoef

    t = _values(inputs)
    return _value(spearman_corrcoef(t["preds"], t["target"])) if t["varies"] else NAN


@register_metric("pearson", REGRESSION, "Pearson correlation")
def _pearson(inputs: MetricInputs) -> float:
    from torchmetrics.functional import pearson_corrcoef

    t = _values(inputs)
    return _value(pearson_corrcoef(t["preds"], t["target"])) if t["varies"] else NAN


@register_metric("mse", REGRESSION, "mean squared error (lower is better)", mode="min")
def _mse(inputs: MetricInputs) -> float:
    from torchmetrics.functional import mean_squared_error

    t = _values(inputs)
    return _value(mean_squared_error(t["preds"], t["target"]))


@register_metric("mae", REGRESSION, "mean absolute error (lower is better)", mode="min")
def _mae(inputs: MetricInputs) -> float:
    from torchmetrics.functional import mean_absolute_error

    t = _values(inputs)
    return _value(mean_absolute_error(t["preds"], t["target"]))


@register_metric("r2", REGRESSION, "coefficient of determination")
def _r2(inputs: MetricInputs) -> float:
    from torchmetrics.functional import r2_score

    t = _values(inputs)
    return _value(r2_score(t["preds"], t["target"])) if t["target_varies"] else NAN


def check_metric_inputs(
    names: Sequence[str], problem_type: str, outputs: np.ndarray, targets: np.ndarray, num_labels: int
) -> None:
    """Raise ValueError saying what is wrong with metric names or prediction/target shapes."""
    if problem_type not in (SINGLE, MULTI, REGRESSION):
        raise ValueError(
            f"unknown problem type '{problem_type}'; choose from {sorted((SINGLE, MULTI, REGRESSION))}"
        )
    allowed = metrics_for(problem_type)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"{unknown} not {problem_type} metrics; choose from {allowed}")
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
        inputs = MetricInputs(outputs, targets, num_labels, threshold)
        return {name: METRICS.get(name).compute[problem_type](inputs) for name in names}


def targets_from_frame(frame: pd.DataFrame, problem_type: str, num_labels: int) -> np.ndarray:
    """Labels as metrics take them, at full precision (the collator's tensors are float32)."""
    labels = frame["label"].tolist()
    if problem_type == MULTI:
        multi_hot = np.zeros((len(labels), num_labels), dtype=np.int64)
        for row, indices in enumerate(labels):
            multi_hot[row, list(indices)] = 1
        return multi_hot
    return np.asarray(labels, dtype=np.float64 if problem_type == REGRESSION else np.int64)
