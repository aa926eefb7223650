from __future__ import annotations

import pytest
import torch

from protfit.models.methods import apply_method
from protfit.models.protein_model import build_model, load_trainable_state_dict, trainable_state_dict
from protfit.models.sources import ModelError

SEQUENCES = ["MKTAYIAKQR", "ACDEF", "W"]


@pytest.mark.parametrize("name", ["tiny-esm2", "tiny-bert", "tiny-t5", "onehot"])
@pytest.mark.parametrize(
    ("problem", "num_labels", "out"),
    [("single_label_classification", 3, 3), ("multi_label_classification", 4, 4), ("regression", 1, 1)],
)
def test_logits_and_embeddings_shapes(name, problem, num_labels, out, make_config, encode_batch):
    model = build_model(make_config(problem, name=name, pooler="light_attention"), num_labels)
    batch = encode_batch(model.backbone, SEQUENCES)
    assert model(**batch).shape == (3, out)
    assert model.embed(**batch).shape == (3, 2 * model.backbone.hidden_size)


def test_onehot_flatten_mlp_is_the_classic_landscape_baseline(make_config, encode_batch):
    cfg = make_config(
        "regression", max_seq_len=5, name="onehot", pooler="flatten", head={"hidden_dims": [16]}
    )
    model = build_model(cfg, 1)
    assert model.pooler.output_dim == 5 * 21
    assert model(**encode_batch(model.backbone, ["ACDEF", "ACDEY"])).shape == (2, 1)


@pytest.mark.parametrize(
    ("name", "method", "backbone_keys"),
    [
        ("tiny-esm2", "freeze", False),
        ("tiny-esm2", "full", True),
        ("onehot", "freeze", False),
        ("onehot", "full", False),
    ],
)
def test_trainable_state_dict_holds_what_trains(name, method, backbone_keys, make_config):
    cfg = make_config(name=name, method=method, pooler="attention1d", head={"norm": "batchnorm"})
    model = apply_method(build_model(cfg, 2), cfg, total_steps=10)
    state = trainable_state_dict(model)
    assert any(key.startswith("backbone.") for key in state) == backbone_keys
    assert {
        "pooler.score.weight",
        "head.0.weight",
        "head.1.running_mean",
        "head.1.num_batches_tracked",
    } <= set(state)
    trainable = {key for key, param in model.named_parameters() if param.requires_grad}
    assert {key for key in state if "running_" not in key and "num_batches" not in key} == trainable


@pytest.mark.parametrize("method", ["freeze", "full"])
def test_trainable_state_dict_round_trip(method, make_config, encode_batch):
    cfg = make_config(name="tiny-esm2", method=method, head={"norm": "batchnorm"})
    torch.manual_seed(0)
    trained = apply_method(build_model(cfg, 2), cfg, 10)
    batch = encode_batch(trained.backbone, SEQUENCES)
    optimizer = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=0.5)
    trained.train()
    trained(**batch).sum().backward()
    optimizer.step()

    torch.manual_seed(1)
    restored = apply_method(build_model(cfg, 2), cfg, 10)
    load_trainable_state_dict(restored, trainable_state_dict(trained))
    trained.eval(), restored.eval()
    torch.testing.assert_close(restored(**batch), trained(**batch))


def test_loading_a_foreign_checkpoint_names_the_keys(make_config):
    cfg = make_config(name="tiny-esm2")
    model = apply_method(build_model(cfg, 2), cfg, 10)
    state = trainable_state_dict(model)
    state.pop("head.0.weight")
    state["head.9.weight"] = torch.zeros(1)
    state["pooler.unused"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"missing: head.0.weight; unexpected: head.9.weight, pooler.unused"):
        load_trainable_state_dict(model, state)
    other = make_config(name="tiny-esm2", head={"hidden_dims": [8]})
    with pytest.raises(
        ModelError, match=r"shape mismatch: head.0.bias \(checkpoint \(8,\), model \(256,\)\)"
    ):
        load_trainable_state_dict(model, trainable_state_dict(apply_method(build_model(other, 2), other, 10)))
