"""The config section ``regularization.layerwise_lr``.

The plug-in: ``protfit.regularization.layerwise_lr`` (imported when a run turns it on).
"""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class LayerwiseLRConfig(Technique):
    """Layer-wise learning-rate decay (ULMFiT / ELECTRA): top layer base LR, each layer below x decay."""

    decay: float = Field(
        0.8, gt=0.0, le=1.0, description="LR factor per layer going down; embeddings get decay^layers"
    )
    head_lr: float | None = Field(
        None, gt=0.0, description="Learning rate of pooler, adapter and head; None: train.learning_rate"
    )


register_regularizer(
    "layerwise_lr",
    LayerwiseLRConfig,
    "layer-wise learning-rate decay for the backbone, separate head LR",
    plugin="protfit.regularization.layerwise_lr:LayerwiseLR",
)
