"""Weight decay per component and as an L2 penalty; L2-SP is zero at the pretrained weights."""

from __future__ import annotations

import pytest
import torch
from reg_helpers import R, make_config

from protfit.training.setup import setup_run


def groups_by_component(parts):
    names = {id(p): n for n, p in parts.unwrapped_model.named_parameters()}
    found = {}
    for group in parts.optimizer.param_groups:
        for p in group["params"]:
            found.setdefault((names[id(p)].split(".")[0], p.ndim >= 2), set()).add(group["weight_decay"])
    return found


def test_separate_decay_for_backbone_pooler_head_never_biases(classification_data, tmp_path):
    cfg = make_config(
        classification_data,
        tmp_path,
        "model.pooler=attention1d",
        R + "weight_decay.enabled=true",
        R + "weight_decay.backbone=0.001",
        R + "weight_decay.head=0.3",
    )
    found = groups_by_component(setup_run(cfg))
    assert found[("backbone", True)] == {0.001}
    assert found[("pooler", True)] == {0.01}  # train.weight_decay
    assert found[("head", True)] == {0.3}
    assert all(found[(component, False)] == {0.0} for component in ("backbone", "pooler", "head"))


def test_l2_mode_moves_the_decay_into_the_loss(classification_data, tmp_path):
    cfg = make_config(
        classification_data,
        tmp_path,
        R + "weight_decay.enabled=true",
        R + "weight_decay.mode=l2",
        R + "weight_decay.head=0.5",
        R + "weight_decay.backbone=0",
        R + "weight_decay.pooler=0",
    )
    parts = setup_run(cfg)
    assert {g["weight_decay"] for g in parts.optimizer.param_groups} == {0.0}  # AdamW decays nothing
    plugin = next(p for p in parts.plugins if p.name == "weight_decay")
    head_weights = [p for p in parts.model.head.parameters() if p.ndim >= 2]
    expected = 0.5 / 2 * sum(p.pow(2).sum() for p in head_weights)
    assert torch.allclose(plugin.loss(None, {}, None, None), expected)


def test_l2_sp_is_zero_at_the_pretrained_weights_and_pulls_back(classification_data, tmp_path):
    cfg = make_config(classification_data, tmp_path, R + "l2_sp.enabled=true", R + "l2_sp.alpha=2.0")
    parts = setup_run(cfg)
    plugin = next(p for p in parts.plugins if p.name == "l2_sp")
    assert float(plugin.penalty().detach()) == 0.0
    weight = parts.model.backbone.encoder.encoder.layer[0].attention.self.query.weight
    pretrained = weight.detach().clone()
    with torch.no_grad():
        weight.add_(0.1)
    assert float(plugin.penalty()) == pytest.approx(2.0 / 2 * 0.01 * weight.numel(), rel=1e-4)
    gradient = torch.autograd.grad(plugin.penalty(), weight)[0]
    assert torch.allclose(gradient, 2.0 * (weight - pretrained))  # toward w0, not toward 0
