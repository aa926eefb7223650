"""The one-hot encoder: the no-download baseline every protein model should beat.

Each residue becomes a 21-dimensional indicator (20 standard residues + X; the rare B, Z, U, O
count as X). There are no special tokens and no parameters, so ``freeze`` and ``full`` both train
only the pooler and head. ``onehot`` + ``flatten`` pooler + MLP head is the classic position-aware
baseline for equal-length mutational landscapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from protfit.data.batching import TokenizedSequence
from protfit.models.backbone import Backbone
from protfit.models.sources import ModelError

ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"
_INDEX = {residue: index for index, residue in enumerate(ALPHABET)} | {rare: 20 for rare in "BZUO"}


class OneHotBackbone(Backbone):
    def __init__(self) -> None:
        super().__init__(
            None,
            None,
            name="onehot",
            family="onehot",
            style="onehot",
            hidden_size=len(ALPHABET),
            num_layers=0,
        )
        # Padding gets the index one past the alphabet, so its one-hot row is dropped (all zero).
        self.pad_token_id = len(ALPHABET)
        self.has_cls_token = False

    def tokenize(self, sequences: list[str]) -> list[TokenizedSequence]:
        tokenized = []
        for sequence in sequences:
            try:
                ids = [_INDEX[residue] for residue in sequence.upper()]
            except KeyError as error:
                raise ModelError(
                    f"the onehot encoder knows the 20 standard residues and X, not '{error.args[0]}' "
                    f"(sequence starts '{sequence[:20]}'); set data.unknown_residues=map_to_x"
                ) from None
            tokenized.append(TokenizedSequence(input_ids=ids, residue_mask=[1] * len(ids)))
        return tokenized

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoded = F.one_hot(input_ids.clamp(0, self.pad_token_id), len(ALPHABET) + 1)[..., : len(ALPHABET)]
        return encoded.float() * attention_mask.unsqueeze(-1).float()
