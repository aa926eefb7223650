"""compute_metrics agrees with scikit-learn / scipy on fixed examples, for every metric name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as sk

from protfit.metrics import (
    compute_metrics,
    metric_description,
    metric_mode,
    metrics_for,
    outputs_from_logits,
    predicted_labels,
    protein_centric_fmax,
)

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


def _binary_example() -> tuple[np.ndarray, np.ndarray]:
    targets = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0])
    p1 = np.array([0.2, 0.8, 0.4, 0.6, 0.9, 0.1, 0.55, 0.3, 0.45, 0.7, 0.65, 0.35])
    return np.column_stack([1 - p1, p1]), targets


def _multiclass_example() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    targets = np.array([0, 1, 2, 3] * 10)
    logits = rng.normal(size=(40, 4))
    logits[np.arange(40), targets] += 1.0
    logits[:, 0] += 0.8  # skewed toward class 0, so macro F1 and accuracy differ
    return torch.softmax(torch.tensor(logits), dim=1).numpy(), targets


def _multilabel_example() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    targets = (rng.random((30, 4)) < 0.4).astype(int)
    targets[0] = [1, 1, 1, 1]
    targets[1] = [0, 0, 0, 0]
    outputs = np.clip(0.35 * targets + 0.65 * rng.random((30, 4)), 0, 1).round(2)
    return outputs, targets


def _regression_example() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    targets = rng.normal(size=50).round(1)  # rounding creates ties, which Spearman must average
    outputs = (targets + rng.normal(scale=0.8, size=50)).round(1)
    return outputs, targets


def _per_label(function, targets, predictions):
    return float(np.mean([function(targets[:, j], predictions[:, j]) for j in range(targets.shape[1])]))


# The scikit-learn / scipy definition of each metric, per problem type (and binary vs multiclass).
REFERENCES = {
    ("binary", "accuracy"): lambda o, t: sk.accuracy_score(t, o.argmax(1)),
    ("binary", "precision"): lambda o, t: sk.precision_score(t, o.argmax(1)),
    ("binary", "recall"): lambda o, t: sk.recall_score(t, o.argmax(1)),
    ("binary", "f1"): lambda o, t: sk.f1_score(t, o.argmax(1)),
    ("binary", "mcc"): lambda o, t: sk.matthews_corrcoef(t, o.argmax(1)),
    ("binary", "auroc"): lambda o, t: sk.roc_auc_score(t, o[:, 1]),
    ("multiclass", "accuracy"): lambda o, t: sk.accuracy_score(t, o.argmax(1)),
    ("multiclass", "precision"): lambda o, t: sk.precision_score(
        t, o.argmax(1), average="macro", zero_division=0
    ),
    ("multiclass", "recall"): lambda o, t: sk.recall_score(t, o.argmax(1), average="macro", zero_division=0),
    ("multiclass", "f1"): lambda o, t: sk.f1_score(t, o.argmax(1), average="macro", zero_division=0),
    ("multiclass", "mcc"): lambda o, t: sk.matthews_corrcoef(t, o.argmax(1)),
    ("multiclass", "auroc"): lambda o, t: sk.roc_auc_score(t, o, multi_class="ovr", average="macro"),
    (MULTI, "accuracy"): lambda o, t: _per_label(sk.accuracy_score, t, (o >= 0.5).astype(int)),
    (MULTI, "precision"): lambda o, t: sk.precision_score(t, o >= 0.5, average="macro", zero_division=0),
    (MULTI, "recall"): lambda o, t: sk.recall_score(t, o >= 0.5, average="macro", zero_division=0),
    (MULTI, "f1"): lambda o, t: sk.f1_score(t, o >= 0.5, average="macro", zero_division=0),
    (MULTI, "mcc"): lambda o, t: _per_label(sk.matthews_corrcoef, t, (o >= 0.5).astype(int)),
    (MULTI, "auroc"): lambda o, t: sk.roc_auc_score(t, o, average="macro"),
    (MULTI, "f1_max"): None,  # not in scikit-learn: hand-computed example below
    (REGRESSION, "spearman"): lambda o, t: stats.spearmanr(o, t).statistic,
    (REGRESSION, "pearson"): lambda o, t: stats.pearsonr(o, t).statistic,
    (REGRESSION, "mse"): lambda o, t: sk.mean_squared_error(t, o),
    (REGRESSION, "mae"): lambda o, t: sk.mean_absolute_error(t, o),
    (REGRESSION, "r2"): lambda o, t: sk.r2_score(t, o),
}
EXAMPLES = {
    "binary": (SINGLE, _binary_example, 2),
    "multiclass": (SINGLE, _multiclass_example, 4),
    MULTI: (MULTI, _multilabel_example, 4),
    REGRESSION: (REGRESSION, _regression_example, 1),
}


def test_every_metric_name_has_a_reference() -> None:
    for problem, names in ((p, metrics_for(p)) for p in (SINGLE, MULTI, REGRESSION)):
        kinds = ["binary", "multiclass"] if problem == SINGLE else [problem]
        for kind in kinds:
            assert {name for (key, name) in REFERENCES if key == kind} == set(names), (problem, kind)


@pytest.mark.parametrize(("kind", "name"), [key for key, reference in REFERENCES.items() if reference])
def test_metric_matches_scikit_learn(kind: str, name: str) -> None:
    problem, example, num_labels = EXAMPLES[kind]
    outputs, targets = example()
    ours = compute_metrics([name], problem, outputs, targets, num_labels)[name]
    assert ours == pytest.approx(REFERENCES[(kind, name)](outputs, targets), abs=1e-6)


def test_multiclass_f1_is_macro_not_accuracy() -> None:
    targets = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    outputs = np.eye(3)[[0, 0, 0, 0, 0, 0, 0, 1, 0, 2]]
    values = compute_metrics(["accuracy", "f1"], SINGLE, outputs, targets, 3)
    assert values["accuracy"] == pytest.approx(0.8)
    # macro: (12/14 + 2/3 + 2/3) / 3; the peer reported micro F1, which equals accuracy
    assert values["f1"] == pytest.approx((12 / 14 + 4 / 3) / 3)


@pytest.mark.parametrize("num_labels", [2, 3])
def test_mcc_of_a_constant_predictor_is_zero(num_labels: int) -> None:
    targets = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0]) if num_labels == 2 else np.arange(12) % 3
    outputs = np.tile(np.eye(num_labels)[0] * 0.9 + 0.1 / num_labels, (len(targets), 1))
    value = compute_metrics(["mcc"], SINGLE, outputs, targets, num_labels)["mcc"]
    assert value == 0.0  # torchmetrics' binary reduction says 0.18 here; the peer said 0.129
    assert sk.matthews_corrcoef(targets, outputs.argmax(1)) == 0.0


def test_auroc_uses_probabilities_not_argmax() -> None:
    outputs, targets = _binary_example()
    from_probabilities = sk.roc_auc_score(targets, outputs[:, 1])
    from_labels = sk.roc_auc_score(targets, outputs.argmax(1))
    assert from_probabilities != pytest.approx(from_labels)
    assert compute_metrics(["auroc"], SINGLE, outputs, targets, 2)["auroc"] == pytest.approx(
        from_probabilities
    )


def test_multiclass_auroc_averages_classes_present_in_targets() -> None:
    outputs, targets = _multiclass_example()
    targets = np.where(targets == 3, 0, targets)  # class 3 never occurs: its AUROC is undefined
    expected = np.mean([sk.roc_auc_score(targets == k, outputs[:, k]) for k in range(3)])
    assert compute_metrics(["auroc"], SINGLE, outputs, targets, 4)["auroc"] == pytest.approx(
        expected, abs=1e-6
    )


def test_multilabel_auroc_skips_labels_with_one_class() -> None:
    outputs, targets = _multilabel_example()
    targets[:, 2] = 0
    expected = np.mean([sk.roc_auc_score(targets[:, j], outputs[:, j]) for j in (0, 1, 3)])
    assert compute_metrics(["auroc"], MULTI, outputs, targets, 4)["auroc"] == pytest.approx(
        expected, abs=1e-6
    )
    targets[:] = 0
    assert math.isnan(compute_metrics(["auroc"], MULTI, outputs, targets, 4)["auroc"])


def test_multilabel_threshold_boundary_counts_as_predicted() -> None:
    targets = np.array([[1, 0], [0, 1]])
    outputs = np.array([[0.3, 0.1], [0.2, 0.3]])
    assert compute_metrics(["f1"], MULTI, outputs, targets, 2, threshold=0.3)["f1"] == 1.0
    assert predicted_labels(outputs, MULTI, 0.3).tolist() == [[1, 0], [0, 1]]


def test_fmax_hand_computed() -> None:
    # A: true {0, 1}; B: true {2}. At t in (0.2, 0.3]: A predicts {0, 1} (P 1, R 1), B predicts
    # {0, 2} (P 1/2, R 1): P = 3/4, R = 1, F = 6/7, the best over all thresholds (others: 0.4,
    # 1/3, 1/2, 14/19, 2/3; above 0.9 nothing is predicted and the threshold is skipped).
    outputs = np.array([[0.9, 0.4, 0.2], [0.5, 0.1, 0.3]])
    targets = np.array([[1, 1, 0], [0, 0, 1]])
    assert protein_centric_fmax(outputs, targets) == pytest.approx(6 / 7)
    assert compute_metrics(["f1_max"], MULTI, outputs, targets, 3)["f1_max"] == pytest.approx(6 / 7)


def test_fmax_matches_a_direct_loop() -> None:
    outputs, targets = _multilabel_example()
    targets[5] = 0  # a protein without true labels: counted in precision only
    best = 0.0
    for t in np.arange(1, 100) / 100:
        predicted = outputs >= t
        covered = predicted.sum(1) > 0
        if not covered.any():
            continue
        precision = np.mean((predicted & (targets > 0)).sum(1)[covered] / predicted.sum(1)[covered])
        annotated = targets.sum(1) > 0
        recall = np.mean((predicted & (targets > 0)).sum(1)[annotated] / targets.sum(1)[annotated])
        if precision + recall > 0:
            best = max(best, 2 * precision * recall / (precision + recall))
    assert protein_centric_fmax(outputs, targets) == pytest.approx(best)


def test_fmax_edge_cases() -> None:
    assert protein_centric_fmax(np.zeros((3, 2)), np.array([[1, 0], [0, 1], [1, 1]])) == 0.0  # never predicts
    assert math.isnan(protein_centric_fmax(np.full((2, 2), 0.7), np.zeros((2, 2))))  # nothing to recall


def test_undefined_metrics_are_nan_without_crashing() -> None:
    binary_outputs, _ = _binary_example()
    one_class = np.ones(len(binary_outputs), dtype=int)
    assert math.isnan(compute_metrics(["auroc"], SINGLE, binary_outputs, one_class, 2)["auroc"])
    targets = np.arange(10, dtype=float)
    constant = np.full(10, 3.0)
    values = compute_metrics(["spearman", "pearson", "r2", "mse"], REGRESSION, constant, targets, 1)
    assert math.isnan(values["spearman"]) and math.isnan(values["pearson"])
    assert values["mse"] == pytest.approx(np.mean((targets - 3) ** 2))
    assert math.isnan(
        compute_metrics(["r2"], REGRESSION, targets, np.full(10, 0.1), 1)["r2"]
    )  # constant target
    for problem, names in ((p, metrics_for(p)) for p in (SINGLE, MULTI, REGRESSION)):
        shape = (0,) if problem == REGRESSION else (0, 3)
        empty_targets = np.zeros((0, 3) if problem == MULTI else (0,))
        values = compute_metrics(sorted(names), problem, np.zeros(shape), empty_targets, 3)
        assert all(math.isnan(value) for value in values.values())


def test_diverged_outputs_give_nan_not_class_zero() -> None:
    outputs, targets = _binary_example()
    outputs[3] = np.nan
    values = compute_metrics(["accuracy", "mcc", "auroc"], SINGLE, outputs, targets, 2)
    assert all(math.isnan(value) for value in values.values())


def test_bad_names_and_shapes_are_explained() -> None:
    outputs, targets = _binary_example()
    with pytest.raises(ValueError, match="spearman.*choose from"):
        compute_metrics(["spearman"], SINGLE, outputs, targets, 2)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        compute_metrics(["accuracy"], SINGLE, outputs, targets, 3)
    with pytest.raises(ValueError, match="targets must have shape"):
        compute_metrics(["accuracy"], SINGLE, outputs, targets[:-1], 2)
    with pytest.raises(ValueError, match=r"class indices 0\.\.1; got 0\.\.2"):
        compute_metrics(["accuracy"], SINGLE, outputs, np.r_[targets[:-1], 2], 2)
    with pytest.raises(ValueError, match="0/1 matrix"):
        compute_metrics(["f1"], MULTI, np.full((2, 2), 0.5), np.array([[0, 2], [1, 0]]), 2)


def test_metric_mode() -> None:
    assert [metric_mode(name) for name in ["mse", "mae", "loss"]] == ["min"] * 3
    assert [metric_mode(name) for name in ["spearman", "mcc", "f1_max", "auroc"]] == ["max"] * 4


def test_outputs_and_predicted_labels() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    probabilities = outputs_from_logits(logits, SINGLE)
    assert np.allclose(probabilities.sum(1), 1.0)
    assert predicted_labels(probabilities, SINGLE).tolist() == [0, 1]
    assert np.allclose(outputs_from_logits(logits, MULTI), torch.sigmoid(logits).numpy())
    assert outputs_from_logits(torch.tensor([[1.5], [-2.0]]), REGRESSION).tolist() == [1.5, -2.0]
    assert predicted_labels(np.array([1.5, -2.0]), REGRESSION).tolist() == [1.5, -2.0]
    bf16 = outputs_from_logits(logits.to(torch.bfloat16).requires_grad_(), SINGLE)
    assert bf16.dtype == np.float32


def test_descriptions_state_the_averaging() -> None:
    assert "macro" in metric_description("f1", SINGLE, 5)
    assert "positive class" in metric_description("f1", SINGLE, 2)
    assert "macro over labels" in metric_description("f1", MULTI, 5)
    for problem, names in ((p, metrics_for(p)) for p in (SINGLE, MULTI, REGRESSION)):
        for name in names:
            assert metric_description(name, problem, 3).startswith(name)
