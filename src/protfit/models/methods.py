"""Training methods: what trains in a ProteinModel.

A method is one function ``(model, cfg, total_steps) -> model`` registered with
``@register_method("name")``. It sets ``requires_grad`` on parameters and ``model.backbone_trainable``:
False when no gradient needs to pass through the backbone (it then runs in eval mode under no_grad),
True when backbone weights or adapters inside it train. PEFT methods (LoRA, DoRA, AdaLoRA, IA3,
QLoRA) live in their own module, wrap ``model.backbone.encoder`` with the ``peft`` library and set
``backbone_trainable = True``; ``total_steps`` (optimizer steps of the whole run) is passed because
AdaLoRA's rank schedule needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protfit.config import RunConfig
from protfit.models.backbone import ModelError
from protfit.models.protein_model import ProteinModel

Method = Callable[[ProteinModel, RunConfig, int], ProteinModel]
METHODS: dict[str, Method] = {}
COMPONENTS = ("backbone", "adapter", "pooler", "head")


def register_method(name: str) -> Callable[[Method], Method]:
    def decorator(method: Method) -> Method:
        METHODS[name] = method
        return method

    return decorator


Requirement = Callable[[RunConfig], None]
REQUIREMENTS: dict[str, Requirement] = {}


def register_requirement(name: str) -> Callable[[Requirement], Requirement]:
    """A check that a method can run here (a GPU, a package), run before any data or model loads."""

    def decorator(check: Requirement) -> Requirement:
        REQUIREMENTS[name] = check
        return check

    return decorator


def check_method_requirements(cfg: RunConfig) -> None:
    name = cfg.model.method
    if name not in METHODS:
        raise ModelError(f"model.method: unknown method '{name}'; choose from {', '.join(sorted(METHODS))}")
    if name in REQUIREMENTS:
        REQUIREMENTS[name](cfg)


def apply_method(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    check_method_requirements(cfg)
    return METHODS[cfg.model.method](model, cfg, total_steps)


def _train_pooler_and_head(model: ProteinModel) -> None:
    for module in (model.pooler, model.head):
        module.requires_grad_(True)


@register_method("freeze")
def freeze(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """The pretrained backbone stays as it is; the pooler and head learn on its features."""
    model.backbone.requires_grad_(False)
    _train_pooler_and_head(model)
    model.backbone_trainable = False
    return model


@register_method("full")
def full(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """Every weight trains, the backbone's included."""
    model.requires_grad_(True)
    model.backbone_trainable = True
    return model


def model_statistics(model: ProteinModel) -> dict[str, Any]:
    """Parameter counts: total, trainable, percent trainable, and per component."""
    components = {}
    for name in COMPONENTS:
        module = getattr(model, name)
        if module is None:  # no structure adapter attached
            continue
        params = list(module.parameters())
        components[name] = {
            "total": sum(param.numel() for param in params),
            "trainable": sum(param.numel() for param in params if param.requires_grad),
        }
    total = sum(param.numel() for param in model.parameters())
    trainable = sum(param.numel() for param in model.parameters() if param.requires_grad)
    return {
        "total": total,
        "trainable": trainable,
        "percent_trainable": round(100.0 * trainable / total, 4) if total else 0.0,
        "components": components,
    }


def format_model_statistics(stats: dict[str, Any]) -> str:
    lines = [f"{'component':<10} {'parameters':>14} {'trainable':>14}"]
    for name, counts in stats["components"].items():
        lines.append(f"{name:<10} {counts['total']:>14,} {counts['trainable']:>14,}")
    lines.append(f"{'total':<10} {stats['total']:>14,} {stats['trainable']:>14,}")
    lines.append(f"trainable: {stats['percent_trainable']:.2f}% of parameters")
    return "\n".join(lines)


# Methods in their own modules register themselves on import.
from protfit.models import peft_methods, ses_adapter  # noqa: E402,F401
