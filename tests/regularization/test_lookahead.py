"""Lookahead: every k optimizer steps the weights become slow + alpha (fast - slow); survives --resume."""

from __future__ import annotations

import pytest
import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.regularization.lookahead import Lookahead
from protfit.regularization.sections.lookahead import LookaheadConfig
from protfit.training.train import train


class _State:
    def __init__(self, model):
        self.model = model


def test_interpolates_every_k_steps():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plugin = Lookahead(LookaheadConfig(enabled=True, k=2, alpha=0.5))
    state = _State(model)
    plugin.on_train_start(state)
    slow = {k: p.detach().clone() for k, p in model.named_parameters()}
    for step in range(1, 5):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).mean().backward()
        optimizer.step()
        fast = {k: p.detach().clone() for k, p in model.named_parameters()}
        plugin.on_after_optimizer_step(state)
        for key, p in model.named_parameters():
            if step % 2:
                assert torch.equal(p, fast[key])  # between syncs the fast weights run free
            else:
                slow[key] = slow[key] + 0.5 * (fast[key] - slow[key])
                assert torch.allclose(p, slow[key])


class InterruptAfter(Plugin):
    name = "interrupt"

    def on_epoch_end(self, state):
        if state.epoch == 1:
            raise KeyboardInterrupt


def test_resume_continues_the_cycle(classification_data, tmp_path):
    # k=2 with 3 steps per epoch: the interruption falls mid-cycle
    args = ("train.epochs=2", R + "lookahead.enabled=true", R + "lookahead.k=2")
    whole = train(make_config(classification_data, tmp_path / "a", *args, method="freeze"))
    with pytest.raises(KeyboardInterrupt):
        train(
            make_config(classification_data, tmp_path / "b", *args, method="freeze"),
            plugins=[InterruptAfter()],
        )
    resumed = train(None, resume_from=tmp_path / "b" / "run")

    def strip(rows):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in rows]

    assert strip(resumed.summary["history"]) == strip(whole.summary["history"])
    assert resumed.summary["test_metrics"] == whole.summary["test_metrics"]
