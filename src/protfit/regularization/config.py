"""The ``regularization:`` section of a run config, assembled from the registered regularizers.

Convention: a technique is on when its sub-section says ``enabled: true``
(``regularization.ema.enabled=true``); every other field has a default, so turning one on is one key.
Only the overfitting diagnostics are on by default. Each sub-section is declared next to its
registration (``protfit/regularization/sections/``, or a user plug-in module; see
``protfit.regularization.technique``). Combinations that cannot work are refused here, before any
data or model loads (``check_regularization``, called by ``RunConfig``'s cross checks); checks that
need the built model live in the plug-ins' ``configure_*`` hooks, which also run before any
training. No torch import here: the config is read before torch is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from protfit.regularization.technique import regularizer_sections

if TYPE_CHECKING:
    from protfit.config import RunConfig


class RegularizationSections(BaseModel):
    """Base of the assembled ``regularization:`` model; one field per registered regularizer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def techniques(self) -> list[str]:
        """Names of every technique sub-section (the always-on diagnostics excluded)."""
        return [name for name in type(self).model_fields if name != "diagnostics"]

    def enabled(self) -> list[str]:
        """Names of the techniques that are on (diagnostics excluded)."""
        return [name for name in self.techniques() if getattr(self, name).enabled]


def assemble_regularization_config() -> type[RegularizationSections]:
    """The ``regularization:`` section: one sub-section per regularizer registered so far (the built-ins
    of ``protfit/regularization/sections/`` and any user plug-in module), so a new regularizer is its
    own module and nothing here names it."""
    fields: dict[str, Any] = {
        name: (section, Field(default_factory=section, description=description))
        for name, (section, description) in regularizer_sections().items()
    }
    return create_model(
        "RegularizationConfig",
        __base__=RegularizationSections,
        __doc__="One sub-section per technique; see docs/regularization.md for when to use each and its cost.",
        **fields,
    )


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
    if method == "adalora" and on & {"freeze_layers", "gradual_unfreezing"}:
        name = sorted(on & {"freeze_layers", "gradual_unfreezing"})[0]
        raise ValueError(
            f"regularization.{name} stops gradients to some layers' adapters, but model.method=adalora "
            "scores every adapter by its gradient to allocate ranks; use model.method=lora with it"
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
