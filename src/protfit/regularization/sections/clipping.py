"""The config section ``regularization.clip_value``; the plug-in: ``protfit.regularization.clipping``."""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class ClipValueConfig(Technique):
    """Clip every gradient element to [-value, value] (after train.max_grad_norm, before the step)."""

    value: float = Field(1.0, gt=0.0, description="Largest absolute gradient element")


register_regularizer(
    "clip_value",
    ClipValueConfig,
    "clip every gradient element to [-value, value]",
    plugin="protfit.regularization.clipping:ClipValue",
)
