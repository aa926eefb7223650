"""The prediction head: an MLP from pooled vectors to logits, shaped by ``model.head``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from protfit.config import HeadConfig
from protfit.registry import HEADS

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm that accepts a batch of one sample while training.

    The variance of one sample is undefined, and torch raises "Expected more than 1 value per channel
    when training". A batch of one happens whenever the data size leaves one sample for the last batch
    (the peer tool crashed there), so such a batch is normalised with the running statistics instead,
    and those statistics are left unchanged.
    """

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training and inputs.shape[0] == 1:
            return F.batch_norm(
                inputs, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(inputs)


def _norm(kind: str, size: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(size)
    if kind == "batchnorm":
        return SafeBatchNorm1d(size)
    return nn.Identity()


def _initialise(linear: nn.Linear, init: str) -> None:
    if init == "xavier":
        nn.init.xavier_uniform_(linear.weight)
    elif init == "kaiming":
        nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
    else:
        nn.init.normal_(linear.weight, std=0.02)
    nn.init.zeros_(linear.bias)


def build_head(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """The head named by ``model.head.type`` (a :data:`HEADS` entry), from pooled vectors to logits."""
    return HEADS.get(cfg.type)(in_dim, out_dim, cfg)


@HEADS.register("mlp")
def mlp_head(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """Linear -> norm -> activation -> dropout per hidden layer, then a linear output layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in cfg.hidden_dims:
        layers += [
            nn.Linear(width, hidden),
            _norm(cfg.norm, hidden),
            ACTIVATIONS[cfg.activation](),
            nn.Dropout(cfg.dropout),
        ]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    head = nn.Sequential(*layers)
    for module in head:
        if isinstance(module, nn.Linear):
            _initialise(module, cfg.init)
    return head
