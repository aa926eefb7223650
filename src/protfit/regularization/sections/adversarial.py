"""The config section ``regularization.adversarial``; the plug-in: ``protfit.regularization.adversarial``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class AdversarialConfig(Technique):
    """Adversarial training on the input embeddings: FGM (one step) or PGD (several projected steps)."""

    kind: Literal["fgm", "pgd"] = Field(
        "fgm", description="fgm: one normalised gradient step; pgd: `steps` steps"
    )
    epsilon: float = Field(1.0, gt=0.0, description="Radius (L2 norm per sequence) of the perturbation")
    steps: int = Field(3, ge=1, description="pgd: ascent steps")
    step_size: float | None = Field(
        None, gt=0.0, description="pgd: size of one step; None: epsilon / steps * 2"
    )


register_regularizer(
    "adversarial",
    AdversarialConfig,
    "adversarial training on input embeddings (FGM / PGD)",
    plugin="protfit.regularization.adversarial:Adversarial",
)
