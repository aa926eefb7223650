"""The config sections ``regularization.swa`` and ``regularization.ema``.

The plug-ins: ``protfit.regularization.averaging`` (imported when a run turns one on).
"""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class SWAConfig(Technique):
    """Stochastic weight averaging (Izmailov et al. 2018); the average is validated, tested and saved."""

    start_epoch: int = Field(1, ge=1, description="First epoch whose end weights enter the average")
    lr: float | None = Field(
        None, gt=0.0, description="Constant learning rate from start_epoch on; None: keep the schedule"
    )
    anneal_epochs: int = Field(
        0, ge=0, description="Epochs of linear annealing from the scheduled LR to `lr`"
    )
    update_bn: bool = Field(
        True, description="Recompute BatchNorm statistics for the averaged weights (if any)"
    )


register_regularizer(
    "swa",
    SWAConfig,
    "stochastic weight averaging from a start epoch, with an SWA learning rate",
    plugin="protfit.regularization.averaging:SWA",
)


class EMAConfig(Technique):
    """Exponential moving average of the weights; the average is validated, tested and saved."""

    decay: float = Field(
        0.99, gt=0.0, lt=1.0, description="shadow = decay * shadow + (1 - decay) * weights, per step"
    )


register_regularizer(
    "ema",
    EMAConfig,
    "exponential moving average of the weights (validated, tested and saved)",
    plugin="protfit.regularization.averaging:EMA",
)
