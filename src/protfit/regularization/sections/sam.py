"""The config section ``regularization.sam``; the plug-in: ``protfit.regularization.sam``."""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class SAMConfig(Technique):
    """Sharpness-aware minimisation (Foret et al. 2021), or adaptive SAM (Kwon et al. 2021)."""

    rho: float = Field(0.05, gt=0.0, description="Radius of the ascent step (ASAM: typically 0.5-2)")
    adaptive: bool = Field(False, description="ASAM: scale the ascent by |w| (scale-invariant sharpness)")


register_regularizer(
    "sam",
    SAMConfig,
    "sharpness-aware minimisation (SAM / adaptive SAM)",
    plugin="protfit.regularization.sam:SAM",
)
