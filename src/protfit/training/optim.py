"""AdamW with decoupled weight decay applied to weight matrices only."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from protfit.config import TrainConfig


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The default groups: weight matrices decayed, 1-D parameters not. Plug-ins refine these
    (``configure_param_groups``: layer-wise LR decay, a separate head LR) before the optimizer exists."""
    # Biases and normalisation scales (the 1-D parameters) are not decayed: shrinking them towards 0
    # only fights the normalisation and hurts (Loshchilov & Hutter 2019; the nanoGPT / BERT recipe).
    decayed, not_decayed = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decayed if parameter.ndim >= 2 else not_decayed).append(parameter)
    groups = [
        {"name": "decay", "params": decayed, "weight_decay": cfg.weight_decay},
        {"name": "no_decay", "params": not_decayed, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``groups``; a group without its own ``lr`` gets ``train.learning_rate``."""
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters: check model.method")
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)
