import os
import random

import numpy as np
import pytest
import torch

from protfit.training import checkpoint as checkpoint_module
from protfit.training.checkpoint import (
    CheckpointOwnerError,
    check_checkpoint_owner,
    checkpoint_run_id,
    is_complete,
    load_model_state,
    load_training_state,
    recover_checkpoint,
    save_checkpoint,
)


def make_training_objects():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler


def take_steps(model, optimizer, scheduler, steps=3):
    for _ in range(steps):
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_resuming_reproduces_the_uninterrupted_continuation(tmp_path):
    model, optimizer, scheduler = make_training_objects()
    take_steps(model, optimizer, scheduler)
    save_checkpoint(
        tmp_path / "last",
        model.state_dict(),
        optimizer=optimizer,
        scheduler=scheduler,
        progress={"epoch": 2, "global_step": 3},
        plugins={"ema": {"decay": 0.9, "weights": {"w": torch.arange(3.0)}, "count": [1, torch.ones(2)]}},
    )
    numpy_draw, python_draw = np.random.rand(3), random.random()
    take_steps(model, optimizer, scheduler)  # the uninterrupted run (its batches come from the torch RNG)

    resumed_model, resumed_optimizer, resumed_scheduler = make_training_objects()
    resumed_model.load_state_dict(load_model_state(tmp_path / "last"))
    progress, plugins = load_training_state(tmp_path / "last", resumed_optimizer, resumed_scheduler)
    assert progress == {"epoch": 2, "global_step": 3}
    assert plugins["ema"]["decay"] == 0.9  # plug-in state: JSON values and (nested) tensors round-trip
    assert torch.equal(plugins["ema"]["weights"]["w"], torch.arange(3.0))
    assert plugins["ema"]["count"][0] == 1 and torch.equal(plugins["ema"]["count"][1], torch.ones(2))
    assert resumed_scheduler.last_epoch == 3
    assert np.array_equal(np.random.rand(3), numpy_draw) and random.random() == python_draw
    take_steps(resumed_model, resumed_optimizer, resumed_scheduler)
    for resumed, uninterrupted in zip(resumed_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(resumed, uninterrupted)


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path):
    model, optimizer, scheduler = make_training_objects()
    take_steps(model, optimizer, scheduler, 1)
    save_checkpoint(tmp_path / "last", model.state_dict(), optimizer=optimizer, scheduler=scheduler)
    names = sorted(path.name for path in (tmp_path / "last").iterdir())
    assert names == [
        "checkpoint.json",
        "model.safetensors",
        "training_state.json",
        "training_state.safetensors",
    ]
    save_checkpoint(tmp_path / "last", model.state_dict())  # overwrite in place leaves no staging folders
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last"]


def crash_between_the_renames(monkeypatch):
    """Make the second os.replace of a checkpoint replacement fail, like a kill right there."""
    real_replace, calls = os.replace, []

    def replace(source, target):
        calls.append((source, target))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        real_replace(source, target)

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)


def test_a_kill_between_the_renames_is_repaired_on_load(tmp_path, monkeypatch):
    model, optimizer, scheduler = make_training_objects()
    save_checkpoint(
        tmp_path / "last", model.state_dict(), optimizer=optimizer, scheduler=scheduler, progress={"epoch": 1}
    )
    take_steps(model, optimizer, scheduler, 1)
    with monkeypatch.context() as patch:
        crash_between_the_renames(patch)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(
                tmp_path / "last",
                model.state_dict(),
                optimizer=optimizer,
                scheduler=scheduler,
                progress={"epoch": 2},
            )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.old", "last.tmp"]
    assert is_complete(tmp_path / "last.tmp") and is_complete(tmp_path / "last.old")
    state = load_model_state(tmp_path / "last")  # the newer, complete `last.tmp` is moved into place
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
    assert load_training_state(tmp_path / "last", optimizer, scheduler) == ({"epoch": 2}, {})
    save_checkpoint(tmp_path / "last", model.state_dict())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last"]


def test_an_incomplete_staging_folder_is_never_used(tmp_path):
    model, _, _ = make_training_objects()
    save_checkpoint(tmp_path / "last", model.state_dict(), progress={"epoch": 1})
    os.replace(tmp_path / "last", tmp_path / "last.old")
    (tmp_path / "last.tmp").mkdir()  # cut off mid-write: no marker
    (tmp_path / "last.tmp" / "model.safetensors").write_bytes(b"partial")
    assert recover_checkpoint(tmp_path / "last")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last", "last.tmp"]
    load_model_state(tmp_path / "last")
    (tmp_path / "last" / "model.safetensors").write_bytes(b"x")  # a half-deleted folder: sizes differ
    os.replace(tmp_path / "last", tmp_path / "gone.old")
    assert not recover_checkpoint(tmp_path / "gone")


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    model, _, _ = make_training_objects()
    save_checkpoint(tmp_path / "last", model.state_dict(), run_id="run-a")
    assert checkpoint_run_id(tmp_path / "last") == "run-a"
    check_checkpoint_owner(tmp_path / "last", "run-a")
    with pytest.raises(CheckpointOwnerError, match="belongs to run run-a, not to this run \\(run-b\\)"):
        check_checkpoint_owner(tmp_path / "last", "run-b")
    save_checkpoint(tmp_path / "legacy", model.state_dict())  # saved without an id: nothing to compare
    check_checkpoint_owner(tmp_path / "legacy", "run-b")
