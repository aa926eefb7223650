from __future__ import annotations

import pytest
import torch

from protfit.config import ConfigError
from protfit.models import methods
from protfit.models.methods import apply_method, format_model_statistics, model_statistics
from protfit.models.protein_model import build_model
from protfit.registry import METHODS

SEQUENCES = ["MKTAYIAKQR", "ACDEF", "WWY"]


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _one_step(model, batch) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model(**batch).pow(2).mean()
    loss.backward()
    optimizer.step()


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {key for key, value in module.state_dict().items() if not torch.equal(before[key], value)}


@pytest.mark.parametrize("name", ["tiny-esm2", "tiny-t5"])
def test_freeze_keeps_the_backbone_identical_and_in_eval_mode(name, make_config, encode_batch):
    cfg = make_config(name=name, method="freeze", pooler="attention1d")
    model = apply_method(build_model(cfg, 2), cfg, total_steps=1)
    batch = encode_batch(model.backbone, SEQUENCES)
    backbone_before, head_before = _snapshot(model.backbone), _snapshot(model.head)
    _one_step(model, batch)
    assert model.training and not model.backbone.training  # dropout off in the frozen backbone
    assert not any(module.training for module in model.backbone.modules())
    assert _changed(backbone_before, model.backbone) == set()
    assert _changed(head_before, model.head)
    assert not model.encode(batch["input_ids"], batch["attention_mask"]).requires_grad  # no graph kept


def test_full_lets_gradients_reach_the_backbone(make_config, encode_batch):
    cfg = make_config(name="tiny-esm2", method="full")
    model = apply_method(build_model(cfg, 2), cfg, total_steps=1)
    batch = encode_batch(model.backbone, SEQUENCES)
    before = _snapshot(model.backbone)
    _one_step(model, batch)
    assert model.backbone.training
    changed = _changed(before, model.backbone)
    assert "encoder.encoder.layer.0.attention.self.query.weight" in changed
    assert "encoder.embeddings.word_embeddings.weight" in changed


def test_a_backbone_frozen_then_unfrozen_trains_again(make_config):
    cfg = make_config(name="tiny-bert", method="freeze")
    model = apply_method(build_model(cfg, 2), cfg, 1).train()
    assert not model.backbone.training
    model.backbone_trainable = True
    assert model.backbone.training
    model.eval()
    assert not model.backbone.training


def test_model_statistics_count_parameters_per_component(make_config):
    cfg = make_config(name="tiny-esm2", method="freeze", head={"hidden_dims": [4]})
    model = apply_method(build_model(cfg, 3), cfg, 1)
    stats = model_statistics(model)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    head = 32 * 4 + 4 + 4 * 3 + 3
    assert stats["components"] == {
        "backbone": {"total": backbone, "trainable": 0},
        "pooler": {"total": 0, "trainable": 0},
        "head": {"total": head, "trainable": head},
    }
    assert (stats["total"], stats["trainable"]) == (backbone + head, head)
    assert stats["percent_trainable"] == pytest.approx(100 * head / (backbone + head), abs=1e-3)
    text = format_model_statistics(stats)
    assert "backbone" in text and f"{head:,}" in text and "%" in text

    full_cfg = make_config(name="tiny-esm2", method="full", head={"hidden_dims": [4]})
    full = model_statistics(apply_method(build_model(full_cfg, 3), full_cfg, 1))
    assert full["trainable"] == full["total"] and full["percent_trainable"] == 100.0


@pytest.mark.parametrize("method", ["freeze", "full"])
def test_onehot_trains_pooler_and_head_under_either_method(method, make_config):
    cfg = make_config(name="onehot", method=method, pooler="light_attention")
    stats = model_statistics(apply_method(build_model(cfg, 2), cfg, 1))
    assert stats["components"]["backbone"] == {"total": 0, "trainable": 0}
    assert stats["trainable"] == stats["total"] > 0


def test_unknown_method_is_a_config_error_listing_the_registered_ones(make_config):
    with pytest.raises(
        ConfigError, match="unknown training method 'lorax' .did you mean 'lora'.*freeze, full"
    ):
        make_config(name="onehot", method="lorax")


def test_a_new_method_is_one_registered_function(make_config, monkeypatch):
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    METHODS.names()  # built-ins loaded before the copy is extended
    seen = {}

    @METHODS.register("head_only_with_steps")
    def head_only(model, cfg, total_steps):
        seen["total_steps"] = total_steps
        model = methods.freeze(model, cfg, total_steps)
        model.pooler.requires_grad_(False)
        return model

    cfg = make_config(name="onehot", method="head_only_with_steps", pooler="attention1d")
    model = apply_method(build_model(cfg, 2), cfg, total_steps=123)
    assert seen["total_steps"] == 123
    assert model_statistics(model)["components"]["pooler"]["trainable"] == 0
