"""Per-sequence features beside the pooled vector (``model.extra_features``), e.g. a zero-shot score.

Hsu et al. 2022 ("Learning protein fitness models from evolutionary and assay-labeled data") add a
zero-shot density score to one-hot features and beat both; here each named feature (a ``FEATURES``
entry) gives one number per sequence, standardised with the training split's mean and standard
deviation (kept as buffers, so a checkpoint carries them) and concatenated to the pooled vector
before the head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from protfit.registry import FEATURES

if TYPE_CHECKING:
    import pandas as pd

    from protfit.config import RunConfig


class ExtraFeatureScaler(nn.Module):
    """(B, K) raw features -> standardised with the training split's statistics."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.register_buffer("mean", torch.zeros(len(names)))
        self.register_buffer("std", torch.ones(len(names)))

    def fit(self, train_values: np.ndarray) -> None:
        values = torch.as_tensor(np.asarray(train_values, dtype=np.float64).reshape(-1, len(self.names)))
        std = values.std(dim=0, unbiased=False)
        # a feature constant on train carries no information; dividing by 1 keeps it finite
        self.mean.copy_(values.mean(dim=0).float())
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)).float())

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return (values.float() - self.mean) / self.std


def compute_extra_features(
    cfg: RunConfig,
    frames: dict[str, pd.DataFrame],
    states: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(N, K) features per frame, columns in ``model.extra_features`` order, and each feature's state
    (what prediction needs to compute it the same way: stored in model_meta.json)."""
    columns: dict[str, list[np.ndarray]] = {split: [] for split in frames}
    new_states: dict[str, Any] = {}
    for name in cfg.model.extra_features:
        values, new_states[name] = FEATURES.get(name)(cfg, frames, (states or {}).get(name), progress)
        for split in frames:
            columns[split].append(np.asarray(values[split], dtype=np.float64))
    stacked = {split: np.stack(parts, axis=1) for split, parts in columns.items()}
    return stacked, new_states
