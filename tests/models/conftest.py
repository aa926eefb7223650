from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from protfit.config import RunConfig, build_config
from protfit.data.batching import ProteinCollator
from protfit.models.backbone import Backbone


@pytest.fixture
def make_config() -> Callable[..., RunConfig]:
    """RunConfig for model tests, e.g. ``make_config(name="tiny-bert", pooler="cls", head={...})``."""

    def make(
        problem_type: str = "single_label_classification", max_seq_len: int | None = 64, **model: Any
    ) -> RunConfig:
        model.setdefault("name", "tiny-esm2")
        data = {"path": "unused", "problem_type": problem_type, "max_seq_len": max_seq_len}
        return build_config({"data": data, "model": model})

    return make


@pytest.fixture
def encode_batch() -> Callable[[Backbone, list[str]], dict[str, torch.Tensor]]:
    """Sequences -> the model inputs of one padded batch, built by the real collator."""

    def encode(backbone: Backbone, sequences: list[str]) -> dict[str, torch.Tensor]:
        items = [
            {"input_ids": item.input_ids, "residue_mask": item.residue_mask, "label": None, "index": index}
            for index, item in enumerate(backbone.tokenize(sequences))
        ]
        batch = ProteinCollator(backbone.pad_token_id, "regression", 1)(items)
        return {key: batch[key] for key in ("input_ids", "attention_mask", "residue_mask")}

    return encode
