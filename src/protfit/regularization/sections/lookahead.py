"""The config section ``regularization.lookahead``; the plug-in: ``protfit.regularization.lookahead``."""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class LookaheadConfig(Technique):
    """Lookahead (Zhang et al. 2019) around the base optimizer: slow weights follow every k steps."""

    k: int = Field(5, ge=1, description="Fast steps between synchronisations")
    alpha: float = Field(0.5, gt=0.0, le=1.0, description="slow += alpha * (fast - slow) every k steps")


register_regularizer(
    "lookahead",
    LookaheadConfig,
    "Lookahead: slow weights follow the optimizer every k steps",
    plugin="protfit.regularization.lookahead:Lookahead",
)
