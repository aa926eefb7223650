from __future__ import annotations

import pytest
import torch
from torch import nn

from protfit.config import HeadConfig
from protfit.models.heads import SafeBatchNorm1d, build_head


@pytest.mark.parametrize("norm", ["none", "layernorm", "batchnorm"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
def test_head_shapes_for_every_norm_and_activation(norm, activation):
    head = build_head(12, 3, HeadConfig(hidden_dims=[8, 4], norm=norm, activation=activation)).train()
    assert head(torch.randn(5, 12)).shape == (5, 3)
    kinds = [type(module) for module in head]
    assert kinds.count(nn.Linear) == 3
    norm_kind = {"none": nn.Identity, "layernorm": nn.LayerNorm, "batchnorm": SafeBatchNorm1d}[norm]
    assert kinds.count(norm_kind) == 2


def test_empty_hidden_dims_is_a_linear_head():
    head = build_head(12, 1, HeadConfig(hidden_dims=[]))
    assert len(head) == 1 and isinstance(head[0], nn.Linear)


@pytest.mark.parametrize("init", ["xavier", "kaiming", "normal"])
def test_init_schemes_zero_the_biases(init):
    torch.manual_seed(0)
    head = build_head(64, 2, HeadConfig(hidden_dims=[32], init=init))
    linears = [module for module in head if isinstance(module, nn.Linear)]
    assert all((linear.bias == 0).all() for linear in linears)
    std = linears[0].weight.std().item()
    expected = {"xavier": (2 / (64 + 32)) ** 0.5, "kaiming": (2 / 64) ** 0.5, "normal": 0.02}[init]
    assert std == pytest.approx(expected, rel=0.15)


def test_dropout_is_the_configured_rate():
    head = build_head(4, 2, HeadConfig(hidden_dims=[4], dropout=0.3))
    assert [module.p for module in head if isinstance(module, nn.Dropout)] == [0.3]


def test_batchnorm_head_trains_on_a_batch_of_one():
    head = build_head(6, 2, HeadConfig(hidden_dims=[4], norm="batchnorm", dropout=0.0)).train()
    norm = head[1]
    head(torch.randn(8, 6))  # an ordinary batch updates the running statistics
    running = norm.running_mean.clone(), norm.running_var.clone()
    single = torch.randn(1, 6)
    out = head(single)  # the last batch of an epoch can hold one sample
    assert out.shape == (1, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert head[0].weight.grad is not None
    assert torch.equal(norm.running_mean, running[0]) and torch.equal(norm.running_var, running[1])
    head.eval()
    torch.testing.assert_close(head(single), out.detach())  # a batch of one is normalised as in eval
