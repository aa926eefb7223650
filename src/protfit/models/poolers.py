"""Poolers: per-residue hidden states (B, L, H) -> one vector per sequence (B, D).

Every pooler reads only residue positions (``residue_mask``), so special tokens and padding never
change the result: the same sequence alone or padded in a batch pools to the same vector. A row
without any residue pools to zeros instead of NaN. Add one with ``@POOLERS.register("name")`` on a
function ``(hidden_size, cfg) -> nn.Module`` whose module has ``output_dim``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from protfit.config import RunConfig
from protfit.models.sources import ModelError
from protfit.registry import POOLERS

PoolerBuilder = Callable[[int, RunConfig], nn.Module]


def build_pooler(name: str, hidden_size: int, cfg: RunConfig) -> nn.Module:
    return POOLERS.get(name)(hidden_size, cfg)


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over residue positions; rows without residues get all-zero weights (not NaN)."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask


class MeanPooler(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        mask = residue_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class Attention1dPooler(nn.Module):
    """Learned per-position scores (a width-1 convolution), softmax over residues, weighted sum, then a
    linear layer with ReLU: the "attention1d" pooling head used with FLIP and PEER benchmarks."""

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.output_dim = hidden_size
        self.score = nn.Conv1d(hidden_size, 1, kernel_size=1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.ReLU()

    def forward(self, hidden: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(hidden.transpose(1, 2)).squeeze(1)  # (B, L)
        weights = _masked_softmax(scores, residue_mask, dim=-1)
        pooled = torch.einsum("bl,blh->bh", weights, hidden)
        return self.activation(self.linear(self.dropout(pooled)))


class LightAttentionPooler(nn.Module):
    """Light attention (Stärk et al. 2021, Bioinformatics Advances): convolved values, per-channel
    attention over residues from a second convolution, concatenated with a masked max-pool -> 2H.
    The paper's classifier (linear, dropout, ReLU, batch norm) is the configurable head here."""

    def __init__(self, hidden_size: int, dropout: float, kernel_size: int = 9) -> None:
        super().__init__()
        self.output_dim = 2 * hidden_size
        self.values = nn.Conv1d(hidden_size, hidden_size, kernel_size, padding=kernel_size // 2)
        self.attention = nn.Conv1d(hidden_size, hidden_size, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        # Non-residue positions are zeroed before the convolutions so that a residue's window sees the
        # same zeros whether the sequence ends the batch or is followed by padding.
        mask = residue_mask.unsqueeze(1)  # (B, 1, L)
        inputs = hidden.transpose(1, 2) * mask.to(hidden.dtype)
        values = self.dropout(self.values(inputs))
        weights = _masked_softmax(self.attention(inputs), mask, dim=-1)
        attended = (values * weights).sum(dim=-1)
        maxed = values.masked_fill(~mask, float("-inf")).amax(dim=-1)
        maxed = torch.where(residue_mask.any(dim=1, keepdim=True), maxed, torch.zeros_like(maxed))
        return torch.cat([attended, maxed], dim=-1)


class ClsPooler(nn.Module):
    needs_cls_token = True

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]


class FlattenPooler(nn.Module):
    """Residue i of every sequence goes to slot i of a fixed (max_seq_len, H) grid, zero-padded, then
    flattened: position-aware features for equal-length variants of one protein."""

    def __init__(self, hidden_size: int, max_seq_len: int) -> None:
        super().__init__()
        self.max_seq_len = max_seq_len
        self.output_dim = max_seq_len * hidden_size

    def forward(self, hidden: torch.Tensor, residue_mask: torch.Tensor) -> torch.Tensor:
        batch, _, size = hidden.shape
        longest = int(residue_mask.sum(dim=1).max()) if batch else 0
        if longest > self.max_seq_len:
            raise ModelError(
                f"the flatten pooler holds {self.max_seq_len} residues (data.max_seq_len) but a sequence has "
                f"{longest}; raise data.max_seq_len or let the data loader truncate"
            )
        slots = residue_mask.long().cumsum(dim=1) - 1
        rows, columns = residue_mask.nonzero(as_tuple=True)
        grid = hidden.new_zeros(batch, self.max_seq_len, size)
        grid = grid.index_put((rows, slots[rows, columns]), hidden[rows, columns])
        return grid.flatten(start_dim=1)


@POOLERS.register("mean", "average of the residue states", uses=())
def _mean(hidden_size: int, cfg: RunConfig) -> nn.Module:
    return MeanPooler(hidden_size)


@POOLERS.register(
    "attention1d", "learned per-residue attention weights, then a linear layer", uses=("pooler_dropout",)
)
def _attention1d(hidden_size: int, cfg: RunConfig) -> nn.Module:
    return Attention1dPooler(hidden_size, cfg.model.pooler_dropout)


@POOLERS.register(
    "light_attention",
    "light attention (Stärk et al. 2021): attention + max pooling, 2H wide",
    uses=("pooler_dropout",),
)
def _light_attention(hidden_size: int, cfg: RunConfig) -> nn.Module:
    return LightAttentionPooler(hidden_size, cfg.model.pooler_dropout)


@POOLERS.register("cls", "the CLS token's state (ESM and BERT families)", uses=())
def _cls(hidden_size: int, cfg: RunConfig) -> nn.Module:
    return ClsPooler(hidden_size)


@POOLERS.register("flatten", "residue i to slot i of a max_seq_len grid (equal-length variants)", uses=())
def _flatten(hidden_size: int, cfg: RunConfig) -> nn.Module:
    if cfg.data.max_seq_len is None:
        raise ModelError(
            "model.pooler 'flatten' lays residues out on a fixed grid and needs data.max_seq_len "
            "(e.g. the length of the protein in a mutational landscape)"
        )
    return FlattenPooler(hidden_size, cfg.data.max_seq_len)
