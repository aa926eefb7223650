"""The ``regularization:`` section of a run config: one sub-section per technique.

Convention: a technique is on when its sub-section says ``enabled: true``
(``regularization.ema.enabled=true``); every other field has a default, so turning one on is one key.
Only the overfitting diagnostics are on by default. Combinations that cannot work are refused here,
before any data or model loads (``check_regularization``, called by ``RunConfig``'s cross checks);
checks that need the built model live in the plug-ins' ``configure_*`` hooks, which also run before
any training. No torch import here: the config is read before torch is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from protfit.config import RunConfig


class _Technique(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description="Turn the technique on")


class DropoutConfig(_Technique):
    """Override of the backbone's dropout probabilities (hidden and attention), optionally by layer."""

    hidden: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="Hidden-state dropout of every backbone layer; None: the model's own",
    )
    attention: float | None = Field(
        None, ge=0.0, lt=1.0, description="Attention-probability dropout of every backbone layer; None: keep"
    )
    layerwise_step: float | None = Field(
        None,
        ge=-1.0,
        lt=1.0,
        description="Layer-wise hidden dropout: layer i (0 = bottom) gets hidden + i * layerwise_step",
    )
    per_layer: list[float] | None = Field(
        None, description="Hidden dropout per backbone layer, bottom first (one value per layer)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DropoutConfig:
        if self.layerwise_step is not None and self.per_layer is not None:
            raise ValueError("give regularization.dropout.layerwise_step or per_layer, not both")
        if self.layerwise_step is not None and self.hidden is None:
            raise ValueError(
                "regularization.dropout.layerwise_step needs the bottom layer's value in `hidden`"
            )
        if any(not 0.0 <= p < 1.0 for p in self.per_layer or []):
            raise ValueError(f"regularization.dropout.per_layer values must be in [0, 1): {self.per_layer}")
        return self


class ScheduledDropoutConfig(_Technique):
    """Dropout that moves from ``start`` to ``end`` over the run (per epoch or per optimizer step)."""

    start: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability at the start of training")
    end: float = Field(0.3, ge=0.0, lt=1.0, description="Dropout probability at the end of training")
    shape: Literal["linear", "cosine"] = Field("linear", description="Interpolation from start to end")
    unit: Literal["epoch", "step"] = Field(
        "epoch", description="Update once per epoch or every optimizer step"
    )
    target: Literal["head", "backbone", "all"] = Field(
        "head", description="Which dropout modules follow the schedule: the head's, the backbone's, or both"
    )


class WeightDecayConfig(_Technique):
    """Per-component weight decay, decoupled (AdamW) or as a classic L2 penalty in the loss."""

    mode: Literal["decoupled", "l2"] = Field(
        "decoupled",
        description="decoupled: AdamW's decay; l2: lambda/2 * |w|^2 added to the loss (AdamW decay 0)",
    )
    backbone: float | None = Field(
        None, ge=0.0, description="Backbone weight decay; None: train.weight_decay"
    )
    pooler: float | None = Field(
        None, ge=0.0, description="Pooler (and adapter) weight decay; None: train.weight_decay"
    )
    head: float | None = Field(None, ge=0.0, description="Head weight decay; None: train.weight_decay")


class L2SPConfig(_Technique):
    """L2-SP (Li et al. 2018): pull trained backbone weights toward their pretrained values."""

    alpha: float = Field(
        0.01, gt=0.0, description="alpha/2 * |w - w_pretrained|^2 over trained backbone weights"
    )
    beta: float = Field(
        0.0, ge=0.0, description="beta/2 * |w|^2 over pooler and head weight matrices (0: off)"
    )


class LayerwiseLRConfig(_Technique):
    """Layer-wise learning-rate decay (ULMFiT / ELECTRA): top layer base LR, each layer below x decay."""

    decay: float = Field(
        0.8, gt=0.0, le=1.0, description="LR factor per layer going down; embeddings get decay^layers"
    )
    head_lr: float | None = Field(
        None, gt=0.0, description="Learning rate of pooler, adapter and head; None: train.learning_rate"
    )


class FreezeLayersConfig(_Technique):
    """Freeze the bottom k backbone layers (and the embeddings)."""

    bottom: int = Field(1, ge=1, description="Number of bottom layers to freeze (embeddings are frozen too)")


class GradualUnfreezingConfig(_Technique):
    """ULMFiT's gradual unfreezing: one more backbone layer (from the top) trains every n epochs."""

    every: int = Field(1, ge=1, description="Epochs between unfreezing steps")
    start_layers: int = Field(
        0, ge=0, description="Top layers trainable from epoch 1 (0: only pooler and head)"
    )


class ReinitLayersConfig(_Technique):
    """Re-initialise the top k backbone layers before fine-tuning (Zhang et al. 2021)."""

    top: int = Field(1, ge=1, description="Number of top layers to re-initialise")


class ClipValueConfig(_Technique):
    """Clip every gradient element to [-value, value] (after train.max_grad_norm, before the step)."""

    value: float = Field(1.0, gt=0.0, description="Largest absolute gradient element")


class NEFTuneConfig(_Technique):
    """NEFTune (Jain et al. 2023): uniform noise on input embeddings, scaled by alpha / sqrt(L * d)."""

    alpha: float = Field(
        5.0, gt=0.0, description="Noise scale; the noise is alpha / sqrt(length * width) * U(-1, 1)"
    )


class WeightNoiseConfig(_Technique):
    """Gaussian noise on the trained weights during each forward/backward pass (removed before the update)."""

    std: float = Field(
        0.01, gt=0.0, description="Standard deviation of the noise added to each trained weight"
    )


class ActivationNoiseConfig(_Technique):
    """Gaussian noise on the head's input (the pooled vector) during training."""

    std: float = Field(0.1, gt=0.0, description="Standard deviation, relative to the batch's feature std")


class GradientNoiseConfig(_Technique):
    """Annealed gradient noise (Neelakantan et al. 2015): N(0, eta / (1 + t)^gamma) added to gradients."""

    eta: float = Field(0.01, gt=0.0, description="Noise variance at step 0")
    gamma: float = Field(0.55, ge=0.0, description="Annealing exponent of the variance")


class LabelSmoothingConfig(_Technique):
    """Label smoothing for classification (single- and multi-label)."""

    epsilon: float = Field(0.1, gt=0.0, lt=1.0, description="Probability mass spread over all classes")


class RDropConfig(_Technique):
    """R-Drop (Liang et al. 2021): a second dropout pass, penalise the divergence of the two predictions."""

    alpha: float = Field(
        1.0, gt=0.0, description="Weight of the symmetric KL (MSE for regression) between the passes"
    )


class SWAConfig(_Technique):
    """Stochastic weight averaging (Izmailov et al. 2018); the average is validated, tested and saved."""

    start_epoch: int = Field(1, ge=1, description="First epoch whose end weights enter the average")
    lr: float | None = Field(
        None, gt=0.0, description="Constant learning rate from start_epoch on; None: keep the schedule"
    )
    anneal_epochs: int = Field(
        0, ge=0, description="Epochs of linear annealing from the scheduled LR to `lr`"
    )
    update_bn: bool = Field(
        True, description="Recompute BatchNorm statistics for the averaged weights (if any)"
    )


class EMAConfig(_Technique):
    """Exponential moving average of the weights; the average is validated, tested and saved."""

    decay: float = Field(
        0.99, gt=0.0, lt=1.0, description="shadow = decay * shadow + (1 - decay) * weights, per step"
    )


class SAMConfig(_Technique):
    """Sharpness-aware minimisation (Foret et al. 2021), or adaptive SAM (Kwon et al. 2021)."""

    rho: float = Field(0.05, gt=0.0, description="Radius of the ascent step (ASAM: typically 0.5-2)")
    adaptive: bool = Field(False, description="ASAM: scale the ascent by |w| (scale-invariant sharpness)")


class LookaheadConfig(_Technique):
    """Lookahead (Zhang et al. 2019) around the base optimizer: slow weights follow every k steps."""

    k: int = Field(5, ge=1, description="Fast steps between synchronisations")
    alpha: float = Field(0.5, gt=0.0, le=1.0, description="slow += alpha * (fast - slow) every k steps")


class PrivacyConfig(_Technique):
    """Differentially private SGD with Opacus: per-sample clipping and Gaussian noise; epsilon per epoch."""

    noise_multiplier: float = Field(1.0, gt=0.0, description="Noise std relative to max_grad_norm")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Per-sample gradient norm bound")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="Target delta of the (epsilon, delta) guarantee")


class AdversarialConfig(_Technique):
    """Adversarial training on the input embeddings: FGM (one step) or PGD (several projected steps)."""

    kind: Literal["fgm", "pgd"] = Field(
        "fgm", description="fgm: one normalised gradient step; pgd: `steps` steps"
    )
    epsilon: float = Field(1.0, gt=0.0, description="Radius (L2 norm per sequence) of the perturbation")
    steps: int = Field(3, ge=1, description="pgd: ascent steps")
    step_size: float | None = Field(
        None, gt=0.0, description="pgd: size of one step; None: epsilon / steps * 2"
    )


class AugmentationConfig(_Technique):
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


class DiagnosticsConfig(BaseModel):
    """Overfitting diagnostics, on in every run (docs/regularization.md: the rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
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


class RegularizationConfig(BaseModel):
    """One sub-section per technique; see docs/regularization.md for when to use each and its cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dropout: DropoutConfig = Field(default_factory=DropoutConfig)
    scheduled_dropout: ScheduledDropoutConfig = Field(default_factory=ScheduledDropoutConfig)
    weight_decay: WeightDecayConfig = Field(default_factory=WeightDecayConfig)
    l2_sp: L2SPConfig = Field(default_factory=L2SPConfig)
    layerwise_lr: LayerwiseLRConfig = Field(default_factory=LayerwiseLRConfig)
    freeze_layers: FreezeLayersConfig = Field(default_factory=FreezeLayersConfig)
    gradual_unfreezing: GradualUnfreezingConfig = Field(default_factory=GradualUnfreezingConfig)
    reinit_layers: ReinitLayersConfig = Field(default_factory=ReinitLayersConfig)
    clip_value: ClipValueConfig = Field(default_factory=ClipValueConfig)
    neftune: NEFTuneConfig = Field(default_factory=NEFTuneConfig)
    weight_noise: WeightNoiseConfig = Field(default_factory=WeightNoiseConfig)
    activation_noise: ActivationNoiseConfig = Field(default_factory=ActivationNoiseConfig)
    gradient_noise: GradientNoiseConfig = Field(default_factory=GradientNoiseConfig)
    label_smoothing: LabelSmoothingConfig = Field(default_factory=LabelSmoothingConfig)
    rdrop: RDropConfig = Field(default_factory=RDropConfig)
    swa: SWAConfig = Field(default_factory=SWAConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    sam: SAMConfig = Field(default_factory=SAMConfig)
    lookahead: LookaheadConfig = Field(default_factory=LookaheadConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    def techniques(self) -> list[str]:
        """Names of every technique sub-section (diagnostics excluded)."""
        return [name for name in type(self).model_fields if name != "diagnostics"]

    def enabled(self) -> list[str]:
        """Names of the techniques that are on (diagnostics excluded)."""
        return [name for name in self.techniques() if getattr(self, name).enabled]


# Methods whose backbone runs frozen (eval mode, no gradient): techniques that act inside the backbone
# have nothing to act on there, unless gradual unfreezing makes layers train.
_FROZEN_BACKBONE_METHODS = ("freeze", "ses_adapter")
_BACKBONE_TECHNIQUES = ("layerwise_lr", "freeze_layers", "reinit_layers", "l2_sp", "adversarial")


def check_regularization(cfg: RunConfig) -> None:
    """Refuse combinations that cannot work, with the reason; called from RunConfig's cross checks."""
    reg, method, problem = cfg.regularization, cfg.model.method, cfg.data.problem_type
    on = set(reg.enabled())
    if {"swa", "ema"} <= on:
        raise ValueError("regularization.swa and regularization.ema average the same weights; enable one")
    if "label_smoothing" in on and problem == "regression":
        raise ValueError("regularization.label_smoothing is for classification; this run is a regression")
    if method in _FROZEN_BACKBONE_METHODS and "gradual_unfreezing" not in on:
        for name in sorted(on & set(_BACKBONE_TECHNIQUES)):
            raise ValueError(
                f"regularization.{name} acts on backbone weights, but model.method={method} keeps the "
                "backbone frozen (no gradient reaches it); use full or a LoRA-type method, or enable "
                "regularization.gradual_unfreezing"
            )
        if reg.dropout.enabled or (
            reg.scheduled_dropout.enabled and reg.scheduled_dropout.target == "backbone"
        ):
            raise ValueError(
                f"backbone dropout has no effect with model.method={method}: a frozen backbone runs in "
                "eval mode; change the head's dropout (model.head.dropout) or scheduled_dropout.target=head"
            )
    if reg.dropout.enabled and reg.scheduled_dropout.enabled and reg.scheduled_dropout.target != "head":
        raise ValueError(
            "regularization.dropout and scheduled_dropout (target backbone/all) both set the backbone's "
            "dropout; use scheduled_dropout.target=head or one of the two"
        )
    if {"freeze_layers", "gradual_unfreezing"} <= on:
        raise ValueError(
            "regularization.freeze_layers and gradual_unfreezing both decide which layers train; enable one"
        )
    if "privacy" in on:
        _check_privacy(cfg, on)


def _check_privacy(cfg: RunConfig, on: set[str]) -> None:
    if cfg.model.method != "freeze":
        raise ValueError(
            f"regularization.privacy (Opacus DP-SGD) supports model.method=freeze only (per-sample gradients "
            f"of the pooler and head); model.method={cfg.model.method} trains backbone layers or adapters whose "
            "per-sample gradients Opacus cannot compute here"
        )
    if cfg.train.gradient_accumulation_steps != 1:
        raise ValueError(
            "regularization.privacy needs train.gradient_accumulation_steps=1 (one noisy step per batch)"
        )
    conflicting = sorted(on & {"sam", "rdrop", "adversarial", "l2_sp", "gradual_unfreezing"})
    if cfg.regularization.weight_decay.enabled and cfg.regularization.weight_decay.mode == "l2":
        conflicting.append("weight_decay.mode=l2")
    if conflicting:
        raise ValueError(
            f"regularization.privacy cannot be combined with {', '.join(conflicting)}: DP-SGD builds each "
            "step's gradient from clipped per-sample gradients of one forward pass, so extra passes and "
            "loss terms outside them are not private (or are lost)"
        )
