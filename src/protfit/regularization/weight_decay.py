"""Weight decay per component (backbone, pooler, head), decoupled or as a classic L2 penalty, and
L2-SP: a penalty toward the pretrained weights instead of toward zero.

Biases and normalisation scales are never decayed (protfit.training.optim puts them in groups with
weight_decay 0, and the refinement keeps that).
"""

from __future__ import annotations

from typing import Any

import torch

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.groups import parameter_names, refine_groups
from protfit.regularization.layers import component_of
from protfit.regularization.sections.weight_decay import L2SPConfig, WeightDecayConfig


class ComponentWeightDecay(Plugin):
    """Separate decay for backbone / pooler / head; ``mode=l2`` moves it from AdamW into the loss."""

    name = "weight_decay"

    @classmethod
    def from_config(cls, section: WeightDecayConfig, cfg: Any) -> ComponentWeightDecay:
        return cls(section, cfg.train.weight_decay)

    def __init__(self, cfg: WeightDecayConfig, default: float) -> None:
        self.cfg = cfg
        self.values = {
            "backbone": default if cfg.backbone is None else cfg.backbone,
            "pooler": default if cfg.pooler is None else cfg.pooler,
            "head": default if cfg.head is None else cfg.head,
        }
        self.penalised: list[tuple[torch.nn.Parameter, float]] = []

    def configure_param_groups(self, parts: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = parameter_names(parts.model)

        def options(component: str, group: dict[str, Any]) -> dict[str, Any]:
            if group["weight_decay"] == 0.0:  # biases and norms stay undecayed
                return {}
            if self.cfg.mode == "l2":
                return {"weight_decay": 0.0, "l2": self.values[component]}
            return {"weight_decay": self.values[component]}

        groups = refine_groups(groups, lambda p: component_of(names[id(p)]), options)
        self.penalised = []
        for group in groups:
            value = group.pop("l2", 0.0)
            self.penalised += [(p, value) for p in group["params"] if value > 0]
        return groups

    def loss(self, state: TrainingState, batch: dict[str, Any], logits: Any, loss: Any) -> Any:
        if not self.penalised:
            return None
        return sum(value / 2 * p.pow(2).sum() for p, value in self.penalised)


class L2SP(Plugin):
    """alpha/2 |w - w0|^2 over the trained backbone weights (w0: their values when training starts,
    i.e. the pretrained weights; for LoRA-type methods the adapters' initial values) + beta/2 |w|^2
    over pooler and head weight matrices. Zero at the pretrained weights by construction."""

    name = "l2_sp"

    def __init__(self, cfg: L2SPConfig) -> None:
        self.cfg = cfg
        self.anchor: dict[str, torch.Tensor] = {}
        self.backbone: dict[str, torch.nn.Parameter] = {}
        self.others: list[torch.nn.Parameter] = []

    def configure_model(self, parts: Any) -> None:
        for name, p in parts.model.named_parameters():
            if not p.requires_grad:
                continue
            if component_of(name) == "backbone":
                self.backbone[name] = p
                self.anchor[name] = p.detach().clone()
            elif p.ndim >= 2:
                self.others.append(p)
        if not self.backbone:
            raise ValueError(
                f"regularization.l2_sp: no backbone weight trains with model.method={parts.cfg.model.method}"
            )

    def penalty(self) -> torch.Tensor:
        total = sum((p - self.anchor[name].to(p.device)).pow(2).sum() for name, p in self.backbone.items())
        total = self.cfg.alpha / 2 * total
        if self.cfg.beta:
            total = total + self.cfg.beta / 2 * sum(p.pow(2).sum() for p in self.others)
        return total

    def loss(self, state: TrainingState, batch: dict[str, Any], logits: Any, loss: Any) -> Any:
        return self.penalty()

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = dict(state["anchor"])
