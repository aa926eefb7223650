"""Early stopping on a validation quantity whose direction comes from the metric itself.

The monitored metric can be undefined (nan) at an epoch: Spearman of a constant prediction, MCC
with a single class. Such an epoch never beats an epoch with a defined value; while no epoch has
one, epochs are ordered by validation loss so the run still keeps a checkpoint to test. Either way
``best_value`` is the monitored metric at the best epoch (None when it was undefined there): a
fallback changes which epoch is kept, never what the value means. (The sweep once ranked a
constant predictor first because the fallback stored its loss, 0.94, as its Spearman.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal


@dataclass
class EarlyStopping:
    monitor: str
    mode: Literal["min", "max"]
    patience: int | None
    min_delta: float = 0.0
    best_value: float | None = None
    best_loss: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0

    def update(self, value: float, loss: float, epoch: int) -> bool:
        """Record one epoch's monitored value and validation loss; True when it is the new best."""
        if math.isnan(value):
            # undefined: kept only while no epoch had a defined value, then by the lower loss
            improved = (
                self.best_value is None
                and not math.isnan(loss)
                and (self.best_loss is None or loss < self.best_loss)
            )
        else:
            improved = self.best_value is None or (
                value < self.best_value - self.min_delta
                if self.mode == "min"
                else value > self.best_value + self.min_delta
            )
        if improved:
            self.best_value = None if math.isnan(value) else value
            self.best_loss, self.best_epoch, self.epochs_without_improvement = loss, epoch, 0
        else:
            self.epochs_without_improvement += 1
        return improved

    @property
    def selected_by_loss(self) -> bool:
        """The kept epoch was chosen by validation loss: the metric was undefined at every epoch."""
        return self.best_epoch is not None and self.best_value is None and self.monitor != "loss"

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        known = {item.name for item in fields(self)}
        for key, value in state.items():
            if key in known:  # checkpoints of older versions carry keys that no longer exist
                setattr(self, key, value)
