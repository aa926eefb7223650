"""Percentile-bootstrap confidence intervals for test metrics.

The test set is resampled with replacement ``cfg.resamples`` times (indices drawn with
``numpy.random.default_rng(cfg.seed)``), every metric is recomputed on every resample from the
model's own outputs (no re-inference), and the interval is the central ``cfg.confidence`` share
of those values. Resamples on which a metric is undefined (nan, e.g. no positive sample for
AUROC) are left out; if more than half of them are undefined the interval is (nan, nan), because
the remaining ones would describe a biased subset.

Why the metrics are re-implemented here: torchmetrics evaluates one sample set per call (20-400 ms
for AUROC or multi-label scores on 8,000 samples on a CPU), so 1,000 resamples would take minutes.
A resample is the original test set with sample i counted w_i times, so each metric below is a
weighted statistic over a (resamples, N) matrix of counts, evaluated for all resamples at once.
The definitions are those of :mod:`protfit.metrics`; tests check every one against
``compute_metrics`` on explicitly resampled data. A metric without a formula here (one registered
with ``register_metric`` outside protfit) is computed by its own function on each resample: slower,
but every registered metric gets an interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy import sparse

from protfit.config import BootstrapConfig
from protfit.metrics import (
    MULTI,
    REGRESSION,
    SINGLE,
    check_metric_inputs,
    compute_metrics,
    fmax_from_terms,
    fmax_terms,
    has_undefined_outputs,
)

# Below this share of defined resamples an interval is not reported (see module docstring).
MIN_DEFINED_SHARE = 0.5
# Elements per (resamples, N) block (8 MB of float64): memory stays bounded whatever the test set size.
_BLOCK_ELEMENTS = 1_000_000


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(
        numerator,
        denominator,
        out=np.zeros(np.broadcast(numerator, denominator).shape),
        where=denominator != 0,
    )


def _sorted_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Sort order of ``values`` and the last sorted position of each run of ties (None: no ties)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    return order, (None if len(ends) == len(values) else ends)


def _at_group_ends(cumulative: np.ndarray, ends: np.ndarray | None) -> np.ndarray:
    return cumulative if ends is None else np.take(cumulative, ends, axis=1)


def _group_totals(cumulative_at_ends: np.ndarray) -> np.ndarray:
    return np.diff(cumulative_at_ends, axis=1, prepend=0.0)


class _Ranking:
    """One score column sorted once; each resample only reweights it (the sort is shared by all)."""

    def __init__(self, values: np.ndarray) -> None:
        self.order, self.ends = _sorted_groups(values)

    def ranks(self, weights: np.ndarray) -> np.ndarray:
        """Rank of each sample within each resample, ties averaged (as torchmetrics' Spearman)."""
        cumulative = _at_group_ends(np.cumsum(np.take(weights, self.order, axis=1), axis=1), self.ends)
        group_weight = _group_totals(cumulative)
        midranks = cumulative - group_weight + (group_weight + 1) / 2
        if self.ends is not None:
            group_of = np.repeat(np.arange(len(self.ends)), np.diff(self.ends, prepend=-1))
            midranks = np.take(midranks, group_of, axis=1)
        ranks = np.empty_like(weights)
        ranks[:, self.order] = midranks
        return ranks

    def auroc(self, weights: np.ndarray, positive: np.ndarray) -> np.ndarray:
        """Mann-Whitney AUROC per resample (a tie counts one half); nan without both classes."""
        sorted_weights = np.take(weights, self.order, axis=1)
        all_cumulative = _at_group_ends(np.cumsum(sorted_weights, axis=1), self.ends)
        sorted_weights *= positive[self.order]
        positive_cumulative = _at_group_ends(np.cumsum(sorted_weights, axis=1), self.ends)
        negative_cumulative = all_cumulative - positive_cumulative
        negative_in_group = _group_totals(negative_cumulative)
        negative_below = negative_cumulative - negative_in_group
        pairs_won = (_group_totals(positive_cumulative) * (negative_below + negative_in_group / 2)).sum(
            axis=1
        )
        n_positive, n_negative = positive_cumulative[:, -1], negative_cumulative[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            auroc = pairs_won / (n_positive * n_negative)
        return np.where((n_positive > 0) & (n_negative > 0), auroc, np.nan)


def _macro_over_defined(per_class: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows are the undefined resamples
        return np.nanmean(per_class, axis=1)


def _binary_mcc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return _safe_divide(tp * tn - fp * fn, denominator)


def _weighted_pearson(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    total = weights.sum(axis=1, keepdims=True)
    dx = x - (weights * x).sum(axis=1, keepdims=True) / total
    dy = y - (weights * y).sum(axis=1, keepdims=True) / total
    covariance = (weights * dx * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return covariance / np.sqrt((weights * dx**2).sum(axis=1) * (weights * dy**2).sum(axis=1))


def _varies(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    present = weights > 0
    return np.where(present, values, -np.inf).max(axis=1) > np.where(present, values, np.inf).min(axis=1)


def _indicator(labels: np.ndarray, size: int, mask: np.ndarray | None = None) -> sparse.csr_matrix:
    """(size, N) sparse 0/1 matrix: row v marks the samples whose label is v (and mask holds)."""
    data = np.ones(len(labels)) if mask is None else mask.astype(np.float64)
    return sparse.csr_matrix((data, (labels, np.arange(len(labels)))), shape=(size, len(labels)))


class Resampler:
    """What does not change between resamples (predictions, sort orders, F-max terms), built once."""

    def __init__(
        self, problem_type: str, outputs: np.ndarray, targets: np.ndarray, num_labels: int, threshold: float
    ) -> None:
        self.problem_type, self.num_labels = problem_type, num_labels
        self.outputs, self.targets = outputs, targets
        self.threshold = threshold
        self._rankings: dict[object, _Ranking] = {}
        self._prepared: dict[str, object] = {}

    def evaluate(self, names: list[str], weights: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric for each row of ``weights`` (B, N): how often each sample occurs in a resample."""
        by_problem = {SINGLE: self._single_label, MULTI: self._multi_label, REGRESSION: self._regression}
        formulas = by_problem[self.problem_type](weights)
        values = {name: formulas[name]() for name in names if name in formulas}
        values.update(self._per_resample([name for name in names if name not in formulas], weights))
        return {name: values[name] for name in names}

    def _per_resample(self, names: list[str], weights: np.ndarray) -> dict[str, np.ndarray]:
        """The metric functions themselves on each resample, for metrics without a formula above."""
        values = {name: np.empty(len(weights)) for name in names}
        if not names:
            return values
        samples = np.arange(weights.shape[1])
        for row, counts in enumerate(weights):
            chosen = np.repeat(samples, counts.astype(np.int64))
            scores = compute_metrics(
                names,
                self.problem_type,
                self.outputs[chosen],
                self.targets[chosen],
                self.num_labels,
                self.threshold,
            )
            for name in names:
                values[name][row] = scores[name]
        return values

    def _ranking(self, key: object, values: np.ndarray) -> _Ranking:
        if key not in self._rankings:
            self._rankings[key] = _Ranking(values)
        return self._rankings[key]

    def _single_label(self, weights: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
        targets, num_labels = self.targets, self.num_labels
        if not self._prepared:
            predictions = self.outputs.argmax(axis=1)
            self._prepared = {
                "true": _indicator(targets, num_labels),
                "predicted": _indicator(predictions, num_labels),
                "correct": _indicator(targets, num_labels, mask=predictions == targets),
            }

        def per_value(kind: str) -> np.ndarray:
            return np.asarray(self._prepared[kind] @ weights.T).T

        total = weights.sum(axis=1)
        true_count, predicted_count, true_positive = (
            per_value("true"),
            per_value("predicted"),
            per_value("correct"),
        )
        false_positive, false_negative = predicted_count - true_positive, true_count - true_positive
        binary = num_labels == 2

        def per_class(score: np.ndarray) -> np.ndarray:
            if binary:
                return score[:, 1]
            # macro over the classes that occur in targets or predictions (torchmetrics and scikit-learn)
            occurs = (true_positive + false_positive + false_negative) > 0
            return (score * occurs).sum(axis=1) / occurs.sum(axis=1)

        def mcc() -> np.ndarray:
            covariance = true_positive.sum(axis=1) * total - (true_count * predicted_count).sum(axis=1)
            variance_pred = total**2 - (predicted_count**2).sum(axis=1)
            variance_true = total**2 - (true_count**2).sum(axis=1)
            return _safe_divide(covariance, np.sqrt(variance_pred * variance_true))

        def auroc() -> np.ndarray:
            classes = [1] if binary else range(num_labels)
            per = [self._ranking(k, self.outputs[:, k]).auroc(weights, targets == k) for k in classes]
            return _macro_over_defined(np.stack(per, axis=1))

        return {
            "accuracy": lambda: true_positive.sum(axis=1) / total,
            "precision": lambda: per_class(_safe_divide(true_positive, predicted_count)),
            "recall": lambda: per_class(_safe_divide(true_positive, true_count)),
            "f1": lambda: per_class(
                _safe_divide(2 * true_positive, 2 * true_positive + false_positive + false_negative)
            ),
            "mcc": mcc,
            "auroc": auroc,
        }

    def _multi_label(self, weights: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
        if not self._prepared:
            predicted = (self.outputs >= self.threshold).astype(np.float64)
            truth = self.targets.astype(np.float64)
            self._prepared = {"predicted": predicted, "truth": truth, "both": predicted * truth}
        prepared = self._prepared
        total = weights.sum(axis=1, keepdims=True)
        true_positive = weights @ prepared["both"]
        false_positive = weights @ prepared["predicted"] - true_positive
        false_negative = weights @ prepared["truth"] - true_positive
        true_negative = total - true_positive - false_positive - false_negative

        def auroc() -> np.ndarray:
            per = [
                self._ranking(k, self.outputs[:, k]).auroc(weights, prepared["truth"][:, k])
                for k in range(self.num_labels)
            ]
            return _macro_over_defined(np.stack(per, axis=1))

        def f1_max() -> np.ndarray:
            if "fmax" not in prepared:
                prepared["fmax"] = fmax_terms(self.outputs, self.targets)
            return fmax_from_terms(prepared["fmax"], weights)

        # torchmetrics' multilabel macro averages over every label (an absent, never-predicted label scores 0)
        return {
            "accuracy": lambda: ((true_positive + true_negative) / total).mean(axis=1),
            "precision": lambda: _safe_divide(true_positive, true_positive + false_positive).mean(axis=1),
            "recall": lambda: _safe_divide(true_positive, true_positive + false_negative).mean(axis=1),
            "f1": lambda: _safe_divide(
                2 * true_positive, 2 * true_positive + false_positive + false_negative
            ).mean(axis=1),
            "mcc": lambda: _binary_mcc(true_positive, false_positive, false_negative, true_negative).mean(
                axis=1
            ),
            "auroc": auroc,
            "f1_max": f1_max,
        }

    def _regression(self, weights: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
        outputs = self.outputs.astype(np.float64).reshape(-1)
        targets = self.targets.astype(np.float64).reshape(-1)
        total = weights.sum(axis=1)
        target_varies = _varies(weights, targets)
        both_vary = target_varies & _varies(weights, outputs)

        def r2() -> np.ndarray:
            mean = (weights * targets).sum(axis=1, keepdims=True) / total[:, None]
            residual = (weights * (outputs - targets) ** 2).sum(axis=1)
            spread = (weights * (targets - mean) ** 2).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(target_varies, 1 - residual / spread, np.nan)

        def spearman() -> np.ndarray:
            ranks_out = self._ranking("outputs", outputs).ranks(weights)
            ranks_target = self._ranking("targets", targets).ranks(weights)
            return np.where(both_vary, _weighted_pearson(weights, ranks_out, ranks_target), np.nan)

        return {
            "spearman": spearman,
            "pearson": lambda: np.where(both_vary, _weighted_pearson(weights, outputs, targets), np.nan),
            "mse": lambda: (weights * (outputs - targets) ** 2).sum(axis=1) / total,
            "mae": lambda: (weights * np.abs(outputs - targets)).sum(axis=1) / total,
            "r2": r2,
        }


def resample_counts(indices: np.ndarray, n_samples: int) -> np.ndarray:
    """(B, N) float matrix: how often each sample occurs in each row of resample ``indices``."""
    n_resamples = len(indices)
    flat = (indices + np.arange(n_resamples)[:, None] * n_samples).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_samples)
    return counts.reshape(n_resamples, n_samples).astype(np.float64)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    defined = values[~np.isnan(values)]
    if len(values) == 0 or len(defined) < MIN_DEFINED_SHARE * len(values):
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return (float(low), float(high))


def bootstrap_intervals(
    names: list[str],
    problem_type: str,
    outputs: np.ndarray,
    targets: np.ndarray,
    num_labels: int,
    cfg: BootstrapConfig,
    threshold: float = 0.5,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap interval (low, high) of each metric over resamples of the test set."""
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    check_metric_inputs(names, problem_type, outputs, targets, num_labels)
    n_samples = len(targets)
    if n_samples == 0 or has_undefined_outputs(outputs):
        return {name: (math.nan, math.nan) for name in names}
    rng = np.random.default_rng(cfg.seed)
    block = max(1, _BLOCK_ELEMENTS // n_samples)
    resampler = Resampler(problem_type, outputs, targets, num_labels, threshold)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, cfg.resamples, block):
        indices = rng.integers(0, n_samples, size=(min(block, cfg.resamples - start), n_samples))
        for name, values in resampler.evaluate(names, resample_counts(indices, n_samples)).items():
            collected[name].append(values)
    return {name: _percentile_interval(np.concatenate(collected[name]), cfg.confidence) for name in names}


def metrics_with_intervals(
    names: list[str],
    problem_type: str,
    outputs: np.ndarray,
    targets: np.ndarray,
    num_labels: int,
    cfg: BootstrapConfig,
    threshold: float = 0.5,
) -> dict[str, dict[str, float]]:
    """{metric: {"value", "low", "high"}}: the point estimate and its bootstrap interval."""
    values = compute_metrics(names, problem_type, outputs, targets, num_labels, threshold)
    intervals = bootstrap_intervals(names, problem_type, outputs, targets, num_labels, cfg, threshold)
    return {
        name: {"value": values[name], "low": intervals[name][0], "high": intervals[name][1]} for name in names
    }


def format_with_interval(value: float, interval: tuple[float, float] | None = None) -> str:
    """``0.812 [0.794, 0.829]``; nan prints as ``nan``; no interval prints the value alone.

    Values below 0.01 in size (an mse in small units) get 4 significant digits instead,
    ``0.0001234 [9.87e-05, 0.0001502]``: three decimals would print them all as 0.000.
    """
    numbers = [value, *(interval or ())]
    finite = [abs(number) for number in numbers if math.isfinite(number)]
    small = bool(finite) and 0 < max(finite) < 0.01
    text = [f"{number:.4g}" if small else f"{number:.3f}" for number in numbers]
    return text[0] if interval is None else f"{text[0]} [{text[1]}, {text[2]}]"
