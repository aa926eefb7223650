"""The structure-aware adapter: ``model.method: ses_adapter``.

After SES-Adapter (Tan et al. 2024, "Simple, Efficient, and Scalable Structure-aware Adapter Boosts
Protein Language Models", J. Chem. Inf. Model., arXiv:2404.14850): the frozen language model's
per-residue states attend to embeddings of per-residue structure strings (Foldseek 3Di and/or DSSP
8-state secondary structure), and the fused states go to the usual pooler and head.

    hidden (B, L, H) ---- query ----.
                                     cross-attention (rotary positions) -> output (B, L, H)
    structure tokens -> embeddings -- key, value (B, L, E)        |
    (summed over the selected inputs)                              v
                                     LayerNorm(hidden + dropout(output)) -> pooler -> head

Keys are masked to residue positions, so special tokens and padding carry no structure. The backbone
stays frozen (like ``freeze``); the adapter, pooler and head train.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from protfit.config import RunConfig
from protfit.data.batching import STRUCTURE_VOCABULARIES, structure_batch_key
from protfit.models.methods import freeze
from protfit.models.protein_model import ProteinModel
from protfit.registry import METHODS

_ROTARY_BASE = 10000.0


def apply_rotary(states: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer) on (B, heads, L, d), "rotate half" layout.

    Hand-written (a few lines) because transformers keeps its rotary helpers private per model. Rotary
    positions make query-key scores depend on the distance between residue i and residue j, with no
    maximum length to learn: a residue can learn to read the structure around itself.
    """
    length, size = states.shape[-2], states.shape[-1]
    half = size // 2
    frequencies = _ROTARY_BASE ** (-torch.arange(half, device=states.device, dtype=torch.float32) / half)
    angles = torch.arange(length, device=states.device, dtype=torch.float32)[:, None] * frequencies
    cos, sin = angles.cos(), angles.sin()
    first, second = states[..., :half].float(), states[..., half:].float()
    rotated = torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)
    return rotated.to(states.dtype)


class SesAdapter(nn.Module):
    """Cross-attention from language-model states (queries) to structure token embeddings (keys/values).

    ``forward(hidden (B, L, H), residue_mask (B, L) bool, foldseek_ids=..., ss8_ids=...) -> (B, L, H)``;
    the structure ids are aligned to the token positions of ``hidden`` (0 = padding).
    """

    def __init__(
        self,
        hidden_size: int,
        structure_inputs: Sequence[str],
        embedding_dim: int = 128,
        num_heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        unknown = sorted(set(structure_inputs) - set(STRUCTURE_VOCABULARIES))
        if unknown or not structure_inputs:
            raise ValueError(
                f"structure inputs must be among {sorted(STRUCTURE_VOCABULARIES)}; got {unknown}"
            )
        if embedding_dim % num_heads or (embedding_dim // num_heads) % 2:
            raise ValueError("embedding_dim must split into num_heads heads of even size")
        self.structure_inputs = tuple(structure_inputs)
        self.num_heads = num_heads
        self.attention_dropout = dropout
        self.embeddings = nn.ModuleDict(
            {
                kind: nn.Embedding(
                    max(STRUCTURE_VOCABULARIES[kind].values()) + 1, embedding_dim, padding_idx=0
                )
                for kind in self.structure_inputs
            }
        )
        self.query = nn.Linear(hidden_size, embedding_dim)
        self.key = nn.Linear(embedding_dim, embedding_dim)
        self.value = nn.Linear(embedding_dim, embedding_dim)
        self.output = nn.Linear(embedding_dim, hidden_size)
        self.output_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size)

    def _structure_embeddings(self, structure: dict[str, torch.Tensor]) -> torch.Tensor:
        expected = {structure_batch_key(kind) for kind in self.structure_inputs}
        missing, unexpected = sorted(expected - set(structure)), sorted(set(structure) - expected)
        if missing or unexpected:
            raise ValueError(
                f"the structure adapter reads {sorted(expected)} (model.ses.structure_inputs); the batch "
                f"lacks {missing or 'nothing'} and has unexpected {unexpected or 'nothing'}"
            )
        # Several structure alphabets describe the same residue: their embeddings add up, like token
        # and segment embeddings in BERT, so keys and values stay one token per residue.
        return sum(
            self.embeddings[kind](structure[structure_batch_key(kind)]) for kind in self.structure_inputs
        )

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, size = states.shape
        return states.view(batch, length, self.num_heads, size // self.num_heads).transpose(1, 2)

    def forward(
        self, hidden: torch.Tensor, residue_mask: torch.Tensor, **structure: torch.Tensor
    ) -> torch.Tensor:
        tokens = self._structure_embeddings(structure)
        if tokens.shape[:2] != hidden.shape[:2]:
            raise ValueError(
                f"structure ids of shape {tuple(tokens.shape[:2])} do not match the hidden states "
                f"{tuple(hidden.shape[:2])}; they must be aligned to the token positions"
            )
        query = apply_rotary(self._heads(self.query(hidden)))
        key = apply_rotary(self._heads(self.key(tokens)))
        value = self._heads(self.value(tokens))
        # Keys on residue positions only. A row without residues would mask every key (NaN from the
        # softmax); it attends to its padding embeddings (zeros) instead.
        keys = residue_mask.bool()
        keys = keys | ~keys.any(dim=1, keepdim=True)
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=keys[:, None, None, :],
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        batch, _, length, _ = attended.shape
        fused = self.output(attended.transpose(1, 2).reshape(batch, length, -1))
        return self.norm(hidden + self.output_dropout(fused))


@METHODS.register(
    "ses_adapter",
    uses=("ses.structure_inputs", "ses.embedding_dim", "ses.num_heads", "ses.dropout"),
)
def ses_adapter(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """Frozen backbone + a trained structure adapter between backbone and pooler (needs structure data)."""
    model = freeze(model, cfg, total_steps)
    ses = cfg.model.ses
    model.adapter = SesAdapter(
        model.backbone.hidden_size,
        ses.structure_inputs,
        embedding_dim=ses.embedding_dim,
        num_heads=ses.num_heads,
        dropout=ses.dropout,
    )
    model.adapter.requires_grad_(True)
    return model
