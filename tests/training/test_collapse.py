"""Collapse: constant predictions are detected, flagged in every run, and never counted as a result."""

import json

import numpy as np
import pytest
from collapse_helpers import ZeroWeights

from protfit.config import build_config
from protfit.training.collapse import collapse_reason
from protfit.training.train import train


def test_constant_regression_predictions_collapse_but_a_narrow_spread_does_not():
    targets = np.linspace(0.0, 1.0, 50)
    assert collapse_reason(np.full(50, 0.3), targets, "regression", "spearman", "validation")
    # 0.1 % of the labels' spread still ranks the sequences: not a constant predictor
    assert collapse_reason(0.3 + 1e-3 * targets, targets, "regression", "spearman", "validation") is None


def test_one_class_collapses_for_label_metrics_but_not_for_auroc():
    probabilities = np.column_stack([np.linspace(0.6, 0.9, 20), 1 - np.linspace(0.6, 0.9, 20)])
    reason = collapse_reason(probabilities, None, "single_label_classification", "mcc", "test")
    assert reason and "class 0" in reason
    assert collapse_reason(probabilities, None, "single_label_classification", "auroc", "test") is None
    same = np.tile([[0.7, 0.3]], (20, 1))
    assert collapse_reason(same, None, "single_label_classification", "auroc", "test")


@pytest.fixture
def regression_data(tmp_path):
    from protfit.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path / "data", "regression", 40, 16, 16, max_len=40)


def test_a_run_that_predicts_a_constant_is_marked_collapsed(regression_data, tmp_path):
    raw = {
        "data": {"path": str(regression_data), "problem_type": "regression", "batch_size": 8},
        "model": {"name": "onehot", "method": "full", "pooler": "mean", "head": {"hidden_dims": [4]}},
        "train": {"epochs": 2, "learning_rate": 1e-3, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 20}},
        "output": {"dir": str(tmp_path / "runs"), "name": "run"},
    }
    summary = train(build_config(raw), plugins=[ZeroWeights()]).summary
    diagnostics = summary["diagnostics"]
    assert diagnostics["collapsed"] and diagnostics["collapse"]
    assert summary["verdict"].startswith("collapsed:")
    # the value is the monitored metric (undefined for a constant), never the validation loss
    assert summary["best_val_metric"] is None and summary["selected_by"] == "val_loss"
    written = json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())
    assert written["diagnostics"]["collapsed"]
