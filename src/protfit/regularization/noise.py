"""Noise injection: on input embeddings (NEFTune), on weights, on the head's input, on gradients.

Random draws come from torch's global generator, which checkpoints/last saves and --resume restores,
so a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from protfit.plugins import Plugin, StepContext, TrainingState
from protfit.regularization.layers import input_embeddings
from protfit.regularization.sections.noise import (
    ActivationNoiseConfig,
    GradientNoiseConfig,
    NEFTuneConfig,
    WeightNoiseConfig,
)


class NEFTune(Plugin):
    """Uniform noise alpha / sqrt(L * d) * U(-1, 1) on the token embeddings of training batches
    (Jain et al. 2023; L is the padded length, as in transformers' implementation). Needs the backbone
    to run on every batch, so a frozen run turns its embedding cache off."""

    name = "neftune"
    needs_backbone_forward = True

    def __init__(self, cfg: NEFTuneConfig) -> None:
        self.cfg = cfg

    def configure_model(self, parts: Any) -> None:
        input_embeddings(parts.model).register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not self.in_training:
            return output
        scale = self.cfg.alpha / math.sqrt(output.size(1) * output.size(2))
        return output + torch.empty_like(output).uniform_(-scale, scale)

    in_training = False

    def on_epoch_start(self, state: TrainingState) -> None:
        self.in_training = True

    def swap_in_eval_weights(self, state: TrainingState) -> None:
        self.in_training = False  # validation, the train-split diagnostics and test see clean inputs

    def swap_out_eval_weights(self, state: TrainingState) -> None:
        self.in_training = True

    def on_train_end(self, state: TrainingState) -> None:
        self.in_training = False


class WeightNoise(Plugin):
    """Gaussian noise on every trained weight during the step's forward/backward passes, removed
    before the optimizer updates the clean weights (the gradient is taken at the noisy point)."""

    name = "weight_noise"

    def __init__(self, cfg: WeightNoiseConfig) -> None:
        self.cfg = cfg

    def training_step(self, state: TrainingState, step: StepContext, proceed: Any) -> float:
        params = [p for p in state.model.parameters() if p.requires_grad]
        with torch.no_grad():
            noise = [torch.randn_like(p) * self.cfg.std for p in params]
            for p, n in zip(params, noise, strict=True):
                p.add_(n)
        try:
            return proceed()
        finally:
            with torch.no_grad():
                for p, n in zip(params, noise, strict=True):
                    p.sub_(n)


class ActivationNoise(Plugin):
    """Gaussian noise on the head's input (pooled vector) in training mode: std x the batch's feature
    std. Works on cached features, so a frozen run keeps its embedding cache."""

    name = "activation_noise"

    def __init__(self, cfg: ActivationNoiseConfig) -> None:
        self.cfg = cfg

    def configure_model(self, parts: Any) -> None:
        parts.model.head.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
        if not module.training:
            return None
        (pooled,) = inputs
        spread = pooled.detach().std() if pooled.numel() > 1 else pooled.new_tensor(1.0)
        return (pooled + torch.randn_like(pooled) * self.cfg.std * spread,)


class GradientNoise(Plugin):
    """Annealed Gaussian gradient noise, variance eta / (1 + t)^gamma (Neelakantan et al. 2015), added
    after clipping, right before the step."""

    name = "gradient_noise"

    def __init__(self, cfg: GradientNoiseConfig) -> None:
        self.cfg = cfg

    def std(self, step: int) -> float:
        return math.sqrt(self.cfg.eta / (1 + step) ** self.cfg.gamma)

    @torch.no_grad()
    def on_after_clip(self, state: TrainingState) -> None:
        std = self.std(state.global_step)
        # a generator seeded by (seed, step): every process adds the same noise to its (already
        # synchronised) gradients, so DDP replicas stay identical; a resumed run draws the same
        generator = torch.Generator().manual_seed(state.config.train.seed * 1_000_003 + state.global_step)
        for p in state.model.parameters():
            if p.grad is not None:
                noise = torch.randn(p.grad.shape, generator=generator, dtype=p.grad.dtype)
                p.grad.add_(noise.to(p.grad.device) * std)
