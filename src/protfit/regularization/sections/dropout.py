"""The config sections ``regularization.dropout`` and ``regularization.scheduled_dropout``.

The plug-ins: ``protfit.regularization.dropout`` (imported when a run turns one on).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from protfit.regularization.technique import Technique, register_regularizer


class DropoutConfig(Technique):
    """Override of the backbone's dropout probabilities (hidden and attention), optionally by layer."""

    hidden: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="Hidden-state dropout of every backbone layer; None: the model's own",
    )
    attention: float | None = Field(
        None, ge=0.0, lt=1.0, description="Attention-probability dropout of every backbone layer; None: keep"
    )
    layerwise_step: float | None = Field(
        None,
        ge=-1.0,
        lt=1.0,
        description="Layer-wise hidden dropout: layer i (0 = bottom) gets hidden + i * layerwise_step",
    )
    per_layer: list[float] | None = Field(
        None, description="Hidden dropout per backbone layer, bottom first (one value per layer)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DropoutConfig:
        if self.layerwise_step is not None and self.per_layer is not None:
            raise ValueError("give regularization.dropout.layerwise_step or per_layer, not both")
        if self.layerwise_step is not None and self.hidden is None:
            raise ValueError(
                "regularization.dropout.layerwise_step needs the bottom layer's value in `hidden`"
            )
        if any(not 0.0 <= p < 1.0 for p in self.per_layer or []):
            raise ValueError(f"regularization.dropout.per_layer values must be in [0, 1): {self.per_layer}")
        return self


register_regularizer(
    "dropout",
    DropoutConfig,
    "override the backbone's hidden/attention dropout, flat or per layer",
    plugin="protfit.regularization.dropout:BackboneDropout",
)


class ScheduledDropoutConfig(Technique):
    """Dropout that moves from ``start`` to ``end`` over the run (per epoch or per optimizer step)."""

    start: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability at the start of training")
    end: float = Field(0.3, ge=0.0, lt=1.0, description="Dropout probability at the end of training")
    shape: Literal["linear", "cosine"] = Field("linear", description="Interpolation from start to end")
    unit: Literal["epoch", "step"] = Field(
        "epoch", description="Update once per epoch or every optimizer step"
    )
    target: Literal["head", "backbone", "all"] = Field(
        "head", description="Which dropout modules follow the schedule: the head's, the backbone's, or both"
    )


register_regularizer(
    "scheduled_dropout",
    ScheduledDropoutConfig,
    "dropout that moves linearly or by cosine from start to end",
    plugin="protfit.regularization.dropout:ScheduledDropout",
)
