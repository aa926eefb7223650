"""Learning-rate schedules, counted in optimizer steps (not micro-batches).

With gradient accumulation a schedule counted in micro-batches ends early or late; here the
recipe passes the exact number of optimizer steps of the whole run, so the LR reaches its end value
on the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_hard_restarts_schedule_with_warmup,
    get_linear_schedule_with_warmup,
    get_polynomial_decay_schedule_with_warmup,
)

from protfit.config import ConfigError, SchedulerConfig
from protfit.registry import SCHEDULERS

ScheduleBuilder = Callable[[torch.optim.Optimizer, SchedulerConfig, int, int], LambdaLR]


@SCHEDULERS.register("none", "the base learning rate throughout", uses=())
def _no_schedule(optimizer, cfg, warmup, total):
    return LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULERS.register("constant", "warm-up, then the base learning rate", uses=())
def _constant(optimizer, cfg, warmup, total):
    return get_constant_schedule_with_warmup(optimizer, warmup)


@SCHEDULERS.register("linear", "warm-up, then linear decay to 0 at the last step", uses=())
def _linear(optimizer, cfg, warmup, total):
    return get_linear_schedule_with_warmup(optimizer, warmup, total)


@SCHEDULERS.register("cosine", "warm-up, then half a cosine to 0 at the last step", uses=())
def _cosine(optimizer, cfg, warmup, total):
    return get_cosine_schedule_with_warmup(optimizer, warmup, total)


@SCHEDULERS.register(
    "cosine_with_restarts", "warm-up, then num_cycles cosines with hard restarts", uses=("num_cycles",)
)
def _cosine_restarts(optimizer, cfg, warmup, total):
    return get_cosine_with_hard_restarts_schedule_with_warmup(optimizer, warmup, total, cfg.num_cycles)


@SCHEDULERS.register(
    "polynomial", "warm-up, then polynomial decay (power) to lr_end", uses=("power", "lr_end")
)
def _polynomial(optimizer, cfg, warmup, total):
    return get_polynomial_decay_schedule_with_warmup(
        optimizer, warmup, total, lr_end=cfg.lr_end, power=cfg.power
    )


@SCHEDULERS.register(
    "step", "warm-up, then multiply by gamma every step_size steps", uses=("step_size", "gamma")
)
def _step(optimizer, cfg, warmup, total):
    # transformers has no warm-up + step decay, and torch's StepLR cannot warm up: one lambda does both.
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return cfg.gamma ** ((step - warmup) // cfg.step_size)

    return LambdaLR(optimizer, factor)


def warmup_steps(cfg: SchedulerConfig, total_steps: int) -> int:
    if cfg.warmup_ratio:
        return math.ceil(cfg.warmup_ratio * total_steps)
    return cfg.warmup_steps


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, total_steps: int) -> LambdaLR:
    warmup = warmup_steps(cfg, total_steps)
    if cfg.name == "none" and warmup:
        raise ConfigError(
            "train.scheduler.name=none has no warm-up; use name=constant for warm-up then constant"
        )
    if warmup >= total_steps and cfg.name not in ("none", "constant"):
        raise ConfigError(
            f"train.scheduler: warm-up ({warmup} steps) must be shorter than the run ({total_steps} optimizer steps)"
        )
    return SCHEDULERS.get(cfg.name)(optimizer, cfg, warmup, total_steps)
