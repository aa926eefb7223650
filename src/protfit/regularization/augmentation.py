"""On-the-fly sequence augmentation of training batches: conservative BLOSUM62 substitutions, random
masking to the model's mask (or unknown) token, random crops.

Applied in ``transform_batch`` to token batches of the training split only (validation, test, the
train-split diagnostics and prediction never see it). The batch's features change every epoch, so
the embedding cache of a frozen backbone is turned off (``needs_backbone_forward``): the backbone
runs on every batch. Random draws use torch's global generator, saved and restored by --resume.
"""

from __future__ import annotations

from typing import Any

import torch

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.sections.augmentation import AugmentationConfig

AMINO_ACIDS = "ARNDCQEGHILKMFPSTWYV"
# BLOSUM62 (Henikoff & Henikoff 1992), rows and columns in AMINO_ACIDS order.
BLOSUM62 = [
    [4, -1, -2, -2, 0, -1, -1, 0, -2, -1, -1, -1, -1, -2, -1, 1, 0, -3, -2, 0],
    [-1, 5, 0, -2, -3, 1, 0, -2, 0, -3, -2, 2, -1, -3, -2, -1, -1, -3, -2, -3],
    [-2, 0, 6, 1, -3, 0, 0, 0, 1, -3, -3, 0, -2, -3, -2, 1, 0, -4, -2, -3],
    [-2, -2, 1, 6, -3, 0, 2, -1, -1, -3, -4, -1, -3, -3, -1, 0, -1, -4, -3, -3],
    [0, -3, -3, -3, 9, -3, -4, -3, -3, -1, -1, -3, -1, -2, -3, -1, -1, -2, -2, -1],
    [-1, 1, 0, 0, -3, 5, 2, -2, 0, -3, -2, 1, 0, -3, -1, 0, -1, -2, -1, -2],
    [-1, 0, 0, 2, -4, 2, 5, -2, 0, -3, -3, 1, -2, -3, -1, 0, -1, -3, -2, -2],
    [0, -2, 0, -1, -3, -2, -2, 6, -2, -4, -4, -2, -3, -3, -2, 0, -2, -2, -3, -3],
    [-2, 0, 1, -1, -3, 0, 0, -2, 8, -3, -3, -1, -2, -1, -2, -1, -2, -2, 2, -3],
    [-1, -3, -3, -3, -1, -3, -3, -4, -3, 4, 2, -3, 1, 0, -3, -2, -1, -3, -1, 3],
    [-1, -2, -3, -4, -1, -2, -3, -4, -3, 2, 4, -2, 2, 0, -3, -2, -1, -2, -1, 1],
    [-1, 2, 0, -1, -3, 1, 1, -2, -1, -3, -2, 5, -1, -3, -1, 0, -1, -3, -2, -2],
    [-1, -1, -2, -3, -1, 0, -2, -3, -2, 1, 2, -1, 5, 0, -2, -1, -1, -1, -1, 1],
    [-2, -3, -3, -3, -2, -3, -3, -3, -1, 0, 0, -3, 0, 6, -4, -2, -2, 1, 3, -1],
    [-1, -2, -2, -1, -3, -1, -1, -2, -2, -3, -3, -1, -2, -4, 7, -1, -1, -4, -3, -2],
    [1, -1, 1, 0, -1, 0, 0, 0, -1, -2, -2, 0, -1, -2, -1, 4, 1, -3, -2, -2],
    [0, -1, 0, -1, -1, -1, -1, -2, -2, -1, -1, -1, -1, -2, -1, 1, 5, -2, -2, 0],
    [-3, -3, -4, -4, -2, -2, -3, -2, -2, -3, -2, -3, -1, 1, -4, -3, -2, 11, 2, -3],
    [-2, -2, -2, -3, -2, -1, -2, -3, 2, -1, -1, -2, -1, 3, -3, -2, -2, 2, 7, -1],
    [0, -3, -3, -3, -1, -2, -2, -3, -3, 3, 1, -2, 1, -1, -2, -2, 0, -3, -1, 4],
]


def substitution_probabilities() -> torch.Tensor:
    """(20, 20): row a = P(b | a) over conservative substitutions b != a (BLOSUM62 score >= 0; for
    proline, which has none, its best-scoring ones), weighted by 2 ** (score / 2) (BLOSUM scores
    are half-bit log-odds)."""
    scores = torch.tensor(BLOSUM62, dtype=torch.float64)
    off_diagonal = scores - torch.diag(torch.full((20,), 1e9, dtype=torch.float64))
    floor = off_diagonal.max(dim=1, keepdim=True).values.clamp(max=0.0)
    weights = torch.where(off_diagonal >= floor, 2.0 ** (scores / 2), torch.zeros_like(scores))
    return weights / weights.sum(dim=1, keepdim=True)


class Augmentation(Plugin):
    name = "augmentation"
    needs_backbone_forward = True

    def __init__(self, cfg: AugmentationConfig) -> None:
        self.cfg = cfg

    def configure_model(self, parts: Any) -> None:
        backbone = parts.model.backbone
        if backbone.tokenizer is None:
            raise ValueError(
                f"regularization.augmentation works on token ids; the {backbone.family} encoder has no tokenizer"
            )
        ids = [t for t, r in zip(*backbone.tokenize([AMINO_ACIDS])[0], strict=True) if r]
        self.residue_ids = torch.tensor(ids)
        size = max(max(ids), backbone.pad_token_id) + 1
        self.position = torch.full((size + 64,), -1, dtype=torch.long)  # token id -> amino-acid index
        self.position[self.residue_ids] = torch.arange(len(ids))
        tokenizer = backbone.tokenizer
        mask = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
        self.mask_id = int(mask)
        self.pad_id = backbone.pad_token_id
        self.table = substitution_probabilities().float()

    def _pick(self, positions: torch.Tensor, rate: float) -> torch.Tensor:
        count = int(rate * len(positions))
        return positions[torch.randperm(len(positions))[:count]]

    def transform_batch(self, state: TrainingState, batch: dict[str, Any]) -> dict[str, Any]:
        if "input_ids" not in batch:
            return batch
        ids = batch["input_ids"].clone()
        residues = batch["residue_mask"].bool()
        cfg = self.cfg
        for row in range(ids.shape[0]):
            if cfg.substitution_prob and torch.rand(()) < cfg.substitution_prob:
                token = ids[row].cpu()
                known = torch.nonzero(
                    residues[row].cpu() & (self.position[token.clamp(max=len(self.position) - 1)] >= 0)
                ).flatten()
                chosen = self._pick(known, cfg.substitution_rate)
                if len(chosen):
                    source = self.position[token[chosen]]
                    target = torch.multinomial(self.table[source], 1).flatten()
                    ids[row, chosen.to(ids.device)] = self.residue_ids[target].to(ids.device)
            if cfg.mask_prob and torch.rand(()) < cfg.mask_prob:
                chosen = self._pick(torch.nonzero(residues[row].cpu()).flatten(), cfg.mask_rate)
                ids[row, chosen.to(ids.device)] = self.mask_id
        batch = {**batch, "input_ids": ids}
        if cfg.crop_prob:
            batch = self._crop(batch)
        return batch

    def _crop(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Keep the special tokens and a random contiguous window of each chosen sequence's residues."""
        ids, residues = batch["input_ids"], batch["residue_mask"].bool()
        attention = batch.get("attention_mask", torch.ones_like(ids))
        shape = ids.shape
        aligned = [key for key, value in batch.items() if torch.is_tensor(value) and value.shape == shape]
        kept_rows = []
        for row in range(shape[0]):
            real = torch.nonzero(attention[row].bool()).flatten().cpu()
            where = torch.nonzero(residues[row]).flatten().cpu()
            if len(where) > 1 and torch.rand(()) < self.cfg.crop_prob:
                shortest = max(1, int(-(-self.cfg.crop_min_fraction * len(where) // 1)))
                length = int(torch.randint(shortest, len(where) + 1, ()))
                start = int(torch.randint(0, len(where) - length + 1, ()))
                window = where[start : start + length]
                prefix, suffix = real[real < where[0]], real[real > where[-1]]
                kept_rows.append(torch.cat([prefix, window, suffix]))
            else:
                kept_rows.append(real)
        width = max(len(kept) for kept in kept_rows)
        cropped = {}
        for key in aligned:
            pad = self.pad_id if key == "input_ids" else 0
            out = torch.full((shape[0], width), pad, dtype=batch[key].dtype, device=batch[key].device)
            for row, kept in enumerate(kept_rows):
                out[row, : len(kept)] = batch[key][row, kept.to(batch[key].device)]
            cropped[key] = out
        return {**batch, **cropped}
