"""Weight averaging: SWA (equal average of epoch-end weights, Izmailov et al. 2018) and an EMA.

The average is what is validated, saved as ``checkpoints/best`` and therefore tested (the
``swap_in/swap_out_eval_weights`` hooks put it in place around validation and the best-checkpoint
write); ``checkpoints/last`` holds the live weights, and the average travels in the plug-in state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.layers import trained_parameters
from protfit.regularization.sections.averaging import EMAConfig, SWAConfig


class WeightAverage(Plugin):
    """Keeps ``average`` (name -> tensor) of the trained weights and swaps it in for evaluation."""

    def __init__(self) -> None:
        self.average: dict[str, torch.Tensor] = {}
        self.live: dict[str, torch.Tensor] = {}

    def ready(self) -> bool:
        return bool(self.average)

    @torch.no_grad()
    def swap_in_eval_weights(self, state: TrainingState) -> None:
        self.live = {}
        if not self.ready():
            return
        for name, p in trained_parameters(state.model).items():
            self.live[name] = p.detach().clone()
            p.copy_(self.average[name])
        self.after_swap_in(state)

    def after_swap_in(self, state: TrainingState) -> None: ...

    @torch.no_grad()
    def swap_out_eval_weights(self, state: TrainingState) -> None:
        for name, p in trained_parameters(state.model).items():
            if name in self.live:
                p.copy_(self.live[name])
        self.live = {}


class EMA(WeightAverage):
    """shadow = decay * shadow + (1 - decay) * weights after every optimizer step."""

    name = "ema"

    def __init__(self, cfg: EMAConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def on_train_start(self, state: TrainingState) -> None:
        if not self.average:  # a resumed run got its average back from the checkpoint
            self.average = {k: p.detach().clone() for k, p in trained_parameters(state.model).items()}

    @torch.no_grad()
    def on_after_optimizer_step(self, state: TrainingState) -> None:
        for name, p in trained_parameters(state.model).items():
            self.average[name].lerp_(p, 1 - self.cfg.decay)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average = dict(state["average"])


class SWA(WeightAverage):
    """Equal average of the weights at the end of every epoch from ``start_epoch`` on; from then the
    learning rate is ``lr`` (linearly annealed to it over ``anneal_epochs``), else the schedule's.
    BatchNorm statistics (if the model has any) are recomputed for the averaged weights on the
    training split before each evaluation, as ``torch.optim.swa_utils.update_bn`` does."""

    name = "swa"

    def __init__(self, cfg: SWAConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.count = 0
        self.saved_norms: dict[str, torch.Tensor] = {}

    def _epoch_end_step(self, state: TrainingState) -> int:
        return sum(state.parts.steps_per_epoch[: state.epoch])

    def _set_lr(self, state: TrainingState) -> None:
        if self.cfg.lr is None or state.epoch < self.cfg.start_epoch:
            return
        steps = state.parts.steps_per_epoch
        start = sum(steps[: self.cfg.start_epoch - 1])
        anneal = sum(steps[self.cfg.start_epoch - 1 : self.cfg.start_epoch - 1 + self.cfg.anneal_epochs])
        share = 1.0 if anneal == 0 else min(1.0, (state.global_step - start + 1) / anneal)
        scheduler = state.parts.scheduler
        lrs = [lr * (1 - share) + self.cfg.lr * share for lr in _scheduled(scheduler)]
        for group, lr in zip(state.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        # the history's `lr` column reads the scheduler; keep it truthful
        scheduler._last_lr = lrs

    def on_epoch_start(self, state: TrainingState) -> None:
        self._set_lr(state)

    @torch.no_grad()
    def on_after_optimizer_step(self, state: TrainingState) -> None:
        if state.epoch >= self.cfg.start_epoch and state.global_step == self._epoch_end_step(state):
            self.count += 1
            for name, p in trained_parameters(state.model).items():
                if name not in self.average:
                    self.average[name] = p.detach().clone()
                else:
                    self.average[name] += (p.detach() - self.average[name]) / self.count
        self._set_lr(state)

    def _norms(self, model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def after_swap_in(self, state: TrainingState) -> None:
        norms = self._norms(state.model)
        if not norms or not self.cfg.update_bn:
            return
        from protfit.regularization.diagnostics import train_eval_loader
        from protfit.training.evaluation import model_inputs

        self.saved_norms = {
            f"{i}/{k}": v.clone() for i, m in enumerate(norms) for k, v in m.state_dict().items()
        }
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
        state.model.train()
        for batch in train_eval_loader(state.parts):
            batch = {k: v.to(state.parts.accelerator.device) for k, v in batch.items()}
            state.model(**model_inputs(batch))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        state.model.eval()

    @torch.no_grad()
    def swap_out_eval_weights(self, state: TrainingState) -> None:
        super().swap_out_eval_weights(state)
        if self.saved_norms:
            for i, m in enumerate(self._norms(state.model)):
                m.load_state_dict({k: self.saved_norms[f"{i}/{k}"] for k in m.state_dict()})
            self.saved_norms = {}

    def on_validation_end(self, state: TrainingState) -> None:
        state.epoch_record["swa_models"] = self.count

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average, self.count = dict(state["average"]), int(state["count"])


def _scheduled(scheduler: Any) -> list[float]:
    """The schedule's own LRs at its current step (not the SWA override kept in ``_last_lr``)."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return list(scheduler.get_last_lr())
    return [base * f(scheduler.last_epoch) for base, f in zip(scheduler.base_lrs, lambdas, strict=True)]
