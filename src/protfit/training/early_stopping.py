"""Early stopping on a validation quantity whose direction comes from the metric itself."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal


@dataclass
class EarlyStopping:
    monitor: str
    mode: Literal["min", "max"]
    patience: int | None
    min_delta: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    fallback_reason: str | None = None

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; True when it is the new best."""
        improved = not math.isnan(value) and (
            self.best_value is None
            or (
                value < self.best_value - self.min_delta
                if self.mode == "min"
                else value > self.best_value + self.min_delta
            )
        )
        if improved:
            self.best_value, self.best_epoch, self.epochs_without_improvement = value, epoch, 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def fall_back_to_loss(self, reason: str) -> None:
        """Monitor validation loss from now on (the configured metric is undefined on this data)."""
        self.monitor, self.mode, self.fallback_reason = "loss", "min", reason

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
