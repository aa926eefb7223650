"""SWA and EMA: the kept weights equal the running average, and they are what is validated and saved."""

from __future__ import annotations

import pytest
import torch
from reg_helpers import R, make_config
from safetensors.torch import load_file

from protfit.plugins import Plugin
from protfit.training.train import train


class EpochEndWeights(Plugin):
    """Live trained weights at the end of each epoch (after SWA's own end-of-epoch update)."""

    name = "epoch_end_weights"

    def __init__(self):
        self.weights, self.steps = {}, []

    def on_after_optimizer_step(self, state):
        self.steps.append(
            {k: p.detach().clone() for k, p in state.model.named_parameters() if p.requires_grad}
        )
        if state.global_step == sum(state.parts.steps_per_epoch[: state.epoch]):
            self.weights[state.epoch] = self.steps[-1]


def best_checkpoint(result):
    return load_file(result.run_dir / "checkpoints" / "best" / "model.safetensors")


def test_swa_average_of_epoch_end_weights_is_validated_and_saved(classification_data, tmp_path):
    spy = EpochEndWeights()
    cfg = make_config(
        classification_data,
        tmp_path,
        "train.epochs=3",
        "train.early_stopping.monitor=loss",
        R + "swa.enabled=true",
        R + "swa.start_epoch=2",
        R + "swa.lr=0.0005",
        method="freeze",
    )
    result = train(cfg, plugins=[spy])
    history = result.summary["history"]
    assert [row["swa_models"] for row in history] == [0, 1, 2]
    assert history[-1]["lr"] == 0.0005  # constant SWA learning rate from the start epoch on
    best = best_checkpoint(result)
    epoch = result.summary["best_epoch"]
    if epoch >= 2:
        members = [spy.weights[e] for e in range(2, epoch + 1)]
        for key in members[0]:
            assert torch.allclose(best[key], torch.stack([m[key] for m in members]).mean(0), atol=1e-6)
    else:  # before the start epoch the live weights are evaluated
        assert all(torch.equal(best[key], spy.weights[1][key]) for key in spy.weights[1])


def test_ema_is_the_running_average_and_is_saved(classification_data, tmp_path):
    spy = EpochEndWeights()
    cfg = make_config(
        classification_data,
        tmp_path,
        "train.epochs=2",
        R + "ema.enabled=true",
        R + "ema.decay=0.5",
        "output.checkpoints.keep_last=true",  # `last` (the live weights) is read below
        method="freeze",
    )
    start = {}

    class Start(Plugin):
        name = "start"

        def on_train_start(self, state):
            start.update(
                {k: p.detach().clone() for k, p in state.model.named_parameters() if p.requires_grad}
            )

    result = train(cfg, plugins=[Start(), spy])
    average = dict(start)
    expected = {}
    for index, step in enumerate(spy.steps, start=1):
        average = {k: 0.5 * average[k] + 0.5 * step[k] for k in average}
        if index == 3 * result.summary["best_epoch"]:  # 3 optimizer steps per epoch
            expected = average
    best = best_checkpoint(result)
    assert expected and all(torch.allclose(best[k], expected[k], atol=1e-6) for k in expected)
    live = load_file(result.run_dir / "checkpoints" / "last" / "model.safetensors")
    assert not all(torch.equal(live[k], best[k]) for k in expected)  # `last` keeps the live weights


class InterruptAfterFirst(Plugin):
    name = "interrupt"

    def on_epoch_end(self, state):
        if state.epoch == 1:
            raise KeyboardInterrupt


def test_resume_equals_an_uninterrupted_run_with_stateful_and_random_techniques(
    classification_data, tmp_path
):
    # SWA mid-anneal, gradient noise and augmentation draw random numbers or keep state across epochs
    args = (
        "train.epochs=2",
        R + "swa.enabled=true",
        R + "swa.start_epoch=1",
        R + "swa.lr=0.001",
        R + "swa.anneal_epochs=2",
        R + "gradient_noise.enabled=true",
        R + "augmentation.enabled=true",
        R + "augmentation.mask_prob=0.5",
    )
    whole = train(make_config(classification_data, tmp_path / "a", *args))
    with pytest.raises(KeyboardInterrupt):
        train(make_config(classification_data, tmp_path / "b", *args), plugins=[InterruptAfterFirst()])
    resumed = train(None, resume_from=tmp_path / "b" / "run")

    def strip(rows):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in rows]

    assert strip(resumed.summary["history"]) == strip(whole.summary["history"])
    assert resumed.summary["test_metrics"] == whole.summary["test_metrics"]
