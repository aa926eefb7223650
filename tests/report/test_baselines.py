"""Sanity baselines: fitted on train only, the right features, an honest verdict and warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from protfit.config import DEFAULT_METRICS, BootstrapConfig
from protfit.metrics import compute_metrics, targets_from_frame
from protfit.report import baselines
from protfit.report.baselines import (
    LOGISTIC_CS,
    RIDGE_ALPHAS,
    BaselineResult,
    constant_prediction_warning,
    fit_sanity_baselines,
    format_baseline_table,
    verdict,
)
from protfit.report.confidence import metrics_with_intervals

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
RESIDUES = list("ACDEFGHIKLMNPQRSTVWY")
HYDROPHOBIC = set("AILMFVW")
FAST = BootstrapConfig(resamples=100)
DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _rule(sequence: str, problem: str):
    """Position 3 and 5 hydrophobic, with an interaction a linear model cannot fully capture."""
    h3, h5, h7 = (sequence[i] in HYDROPHOBIC for i in (3, 5, 7))
    if problem == REGRESSION:
        return float(h3 + h5 + 3 * (h3 and h5))
    if problem == SINGLE:
        return int((h3 != h5) or h7)
    return [k for k, present in enumerate((h3, h5, h7)) if present]


def _frame(
    n: int, problem: str, rng: np.random.Generator, lengths: tuple[int, int] = (12, 12)
) -> pd.DataFrame:
    sequences = [
        "".join(rng.choice(RESIDUES, size=rng.integers(lengths[0], lengths[1] + 1))) for _ in range(n)
    ]
    labels = [_rule(sequence, problem) for sequence in sequences]
    if problem == REGRESSION:
        labels = list(np.asarray(labels) + rng.normal(scale=0.1, size=n))
    return pd.DataFrame({"aa_seq": sequences, "label": labels})


def _splits(problem: str, lengths: tuple[int, int] = (12, 12), seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        _frame(300, problem, rng, lengths),
        _frame(80, problem, rng, lengths),
        _frame(250, problem, rng, lengths),
    )


def _num_labels(problem: str) -> int:
    return {REGRESSION: 1, SINGLE: 2, MULTI: 3}[problem]


def _good_outputs(test: pd.DataFrame, problem: str) -> np.ndarray:
    """What a model that learned the rule would output."""
    truth = [_rule(sequence, problem) for sequence in test["aa_seq"]]
    if problem == REGRESSION:
        return np.asarray(truth)
    if problem == SINGLE:
        return np.eye(2)[truth] * 0.8 + 0.1
    multi_hot = np.zeros((len(test), 3))
    for row, indices in enumerate(truth):
        multi_hot[row, indices] = 1
    return multi_hot * 0.8 + 0.1


def _noise_outputs(n: int, problem: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if problem == REGRESSION:
        return rng.normal(size=n)
    if problem == SINGLE:
        return rng.dirichlet([1, 1], size=n)
    return rng.random((n, 3))


def _test_targets(test: pd.DataFrame, problem: str) -> np.ndarray:
    return targets_from_frame(test, problem, _num_labels(problem))


@pytest.mark.parametrize("problem", [REGRESSION, SINGLE, MULTI])
def test_linear_baseline_is_fitted_on_train_only(problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    train, validation, test = _splits(problem)
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    real_estimator = baselines._estimator

    def spying_estimator(*args, **kwargs):
        estimator = real_estimator(*args, **kwargs)
        real_fit = estimator.fit

        def fit(features, targets):
            fits.append((np.asarray(features), np.asarray(targets)))
            return real_fit(features, targets)

        estimator.fit = fit
        return estimator

    monkeypatch.setattr(baselines, "_estimator", spying_estimator)
    results = fit_sanity_baselines(
        train, validation, test, problem, _num_labels(problem), DEFAULT_METRICS[problem], FAST
    )
    grid = RIDGE_ALPHAS if problem == REGRESSION else LOGISTIC_CS
    assert len(fits) == len(grid)  # one fit per strength; the chosen one is not refitted on more data
    train_grid = np.array([list(sequence) for sequence in train["aa_seq"]])
    for features, targets in fits:
        assert features.shape[0] == len(train) != len(test)
        assert (features == train_grid).all()
        assert np.array_equal(targets, targets_from_frame(train, problem, _num_labels(problem)))
    linear = results[1]
    assert linear.details["train_rows"] == len(train)
    assert len(linear.test_outputs) == len(test)


@pytest.mark.parametrize("problem", [REGRESSION, SINGLE])
def test_regularisation_is_chosen_on_validation(problem: str) -> None:
    train, validation, test = _splits(problem)
    metric = "spearman" if problem == REGRESSION else "mcc"
    linear = fit_sanity_baselines(train, validation, test, problem, _num_labels(problem), [metric], FAST)[1]
    scores = linear.details["validation_scores"]
    grid = RIDGE_ALPHAS if problem == REGRESSION else LOGISTIC_CS
    assert len(scores) == len(grid)
    parameter, chosen = next(iter(linear.details["regularisation"].items()))
    assert scores[f"{parameter}={chosen:g}"] == max(scores.values())
    assert "chosen on validation" in linear.description
    # without a validation split the default strength is used, and nothing is chosen on test
    linear = fit_sanity_baselines(train, None, test, problem, _num_labels(problem), [metric], FAST)[1]
    assert linear.details["validation_scores"] == {}


def test_onehot_for_equal_lengths_composition_otherwise() -> None:
    equal = fit_sanity_baselines(*_splits(REGRESSION), REGRESSION, 1, ["spearman"], FAST)
    assert [result.name for result in equal] == ["constant", "onehot_linear"]
    assert "12 positions" in equal[1].description
    varied = fit_sanity_baselines(*_splits(REGRESSION, lengths=(10, 14)), REGRESSION, 1, ["spearman"], FAST)
    assert [result.name for result in varied] == ["constant", "composition_linear"]
    # one odd length in test alone is enough to rule out position-wise features
    train, validation, test = _splits(REGRESSION)
    test.loc[0, "aa_seq"] = test.loc[0, "aa_seq"] + "A"
    assert (
        fit_sanity_baselines(train, validation, test, REGRESSION, 1, ["mse"], FAST)[1].name
        == "composition_linear"
    )


def test_composition_baseline_learns_a_composition_rule() -> None:
    rng = np.random.default_rng(4)

    def frame(n: int) -> pd.DataFrame:
        sequences = ["".join(rng.choice(RESIDUES, size=rng.integers(20, 60))) for _ in range(n)]
        return pd.DataFrame({"aa_seq": sequences, "label": [s.count("K") / len(s) for s in sequences]})

    results = fit_sanity_baselines(frame(300), frame(60), frame(200), REGRESSION, 1, ["spearman"], FAST)
    assert results[1].name == "composition_linear"
    assert results[1].metrics["spearman"]["value"] > 0.95


def test_constant_baseline() -> None:
    train, validation, test = _splits(REGRESSION)
    constant = fit_sanity_baselines(train, validation, test, REGRESSION, 1, ["mse"], FAST)[0]
    assert np.allclose(constant.test_outputs, train["label"].mean())

    train = pd.DataFrame({"aa_seq": ["ACDE"] * 6, "label": [2, 2, 2, 0, 1, 2]})
    test = pd.DataFrame({"aa_seq": ["ACDE"] * 4, "label": [0, 1, 2, 3]})
    constant = fit_sanity_baselines(train, None, test, SINGLE, 4, ["accuracy", "mcc"], FAST)[0]
    assert np.allclose(constant.test_outputs[0], [1 / 6, 1 / 6, 4 / 6, 0])
    assert (constant.test_outputs.argmax(1) == 2).all()  # the majority class
    assert constant.metrics["mcc"]["value"] == 0.0

    train = pd.DataFrame({"aa_seq": ["ACDE"] * 4, "label": [[0], [0, 2], [], [0]]})
    constant = fit_sanity_baselines(train, None, train, MULTI, 3, ["f1_max"], FAST)[0]
    assert np.allclose(constant.test_outputs[0], [0.75, 0.0, 0.25])


def test_classes_missing_from_train_get_probability_zero() -> None:
    train, validation, test = _splits(SINGLE)
    test.loc[0, "label"] = 2  # a class train never had
    linear = fit_sanity_baselines(train, validation, test, SINGLE, 3, ["accuracy", "auroc"], FAST)[1]
    assert linear.test_outputs.shape == (len(test), 3)
    assert np.allclose(linear.test_outputs[:, 2], 0.0)
    assert np.allclose(linear.test_outputs.sum(1), 1.0)


def test_multilabel_baseline_reads_label_index_lists() -> None:
    train, validation, test = _splits(MULTI)
    results = fit_sanity_baselines(train, validation, test, MULTI, 3, DEFAULT_METRICS[MULTI], FAST)
    linear = results[1]
    assert linear.test_outputs.shape == (len(test), 3)
    assert set(linear.metrics) == set(DEFAULT_METRICS[MULTI])
    assert set(linear.metrics["f1_max"]) == {"value", "low", "high"}
    # each label here depends on one position only: one-hot logistic regression learns it
    assert linear.metrics["auroc"]["value"] > 0.95


@pytest.mark.parametrize(
    ("problem", "metric"), [(REGRESSION, "spearman"), (SINGLE, "mcc"), (REGRESSION, "mse")]
)
def test_verdict_flips_between_a_good_model_and_noise(problem: str, metric: str) -> None:
    train, validation, test = _splits(problem)
    results = fit_sanity_baselines(train, validation, test, problem, _num_labels(problem), [metric], FAST)
    mode = "min" if metric == "mse" else "max"
    targets = _test_targets(test, problem)
    for outputs, expected in [
        (_good_outputs(test, problem), "model beats the best baseline"),
        (_noise_outputs(len(test), problem), "model does not beat"),
    ]:
        model = metrics_with_intervals([metric], problem, outputs, targets, _num_labels(problem), FAST)
        line = verdict(model, results, metric, mode)
        assert line.startswith(expected), line
        assert metric in line


def _entry(value: float, low: float, high: float) -> dict[str, dict[str, float]]:
    return {
        "spearman": {"value": value, "low": low, "high": high},
        "mse": {"value": value, "low": low, "high": high},
    }


def _baseline(name: str, value: float, low: float, high: float) -> BaselineResult:
    return BaselineResult(name, "a baseline", np.zeros(3), _entry(value, low, high))


def test_verdict_wording() -> None:
    pool = [_baseline("constant", 0.10, 0.08, 0.12), _baseline("onehot_linear", 0.35, 0.33, 0.37)]
    line = verdict(_entry(0.47, 0.45, 0.49), pool, "spearman", "max")
    assert (
        line == "model beats the best baseline (onehot_linear) by +0.120 spearman; intervals do not overlap"
    )
    line = verdict(_entry(0.37, 0.34, 0.40), pool, "spearman", "max")
    assert line == "model is ahead of onehot_linear by +0.020 spearman, but the intervals overlap"
    line = verdict(_entry(0.31, 0.28, 0.34), pool, "spearman", "max")
    assert line == "model does not beat onehot_linear (0.310 [0.280, 0.340] vs 0.350 [0.330, 0.370] spearman)"
    # lower is better for mse: the best baseline is the lowest one, and beating means going lower
    line = verdict(_entry(0.05, 0.04, 0.06), pool, "mse", "min")
    assert line.startswith("model beats the best baseline (constant) by -0.050 mse (lower is better)")
    assert verdict(_entry(0.20, 0.18, 0.22), pool, "mse", "min").startswith("model does not beat constant")
    nan = float("nan")
    assert "undefined" in verdict(_entry(nan, nan, nan), pool, "spearman", "max")
    assert "no baseline" in verdict(
        _entry(0.5, 0.4, 0.6), [_baseline("constant", nan, nan, nan)], "spearman", "max"
    )
    assert "intervals unavailable" in verdict(_entry(0.5, nan, nan), pool, "spearman", "max")


@pytest.mark.parametrize("problem", [REGRESSION, SINGLE, MULTI])
def test_constant_prediction_warning(problem: str) -> None:
    train, validation, test = _splits(problem)
    targets = _test_targets(test, problem)
    constant = fit_sanity_baselines(
        train,
        validation,
        test,
        problem,
        _num_labels(problem),
        ["mse"] if problem == REGRESSION else ["accuracy"],
        FAST,
    )[0].test_outputs
    assert constant_prediction_warning(constant, problem, targets=targets) is not None
    assert constant_prediction_warning(_good_outputs(test, problem), problem, targets=targets) is None
    assert constant_prediction_warning(_noise_outputs(len(test), problem), problem, targets=targets) is None


def test_regression_warning_catches_a_collapsed_model() -> None:
    rng = np.random.default_rng(0)
    targets = rng.normal(size=500)
    collapsed = 0.2 + 1e-4 * rng.normal(size=500)  # nearly constant, not exactly
    assert "barely vary" in constant_prediction_warning(collapsed, REGRESSION, targets=targets)
    assert constant_prediction_warning(0.1 * targets, REGRESSION, targets=targets) is None  # weak but real
    assert constant_prediction_warning(np.full(500, 0.2), REGRESSION) is not None  # no targets given
    assert constant_prediction_warning(targets, REGRESSION) is None


def test_single_label_warning_names_the_class() -> None:
    outputs = np.tile([0.2, 0.7, 0.1], (20, 1))
    assert "class 1 for all 20" in constant_prediction_warning(outputs, SINGLE)


def test_baseline_table() -> None:
    pool = [_baseline("constant", 0.10, 0.05, 0.15), _baseline("onehot_linear", 0.35, 0.33, 0.37)]
    table = format_baseline_table(_entry(0.47, 0.45, 0.49), pool)
    lines = table.splitlines()
    assert lines[0].split() == ["spearman", "mse"]
    assert lines[1].split()[:2] == ["model", "0.470"]
    assert "0.350 [0.330, 0.370]" in lines[3] and lines[3].startswith("onehot_linear")
    # a baseline without one of the model's metrics (e.g. a shuffled-label run) shows a dash
    partial = BaselineResult(
        "shuffled_labels",
        "trained on shuffled labels",
        np.zeros(3),
        {"spearman": {"value": 0.0, "low": -0.1, "high": 0.1}},
    )
    assert format_baseline_table(_entry(0.47, 0.45, 0.49), [partial]).splitlines()[2].rstrip().endswith("-")


def test_gb1_onehot_ridge_on_real_data() -> None:
    folder = DATA / "flip_gb1_two_vs_rest"
    if not folder.is_dir():
        pytest.skip("shared GB1 data not present")
    frames = {split: pd.read_csv(folder / f"{split}.csv") for split in ("train", "validation", "test")}
    test = frames["test"].sample(2000, random_state=0)
    results = fit_sanity_baselines(
        frames["train"], frames["validation"], test, REGRESSION, 1, ["spearman", "mse"], FAST
    )
    linear = results[1]
    assert linear.name == "onehot_linear"  # all GB1 variants have 265 residues
    assert linear.metrics["spearman"]["value"] > 0.3
    assert np.isnan(results[0].metrics["spearman"]["value"])  # a constant has no rank correlation
    value = compute_metrics(["spearman"], REGRESSION, linear.test_outputs, test["label"].to_numpy(), 1)
    assert value["spearman"] == linear.metrics["spearman"]["value"]
