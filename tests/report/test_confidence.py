"""Bootstrap intervals: right metric on every resample, sensible intervals, reproducible, fast."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from protfit.config import DEFAULT_METRICS, BootstrapConfig
from protfit.metrics import MetricInputs, compute_metrics, metrics_for, register_metric
from protfit.registry import METRICS
from protfit.report.confidence import (
    Resampler,
    bootstrap_intervals,
    format_with_interval,
    metrics_with_intervals,
    resample_counts,
)

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


def _data(problem: str, n: int, num_labels: int, seed: int = 0, rounded: bool = True):
    """A model that is right more often than not; rounding creates tied scores."""
    rng = np.random.default_rng(seed)
    if problem == REGRESSION:
        targets = rng.normal(size=n)
        outputs = targets + rng.normal(scale=0.7, size=n)
        return (outputs.round(1), targets.round(1)) if rounded else (outputs, targets)
    if problem == SINGLE:
        targets = rng.integers(0, num_labels, n)
        logits = rng.normal(size=(n, num_labels))
        logits[np.arange(n), targets] += 1.5
        outputs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    else:
        targets = (rng.random((n, num_labels)) < 0.35).astype(int)
        outputs = np.clip(0.4 * targets + 0.6 * rng.random((n, num_labels)), 0, 1)
    return (outputs.round(2) if rounded else outputs), targets


CASES = [(SINGLE, 2), (SINGLE, 4), (MULTI, 4), (REGRESSION, 1)]


@pytest.mark.parametrize(("problem", "num_labels"), CASES)
def test_each_resample_matches_compute_metrics_on_that_resample(problem: str, num_labels: int) -> None:
    """The vectorised bootstrap computes exactly the metrics of protfit.metrics (ties included)."""
    outputs, targets = _data(problem, 60, num_labels, seed=1)
    if problem == MULTI:
        targets[:, 3] = 0  # an absent label: AUROC skips it, F1 counts it as 0
    names = sorted(metrics_for(problem))
    indices = np.random.default_rng(2).integers(0, 60, size=(25, 60))
    resampler = Resampler(problem, outputs, targets, num_labels, threshold=0.5)
    vectorised = resampler.evaluate(names, resample_counts(indices, len(targets)))
    for row, sample in enumerate(indices):
        expected = compute_metrics(names, problem, outputs[sample], targets[sample], num_labels)
        for name in names:
            if math.isnan(expected[name]):
                assert math.isnan(vectorised[name][row]), (name, row)
            else:
                assert vectorised[name][row] == pytest.approx(expected[name], abs=1e-6), (name, row)


@pytest.mark.parametrize(("problem", "num_labels"), CASES)
def test_interval_contains_the_point_estimate(problem: str, num_labels: int) -> None:
    outputs, targets = _data(problem, 400, num_labels)
    names = DEFAULT_METRICS[problem]
    results = metrics_with_intervals(
        names, problem, outputs, targets, num_labels, BootstrapConfig(resamples=200)
    )
    for name, entry in results.items():
        assert set(entry) == {"value", "low", "high"}
        assert entry["low"] <= entry["value"] <= entry["high"], name
        assert entry["low"] < entry["high"], name
    assert (
        results[names[0]]["value"] == compute_metrics(names, problem, outputs, targets, num_labels)[names[0]]
    )


def test_interval_narrows_as_the_test_set_grows() -> None:
    cfg = BootstrapConfig(resamples=300)
    widths = {}
    for n in (100, 3000):
        outputs, targets = _data(REGRESSION, n, 1, rounded=False)
        low, high = bootstrap_intervals(["spearman"], REGRESSION, outputs, targets, 1, cfg)["spearman"]
        widths[n] = high - low
    assert widths[3000] < widths[100] / 3  # ~ 1/sqrt(30)


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    outputs, targets = _data(SINGLE, 300, 3)
    names = ["accuracy", "mcc", "auroc"]

    def run(seed: int) -> dict:
        return bootstrap_intervals(
            names, SINGLE, outputs, targets, 3, BootstrapConfig(resamples=100, seed=seed)
        )

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_confidence_level_sets_the_width() -> None:
    outputs, targets = _data(REGRESSION, 300, 1, rounded=False)
    narrow = bootstrap_intervals(["mse"], REGRESSION, outputs, targets, 1, BootstrapConfig(confidence=0.5))[
        "mse"
    ]
    wide = bootstrap_intervals(["mse"], REGRESSION, outputs, targets, 1, BootstrapConfig(confidence=0.99))[
        "mse"
    ]
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_undefined_metrics_give_nan_intervals() -> None:
    outputs, _ = _data(SINGLE, 50, 2)
    one_class = np.zeros(50, dtype=int)
    intervals = bootstrap_intervals(["auroc", "accuracy"], SINGLE, outputs, one_class, 2, BootstrapConfig())
    assert all(math.isnan(bound) for bound in intervals["auroc"])
    assert not math.isnan(intervals["accuracy"][0])
    constant = np.full(30, 2.0)
    targets = np.arange(30, dtype=float)
    intervals = bootstrap_intervals(["spearman", "mae"], REGRESSION, constant, targets, 1, BootstrapConfig())
    assert all(math.isnan(bound) for bound in intervals["spearman"])
    diverged = np.r_[np.nan, np.ones(29)]
    intervals = bootstrap_intervals(["mae"], REGRESSION, diverged, targets, 1, BootstrapConfig())
    assert all(math.isnan(bound) for bound in intervals["mae"])
    empty = bootstrap_intervals(["mse"], REGRESSION, np.zeros(0), np.zeros(0), 1, BootstrapConfig())
    assert all(math.isnan(bound) for bound in empty["mse"])


def test_rarely_undefined_resamples_are_ignored() -> None:
    # 2 positives in 40: a few resamples have none (AUROC undefined); the rest still give an interval
    outputs, _ = _data(SINGLE, 40, 2)
    targets = np.zeros(40, dtype=int)
    targets[[3, 17]] = 1
    low, high = bootstrap_intervals(["auroc"], SINGLE, outputs, targets, 2, BootstrapConfig())["auroc"]
    assert 0.0 <= low <= high <= 1.0


def test_format_with_interval() -> None:
    assert format_with_interval(0.8123, (0.7941, 0.8289)) == "0.812 [0.794, 0.829]"
    assert format_with_interval(float("nan"), (float("nan"), float("nan"))) == "nan [nan, nan]"
    assert format_with_interval(1.5) == "1.500"


def test_small_values_keep_significant_digits() -> None:
    # an mse in small units used to print as 0.000 [0.000, 0.000]
    assert format_with_interval(0.0001234, (0.0000987, 0.0001502)) == "0.0001234 [9.87e-05, 0.0001502]"
    assert format_with_interval(0.004) == "0.004"
    assert format_with_interval(0.0, (0.0, 0.0)) == "0.000 [0.000, 0.000]"
    assert format_with_interval(0.05, (0.004, 0.09)) == "0.050 [0.004, 0.090]"


def test_bad_names_are_refused() -> None:
    outputs, targets = _data(REGRESSION, 20, 1)
    with pytest.raises(ValueError, match="choose from"):
        bootstrap_intervals(["accuracy"], REGRESSION, outputs, targets, 1, BootstrapConfig())


def test_thousand_resamples_on_eight_thousand_samples_take_seconds() -> None:
    """Per-resample torchmetrics calls took over a minute here; the vectorised path about a second."""
    cfg = BootstrapConfig(resamples=1000)
    started = time.perf_counter()
    for problem, num_labels in [(SINGLE, 2), (REGRESSION, 1)]:
        outputs, targets = _data(problem, 8000, num_labels, rounded=False)
        bootstrap_intervals(DEFAULT_METRICS[problem], problem, outputs, targets, num_labels, cfg)
    assert time.perf_counter() - started < 20  # generous: the CPU is shared with other test workers


def test_a_user_metric_gets_its_interval_from_its_own_function_on_each_resample(monkeypatch) -> None:
    """A metric registered outside protfit has no vectorised formula: its function runs per resample."""
    METRICS.names()  # built-ins loaded before the copy that the test's metric goes into
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))

    @register_metric("squared_error_again", REGRESSION, "mse, written by a user", mode="min")
    def squared_error_again(inputs: MetricInputs) -> float:
        return float(np.mean((inputs.outputs - inputs.targets) ** 2))

    outputs, targets = _data(REGRESSION, 80, 1)
    cfg = BootstrapConfig(resamples=200, seed=3)
    result = metrics_with_intervals(["mse", "squared_error_again"], REGRESSION, outputs, targets, 1, cfg)
    for key in ("value", "low", "high"):  # the same resamples through the formula and the function
        assert result["squared_error_again"][key] == pytest.approx(result["mse"][key], rel=1e-6), key
    assert result["mse"]["low"] < result["mse"]["value"] < result["mse"]["high"]
