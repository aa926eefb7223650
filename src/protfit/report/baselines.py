"""Sanity baselines: does the fine-tuned model beat what a trivial model gets on the same test set?

* ``constant``: no input at all. Regression: the training mean. Single-label: the training class
  frequencies as probabilities (so argmax = the majority class). Multi-label: each label's
  training frequency.
* ``onehot_linear`` when every sequence in train, validation and test has the same length (a
  mutational landscape such as GB1): position-wise one-hot of the 20 residues + X, flattened, into
  ridge regression / logistic regression / one-vs-rest logistic regression.
* ``composition_linear`` otherwise: the same linear models on amino-acid composition (21 residue
  fractions) plus log length, standardised.

The linear models are fitted on train only; the regularisation strength is chosen on validation
(small grid, scored with the problem type's default monitor metric); test is only predicted.
Baseline metrics carry bootstrap intervals exactly as the model's do, so the two can be compared.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from protfit.config import DEFAULT_MONITOR, BootstrapConfig
from protfit.metrics import (
    MULTI,
    REGRESSION,
    SINGLE,
    compute_metrics,
    metric_mode,
    predicted_labels,
    targets_from_frame,
)
from protfit.report.confidence import format_with_interval, metrics_with_intervals

RESIDUES = "ACDEFGHIKLMNPQRSTVWY" + "X"
# Ordered from strongest to weakest regularisation, so ties on validation keep the simpler model.
RIDGE_ALPHAS = (1000.0, 100.0, 10.0, 1.0, 0.1)
LOGISTIC_CS = (0.01, 0.1, 1.0, 10.0)
# Used when validation cannot choose (empty, or the metric undefined for every strength).
DEFAULT_RIDGE_ALPHA = 10.0
DEFAULT_LOGISTIC_C = 1.0
# Regression predictions whose spread is below this share of the targets' spread are "constant":
# a model that good-faith shrinks toward the mean would need a correlation below ~0.01 to get there.
CONSTANT_SPREAD_SHARE = 0.01
# The standardised zero-shot score enters the one-hot ridge multiplied by this, which divides the
# penalty on its coefficient by its square (1e4): Hsu et al. 2022 leave the density feature of their
# augmented model (nearly) unregularised while the one-hot weights are shrunk.
ZERO_SHOT_SCORE_SCALE = 100.0
# Metrics that do not depend on the score's scale or threshold: the only ones a log-likelihood ratio
# can be judged by. mse/mae/r2 need calibrated values, accuracy/f1/mcc a class threshold.
SCALE_FREE_METRICS = ("spearman", "pearson", "auroc")


@dataclass
class BaselineResult:
    """One baseline's test predictions and metrics ({metric: {"value", "low", "high"}}).

    Also what the recipe builds for the shuffled-labels baseline (a full training run), which only
    sets the first four fields.
    """

    name: str
    description: str
    test_outputs: np.ndarray
    metrics: dict[str, dict[str, float]]
    details: dict[str, Any] = field(default_factory=dict)


def _residue_grid(sequences: Sequence[str]) -> np.ndarray:
    return np.array([list(sequence) for sequence in sequences])


def _composition(sequences: Sequence[str]) -> np.ndarray:
    features = np.zeros((len(sequences), len(RESIDUES) + 1))
    for row, sequence in enumerate(sequences):
        length = max(len(sequence), 1)
        features[row, : len(RESIDUES)] = [sequence.count(residue) / length for residue in RESIDUES]
        features[row, -1] = math.log(length)
    return features


def _same_length(*frames: pd.DataFrame | None) -> bool:
    lengths = {len(sequence) for frame in frames if frame is not None for sequence in frame["aa_seq"]}
    return len(lengths) == 1


def _amplify_score(values: np.ndarray) -> np.ndarray:
    return values * ZERO_SHOT_SCORE_SCALE


def _estimator(problem_type: str, strength: float, onehot_length: int | None, with_score: bool = False):
    """An unfitted pipeline: features (one-hot or composition; with ``with_score`` one-hot plus a
    zero-shot score in the last column) -> linear model of this strength."""
    if problem_type == REGRESSION:
        model = Ridge(alpha=strength)
    elif problem_type == SINGLE:
        model = LogisticRegression(C=strength, max_iter=2000)
    else:
        model = OneVsRestClassifier(LogisticRegression(C=strength, max_iter=2000))
    if onehot_length is not None:
        encoder = OneHotEncoder(categories=[list(RESIDUES)] * onehot_length, handle_unknown="ignore")
        if with_score:
            score = make_pipeline(StandardScaler(), FunctionTransformer(_amplify_score))
            columns = ColumnTransformer(
                [("onehot", encoder, list(range(onehot_length))), ("score", score, [onehot_length])]
            )
            return make_pipeline(columns, model)
        return make_pipeline(encoder, model)
    return make_pipeline(StandardScaler(), model)


def _predict(estimator, features: np.ndarray, problem_type: str, num_labels: int) -> np.ndarray:
    if problem_type == REGRESSION:
        return estimator.predict(features).astype(np.float64)
    probabilities = estimator.predict_proba(features)
    if problem_type == MULTI:
        return probabilities
    # classes absent from train get probability 0 (the model never saw them)
    outputs = np.zeros((len(features), num_labels))
    outputs[:, estimator.classes_] = probabilities
    return outputs


def _fit_linear(
    problem_type: str,
    num_labels: int,
    features: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    onehot_length: int | None,
    selection_metric: str,
    threshold: float,
    with_score: bool = False,
) -> tuple[Any, float, dict[float, float]]:
    """Fit one model per strength on train, keep the best on validation. Test is never touched."""
    grid = RIDGE_ALPHAS if problem_type == REGRESSION else LOGISTIC_CS
    default = DEFAULT_RIDGE_ALPHA if problem_type == REGRESSION else DEFAULT_LOGISTIC_C
    has_validation = "validation" in features and len(targets["validation"]) > 0
    fitted: dict[float, Any] = {}
    scores: dict[float, float] = {}
    for strength in grid if has_validation else [default]:
        estimator = _estimator(problem_type, strength, onehot_length, with_score)
        with warnings.catch_warnings():
            # a label constant in train (one-vs-rest) or a slow lbfgs finish is fine for a baseline
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(features["train"], targets["train"])
        fitted[strength] = estimator
        if has_validation:
            outputs = _predict(estimator, features["validation"], problem_type, num_labels)
            scores[strength] = compute_metrics(
                [selection_metric], problem_type, outputs, targets["validation"], num_labels, threshold
            )[selection_metric]
    defined = {strength: score for strength, score in scores.items() if not math.isnan(score)}
    if defined:
        pick = max if metric_mode(selection_metric) == "max" else min
        chosen = pick(defined, key=defined.__getitem__)
    else:
        chosen = default if default in fitted else grid[len(grid) // 2]
    return fitted[chosen], chosen, scores


def _constant_outputs(
    train_targets: np.ndarray, n_test: int, problem_type: str, num_labels: int
) -> np.ndarray:
    if problem_type == REGRESSION:
        return np.full(n_test, float(train_targets.mean()))
    if problem_type == SINGLE:
        prior = np.bincount(train_targets, minlength=num_labels) / len(train_targets)
    else:
        prior = train_targets.mean(axis=0)
    return np.tile(prior, (n_test, 1))


_CONSTANT_DESCRIPTIONS = {
    REGRESSION: "predicts the training mean for every sequence",
    SINGLE: "predicts the training class frequencies (argmax = majority class)",
    MULTI: "predicts each label's training frequency for every sequence",
}
_MODEL_NAMES = {
    REGRESSION: "ridge regression",
    SINGLE: "logistic regression",
    MULTI: "one-vs-rest logistic regression",
}


def fit_sanity_baselines(
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    test: pd.DataFrame,
    problem_type: str,
    num_labels: int,
    metric_names: list[str],
    bootstrap: BootstrapConfig,
    threshold: float = 0.5,
    selection_metric: str | None = None,
) -> list[BaselineResult]:
    """The constant baseline and one linear baseline, scored on test like the model.

    ``selection_metric`` picks the regularisation on validation; default: the problem type's
    default monitor (mcc, f1_max or spearman).
    """
    selection_metric = selection_metric or DEFAULT_MONITOR[problem_type]
    splits = {"train": train, "test": test}
    if validation is not None and len(validation):
        splits["validation"] = validation
    targets = {name: targets_from_frame(frame, problem_type, num_labels) for name, frame in splits.items()}

    def result(name: str, description: str, outputs: np.ndarray, details: dict[str, Any]) -> BaselineResult:
        metrics = metrics_with_intervals(
            metric_names, problem_type, outputs, targets["test"], num_labels, bootstrap, threshold
        )
        return BaselineResult(name, description, outputs, metrics, details)

    constant = _constant_outputs(targets["train"], len(test), problem_type, num_labels)
    results = [result("constant", _CONSTANT_DESCRIPTIONS[problem_type], constant, {"train_rows": len(train)})]

    if problem_type == SINGLE and len(np.unique(targets["train"])) < 2:
        return results  # nothing a classifier can learn; the data loader normally refuses this earlier
    onehot = _same_length(train, validation, test)
    if onehot:
        length = len(train["aa_seq"].iloc[0])
        features = {name: _residue_grid(frame["aa_seq"].tolist()) for name, frame in splits.items()}
        name, feature_text = "onehot_linear", f"position-wise one-hot ({length} positions x 20 residues + X)"
    else:
        length = None
        features = {name: _composition(frame["aa_seq"].tolist()) for name, frame in splits.items()}
        name, feature_text = "composition_linear", "amino-acid composition + log length (lengths differ)"
    estimator, strength, scores = _fit_linear(
        problem_type, num_labels, features, targets, length, selection_metric, threshold
    )
    parameter = "alpha" if problem_type == REGRESSION else "C"
    chosen = (
        f"{parameter}={strength:g} chosen on validation {selection_metric}"
        if scores
        else f"{parameter}={strength:g}"
    )
    description = f"{_MODEL_NAMES[problem_type]} on {feature_text}, {chosen}"
    outputs = _predict(estimator, features["test"], problem_type, num_labels)
    details = {
        "estimator": estimator,
        "train_rows": len(train),
        "regularisation": {parameter: strength},
        "validation_scores": {f"{parameter}={key:g}": value for key, value in scores.items()},
    }
    results.append(result(name, description, outputs, details))
    return results


def zero_shot_outputs(scores: np.ndarray, problem_type: str) -> np.ndarray:
    """Regression: the score itself (higher = fitter). Two classes: the score as the probability of
    class 1 (a logistic squash; only its order matters to AUROC, the one metric reported)."""
    scores = np.asarray(scores, dtype=np.float64)
    if problem_type == REGRESSION:
        return scores
    positive = 1.0 / (1.0 + np.exp(-scores))
    return np.stack([1.0 - positive, positive], axis=1)


def fit_zero_shot_baselines(
    frames: dict[str, pd.DataFrame],
    scores: dict[str, np.ndarray],
    problem_type: str,
    num_labels: int,
    metric_names: list[str],
    bootstrap: BootstrapConfig,
    description: str,
    threshold: float = 0.5,
    selection_metric: str | None = None,
) -> list[BaselineResult]:
    """``zero_shot`` (the test scores as predictions, scale-free metrics only) and, when train has
    scores and every sequence one length, ``onehot_zero_shot_linear``: the one-hot linear model with
    the score as one more feature (Hsu et al. 2022's augmented model), strength chosen on validation.

    ``frames`` and ``scores`` hold ``test`` and optionally ``train`` / ``validation``.
    """
    selection_metric = selection_metric or DEFAULT_MONITOR[problem_type]
    targets = {name: targets_from_frame(frame, problem_type, num_labels) for name, frame in frames.items()}
    shown = [name for name in metric_names if name in SCALE_FREE_METRICS]
    left_out = [name for name in metric_names if name not in SCALE_FREE_METRICS]
    note = (
        f"; {', '.join(left_out)} left out: a log-likelihood ratio has no calibrated scale or class threshold"
        if left_out
        else ""
    )
    outputs = zero_shot_outputs(scores["test"], problem_type)
    metrics = metrics_with_intervals(
        shown, problem_type, outputs, targets["test"], num_labels, bootstrap, threshold
    )
    results = [BaselineResult("zero_shot", description + note, outputs, metrics, {"scores": scores["test"]})]
    frame_list = [frames.get(name) for name in ("train", "validation", "test")]
    if "train" not in scores or not _same_length(*frame_list):
        return results
    length = len(frames["train"]["aa_seq"].iloc[0])
    features = {
        name: np.column_stack([_residue_grid(frames[name]["aa_seq"].tolist()), scores[name].astype(object)])
        for name in scores
        if name in frames
    }
    estimator, strength, validation_scores = _fit_linear(
        problem_type, num_labels, features, targets, length, selection_metric, threshold, with_score=True
    )
    parameter = "alpha" if problem_type == REGRESSION else "C"
    chosen = f"{parameter}={strength:g}" + (
        f" chosen on validation {selection_metric}" if validation_scores else ""
    )
    text = (
        f"{_MODEL_NAMES[problem_type]} on position-wise one-hot ({length} positions) + the standardised "
        f"zero-shot score (its coefficient nearly unpenalised), {chosen}"
    )
    outputs = _predict(estimator, features["test"], problem_type, num_labels)
    augmented = BaselineResult(
        "onehot_zero_shot_linear",
        text,
        outputs,
        metrics_with_intervals(
            metric_names, problem_type, outputs, targets["test"], num_labels, bootstrap, threshold
        ),
        {"estimator": estimator, "regularisation": {parameter: strength}},
    )
    return [*results, augmented]


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def verdict(
    model_metrics: dict[str, dict[str, float]], baselines: list[BaselineResult], metric: str, mode: str
) -> str:
    """One line: does the model beat the best baseline on ``metric``, and do the intervals separate?"""
    model = model_metrics[metric]
    candidates = [b for b in baselines if metric in b.metrics and not math.isnan(b.metrics[metric]["value"])]
    if not candidates:
        return f"no baseline has a defined {metric}; nothing to compare with"
    if math.isnan(model["value"]):
        return f"cannot compare: the model's test {metric} is undefined (nan)"
    pick = max if mode == "max" else min
    best = pick(candidates, key=lambda b: b.metrics[metric]["value"])
    other = best.metrics[metric]
    difference = model["value"] - other["value"]
    direction = " (lower is better)" if mode == "min" else ""
    if not _better(model["value"], other["value"], mode):
        return (
            f"model does not beat {best.name} ({format_with_interval(model['value'], (model['low'], model['high']))}"
            f" vs {format_with_interval(other['value'], (other['low'], other['high']))} {metric}{direction})"
        )
    ahead = f"{difference:+.3f} {metric}{direction}"
    bounds = [model["low"], model["high"], other["low"], other["high"]]
    if any(math.isnan(bound) for bound in bounds):
        return f"model is ahead of {best.name} by {ahead}; intervals unavailable, so not tested"
    separated = model["low"] > other["high"] if mode == "max" else model["high"] < other["low"]
    if separated:
        return f"model beats the best baseline ({best.name}) by {ahead}; intervals do not overlap"
    return f"model is ahead of {best.name} by {ahead}, but the intervals overlap"


def constant_prediction_warning(
    outputs: np.ndarray,
    problem_type: str,
    targets: np.ndarray | None = None,
    threshold: float = 0.5,
) -> str | None:
    """A warning when the model gives (nearly) the same prediction for the whole test set.

    Classification: every argmax is the same class. Multi-label: every sequence gets the same
    predicted label set at ``threshold``. Regression: the interquartile range of the predictions
    (robust to a few outliers) is below 1% of that of ``targets`` (standard deviations when the
    targets' IQR is 0); without targets, when the IQR is numerically zero (half the predictions
    or more share one value).
    """
    outputs = np.asarray(outputs)
    if outputs.size == 0 or len(outputs) < 2:
        return None
    if problem_type == SINGLE:
        classes = np.unique(predicted_labels(outputs, problem_type))
        if len(classes) == 1:
            return (
                f"the model predicts class {classes[0]} for all {len(outputs)} test sequences; "
                "it has learned nothing beyond the majority class (check mcc against the constant baseline)"
            )
        return None
    if problem_type == MULTI:
        label_sets = np.unique(predicted_labels(outputs, problem_type, threshold), axis=0)
        if len(label_sets) == 1:
            present = np.flatnonzero(label_sets[0]).tolist()
            return (
                f"the model predicts the same label set {present} for all {len(outputs)} test sequences "
                f"(threshold {threshold})"
            )
        return None
    values = outputs.reshape(-1).astype(np.float64)
    spread = float(np.subtract(*np.percentile(values, [75, 25])))
    if targets is not None:
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        reference = float(np.subtract(*np.percentile(targets, [75, 25])))
        if reference == 0:
            spread, reference = float(values.std()), float(targets.std())
        if reference > 0 and spread < CONSTANT_SPREAD_SHARE * reference:
            return (
                f"the model's predictions barely vary (spread {spread:.3g} vs {reference:.3g} in the targets): "
                f"it predicts about {np.median(values):.4g} for every test sequence"
            )
        return None
    if spread <= 1e-6 * max(1.0, abs(float(np.median(values)))):
        return f"the model predicts about {np.median(values):.4g} for most test sequences (no spread)"
    return None


def format_baseline_table(model_metrics: dict[str, dict[str, float]], baselines: list[BaselineResult]) -> str:
    """The model row and one row per baseline, each metric as ``value [low, high]``."""
    names = list(model_metrics)
    rows = [["", *names]]
    for label, metrics in [("model", model_metrics), *[(b.name, b.metrics) for b in baselines]]:
        cells = [label]
        for name in names:
            entry = metrics.get(name)
            cells.append(
                "-" if entry is None else format_with_interval(entry["value"], (entry["low"], entry["high"]))
            )
        rows.append(cells)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)
