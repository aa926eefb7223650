"""The config sections ``regularization.label_smoothing`` and ``regularization.rdrop``.

The plug-ins: ``protfit.regularization.losses`` (imported when a run turns one on).
"""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class LabelSmoothingConfig(Technique):
    """Label smoothing for classification (single- and multi-label)."""

    epsilon: float = Field(0.1, gt=0.0, lt=1.0, description="Probability mass spread over all classes")


register_regularizer(
    "label_smoothing",
    LabelSmoothingConfig,
    "label smoothing for classification",
    plugin="protfit.regularization.losses:LabelSmoothing",
)


class RDropConfig(Technique):
    """R-Drop (Liang et al. 2021): a second dropout pass, penalise the divergence of the two predictions."""

    alpha: float = Field(
        1.0, gt=0.0, description="Weight of the symmetric KL (MSE for regression) between the passes"
    )


register_regularizer(
    "rdrop",
    RDropConfig,
    "R-Drop: consistency between two dropout passes",
    plugin="protfit.regularization.losses:RDrop",
)
