"""Layer-wise LR decay: top layer base LR, each layer below x decay, embeddings x decay^layers; head LR."""

from __future__ import annotations

import pytest
from reg_helpers import R, make_config

from protfit.regularization.layers import layer_of_parameters
from protfit.training.setup import setup_run


@pytest.mark.parametrize(("name", "method"), [("tiny-esm2", "full"), ("tiny-bert", "lora")])
def test_learning_rates_per_layer_group(classification_data, tmp_path, name, method):
    cfg = make_config(
        classification_data,
        tmp_path,
        f"model.name={name}",
        "train.learning_rate=0.01",
        "train.scheduler.name=constant",
        R + "layerwise_lr.enabled=true",
        R + "layerwise_lr.decay=0.5",
        R + "layerwise_lr.head_lr=0.002",
        method=method,
    )
    parts = setup_run(cfg)
    model = parts.unwrapped_model
    owner = layer_of_parameters(model)
    lr_of = {id(p): g["lr"] for g in parts.optimizer.param_groups for p in g["params"]}
    expected = {-1: 0.0025, 0: 0.005, 1: 0.01}  # 2 layers: embeddings, bottom, top
    for name_, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name_.startswith(("head", "pooler")):
            assert lr_of[id(p)] == pytest.approx(0.002), name_
        elif id(p) in owner:
            assert lr_of[id(p)] == pytest.approx(expected[owner[id(p)]]), name_
        else:
            assert lr_of[id(p)] == pytest.approx(0.01), name_  # above the layers: the top's LR
    trained_layers = {owner[id(p)] for p in model.backbone.parameters() if p.requires_grad and id(p) in owner}
    assert {0, 1} <= trained_layers
