"""The config section ``regularization.augmentation``.

The plug-in: ``protfit.regularization.augmentation`` (imported when a run turns it on).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from protfit.regularization.technique import Technique, register_regularizer


class AugmentationConfig(Technique):
    """On-the-fly sequence augmentation of training batches (never validation or test)."""

    substitution_prob: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of sequences that get BLOSUM62 substitutions"
    )
    substitution_rate: float = Field(
        0.1, ge=0.0, le=1.0, description="At most this share of their residues is substituted"
    )
    mask_prob: float = Field(0.0, ge=0.0, le=1.0, description="Share of sequences that get residues masked")
    mask_rate: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="At most this share of their residues becomes the mask (or unknown) token",
    )
    crop_prob: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of sequences cropped to a random sub-sequence"
    )
    crop_min_fraction: float = Field(
        0.8, gt=0.0, le=1.0, description="A crop keeps at least this share of the residues"
    )

    @model_validator(mode="after")
    def _something(self) -> AugmentationConfig:
        if self.enabled and not (self.substitution_prob or self.mask_prob or self.crop_prob):
            raise ValueError("regularization.augmentation is enabled but every *_prob is 0; set one")
        return self


register_regularizer(
    "augmentation",
    AugmentationConfig,
    "sequence augmentation: BLOSUM62 substitution, masking, cropping",
    plugin="protfit.regularization.augmentation:Augmentation",
)
