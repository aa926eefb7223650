"""Ready-made search spaces: the ranges people search by hand, written down with their source.

Every range is a starting point from the literature or the common defaults of the libraries the
methods come from, not a tuned result; docs/sweeps.md repeats the table with the sources.
"""

from __future__ import annotations

from collections.abc import Callable

from protfit.config import ConfigError, RunConfig
from protfit.sweep.config import CategoricalParam, FloatParam, IntParam

Param = FloatParam | IntParam | CategoricalParam

# (low, high) of the learning rate by training method, sampled log-uniformly.
LEARNING_RATE_BY_METHOD: dict[str, tuple[float, float]] = {
    # only pooler + head train on fixed features: a small network from scratch, Adam-scale rates
    "freeze": (1e-4, 1e-2),
    # all backbone weights move: BERT-style fine-tuning rates (Devlin et al. 2019 searched 2e-5..5e-5;
    # ESM fine-tuning work uses 1e-5..1e-4), widened by a factor ~3 on both sides
    "full": (1e-6, 1e-4),
    # adapters start at zero and need larger steps (Hu et al. 2021, LoRA: 1e-4..5e-4 on RoBERTa/DeBERTa)
    "lora": (1e-5, 1e-3),
    "dora": (1e-5, 1e-3),
    "adalora": (1e-5, 1e-3),
    "qlora": (1e-5, 1e-3),  # Dettmers et al. 2023 used 1e-4..2e-4
    # IA3 learns only scaling vectors (Liu et al. 2022, T-Few: 3e-3)
    "ia3": (1e-4, 1e-2),
    # a new cross-attention adapter on a frozen backbone: between adapter and head-only rates
    "ses_adapter": (1e-5, 1e-3),
}
LORA_TYPE_METHODS = ["lora", "dora", "qlora"]


def _learning_rate(base: RunConfig) -> FloatParam:
    low, high = LEARNING_RATE_BY_METHOD.get(base.model.method, (1e-5, 1e-2))
    return FloatParam(type="float", low=low, high=high, log=True)


def quick(base: RunConfig) -> dict[str, Param]:
    """Learning rate (by method), head dropout, weight decay: the three that matter most."""
    return {
        "train.learning_rate": _learning_rate(base),
        # Srivastava et al. 2014 used 0.1 (inputs) to 0.5 (hidden units); 0.5 is the usual upper bound
        "model.head.dropout": FloatParam(type="float", low=0.0, high=0.5),
        # AdamW decoupled decay (Loshchilov & Hutter 2019); 0.01 is the transformers default, 1e-5..1e-1
        # brackets it by two decades on both sides
        "train.weight_decay": FloatParam(type="float", low=1e-5, high=1e-1, log=True),
    }


def standard(base: RunConfig) -> dict[str, Param]:
    """`quick` plus batch size, warm-up share, and LoRA rank / alpha for the LoRA-type methods."""
    return {
        **quick(base),
        # powers of two around the default 16 that fit a small GPU for 8M-650M models
        "data.batch_size": CategoricalParam(type="categorical", choices=[8, 16, 32, 64]),
        # BERT warmed up over 10 % of training (Devlin et al. 2019); 0 (none) to 20 %
        "train.scheduler.warmup_ratio": FloatParam(type="float", low=0.0, high=0.2),
        # LoRA ranks 1..64 all worked in Hu et al. 2021 (table 6); 4..32 is the usual search range
        "model.lora.r": CategoricalParam(
            type="categorical", choices=[4, 8, 16, 32], when={"model.method": LORA_TYPE_METHODS}
        ),
        # alpha = r or 2r are the common settings (peft default 8/16); scale alpha/r in 0.5..4
        "model.lora.alpha": CategoricalParam(
            type="categorical", choices=[8, 16, 32, 64], when={"model.method": LORA_TYPE_METHODS}
        ),
    }


PRESETS: dict[str, Callable[[RunConfig], dict[str, Param]]] = {"quick": quick, "standard": standard}


def preset_space(name: str, base: RunConfig) -> dict[str, Param]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose from {', '.join(sorted(PRESETS))}")
    return PRESETS[name](base)


def describe_presets() -> str:
    lines = []
    for name, builder in PRESETS.items():
        lines.append(f"{name}: {builder.__doc__}")
    lines.append(
        "learning rate by method (log-uniform): "
        + ", ".join(f"{method} {low:g}-{high:g}" for method, (low, high) in LEARNING_RATE_BY_METHOD.items())
    )
    return "\n".join(lines)
