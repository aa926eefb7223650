import random

import numpy as np
import torch

from protfit.training.checkpoint import load_model_state, load_training_state, save_checkpoint


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
    assert names == ["model.safetensors", "training_state.json", "training_state.safetensors"]
    save_checkpoint(tmp_path / "last", model.state_dict())  # overwrite in place leaves no staging folders
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last"]
