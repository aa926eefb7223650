"""Layer-wise learning-rate decay (Howard & Ruder 2018; Clark et al. 2020) and a separate head LR.

The top backbone layer gets ``train.learning_rate``, each layer below x ``decay``, the embeddings
x ``decay ** layers``; parameters above the layers (final norms) get the top layer's LR. Pooler,
adapter and head get ``head_lr``. The scheduler scales every group's LR by the same factor.
"""

from __future__ import annotations

from typing import Any

from protfit.plugins import Plugin
from protfit.regularization.groups import parameter_names, refine_groups
from protfit.regularization.layers import backbone_layers, component_of, layer_of_parameters
from protfit.regularization.sections.layerwise_lr import LayerwiseLRConfig


class LayerwiseLR(Plugin):
    name = "layerwise_lr"

    @classmethod
    def from_config(cls, section: LayerwiseLRConfig, cfg: Any) -> LayerwiseLR:
        return cls(section, cfg.train.learning_rate)

    def __init__(self, cfg: LayerwiseLRConfig, base_lr: float) -> None:
        self.cfg, self.base_lr = cfg, base_lr

    def learning_rates(self, layers: int) -> dict[Any, float]:
        """Group key -> LR: layer index i (-1 = embeddings) -> base * decay ** (layers - 1 - i)."""
        rates: dict[Any, float] = {
            i: self.base_lr * self.cfg.decay ** (layers - 1 - i) for i in range(-1, layers)
        }
        rates["top"] = self.base_lr
        rates["head"] = self.cfg.head_lr or self.base_lr
        return rates

    def configure_param_groups(self, parts: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = parts.model
        layers = len(backbone_layers(model))
        owner, names = layer_of_parameters(model), parameter_names(model)
        if not any(p.requires_grad for p in model.backbone.parameters()):
            raise ValueError(
                f"regularization.layerwise_lr: no backbone weight trains with model.method={parts.cfg.model.method}"
            )

        def key(p: Any) -> Any:
            if component_of(names[id(p)]) != "backbone":
                return "head"
            return owner.get(id(p), "top")

        rates = self.learning_rates(layers)
        return refine_groups(groups, key, lambda part, group: {"lr": rates[part]})
