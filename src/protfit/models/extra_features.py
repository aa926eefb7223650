"""Per-sequence features beside the pooled vector (``model.extra_features``), e.g. a zero-shot score.

Hsu et al. 2022 ("Learning protein fitness models from evolutionary and assay-labeled data") add a
zero-shot density score to one-hot features and beat both; here each named feature (a ``FEATURES``
entry) gives one number per sequence, or a block of ``width(cfg)`` numbers (a ``width`` option of its
entry), standardised with the training split's mean and standard deviation (kept as buffers, so a
checkpoint carries them; a feature registered with ``standardize=False`` passes unchanged) and
concatenated to the pooled vector before the head.

``onehot`` (here) is the position-wise one-hot of the sequence: beside a frozen language model's
mean-pooled vector it gives the head the residue identities that mean pooling over hundreds of
residues blurs (a single substitution in a 222-residue antibody moves the mean by ~1/222).
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


def feature_layout(cfg: RunConfig) -> list[tuple[str, int, bool]]:
    """(name, width, standardised) of each of ``model.extra_features``, in order."""
    layout = []
    for name in cfg.model.extra_features:
        options = FEATURES.entry(name).options
        width = options["width"](cfg) if "width" in options else 1
        layout.append((name, int(width), bool(options.get("standardize", True))))
    return layout


class ExtraFeatureScaler(nn.Module):
    """(B, K) raw features -> standardised with the training split's statistics (K: the features'
    widths summed; the columns of a feature that is not standardised keep mean 0 and std 1)."""

    def __init__(self, layout: list[tuple[str, int, bool]]) -> None:
        super().__init__()
        self.names = [name for name, _, _ in layout]
        width = sum(size for _, size, _ in layout)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        # which columns to standardise: from the registry at construction, so not in the state dict
        mask = [standardised for _, size, standardised in layout for _ in range(size)]
        self.register_buffer("standardised", torch.tensor(mask, dtype=torch.bool), persistent=False)

    @property
    def width(self) -> int:
        return int(self.mean.numel())

    def fit(self, train_values: np.ndarray) -> None:
        values = torch.as_tensor(np.asarray(train_values, dtype=np.float64).reshape(-1, self.width))
        std = values.std(dim=0, unbiased=False)
        # a feature constant on train carries no information; dividing by 1 keeps it finite
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.mean.copy_(torch.where(self.standardised, values.mean(dim=0), 0.0).float())
        self.std.copy_(torch.where(self.standardised, std, 1.0).float())

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
    for name, width, _ in feature_layout(cfg):
        values, new_states[name] = FEATURES.get(name)(cfg, frames, (states or {}).get(name), progress)
        for split, frame in frames.items():
            block = np.asarray(values[split], dtype=np.float32).reshape(len(frame), -1)
            if block.shape[1] != width:
                raise ValueError(
                    f"extra feature '{name}' gave {block.shape[1]} columns, its width is {width}"
                )
            columns[split].append(block)
    stacked = {split: np.concatenate(parts, axis=1) for split, parts in columns.items()}
    return stacked, new_states


# ---- built-in features that need no model ------------------------------------------------------------

ONEHOT_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"  # a 21st column per position: any other residue


def onehot_width(cfg: RunConfig) -> int:
    if cfg.data.max_seq_len is None:  # the config refuses this first; here for direct callers
        raise ValueError("model.extra_features=[onehot] needs data.max_seq_len (the one-hot block's width)")
    return cfg.data.max_seq_len * (len(ONEHOT_RESIDUES) + 1)


@FEATURES.register(
    "onehot",
    "position-wise one-hot of the sequence up to data.max_seq_len (20 residues + other per position, "
    "not standardised): residue identities beside a frozen model's pooled vector",
    width=onehot_width,
    standardize=False,
)
def onehot_feature(
    cfg: RunConfig, frames: dict[str, pd.DataFrame], state: dict[str, Any] | None, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(N, max_seq_len x 21) 0/1 per frame; positions past a sequence's end stay 0, residues past
    max_seq_len are left out. Needs nothing from training, so prediction computes it alike."""
    del state, progress
    length, size = cfg.data.max_seq_len, len(ONEHOT_RESIDUES) + 1
    width = onehot_width(cfg)
    lookup = np.full(256, len(ONEHOT_RESIDUES), dtype=np.int64)  # any other byte: the 'other' column
    lookup[np.frombuffer(ONEHOT_RESIDUES.encode(), dtype=np.uint8)] = np.arange(len(ONEHOT_RESIDUES))
    values = {}
    for split, frame in frames.items():
        block = np.zeros((len(frame), width), dtype=np.float32)
        for row, sequence in enumerate(frame["aa_seq"]):
            codes = lookup[np.frombuffer(str(sequence)[:length].upper().encode("ascii", "replace"), np.uint8)]
            block[row, np.arange(len(codes)) * size + codes] = 1.0
        values[split] = block
    return values, {"length": length}
