"""SAM / ASAM: the second pass runs at w + e with |e| = rho, and the weights are restored before the
optimizer steps; with gradient accumulation the ascent uses the whole step's gradient."""

from __future__ import annotations

import pytest
import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.training.train import train


def trained(state):
    return torch.cat([p.detach().flatten() for p in state.model.parameters() if p.requires_grad])


class PassSpy(Plugin):
    """Inside SAM (user plug-ins nest inside the config's): sees each pass's weights."""

    name = "pass_spy"

    def __init__(self):
        self.passes, self.at_step, self.start = [], [], []

    def transform_batch(self, state, batch):
        if not self.start or len(self.start) == len(self.at_step):
            self.start.append(trained(state))
        return batch

    def training_step(self, state, step, proceed):
        self.passes.append(trained(state))
        return proceed()

    def on_before_optimizer_step(self, state):
        self.at_step.append(trained(state))


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_ascends_then_restores_the_weights(classification_data, tmp_path, adaptive):
    spy = PassSpy()
    cfg = make_config(
        classification_data,
        tmp_path,
        "train.gradient_accumulation_steps=3",
        R + "sam.enabled=true",
        R + "sam.rho=0.05",
        f"{R}sam.adaptive={str(adaptive).lower()}",
        method="freeze",
    )
    train(cfg, plugins=[spy])
    assert len(spy.passes) == 2 * len(spy.at_step) == 2  # 3 micro-batches, one step, two passes
    clean, perturbed = spy.passes
    assert torch.equal(clean, spy.start[0])
    if not adaptive:
        assert float((perturbed - clean).norm()) == pytest.approx(0.05, rel=1e-3)
    else:
        assert float((perturbed - clean).norm()) > 0
    assert torch.allclose(spy.at_step[0], clean, atol=1e-7)  # restored before clipping and the step
