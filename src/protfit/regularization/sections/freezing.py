"""The config sections ``regularization.freeze_layers``, ``regularization.gradual_unfreezing`` and ``regularization.reinit_layers``.

The plug-ins: ``protfit.regularization.freezing`` (imported when a run turns one on).
"""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class FreezeLayersConfig(Technique):
    """Freeze the bottom k backbone layers (and the embeddings)."""

    bottom: int = Field(1, ge=1, description="Number of bottom layers to freeze (embeddings are frozen too)")


register_regularizer(
    "freeze_layers",
    FreezeLayersConfig,
    "freeze the embeddings and the bottom k backbone layers",
    plugin="protfit.regularization.freezing:FreezeLayers",
)


class GradualUnfreezingConfig(Technique):
    """ULMFiT's gradual unfreezing: one more backbone layer (from the top) trains every n epochs."""

    every: int = Field(1, ge=1, description="Epochs between unfreezing steps")
    start_layers: int = Field(
        0, ge=0, description="Top layers trainable from epoch 1 (0: only pooler and head)"
    )


register_regularizer(
    "gradual_unfreezing",
    GradualUnfreezingConfig,
    "unfreeze one more backbone layer from the top every n epochs",
    plugin="protfit.regularization.freezing:GradualUnfreezing",
)


class ReinitLayersConfig(Technique):
    """Re-initialise the top k backbone layers before fine-tuning (Zhang et al. 2021)."""

    top: int = Field(1, ge=1, description="Number of top layers to re-initialise")


register_regularizer(
    "reinit_layers",
    ReinitLayersConfig,
    "re-initialise the top k backbone layers before fine-tuning",
    plugin="protfit.regularization.freezing:ReinitLayers",
)
