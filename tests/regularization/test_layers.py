"""backbone_layers: one helper finds the transformer layers of every family, also under PEFT."""

from __future__ import annotations

import pytest
import torch
from reg_helpers import layer_dropout, make_config

from protfit.models.methods import apply_method
from protfit.models.protein_model import build_model
from protfit.regularization.layers import (
    backbone_layers,
    input_embeddings,
    layer_of_parameters,
)


@pytest.mark.parametrize(
    ("name", "method", "layer_type"),
    [
        ("tiny-esm2", "full", "EsmLayer"),
        ("tiny-bert", "full", "BertLayer"),
        ("tiny-t5", "full", "T5Block"),
        ("tiny-esm2", "lora", "EsmLayer"),
        ("tiny-t5", "lora", "T5Block"),
    ],
)
def test_backbone_layers_per_family(tmp_path, name, method, layer_type):
    cfg = make_config(tmp_path, tmp_path, f"model.name={name}", method=method)
    model = apply_method(build_model(cfg, 3), cfg, 10)
    layers = backbone_layers(model)
    assert [type(layer).__name__ for layer in layers] == [layer_type] * model.backbone.num_layers
    assert isinstance(input_embeddings(model), torch.nn.Embedding)
    owner = layer_of_parameters(model)
    assert set(owner.values()) == {-1, *range(len(layers))}  # embeddings and every layer
    hidden, attention = layer_dropout(layers[0])
    assert hidden and attention  # both kinds found (LoRA's own dropout is not a layer dropout)
    if method == "lora":
        assert all(p == 0.1 for p in hidden)
