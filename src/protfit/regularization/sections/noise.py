"""The config sections ``regularization.neftune``, ``regularization.weight_noise``, ``regularization.activation_noise`` and ``regularization.gradient_noise``.

The plug-ins: ``protfit.regularization.noise`` (imported when a run turns one on).
"""

from __future__ import annotations

from pydantic import Field

from protfit.regularization.technique import Technique, register_regularizer


class NEFTuneConfig(Technique):
    """NEFTune (Jain et al. 2023): uniform noise on input embeddings, scaled by alpha / sqrt(L * d)."""

    alpha: float = Field(
        5.0, gt=0.0, description="Noise scale; the noise is alpha / sqrt(length * width) * U(-1, 1)"
    )


register_regularizer(
    "neftune",
    NEFTuneConfig,
    "NEFTune: uniform noise on input embeddings, scaled by length and width",
    plugin="protfit.regularization.noise:NEFTune",
)


class WeightNoiseConfig(Technique):
    """Gaussian noise on the trained weights during each forward/backward pass (removed before the update)."""

    std: float = Field(
        0.01, gt=0.0, description="Standard deviation of the noise added to each trained weight"
    )


register_regularizer(
    "weight_noise",
    WeightNoiseConfig,
    "Gaussian noise on the weights during each step",
    plugin="protfit.regularization.noise:WeightNoise",
)


class ActivationNoiseConfig(Technique):
    """Gaussian noise on the head's input (the pooled vector) during training."""

    std: float = Field(0.1, gt=0.0, description="Standard deviation, relative to the batch's feature std")


register_regularizer(
    "activation_noise",
    ActivationNoiseConfig,
    "Gaussian noise on the head's input",
    plugin="protfit.regularization.noise:ActivationNoise",
)


class GradientNoiseConfig(Technique):
    """Annealed gradient noise (Neelakantan et al. 2015): N(0, eta / (1 + t)^gamma) added to gradients."""

    eta: float = Field(0.01, gt=0.0, description="Noise variance at step 0")
    gamma: float = Field(0.55, ge=0.0, description="Annealing exponent of the variance")


register_regularizer(
    "gradient_noise",
    GradientNoiseConfig,
    "annealed Gaussian gradient noise",
    plugin="protfit.regularization.noise:GradientNoise",
)
