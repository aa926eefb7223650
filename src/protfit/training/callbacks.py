"""Hooks into the training loop.

Techniques that act around an optimizer step or at epoch ends (EMA/SWA weights, noise injection,
scheduled dropout, diagnostics) plug in here as a `Callback` instead of edits to the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from protfit.config import RunConfig


@dataclass
class TrainingState:
    config: RunConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    run_dir: Any
    epoch: int = 0
    global_step: int = 0
    epoch_record: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Override any hook; every hook receives the live training state."""

    def on_train_start(self, state: TrainingState) -> None: ...

    def on_before_optimizer_step(self, state: TrainingState) -> None: ...

    def on_after_optimizer_step(self, state: TrainingState) -> None: ...

    def on_epoch_end(self, state: TrainingState) -> None: ...

    def on_train_end(self, state: TrainingState) -> None: ...


class CallbackList:
    def __init__(self, callbacks: list[Callback] | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def run_all(state: TrainingState) -> None:
            for callback in self.callbacks:
                getattr(callback, hook)(state)

        return run_all
