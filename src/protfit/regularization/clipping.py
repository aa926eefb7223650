"""Gradient clipping by value (clipping by norm is ``train.max_grad_norm``, applied first)."""

from __future__ import annotations

import torch

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.sections.clipping import ClipValueConfig


class ClipValue(Plugin):
    name = "clip_value"

    def __init__(self, cfg: ClipValueConfig) -> None:
        self.cfg = cfg

    def on_after_clip(self, state: TrainingState) -> None:
        torch.nn.utils.clip_grad_value_(
            [p for p in state.model.parameters() if p.grad is not None], self.cfg.value
        )
