import pytest
import torch

from protfit.config import TrainConfig
from protfit.training.optim import build_optimizer, parameter_groups


def test_weight_decay_skips_biases_and_norm_scales():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
    optimizer = build_optimizer(
        parameter_groups(model, TrainConfig(weight_decay=0.1)), TrainConfig(learning_rate=1e-3)
    )
    decay = {
        id(p) for group in optimizer.param_groups if group["weight_decay"] == 0.1 for p in group["params"]
    }
    assert decay == {id(model[0].weight), id(model[2].weight)}
    no_decay = {
        id(p) for group in optimizer.param_groups if group["weight_decay"] == 0.0 for p in group["params"]
    }
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias)}


def test_frozen_parameters_are_left_out_and_nothing_trainable_is_an_error():
    model = torch.nn.Linear(4, 2)
    model.bias.requires_grad_(False)
    optimizer = build_optimizer(parameter_groups(model, TrainConfig()), TrainConfig())
    assert [p for group in optimizer.param_groups for p in group["params"]] == [model.weight]
    model.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(parameter_groups(model, TrainConfig()), TrainConfig())
