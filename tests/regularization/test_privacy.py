"""DP-SGD with Opacus: per-sample clipping, a finite epsilon per epoch and in the summary."""

from __future__ import annotations

import math

import pytest
import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.training.train import train


class StepGradients(Plugin):
    name = "step_gradients"

    def __init__(self):
        self.norms = []

    def on_after_optimizer_step(self, state):  # gradients as the DP optimizer stepped with them
        grads = [p.grad.flatten() for p in state.model.parameters() if p.requires_grad and p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


@pytest.mark.filterwarnings("ignore:Optimal order is the smallest alpha")  # epsilon is huge at noise ~0
def test_private_training_clips_per_sample_and_reports_epsilon(classification_data, tmp_path):
    spy = StepGradients()
    cfg = make_config(
        classification_data,
        tmp_path,
        "train.epochs=2",
        "train.max_grad_norm=null",
        R + "privacy.enabled=true",
        R + "privacy.max_grad_norm=0.001",
        R + "privacy.noise_multiplier=0.000001",
        method="freeze",
    )
    result = train(cfg, plugins=[spy])
    # the mean of per-sample gradients clipped to 0.001 (noise ~0) is at most 0.001 in norm, far below
    # the raw gradients (a private step never moves more than the clipped samples allow)
    assert spy.norms and max(spy.norms) <= 0.001 * (1 + 1e-3)
    epsilons = [row["dp_epsilon"] for row in result.summary["history"]]
    assert all(math.isfinite(e) and e > 0 for e in epsilons) and epsilons[1] > epsilons[0]
    privacy = result.summary["privacy"]
    assert privacy["epsilon"] == pytest.approx(epsilons[-1]) and privacy["steps"] == 6
    assert result.summary["embedding_cache"] is not None  # pooler/head only: the cache still works


def test_epsilon_is_finite_with_real_noise(classification_data, tmp_path):
    cfg = make_config(classification_data, tmp_path, R + "privacy.enabled=true", method="freeze")
    result = train(cfg)
    assert 0 < result.summary["privacy"]["epsilon"] < math.inf
