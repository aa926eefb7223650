"""The training-step protocol: when each hook runs, nesting, extra losses, eval weights, state on resume."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from protfit.config import apply_overrides, build_config
from protfit.data.synthetic import write_synthetic_dataset
from protfit.plugins import Plugin, PluginList
from protfit.training.train import train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 48 training rows at batch 8 = 6 micro-batches per epoch: 3 optimizer steps with accumulation 2
    root = tmp_path_factory.mktemp("plugin-data")
    return write_synthetic_dataset(root, "regression", n_train=48, n_validation=16, n_test=16, seed=2)


def make_config(data_dir, out_dir, *overrides):
    raw = {
        "data": {"path": str(data_dir), "problem_type": "regression", "batch_size": 8},
        "model": {"name": "tiny-esm2", "method": "full", "head": {"hidden_dims": [16]}},
        "train": {
            "epochs": 2,
            "learning_rate": 3e-3,
            "progress": False,
            "gradient_accumulation_steps": 2,
            "early_stopping": {"patience": None},
        },
        "evaluation": {"bootstrap": {"resamples": 20}, "baselines": {"enabled": False}},
        "output": {"dir": str(out_dir), "name": "run"},
    }
    return build_config(apply_overrides(raw, list(overrides)))


# ---- the worked example of docs/architecture.md: an EMA of the trained weights -----------------------


class EMA(Plugin):
    """Exponential moving average of the trained weights; the average is validated, tested and saved."""

    name = "ema"

    def __init__(self, decay: float = 0.9) -> None:
        self.decay, self.shadow, self.live = decay, {}, {}

    def trained(self, state):
        return {key: p for key, p in state.model.named_parameters() if p.requires_grad}

    def on_train_start(self, state):
        if not self.shadow:  # a resumed run got its average back from the checkpoint
            self.shadow = {key: p.detach().clone() for key, p in self.trained(state).items()}

    @torch.no_grad()
    def on_after_optimizer_step(self, state):
        for key, p in self.trained(state).items():
            self.shadow[key].lerp_(p, 1 - self.decay)

    @torch.no_grad()
    def swap_in_eval_weights(self, state):
        self.live = {key: p.detach().clone() for key, p in self.trained(state).items()}
        for key, p in self.trained(state).items():
            p.copy_(self.shadow[key])

    @torch.no_grad()
    def swap_out_eval_weights(self, state):
        for key, p in self.trained(state).items():
            p.copy_(self.live[key])

    def state_dict(self):
        return {"shadow": self.shadow}

    def load_state_dict(self, state):
        self.shadow = dict(state["shadow"])


# ---- contract ------------------------------------------------------------------------------------------


def test_a_misspelled_hook_is_an_error_when_the_class_is_defined():
    with pytest.raises(TypeError, match="on_epoch_ned is not a training hook; did you mean 'on_epoch_end'"):

        class Typo(Plugin):
            def on_epoch_ned(self, state): ...

    with pytest.raises(TypeError, match="did you mean 'transform_batch'"):

        class Typo2(Plugin):
            def transform_batchh(self, state, batch): ...

    class Fine(Plugin):  # helpers that do not look like hooks are allowed
        def penalty(self):
            return 0.0


def test_two_plugins_with_one_name_are_refused():
    with pytest.raises(ValueError, match="share the name"):
        PluginList([EMA(), EMA()])


class Recorder(Plugin):
    """Logs every hook call and checks gradients around clipping."""

    name = "recorder"

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.norms: dict[str, list[float]] = {"before_clip": [], "after_clip": []}

    def log(self, hook, state):
        self.calls.append((hook, state.epoch))

    def configure_model(self, parts):
        self.calls.append(("configure_model", 0))
        # runs after the method: full fine-tuning has already made the backbone trainable
        assert all(p.requires_grad for p in parts.model.backbone.parameters())

    def configure_param_groups(self, parts, groups):
        self.calls.append(("configure_param_groups", 0))
        return [*groups, {"name": "unused", "params": [], "weight_decay": 0.0}]

    def configure_optimizer(self, parts):
        self.calls.append(("configure_optimizer", 0))
        assert parts.optimizer is not None and parts.scheduler is None  # scheduler comes after

    def on_train_start(self, state):
        self.log("on_train_start", state)

    def on_epoch_start(self, state):
        self.log("on_epoch_start", state)

    def transform_batch(self, state, batch):
        self.log("transform_batch", state)
        assert state.model.training  # only training batches
        return batch

    def training_step(self, state, step, proceed):
        self.log("training_step", state)
        assert len(step.micro_batches) == 2
        return proceed()

    def loss(self, state, batch, logits, loss):
        self.log("loss", state)

    def _norm(self, state):
        grads = [p.grad.norm() for p in state.model.parameters() if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(grads)))

    def on_before_optimizer_step(self, state):
        self.log("on_before_optimizer_step", state)
        self.norms["before_clip"].append(self._norm(state))

    def on_after_clip(self, state):
        self.log("on_after_clip", state)
        self.norms["after_clip"].append(self._norm(state))

    def on_after_optimizer_step(self, state):
        self.log("on_after_optimizer_step", state)
        assert any(p.grad is not None for p in state.model.parameters())  # not yet cleared

    def swap_in_eval_weights(self, state):
        self.log("swap_in_eval_weights", state)

    def swap_out_eval_weights(self, state):
        self.log("swap_out_eval_weights", state)

    def on_validation_end(self, state):
        self.log("on_validation_end", state)
        state.epoch_record["recorder_field"] = 10 * state.epoch
        assert (
            not (state.run_dir / "history.csv").exists()
            or len(pd.read_csv(state.run_dir / "history.csv")) == state.epoch - 1
        )

    def on_epoch_end(self, state):
        self.log("on_epoch_end", state)
        assert len(pd.read_csv(state.run_dir / "history.csv")) == state.epoch

    def on_train_end(self, state):
        self.log("on_train_end", state)


def test_hooks_run_in_the_documented_order_and_number(data, tmp_path):
    recorder = Recorder()
    result = train(make_config(data, tmp_path, "train.max_grad_norm=0.01"), plugins=[recorder])
    names = [hook for hook, _ in recorder.calls]
    assert names[:3] == ["configure_model", "configure_param_groups", "configure_optimizer"]
    epoch_one = [hook for hook, epoch in recorder.calls if epoch == 1]
    step = ["transform_batch", "transform_batch", "training_step", "loss", "loss"]
    step += ["on_before_optimizer_step", "on_after_clip", "on_after_optimizer_step"]
    assert epoch_one == [
        "on_epoch_start",
        *step * 3,  # 6 micro-batches, accumulation 2
        "swap_in_eval_weights",
        "on_validation_end",
        "swap_out_eval_weights",
        "on_epoch_end",
    ]
    assert names[-1] == "on_train_end" and names.count("on_train_start") == 1
    # before clipping the gradients are raw; after, within train.max_grad_norm
    assert max(recorder.norms["before_clip"]) > 0.01
    assert max(recorder.norms["after_clip"]) <= 0.01 * (1 + 1e-4)
    # fields added in on_validation_end reach the history
    assert [row["recorder_field"] for row in result.summary["history"]] == [10, 20]


class TwoPasses(Plugin):
    """A SAM-shaped step: runs the step's forward/backward twice (the second on fresh gradients)."""

    name = "two_passes"

    def __init__(self):
        self.losses = 0

    def training_step(self, state, step, proceed):
        first = proceed()
        state.optimizer.zero_grad(set_to_none=True)
        proceed()
        return first

    def loss(self, state, batch, logits, loss):
        self.losses += 1


class Outer(Plugin):
    name = "outer"

    def __init__(self, trace):
        self.trace = trace

    def training_step(self, state, step, proceed):
        self.trace.append("outer-in")
        loss = proceed()
        self.trace.append("outer-out")
        return loss


class Inner(Outer):
    name = "inner"

    def training_step(self, state, step, proceed):
        self.trace.append("inner")
        return proceed()


def test_training_steps_nest_and_may_run_the_passes_twice(data, tmp_path):
    trace: list[str] = []
    twice = TwoPasses()
    train(make_config(data, tmp_path, "train.epochs=1"), plugins=[Outer(trace), Inner(trace), twice])
    assert trace[:3] == ["outer-in", "inner", "outer-out"]
    assert twice.losses == 2 * 6  # every micro-batch forwarded twice


class HeadPenalty(Plugin):
    name = "head_penalty"

    def __init__(self, weight):
        self.weight = weight

    def loss(self, state, batch, logits, loss):
        if self.weight:
            return self.weight * sum((p**2).sum() for p in state.model.head.parameters())
        return None


class FirstGradients(Plugin):
    """The head's weights and gradients at the first optimizer step."""

    name = "first_gradients"

    def on_before_optimizer_step(self, state):
        if state.global_step == 0:
            self.weights = {k: p.detach().clone() for k, p in state.model.head.named_parameters()}
            self.grads = {k: p.grad.detach().clone() for k, p in state.model.head.named_parameters()}


def test_an_extra_loss_term_adds_its_gradient(data, tmp_path):
    runs = {}
    for weight in (0.0, 0.5):
        spy = FirstGradients()
        cfg = make_config(data, tmp_path / str(weight), "train.epochs=1", "train.max_grad_norm=null")
        train(cfg, plugins=[HeadPenalty(weight), spy])
        runs[weight] = spy
    plain, penalised = runs[0.0], runs[0.5]
    for key, weight in plain.weights.items():
        assert torch.equal(weight, penalised.weights[key])  # same seed: same starting point
        # d/dw (0.5 * |w|^2) = w, added once per optimizer step (two micro-batches of 1/2 each)
        assert torch.allclose(penalised.grads[key] - plain.grads[key], weight, atol=1e-5)


class InterruptAfter(Plugin):
    name = "interrupt"

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


class RecordingEMA(EMA):
    def on_epoch_end(self, state):
        self.snapshots = getattr(self, "snapshots", {})
        self.snapshots[state.epoch] = {key: value.clone() for key, value in self.shadow.items()}


def test_ema_weights_are_validated_and_saved_and_survive_resume(data, tmp_path):
    # keep_last: `last` (the live weights and the average) is read below
    args = ("train.epochs=4", "train.scheduler.name=cosine", "output.checkpoints.keep_last=true")
    ema = RecordingEMA()
    uninterrupted = train(make_config(data, tmp_path / "a", *args), plugins=[ema])
    run = uninterrupted.run_dir
    # `best` holds the averaged weights of the best epoch; `last` the live ones, and the average
    best = load_file(run / "checkpoints" / "best" / "model.safetensors")
    at_best = ema.snapshots[uninterrupted.summary["best_epoch"]]
    assert all(torch.equal(best[key], at_best[key]) for key in at_best)
    live = load_file(run / "checkpoints" / "last" / "model.safetensors")
    assert not all(torch.equal(live[key], ema.shadow[key]) for key in ema.shadow)
    last_state = load_file(run / "checkpoints" / "last" / "training_state.safetensors")
    assert all(torch.equal(last_state[f"plugin/ema/shadow/{key}"], ema.shadow[key]) for key in ema.shadow)

    with pytest.raises(KeyboardInterrupt):
        train(make_config(data, tmp_path / "b", *args), plugins=[EMA(), InterruptAfter(2)])
    resumed = train(None, resume_from=tmp_path / "b" / "run", plugins=[EMA()])

    def strip(rows):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in rows]

    assert strip(resumed.summary["history"]) == strip(uninterrupted.summary["history"])
    assert resumed.summary["test_metrics"] == uninterrupted.summary["test_metrics"]


def test_resume_refuses_to_drop_a_plugins_state(data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(make_config(data, tmp_path, "train.epochs=3"), plugins=[InterruptAfter(1)])
    with pytest.raises(ValueError, match="no state for the training plug-in"):
        train(None, resume_from=tmp_path / "run", plugins=[EMA()])
