"""A user's components in one module of their own, no protfit file edited: a regularizer (with its
config section), a pooler, a head, a metric and a scheduler train, evaluate, predict and bootstrap."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pandas as pd
import pytest

from protfit.cli import main
from protfit.config import ConfigError, apply_overrides, build_config, refresh_regularization_schema
from protfit.data.synthetic import write_synthetic_dataset
from protfit.registry import HEADS, METRICS, PLUGINS, POOLERS, SCHEDULERS
from protfit.training.train import train

USER_MODULE = textwrap.dedent(
    '''
    """One file: everything a user adds."""
    import numpy as np
    import torch
    from pydantic import Field
    from torch import nn
    from torch.optim.lr_scheduler import LambdaLR

    from protfit.metrics import MetricInputs, register_metric
    from protfit.plugins import Plugin
    from protfit.registry import HEADS, POOLERS, SCHEDULERS
    from protfit.regularization.technique import Technique, register_regularizer


    class MaxPooler(nn.Module):
        def __init__(self, hidden_size):
            super().__init__()
            self.output_dim = hidden_size

        def forward(self, hidden, residue_mask):
            masked = hidden.masked_fill(~residue_mask.bool().unsqueeze(-1), float("-inf"))
            return masked.max(dim=1).values


    @POOLERS.register("user_max", "maximum over the residues", uses=())
    def user_max(hidden_size, cfg):
        return MaxPooler(hidden_size)


    @HEADS.register("user_linear", "one linear layer")
    def user_linear(in_dim, out_dim, cfg):
        return nn.Linear(in_dim, out_dim)


    @SCHEDULERS.register("user_halving", "halve the rate every 4 optimizer steps", uses=())
    def user_halving(optimizer, cfg, warmup, total):
        return LambdaLR(optimizer, lambda step: 0.5 ** (step // 4))


    @register_metric("user_within_half", "regression", "share of predictions within 0.5 of the target")
    def within_half(inputs: MetricInputs) -> float:
        return float(np.mean(np.abs(inputs.outputs - inputs.targets) <= 0.5))


    class OutputPenaltyConfig(Technique):
        weight: float = Field(0.01, gt=0.0, description="Weight of the mean squared output")


    @register_regularizer("user_output_penalty", OutputPenaltyConfig, "penalty on large outputs")
    class OutputPenalty(Plugin):
        name = "user_output_penalty"

        def __init__(self, section):
            self.weight, self.terms = section.weight, 0

        def loss(self, state, batch, logits, loss):
            self.terms += 1
            return self.weight * logits.pow(2).mean()

        def summary_entries(self, summary):
            return {"user_output_penalty": {"weight": self.weight, "terms": self.terms}}
    '''
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The module above, imported; every registry it writes to is restored afterwards."""
    with monkeypatch.context() as patch:
        for registry in (POOLERS, HEADS, SCHEDULERS, METRICS, PLUGINS):
            registry.names()  # the built-ins loaded before the copy the user entries go into
            patch.setattr(registry, "_entries", dict(registry._entries))
        (tmp_path / "my_protfit_plugins.py").write_text(USER_MODULE)
        patch.syspath_prepend(str(tmp_path))
        yield importlib.import_module("my_protfit_plugins")
        sys.modules.pop("my_protfit_plugins")
    refresh_regularization_schema()  # the built-in sections only, again


def user_config(tmp_path, *overrides):
    data = write_synthetic_dataset(
        tmp_path / "data", "regression", seed=3, n_train=80, n_validation=30, n_test=30
    )
    raw = {
        "data": {"path": str(data), "problem_type": "regression", "batch_size": 16},
        "model": {"name": "onehot", "method": "full", "pooler": "user_max", "head": {"type": "user_linear"}},
        "train": {
            "epochs": 2,
            "learning_rate": 3e-3,
            "progress": False,
            "scheduler": {"name": "user_halving"},
        },
        "evaluation": {
            "metrics": ["user_within_half", "mse"],
            "bootstrap": {"resamples": 20},
            "baselines": {"enabled": False},
        },
        "regularization": {"user_output_penalty": {"enabled": True, "weight": 0.05}},
        "output": {"dir": str(tmp_path / "runs"), "name": "run"},
    }
    return build_config(apply_overrides(raw, list(overrides))), data


def test_one_user_module_adds_a_regularizer_pooler_head_metric_and_scheduler(user_module, tmp_path):
    cfg, data = user_config(tmp_path)
    assert cfg.regularization.user_output_penalty.weight == 0.05  # the section joined the schema
    result = train(cfg)
    run = result.run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert summary["user_output_penalty"]["terms"] > 0  # the regularizer's loss term ran
    history = summary["history"]
    assert history[1]["lr"] < history[0]["lr"]  # the user schedule halved the rate
    tested = summary["test_metrics"]["user_within_half"]
    assert 0.0 <= tested["low"] <= tested["value"] <= tested["high"] <= 1.0  # bootstrapped

    assert main(["eval", str(run), "--split", "test", "-o", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())["metrics"]
    assert evaluated["user_within_half"]["value"] == pytest.approx(tested["value"])
    assert main(["predict", str(run), str(data / "test.csv"), "-o", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    original = pd.read_csv(run / "test_predictions.csv")
    assert predicted["prediction"].to_numpy() == pytest.approx(original["prediction"].to_numpy(), abs=1e-5)


def test_a_user_section_is_validated_like_a_built_in_one(user_module, tmp_path):
    with pytest.raises(ConfigError, match="regularization.user_output_penalty.weight"):
        user_config(tmp_path, "regularization.user_output_penalty.weight=-1")
    with pytest.raises(ConfigError, match="unknown key 'regularization.user_output_penalty.wieght'"):
        user_config(tmp_path, "regularization.user_output_penalty.wieght=1")


def test_without_the_module_its_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'regularization.user_output_penalty'"):
        user_config(tmp_path)
