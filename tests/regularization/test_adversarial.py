"""FGM / PGD on the input embeddings: passes per step, perturbation size, clean evaluation."""

from __future__ import annotations

import pytest
import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.regularization.adversarial import _normalised, _project
from protfit.regularization.layers import input_embeddings
from protfit.training.train import train


class Perturbations(Plugin):
    """Per forward of a training batch: the per-sequence norm of (embedding output - clean table lookup)."""

    name = "perturbations"

    def __init__(self):
        self.norms, self.losses = [], 0

    def configure_model(self, parts):
        def hook(module, inputs, output):
            if parts.model.training:
                clean = torch.nn.functional.embedding(inputs[0], module.weight)
                self.norms.append((output - clean).detach().flatten(1).norm(dim=1))

        input_embeddings(parts.model).register_forward_hook(hook)

    def loss(self, state, batch, logits, loss):
        self.losses += 1


@pytest.mark.parametrize(("kind", "passes"), [("fgm", 2), ("pgd", 2 + 2)])
def test_passes_and_perturbation_size(classification_data, tmp_path, kind, passes):
    spy = Perturbations()
    cfg = make_config(
        classification_data,
        tmp_path,
        R + "adversarial.enabled=true",
        f"{R}adversarial.kind={kind}",
        R + "adversarial.epsilon=0.5",
        R + "adversarial.steps=2",
        method="lora",
    )
    train(cfg, plugins=[spy])
    assert spy.losses == passes * 3  # 3 micro-batches
    clean, last = spy.norms[0], spy.norms[passes - 1]
    assert torch.all(clean == 0)
    if kind == "fgm":
        assert torch.allclose(last, torch.full_like(last, 0.5), rtol=1e-4)
    else:
        assert torch.all(last <= 0.5 * (1 + 1e-4)) and torch.all(last > 0)


def test_projection_keeps_the_ball():
    delta = torch.randn(3, 4, 5) * 10
    assert torch.all(_project(delta, 1.0).flatten(1).norm(dim=1) <= 1 + 1e-5)
    assert torch.allclose(_normalised(delta).flatten(1).norm(dim=1), torch.ones(3))
