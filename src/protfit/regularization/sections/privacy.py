"""The config section ``regularization.privacy``; the plug-in: ``protfit.regularization.privacy``."""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class PrivacyConfig(Technique):
    """Differentially private SGD with Opacus: per-sample clipping and Gaussian noise; epsilon per epoch."""

    noise_multiplier: float = Field(1.0, gt=0.0, description="Noise std relative to max_grad_norm")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Per-sample gradient norm bound")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="Target delta of the (epsilon, delta) guarantee")


register_regularizer(
    "privacy",
    PrivacyConfig,
    "differentially private training with Opacus (DP-SGD; epsilon per epoch)",
    plugin="protfit.regularization.privacy:DifferentialPrivacy",
)
