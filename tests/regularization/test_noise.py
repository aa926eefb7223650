"""Noise injection: NEFTune's scale and training-only use, weight noise removed before the update,
head-input noise in training mode only, annealed gradient noise."""

from __future__ import annotations

import math

import pytest
import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.regularization.layers import input_embeddings
from protfit.regularization.noise import GradientNoise
from protfit.regularization.sections.noise import GradientNoiseConfig
from protfit.training.train import train


class EmbeddingSpy(Plugin):
    """Records |embedding output - clean embedding| per forward, in training and evaluation."""

    name = "embedding_spy"

    def __init__(self):
        self.train, self.eval = [], []

    def configure_model(self, parts):
        table = input_embeddings(parts.model)
        self.table = table

        # registered after NEFTune's hook (user plug-ins come last): sees the noisy output
        def hook(module, inputs, output):
            clean = torch.nn.functional.embedding(inputs[0], module.weight)
            bucket = self.train if parts.model.training else self.eval
            bucket.append(((output - clean).abs().max().item(), output.shape))

        table.register_forward_hook(hook)


def test_neftune_scale_and_only_in_training(classification_data, tmp_path):
    spy = EmbeddingSpy()
    cfg = make_config(
        classification_data, tmp_path, R + "neftune.enabled=true", R + "neftune.alpha=5", method="freeze"
    )
    result = train(cfg, plugins=[spy])
    assert result.summary["embedding_cache"] is None  # NEFTune needs the backbone on every batch
    for largest, shape in spy.train:
        bound = 5 / math.sqrt(shape[1] * shape[2])
        assert 0.5 * bound < largest <= bound
    assert spy.eval and all(largest == 0 for largest, _ in spy.eval)


class WeightsAtStep(Plugin):
    name = "weights_at_step"

    def __init__(self):
        self.inside, self.before_step, self.start = [], [], []

    def transform_batch(self, state, batch):  # before the step's training_step chain
        self.start.append(_head_weight(state))
        return batch

    def loss(self, state, batch, logits, loss):
        self.inside.append(_head_weight(state))

    def on_before_optimizer_step(self, state):
        self.before_step.append(_head_weight(state))


def _head_weight(state):
    return next(p for p in state.model.head.parameters() if p.ndim >= 2).detach().clone()


def test_weight_noise_is_removed_before_the_update(classification_data, tmp_path):
    spy = WeightsAtStep()
    cfg = make_config(
        classification_data, tmp_path, R + "weight_noise.enabled=true", R + "weight_noise.std=0.1"
    )
    train(cfg, plugins=[spy])
    for start, inside, before in zip(spy.start, spy.inside, spy.before_step, strict=True):
        assert not torch.equal(start, inside)
        assert (inside - start).std().item() == pytest.approx(0.1, rel=0.3)
        assert torch.allclose(start, before, atol=1e-6)  # back to the clean weights before the step


def test_activation_noise_only_in_training(classification_data, tmp_path):
    from protfit.training.setup import setup_run

    cfg = make_config(classification_data, tmp_path, R + "activation_noise.enabled=true", method="freeze")
    parts = setup_run(cfg)
    head = parts.model.head
    pooled = torch.randn(4, 32)
    head.eval()
    assert torch.equal(head(pooled), head(pooled))
    head.train()
    torch.manual_seed(0)
    assert not torch.allclose(head(pooled), head(pooled))


def test_gradient_noise_is_annealed():
    noise = GradientNoise(GradientNoiseConfig(enabled=True, eta=0.3, gamma=0.55))
    assert noise.std(0) == pytest.approx(math.sqrt(0.3))
    assert noise.std(99) == pytest.approx(math.sqrt(0.3 / 100**0.55))
