"""Partial freezing, gradual unfreezing on schedule, re-initialisation of the top layers."""

from __future__ import annotations

import torch
from reg_helpers import R, make_config

from protfit.plugins import Plugin
from protfit.regularization.layers import backbone_layers, layer_of_parameters
from protfit.training.setup import setup_run
from protfit.training.train import train


def test_freeze_bottom_layers(classification_data, tmp_path):
    cfg = make_config(
        classification_data, tmp_path, R + "freeze_layers.enabled=true", R + "freeze_layers.bottom=1"
    )
    parts = setup_run(cfg)
    model = parts.unwrapped_model
    owner = layer_of_parameters(model)
    for p in model.backbone.parameters():
        if id(p) in owner:
            assert p.requires_grad == (owner[id(p)] >= 1)
    assert all(p.requires_grad for p in model.head.parameters())


class LayerMoves(Plugin):
    """Which backbone layers (-1: embeddings) changed during each epoch."""

    name = "moves"

    def __init__(self):
        self.moved = {}

    def on_epoch_start(self, state):
        self.before = {k: p.detach().clone() for k, p in state.model.backbone.named_parameters()}
        self.owner = layer_of_parameters(state.model)
        self.ids = {k: id(p) for k, p in state.model.backbone.named_parameters()}

    def on_epoch_end(self, state):
        changed = set()
        for key, p in state.model.backbone.named_parameters():
            if not torch.equal(p, self.before[key]) and self.ids[key] in self.owner:
                changed.add(self.owner[self.ids[key]])
        self.moved[state.epoch] = changed


def test_gradual_unfreezing_changes_the_trainable_set_on_schedule(classification_data, tmp_path):
    # freeze method: only the head trains in epoch 1, then the top layer, then both layers, then the embeddings
    moves = LayerMoves()
    cfg = make_config(
        classification_data,
        tmp_path,
        "train.epochs=4",
        "train.scheduler.name=constant",
        R + "gradual_unfreezing.enabled=true",
        method="freeze",
    )
    result = train(cfg, plugins=[moves])
    assert moves.moved == {1: set(), 2: {1}, 3: {0, 1}, 4: {-1, 0, 1}}
    assert [row["unfrozen_layers"] for row in result.summary["history"]] == [0, 1, 2, 2]
    assert result.summary["embedding_cache"] is None  # the backbone changes: no cache


def test_reinit_top_layer_only(classification_data, tmp_path):
    from protfit.models.protein_model import build_model

    plain = make_config(classification_data, tmp_path)
    reference = backbone_layers(build_model(plain, 3))
    cfg = make_config(
        classification_data, tmp_path, R + "reinit_layers.enabled=true", R + "reinit_layers.top=1"
    )
    layers = backbone_layers(setup_run(cfg).model)

    def same(a, b):
        return all(
            torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        )

    assert same(layers[0], reference[0])
    assert not same(layers[1], reference[1])
