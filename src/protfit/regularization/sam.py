"""Sharpness-aware minimisation (Foret et al. 2021) and adaptive SAM (Kwon et al. 2021).

One optimizer step = two passes over the step's micro-batches: the first gives the gradient g at w
(accumulated over all micro-batches, so gradient accumulation is exact), the weights move to the
worst nearby point w + e (e = rho g / |g|; ASAM: e = rho |w|^2 g / | |w| g |), the second pass
gives the gradient there, and the weights go back to w before the base optimizer steps with it.
Costs a second forward and backward per step.
"""

from __future__ import annotations

from typing import Any

import torch

from protfit.plugins import Plugin, StepContext, TrainingState
from protfit.regularization.sections.sam import SAMConfig


class SAM(Plugin):
    name = "sam"

    def __init__(self, cfg: SAMConfig) -> None:
        self.cfg = cfg

    @torch.no_grad()
    def ascent(self, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
        """Move the weights to w + e in place; returns e per parameter (zeros where no gradient)."""
        adaptive = self.cfg.adaptive
        scaled = [(p.abs() * p.grad if adaptive else p.grad) for p in params if p.grad is not None]
        norm = (
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
            if scaled
            else 0
        )
        steps = []
        for p in params:
            if p.grad is None:
                steps.append(torch.zeros_like(p))
                continue
            e = p.grad * (p.pow(2) if adaptive else 1.0) * (self.cfg.rho / (norm + 1e-12))
            p.add_(e)
            steps.append(e)
        return steps

    def training_step(self, state: TrainingState, step: StepContext, proceed: Any) -> float:
        params = [p for p in state.model.parameters() if p.requires_grad]
        loss = proceed()  # gradient at w
        perturbation = self.ascent(params)
        state.optimizer.zero_grad(set_to_none=True)
        try:
            proceed()  # gradient at w + e: what the optimizer steps with
        finally:
            with torch.no_grad():
                for p, e in zip(params, perturbation, strict=True):
                    p.sub_(e)
        return loss
