"""Lookahead (Zhang et al. 2019) around the base optimizer (AdamW).

Slow weights phi start at the initial weights; after every k optimizer steps of the base optimizer
(the fast weights theta), phi += alpha (theta - phi) and theta = phi. Written as a plug-in rather than
an optimizer wrapper, so the base optimizer's state, the scheduler and checkpoints are unchanged;
the slow weights and the step counter travel in the plug-in state, so --resume continues the cycle.
"""

from __future__ import annotations

from typing import Any

import torch

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.layers import trained_parameters
from protfit.regularization.sections.lookahead import LookaheadConfig


class Lookahead(Plugin):
    name = "lookahead"

    def __init__(self, cfg: LookaheadConfig) -> None:
        self.cfg = cfg
        self.slow: dict[str, torch.Tensor] = {}
        self.steps = 0

    def on_train_start(self, state: TrainingState) -> None:
        if not self.slow:
            self.slow = {k: p.detach().clone() for k, p in trained_parameters(state.model).items()}

    @torch.no_grad()
    def on_after_optimizer_step(self, state: TrainingState) -> None:
        self.steps += 1
        if self.steps % self.cfg.k:
            return
        for name, p in trained_parameters(state.model).items():
            slow = self.slow[name]
            slow.add_(p.detach() - slow, alpha=self.cfg.alpha)
            p.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow, self.steps = dict(state["slow"]), int(state["steps"])
