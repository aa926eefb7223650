"""AdamW with decoupled weight decay applied to weight matrices only."""

from __future__ import annotations

import torch
from torch import nn

from protfit.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # Biases and normalisation scales (the 1-D parameters) are not decayed: shrinking them towards 0
    # only fights the normalisation and hurts (Loshchilov & Hutter 2019; the nanoGPT / BERT recipe).
    decayed, not_decayed = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decayed if parameter.ndim >= 2 else not_decayed).append(parameter)
    if not decayed and not not_decayed:
        raise ValueError("the model has no trainable parameters: check model.method")
    groups = [
        {"params": decayed, "weight_decay": cfg.weight_decay},
        {"params": not_decayed, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=cfg.learning_rate)
