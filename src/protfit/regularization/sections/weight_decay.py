"""The config sections ``regularization.weight_decay`` and ``regularization.l2_sp``.

The plug-ins: ``protfit.regularization.weight_decay`` (imported when a run turns one on).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class WeightDecayConfig(Technique):
    """Per-component weight decay, decoupled (AdamW) or as a classic L2 penalty in the loss."""

    mode: Literal["decoupled", "l2"] = Field(
        "decoupled",
        description="decoupled: AdamW's decay; l2: lambda/2 * |w|^2 added to the loss (AdamW decay 0)",
    )
    backbone: float | None = Field(
        None, ge=0.0, description="Backbone weight decay; None: train.weight_decay"
    )
    pooler: float | None = Field(
        None, ge=0.0, description="Pooler (and adapter) weight decay; None: train.weight_decay"
    )
    head: float | None = Field(None, ge=0.0, description="Head weight decay; None: train.weight_decay")


register_regularizer(
    "weight_decay",
    WeightDecayConfig,
    "weight decay per component (backbone/pooler/head), decoupled or L2 in the loss",
    plugin="protfit.regularization.weight_decay:ComponentWeightDecay",
)


class L2SPConfig(Technique):
    """L2-SP (Li et al. 2018): pull trained backbone weights toward their pretrained values."""

    alpha: float = Field(
        0.01, gt=0.0, description="alpha/2 * |w - w_pretrained|^2 over trained backbone weights"
    )
    beta: float = Field(
        0.0, ge=0.0, description="beta/2 * |w|^2 over pooler and head weight matrices (0: off)"
    )


register_regularizer(
    "l2_sp",
    L2SPConfig,
    "L2-SP: penalty toward the pretrained weights instead of toward zero",
    plugin="protfit.regularization.weight_decay:L2SP",
)
