"""Dropout: override of the backbone's hidden/attention dropout (flat or growing with depth), and
dropout that follows a schedule over the run.

The head's own dropout is ``model.head.dropout``. A frozen backbone runs in eval mode, so backbone
dropout only matters for methods that train through it (the config refuses it with ``freeze``).
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.layers import backbone_layers, hidden_dropouts, set_layer_dropout
from protfit.regularization.sections.dropout import DropoutConfig, ScheduledDropoutConfig


def layer_probabilities(cfg: DropoutConfig, layers: int) -> list[float | None]:
    """Hidden dropout per layer, bottom first: per_layer, or hidden + i * layerwise_step, or hidden."""
    if cfg.per_layer is not None:
        if len(cfg.per_layer) != layers:
            raise ValueError(
                f"regularization.dropout.per_layer has {len(cfg.per_layer)} values; the backbone has {layers} layers"
            )
        return list(cfg.per_layer)
    if cfg.layerwise_step is not None:
        assert cfg.hidden is not None
        values = [cfg.hidden + index * cfg.layerwise_step for index in range(layers)]
        if any(not 0.0 <= value < 1.0 for value in values):
            raise ValueError(
                f"regularization.dropout: hidden + i * layerwise_step leaves [0, 1) over {layers} layers: "
                f"{[round(v, 4) for v in values]}"
            )
        return values
    return [cfg.hidden] * layers


class BackboneDropout(Plugin):
    """Sets the backbone's hidden and attention dropout once, per layer, before training."""

    name = "dropout"

    def __init__(self, cfg: DropoutConfig) -> None:
        self.cfg = cfg

    def configure_model(self, parts: Any) -> None:
        layers = backbone_layers(parts.model)
        for layer, hidden in zip(layers, layer_probabilities(self.cfg, len(layers)), strict=True):
            set_layer_dropout(layer, hidden=hidden, attention=self.cfg.attention)


def scheduled_value(cfg: ScheduledDropoutConfig, progress: float) -> float:
    """The probability at ``progress`` in [0, 1] of the run (0: first epoch/step, 1: last)."""
    progress = min(max(progress, 0.0), 1.0)
    if cfg.shape == "cosine":
        progress = (1.0 - math.cos(math.pi * progress)) / 2.0
    return cfg.start + (cfg.end - cfg.start) * progress


class ScheduledDropout(Plugin):
    """Moves the targeted dropout modules from ``start`` to ``end``; set at each epoch start (unit
    epoch) or after every optimizer step (unit step). Stateless: the value follows from epoch/step,
    so a resumed run sets the same probabilities."""

    name = "scheduled_dropout"

    def __init__(self, cfg: ScheduledDropoutConfig) -> None:
        self.cfg = cfg
        self.modules: list[nn.Dropout] = []
        self.current: float | None = None

    def configure_model(self, parts: Any) -> None:
        model = parts.model
        if self.cfg.target in ("head", "all"):
            self.modules += [m for m in model.head.modules() if isinstance(m, nn.Dropout)]
        if self.cfg.target in ("backbone", "all"):
            for layer in backbone_layers(model):
                self.modules += hidden_dropouts(layer)
        if not self.modules:
            raise ValueError(
                f"regularization.scheduled_dropout.target={self.cfg.target}: the model has no dropout there "
                "(a head without hidden layers has none: set model.head.hidden_dims)"
            )
        self.epochs = parts.cfg.train.epochs
        self.total_steps = parts.total_steps

    def _set(self, value: float) -> None:
        self.current = value
        for module in self.modules:
            module.p = value

    def on_epoch_start(self, state: TrainingState) -> None:
        if self.cfg.unit == "epoch":
            self._set(scheduled_value(self.cfg, (state.epoch - 1) / max(self.epochs - 1, 1)))
        else:
            self._set(scheduled_value(self.cfg, state.global_step / max(self.total_steps - 1, 1)))

    def on_after_optimizer_step(self, state: TrainingState) -> None:
        if self.cfg.unit == "step":
            self._set(scheduled_value(self.cfg, state.global_step / max(self.total_steps - 1, 1)))

    def on_validation_end(self, state: TrainingState) -> None:
        state.epoch_record["dropout"] = self.current
