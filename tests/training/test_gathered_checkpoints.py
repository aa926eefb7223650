"""Every checkpoint of a run goes through `trainable_weights`, which gathers sharded weights under FSDP
or DeepSpeed. No GPU here: the sharded case is simulated by the accelerator's distributed type and a
stand-in for its (collective) `get_state_dict`; what accelerate gathers on real GPUs is not tested."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from protfit.config import build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.models.protein_model import trainable_state_dict
from protfit.report.run_dir import History, create_run_dir
from protfit.training import loop
from protfit.training.loop import fit
from protfit.training.setup import setup_run
from protfit.training.train import run_environment

GATHERED = 7.0  # what the stand-in gather returns for every tensor: no trained weight has this value


@pytest.fixture
def parts_and_run_dir(tmp_path):
    data = write_synthetic_dataset(
        tmp_path / "data", "regression", n_train=16, n_validation=8, n_test=8, seed=2
    )
    cfg = build_config(
        {
            "data": {"path": str(data), "problem_type": "regression", "batch_size": 8},
            "model": {"name": "onehot", "method": "full", "head": {"hidden_dims": [4]}},
            "train": {"epochs": 2, "learning_rate": 1e-3, "progress": False},
            "output": {"dir": str(tmp_path / "runs"), "name": "run"},
        }
    )
    parts = setup_run(cfg)
    return parts, create_run_dir(cfg, run_environment(parts))


def checkpoint_weights(run_dir, name):
    return load_file(run_dir / "checkpoints" / name / "model.safetensors")


@pytest.mark.parametrize("sharding", [DistributedType.FSDP, DistributedType.DEEPSPEED])
def test_sharded_runs_write_the_gathered_trainable_weights_to_every_checkpoint(
    parts_and_run_dir, monkeypatch, sharding
):
    parts, run_dir = parts_and_run_dir
    trainable = set(trainable_state_dict(parts.unwrapped_model))
    gathers = []

    def gather(self, model, unwrap=True):
        gathers.append(model)
        full = {key: torch.full_like(value, GATHERED) for key, value in model.state_dict().items()}
        return {**full, "backbone.frozen_and_never_saved": torch.zeros(3)}

    # Sharded only from validation's end to the epoch's end, when the checkpoints are written:
    # accelerate's own backward would otherwise look for the DeepSpeed engine.
    sharded = []
    validate, train_one_epoch = loop.validate_epoch, loop.train_one_epoch

    def validated(*args):
        improved = validate(*args)
        sharded.append(True)
        return improved

    def trained(*args):
        sharded.clear()
        return train_one_epoch(*args)

    monkeypatch.setattr(loop, "validate_epoch", validated)
    monkeypatch.setattr(loop, "train_one_epoch", trained)
    actual = Accelerator.distributed_type
    monkeypatch.setattr(
        Accelerator, "distributed_type", property(lambda self: sharding if sharded else actual.fget(self))
    )
    monkeypatch.setattr(Accelerator, "get_state_dict", gather)
    fit(parts, run_dir)

    assert len(gathers) == 2 + sum(row["best"] for row in History.load(run_dir).records)  # `last` each epoch
    for name in ("best", "last"):
        saved = checkpoint_weights(run_dir, name)
        assert set(saved) == trainable, name
        assert all(torch.all(tensor == GATHERED) for tensor in saved.values()), name


def test_unsharded_runs_save_the_model_weights_without_a_gather(parts_and_run_dir, monkeypatch):
    parts, run_dir = parts_and_run_dir

    def gather(self, model, unwrap=True):
        raise AssertionError("get_state_dict called without sharding")

    monkeypatch.setattr(Accelerator, "get_state_dict", gather)
    fit(parts, run_dir)

    live = trainable_state_dict(parts.unwrapped_model)
    assert set(checkpoint_weights(run_dir, "best")) == set(live)
    last = checkpoint_weights(run_dir, "last")
    assert set(last) == set(live)
    assert all(torch.equal(last[key], live[key]) for key in live)
