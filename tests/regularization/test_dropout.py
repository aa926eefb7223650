"""Dropout: probabilities per layer (flat, growing with depth, listed) and per epoch / step (scheduled)."""

from __future__ import annotations

import pytest
from reg_helpers import R, layer_dropout, make_config

from protfit.plugins import Plugin
from protfit.regularization.dropout import scheduled_value
from protfit.regularization.layers import backbone_layers
from protfit.regularization.sections.dropout import ScheduledDropoutConfig
from protfit.training.setup import setup_run
from protfit.training.train import train


def test_layerwise_dropout_grows_with_depth_and_attention_is_overridden(classification_data, tmp_path):
    cfg = make_config(
        classification_data,
        tmp_path,
        R + "dropout.enabled=true",
        R + "dropout.hidden=0.05",
        R + "dropout.layerwise_step=0.1",
        R + "dropout.attention=0.2",
    )
    parts = setup_run(cfg)
    per_layer = [layer_dropout(layer) for layer in backbone_layers(parts.model)]
    assert [{round(p, 6) for p in hidden} for hidden, _ in per_layer] == [{0.05}, {0.15}]
    assert [set(attention) for _, attention in per_layer] == [{0.2}, {0.2}]


def test_dropout_listed_per_layer_on_t5_under_lora(classification_data, tmp_path):
    cfg = make_config(
        classification_data,
        tmp_path,
        "model.name=tiny-t5",
        R + "dropout.enabled=true",
        R + "dropout.per_layer=[0.0,0.3]",
        method="lora",
    )
    parts = setup_run(cfg)
    assert [set(layer_dropout(layer)[0]) for layer in backbone_layers(parts.model)] == [{0.0}, {0.3}]
    with pytest.raises(ValueError, match="per_layer has 3 values; the backbone has 2 layers"):
        setup_run(
            make_config(
                classification_data, tmp_path, R + "dropout.enabled=true", R + "dropout.per_layer=[0,0,0]"
            )
        )


def test_schedule_shapes():
    linear = ScheduledDropoutConfig(enabled=True, start=0.1, end=0.5)
    cosine = ScheduledDropoutConfig(enabled=True, start=0.1, end=0.5, shape="cosine")
    assert [scheduled_value(linear, t) for t in (0, 0.5, 1)] == pytest.approx([0.1, 0.3, 0.5])
    assert [scheduled_value(cosine, t) for t in (0, 0.25, 0.5, 1)] == pytest.approx(
        [0.1, 0.1586, 0.3, 0.5], abs=1e-3
    )


class HeadDropoutSpy(Plugin):
    name = "spy"

    def __init__(self):
        self.seen = []

    def transform_batch(self, state, batch):
        self.seen.append((state.epoch, state.global_step, _head_p(state)))
        return batch


def _head_p(state):
    import torch

    return next(m.p for m in state.model.head.modules() if isinstance(m, torch.nn.Dropout))


def test_scheduled_dropout_per_epoch_and_per_step(classification_data, tmp_path):
    spy = HeadDropoutSpy()
    cfg = make_config(
        classification_data,
        tmp_path / "epoch",
        "train.epochs=3",
        R + "scheduled_dropout.enabled=true",
        R + "scheduled_dropout.start=0.0",
        R + "scheduled_dropout.end=0.4",
        method="freeze",
    )
    result = train(cfg, plugins=[spy])
    assert sorted({(epoch, round(p, 6)) for epoch, _, p in spy.seen}) == [(1, 0.0), (2, 0.2), (3, 0.4)]
    assert [row["dropout"] for row in result.summary["history"]] == pytest.approx([0.0, 0.2, 0.4])

    spy = HeadDropoutSpy()
    cfg = make_config(
        classification_data,
        tmp_path / "step",
        "train.epochs=2",
        R + "scheduled_dropout.enabled=true",
        R + "scheduled_dropout.unit=step",
        R + "scheduled_dropout.end=0.5",
        method="freeze",
    )
    train(cfg, plugins=[spy])
    # 3 steps per epoch, 6 in all: step t uses start + (end - start) * t / 5
    assert [round(p, 6) for _, _, p in spy.seen] == pytest.approx([0.5 * t / 5 for t in range(6)])
