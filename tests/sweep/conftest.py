"""A tiny, fast sweep: the one-hot encoder trained in full on the synthetic classification set."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from protfit.sweep.config import build_sweep_config
from protfit.sweep.study import prepare_sweep

SYNTHETIC = Path(__file__).resolve().parents[2] / "examples" / "data" / "synthetic"


def base_config(**train) -> dict:
    return {
        "data": {"path": str(SYNTHETIC), "problem_type": "single_label_classification", "batch_size": 32},
        "model": {"name": "onehot", "method": "full", "head": {"hidden_dims": [16]}},
        "train": {"epochs": 2, "learning_rate": 3e-3, **train},
        "evaluation": {"bootstrap": {"resamples": 20}, "baselines": {"enabled": False}},
    }


def sweep_raw(out_dir: Path, **fields) -> dict:
    raw = {
        "base": base_config(),
        "space": {
            "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model.head.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
        "n_trials": 2,
        "pruner": {"name": "none"},
        "output": {"dir": str(out_dir), "name": "sweep"},
    }
    raw.update(copy.deepcopy(fields))
    return raw


def make_sweep(out_dir: Path, **fields):
    return prepare_sweep(build_sweep_config(sweep_raw(out_dir, **fields), "test sweep"), "test sweep")


@pytest.fixture(name="sweep_raw")
def sweep_raw_fixture():
    return sweep_raw


@pytest.fixture(name="make_sweep")
def make_sweep_fixture():
    return make_sweep


@pytest.fixture(name="base_config")
def base_config_fixture():
    return base_config
