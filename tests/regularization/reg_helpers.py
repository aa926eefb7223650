"""Helpers for the regularization tests (imported by name: the test folders are not packages)."""

from __future__ import annotations

from protfit.config import apply_overrides, build_config
from protfit.regularization.layers import attention_dropouts, hidden_dropouts

R = "regularization."


def layer_dropout(layer) -> tuple[list[float], list[float]]:
    """(hidden probabilities, attention probabilities) of one backbone layer."""
    hidden = [module.p for module in hidden_dropouts(layer)]
    attention = [getattr(module, attribute) for module, attribute in attention_dropouts(layer)]
    return hidden, attention


def make_config(data_dir, out_dir, *overrides, problem="single_label_classification", method="full"):
    raw = {
        "data": {"path": str(data_dir), "problem_type": problem, "batch_size": 8},
        "model": {"name": "tiny-esm2", "method": method, "head": {"hidden_dims": [16]}},
        "train": {
            "epochs": 1,
            "learning_rate": 3e-3,
            "progress": False,
            "early_stopping": {"patience": None},
        },
        "evaluation": {"bootstrap": {"resamples": 10}, "baselines": {"enabled": False}},
        "output": {"dir": str(out_dir), "name": "run"},
    }
    return build_config(apply_overrides(raw, list(overrides)))
