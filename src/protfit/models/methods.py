"""Training methods: what trains in a ProteinModel.

A method is one function ``(model, cfg, total_steps) -> model`` registered with
``@METHODS.register("name", "one line")`` (``requirement=check`` names a check that it can run here). It sets ``requires_grad`` on parameters and ``model.backbone_trainable``:
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
from protfit.models.protein_model import ProteinModel
from protfit.registry import METHODS

Method = Callable[[ProteinModel, RunConfig, int], ProteinModel]
COMPONENTS = ("backbone", "adapter", "pooler", "head")


def check_method_requirements(cfg: RunConfig) -> None:
    """Run the method's ``requirement`` check (a GPU, a package) before any data or model loads."""
    requirement = METHODS.entry(cfg.model.method).options.get("requirement")
    if requirement is not None:
        requirement(cfg)


def apply_method(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    check_method_requirements(cfg)
    return METHODS.get(cfg.model.method)(model, cfg, total_steps)


def _train_pooler_and_head(model: ProteinModel) -> None:
    for module in (model.pooler, model.head):
        module.requires_grad_(True)


@METHODS.register("freeze", uses=("embedding_cache",))
def freeze(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """The pretrained backbone stays as it is; the pooler and head learn on its features."""
    model.backbone.requires_grad_(False)
    _train_pooler_and_head(model)
    model.backbone_trainable = False
    return model


@METHODS.register("full", uses=())
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
