"""Gradient clipping by value: every element within [-value, value] right before the step."""

from __future__ import annotations

import torch

from protfit.regularization.clipping import ClipValue
from protfit.regularization.sections.clipping import ClipValueConfig


class _State:
    def __init__(self, model):
        self.model = model


def test_every_gradient_element_is_clamped():
    model = torch.nn.Linear(4, 3)
    (model(torch.randn(8, 4)) * 100).sum().backward()
    before = model.weight.grad.clone()
    assert before.abs().max() > 0.5
    ClipValue(ClipValueConfig(enabled=True, value=0.5)).on_after_clip(_State(model))
    assert torch.equal(model.weight.grad, before.clamp(-0.5, 0.5))
    assert model.bias.grad.abs().max() <= 0.5
