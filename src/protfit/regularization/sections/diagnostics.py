"""The config section ``regularization.diagnostics``; the plug-in: ``protfit.regularization.diagnostics``."""

from __future__ import annotations

from pydantic import Field, model_validator

from protfit.regularization.technique import Technique, register_regularizer


class DiagnosticsConfig(Technique):
    """Overfitting diagnostics, on in every run (docs/regularization.md: the rules)."""

    enabled: bool = Field(True, description="Evaluate the training split each epoch and diagnose overfitting")
    train_rows: int = Field(
        1000,
        ge=1,
        description="Train rows evaluated per epoch: all when the split is smaller than max(train_rows, "
        "validation rows), else a fixed random subset of that size",
    )
    mild_gap: float = Field(
        0.05, ge=0.0, description="Metric gap (train - val) from which the verdict is mild"
    )
    severe_gap: float = Field(
        0.15, ge=0.0, description="Metric gap (train - val) from which the verdict is severe"
    )
    loss_rise: float = Field(
        0.1,
        ge=0.0,
        description="mild when validation loss is this share above its minimum so far (x3: severe)",
    )
    saturation: float = Field(
        0.98, gt=0.0, le=1.0, description="A bounded training metric at or above this counts as memorised"
    )
    stall_epochs: int = Field(2, ge=1, description="Epochs without a validation best that count as a stall")
    undertrained_window: int = Field(
        2, ge=1, description="undertrained: best epoch within the last this-many epochs and still rising"
    )

    @model_validator(mode="after")
    def _ordered(self) -> DiagnosticsConfig:
        if self.severe_gap < self.mild_gap:
            raise ValueError("regularization.diagnostics.severe_gap must be >= mild_gap")
        return self


register_regularizer(
    "diagnostics",
    DiagnosticsConfig,
    "overfitting diagnostics: train-validation gap, verdict, advice (on by default)",
    plugin="protfit.regularization.diagnostics:OverfittingDiagnostics",
)
