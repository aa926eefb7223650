"""Which backbone layers train: freeze the bottom k, unfreeze gradually from the top (ULMFiT), or
re-initialise the top k before fine-tuning (Zhang et al. 2021, "Revisiting few-sample BERT fine-tuning").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.layers import backbone_layers, hf_encoder, layer_of_parameters
from protfit.regularization.sections.freezing import (
    FreezeLayersConfig,
    GradualUnfreezingConfig,
    ReinitLayersConfig,
)


def _check_layers(requested: int, layers: int, key: str) -> None:
    if requested > layers:
        raise ValueError(f"regularization.{key}={requested}, but the backbone has {layers} layers")


class FreezeLayers(Plugin):
    """The embeddings and the bottom ``bottom`` layers stop training (after the method chose what trains)."""

    name = "freeze_layers"

    def __init__(self, cfg: FreezeLayersConfig) -> None:
        self.cfg = cfg

    def configure_model(self, parts: Any) -> None:
        layers = backbone_layers(parts.model)
        _check_layers(self.cfg.bottom, len(layers), "freeze_layers.bottom")
        owner = layer_of_parameters(parts.model)
        for parameter in parts.model.backbone.parameters():
            if owner.get(id(parameter), len(layers)) < self.cfg.bottom:
                parameter.requires_grad_(False)


class GradualUnfreezing(Plugin):
    """Backbone layers join training from the top, one more every ``every`` epochs.

    Every backbone weight the method would train stays ``requires_grad`` (so optimizer and checkpoints
    hold a fixed set); a layer not yet unfrozen has its gradient dropped before clipping and the step,
    so AdamW neither moves nor decays it. While no layer is unfrozen the backbone runs without a graph.
    With ``model.method=freeze`` the backbone weights are made trainable candidates (the embedding
    cache is then off: the backbone changes once a layer unfreezes).
    """

    name = "gradual_unfreezing"
    needs_backbone_forward = True

    def __init__(self, cfg: GradualUnfreezingConfig) -> None:
        self.cfg = cfg
        self.candidates: dict[int, list[nn.Parameter]] = {}
        self.layers = 0

    def configure_model(self, parts: Any) -> None:
        model = parts.model
        self.layers = len(backbone_layers(model))
        owner = layer_of_parameters(model)
        if parts.cfg.model.method == "freeze":
            for parameter in model.backbone.parameters():
                if id(parameter) in owner:
                    parameter.requires_grad_(True)
        for parameter in model.backbone.parameters():
            if parameter.requires_grad:
                # parameters above the layers (final norms) unfreeze with the top layer
                self.candidates.setdefault(owner.get(id(parameter), self.layers - 1), []).append(parameter)
        if not self.candidates:
            raise ValueError(
                f"regularization.gradual_unfreezing: no backbone weight can train with model.method={parts.cfg.model.method}"
            )
        self.model = model

    def unfrozen_layers(self, epoch: int) -> int:
        """Layers (counted from the top) that train in ``epoch`` (1-based)."""
        return min(self.cfg.start_layers + (epoch - 1) // self.cfg.every, self.layers + 1)

    def trainable_now(self, epoch: int) -> set[int]:
        """Layer indices (-1: embeddings, unfrozen last) that train in ``epoch``."""
        count = self.unfrozen_layers(epoch)
        return {index for index in range(-1, self.layers) if index >= self.layers - count}

    def on_epoch_start(self, state: TrainingState) -> None:
        self.active = self.trainable_now(state.epoch)
        unwrapped = state.parts.unwrapped_model
        unwrapped.backbone_trainable = bool(self.active)
        unwrapped.train()

    @torch.no_grad()
    def on_before_optimizer_step(self, state: TrainingState) -> None:
        for index, params in self.candidates.items():
            if index not in self.active:
                for parameter in params:
                    parameter.grad = None

    def on_validation_end(self, state: TrainingState) -> None:
        state.epoch_record["unfrozen_layers"] = len([i for i in self.active if i >= 0])


class ReinitLayers(Plugin):
    """The top ``top`` layers get fresh weights from the model's own initialiser before training."""

    name = "reinit_layers"

    def __init__(self, cfg: ReinitLayersConfig) -> None:
        self.cfg = cfg

    @torch.no_grad()
    def configure_model(self, parts: Any) -> None:
        layers = backbone_layers(parts.model)
        _check_layers(self.cfg.top, len(layers), "reinit_layers.top")
        encoder = hf_encoder(parts.model)
        initialise = getattr(encoder, "_init_weights", None)
        for layer in layers[len(layers) - self.cfg.top :]:
            for parameter in layer.parameters():
                # transformers >= 4.5x marks loaded weights and its init functions then skip them
                if getattr(parameter, "_is_hf_initialized", False):
                    parameter._is_hf_initialized = False
            for module in layer.modules():
                if "lora_" in type(module).__name__.lower():
                    continue
                if initialise is not None:
                    initialise(module)
                elif hasattr(module, "reset_parameters"):
                    module.reset_parameters()
