"""PEFT methods: ``lora``, ``dora``, ``adalora``, ``ia3``, ``qlora`` through the ``peft`` library.

Each wraps ``model.backbone.encoder`` (the transformers model) in a ``peft.PeftModel``: the base
weights freeze, small adapters inside the backbone train, and the pooler and head train in full.
Gradients must pass through the frozen base to reach the adapters, so ``backbone_trainable`` is
True (the backbone runs under autograd and in train mode, with its dropout).

Adapters sit on the family's attention projections unless ``model.lora.target_modules`` names
others. A checkpoint holds only what trains (adapters, pooler, head); ``protfit.load`` rebuilds the
base model, applies the same method and loads them. ``protfit export`` merges them into the base.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from typing import Any

import torch
from torch import nn

from protfit.config import ModelConfig, RunConfig
from protfit.models.protein_model import ProteinModel
from protfit.models.sources import ModelError
from protfit.plugins import Plugin, TrainingState
from protfit.registry import METHODS

ADAPTER = "default"  # peft's adapter name; one adapter per model

# LoRA-type defaults: the attention query, key and value projections of every layer.
LORA_TARGETS: dict[str, list[str]] = {
    "esm": ["query", "key", "value"],
    "bert": ["query", "key", "value"],
    "t5": ["q", "k", "v"],
}
# IA3 (Liu et al. 2022) rescales keys, values and the feed-forward activations; the last is the input
# of the second feed-forward layer, so that layer is a "feed-forward module" (scaled on its input).
# In ESM/BERT that layer is `layer.N.output.dense`; the bare suffix `output.dense` would also catch
# the attention output projection `attention.output.dense`, hence full-match regular expressions.
IA3_TARGETS: dict[str, str | list[str]] = {
    "esm": r".*\.(key|value)|.*\.layer\.\d+\.output\.dense",
    "bert": r".*\.(key|value)|.*\.layer\.\d+\.output\.dense",
    "t5": ["k", "v", "wo"],
}
IA3_FEEDFORWARD: dict[str, str | list[str]] = {
    "esm": r".*\.layer\.\d+\.output\.dense",
    "bert": r".*\.layer\.\d+\.output\.dense",
    "t5": ["wo"],
}


def _encoder(model: ProteinModel, method: str) -> nn.Module:
    backbone = model.backbone
    if backbone.encoder is None or backbone.family not in LORA_TARGETS:
        raise ModelError(
            f"model.method={method} adds adapters to a transformer backbone, but '{backbone.name}' "
            f"({backbone.family}) has no transformer weights; use model.method=freeze or full"
        )
    return backbone.encoder


def linear_layer_names(encoder: nn.Module) -> list[str]:
    """Distinct names of the encoder's linear layers with the layer index dropped (`attention.self.key`)."""
    names = set()
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Linear):
            names.add(re.sub(r"^.*\.\d+\.", "", name))
    return sorted(names)


def _check_targets(encoder: nn.Module, targets: list[str], key: str, model_name: str) -> None:
    module_names = [name for name, _ in encoder.named_modules() if name]
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in module_names):
            raise ModelError(
                f"{key}: '{target}' matches no module of '{model_name}'. Its linear layers are: "
                f"{', '.join(linear_layer_names(encoder))} (give a name or a dotted suffix, e.g. "
                "'value' or 'attention.self.value')"
            )


def _targets(model: ProteinModel, cfg: ModelConfig, defaults: dict[str, Any]) -> str | list[str]:
    encoder = model.backbone.encoder
    if cfg.lora.target_modules is None:
        return defaults[model.backbone.family]
    _check_targets(encoder, cfg.lora.target_modules, "model.lora.target_modules", model.backbone.name)
    return list(cfg.lora.target_modules)


def _wrap(model: ProteinModel, peft_config: Any, method: str) -> ProteinModel:
    """Put the adapters in, freeze everything else in the backbone, train pooler and head."""
    from peft import get_peft_model

    encoder = _encoder(model, method)
    try:
        with warnings.catch_warnings():
            # peft probes a transformers attribute that transformers 5 deprecated; nothing for the user
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            wrapped = get_peft_model(encoder, peft_config)
    except (ValueError, TypeError, RuntimeError) as error:
        # e.g. a target that is a whole block instead of a linear layer: peft says which one
        first = " ".join(str(error).split())[:400]
        raise ModelError(f"model.method={method}: peft cannot add adapters here: {first}") from None
    model.backbone.encoder = wrapped
    for module in (model.pooler, model.head):
        module.requires_grad_(True)
    model.backbone_trainable = True
    return model


def _lora_config(model: ProteinModel, cfg: RunConfig, *, use_dora: bool = False) -> Any:
    from peft import LoraConfig

    lora = cfg.model.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_targets(model, cfg.model, LORA_TARGETS),
        use_dora=use_dora,
        bias="none",
    )


@METHODS.register("lora", uses=("lora.r", "lora.alpha", "lora.dropout", "lora.target_modules"))
def lora(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """Low-rank updates W + (alpha/r)·B·A on the target layers (Hu et al. 2021)."""
    _encoder(model, "lora")
    return _wrap(model, _lora_config(model, cfg), "lora")


@METHODS.register("dora", uses=("lora.r", "lora.alpha", "lora.dropout", "lora.target_modules"))
def dora(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """LoRA on the direction of each weight plus a trained magnitude vector (Liu et al. 2024)."""
    _encoder(model, "dora")
    return _wrap(model, _lora_config(model, cfg, use_dora=True), "dora")


@METHODS.register("ia3", uses=("lora.target_modules", "lora.feedforward_modules"))
def ia3(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """Learned per-channel scales on keys, values and feed-forward activations (Liu et al. 2022)."""
    from peft import IA3Config

    encoder = _encoder(model, "ia3")
    family = model.backbone.family
    lora = cfg.model.lora
    targets = _targets(model, cfg.model, IA3_TARGETS)
    if lora.feedforward_modules is not None:
        feedforward: str | list[str] = list(lora.feedforward_modules)
        _check_targets(encoder, feedforward, "model.lora.feedforward_modules", model.backbone.name)
        if isinstance(targets, list) and not set(feedforward) <= set(targets):
            raise ModelError(
                f"model.lora.feedforward_modules {sorted(set(feedforward) - set(targets))} are not in "
                f"model.lora.target_modules {targets}; feed-forward modules are a subset of the targets"
            )
    elif lora.target_modules is None:
        feedforward = IA3_FEEDFORWARD[family]
    else:
        feedforward = []  # the user chose the targets: all scaled on their output unless told otherwise
    return _wrap(model, IA3Config(target_modules=targets, feedforward_modules=feedforward), "ia3")


# ---- AdaLoRA -------------------------------------------------------------------------------------


def adalora_schedule(cfg: ModelConfig, total_steps: int) -> tuple[int, int]:
    """(tinit, tfinal) in optimizer steps: warm-up at full rank, then pruning, then fixed ranks.

    peft requires tinit < total_step - tfinal (a non-empty pruning phase); short runs shrink both.
    """
    tinit = int(cfg.lora.adalora_tinit_ratio * total_steps)
    tfinal = int(cfg.lora.adalora_tfinal_ratio * total_steps)
    while tinit >= total_steps - tfinal and (tinit or tfinal):
        tinit, tfinal = max(tinit - 1, 0), max(tfinal - 1, 0)
    return tinit, tfinal


class AdaLoraAllocation(Plugin):
    """AdaLoRA's rank allocation after every optimizer step, and its orthogonality regulariser.

    ``update_and_allocate`` scores every rank from weight x gradient, so it runs after the optimizer
    step and before the gradients are cleared (``on_after_optimizer_step``). peft adds the
    regulariser R = mean over A, B of ||P·Pᵀ - I||_F (Zhang et al. 2023) to the loss only inside its
    own forward and only when the model computes the loss itself; in protfit the recipe computes the
    loss, so this callback adds the gradient of weight·R before the optimizer step instead. R does
    not depend on the batch, so adding its gradient once per optimizer step equals adding it to the
    (averaged) loss of every micro-batch.
    """

    def __init__(self, tuner: nn.Module, orth_reg_weight: float) -> None:
        self.tuner = tuner  # peft's AdaLoraModel: holds the config, the rank allocator and the model
        self.orth_reg_weight = orth_reg_weight

    @property
    def peft_config(self) -> Any:
        return self.tuner.peft_config[ADAPTER]

    def orthogonality_penalty(self) -> torch.Tensor:
        """R, computed exactly as peft's AdaLoraModel.forward does."""
        terms = []
        for name, param in self.tuner.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and ADAPTER in name:
                cov = param @ param.T if "lora_A" in name else param.T @ param
                identity = torch.eye(*cov.size(), device=cov.device, dtype=cov.dtype)
                terms.append(torch.norm(cov - identity, p="fro"))
        return torch.stack(terms).mean()

    def on_train_start(self, state: TrainingState) -> None:
        config = self.peft_config
        if config.rank_pattern is None and state.global_step >= config.total_step - config.tfinal:
            # Resumed after the final allocation: the pruned ranks are the zeros of lora_E in the
            # restored checkpoint; rebuild the pattern that keeps them pruned.
            config.rank_pattern = {
                name: (param != 0).view(-1).tolist()
                for name, param in self.tuner.model.named_parameters()
                if f"lora_E.{ADAPTER}" in name
            }

    def on_before_optimizer_step(self, state: TrainingState) -> None:
        if self.orth_reg_weight <= 0:
            return
        # With fp16 the loss gradients are still multiplied by the loss scale here; match them.
        scaler = getattr(state.optimizer, "scaler", None)
        scale = scaler.get_scale() if scaler is not None else 1.0
        (self.orth_reg_weight * scale * self.orthogonality_penalty()).backward()

    def on_after_optimizer_step(self, state: TrainingState) -> None:
        config, allocator = self.peft_config, self.tuner.rankallocator
        if state.global_step == config.total_step - config.tfinal and not allocator.exp_avg_ipt:
            # the final allocation needs importance scores; a very short (or just resumed) run has none
            allocator.update_ipt(self.tuner.model)
        self.tuner.update_and_allocate(state.global_step)


@METHODS.register(
    "adalora",
    uses=(
        "lora.alpha",
        "lora.dropout",
        "lora.target_modules",
        "lora.adalora_init_r",
        "lora.adalora_target_r",
        "lora.adalora_tinit_ratio",
        "lora.adalora_tfinal_ratio",
        "lora.adalora_orth_reg_weight",
    ),
)
def adalora(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """LoRA in SVD form whose rank budget is moved to the layers that matter (Zhang et al. 2023)."""
    from peft import AdaLoraConfig

    _encoder(model, "adalora")
    if total_steps < 1:
        raise ModelError(f"adalora needs the run's optimizer step count, got total_steps={total_steps}")
    lora = cfg.model.lora
    tinit, tfinal = adalora_schedule(cfg.model, total_steps)
    config = AdaLoraConfig(
        init_r=lora.adalora_init_r,
        target_r=lora.adalora_target_r,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=1,
        total_step=total_steps,
        orth_reg_weight=lora.adalora_orth_reg_weight,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_targets(model, cfg.model, LORA_TARGETS),
    )
    model = _wrap(model, config, "adalora")
    tuner = model.backbone.encoder.base_model
    model.training_plugins.append(AdaLoraAllocation(tuner, lora.adalora_orth_reg_weight))
    return model


# ---- QLoRA ---------------------------------------------------------------------------------------


def qlora_requirements(cfg: RunConfig) -> None:
    """Checked before any data or model loads: 4/8-bit weights live on a CUDA GPU via bitsandbytes."""
    bits = cfg.model.lora.qlora_bits
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"qlora needs a CUDA GPU ({bits}-bit weights via bitsandbytes); on CPU use method=lora"
        )
    if cfg.train.device == "cpu":
        raise RuntimeError(
            f"qlora needs a CUDA GPU ({bits}-bit weights via bitsandbytes) but train.device=cpu; "
            "set train.device=auto, or use method=lora"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(
            f"qlora stores the frozen weights in {bits} bits with the bitsandbytes package, which is not "
            "installed: pip install bitsandbytes"
        )


@METHODS.register(
    "qlora",
    requirement=qlora_requirements,
    uses=(*("lora.r", "lora.alpha", "lora.dropout", "lora.target_modules"), "lora.qlora_bits"),
)
def qlora(model: ProteinModel, cfg: RunConfig, total_steps: int) -> ProteinModel:
    """LoRA on a base model whose frozen weights are stored in 4 (or 8) bits (Dettmers et al. 2023).

    The base is quantized at load time (``build_model`` passes ``backbone.base_weight_quantization`` to
    ``load_backbone``); here it is prepared for k-bit training (norms in float32, base frozen) and
    gets LoRA adapters.
    """
    from peft import prepare_model_for_kbit_training

    encoder = _encoder(model, "qlora")
    if not (getattr(encoder, "is_loaded_in_4bit", False) or getattr(encoder, "is_loaded_in_8bit", False)):
        raise ModelError(
            "model.method=qlora, but the backbone was loaded without quantization; build the model "
            "with protfit.models.protein_model.build_model so the base weights load in 4/8 bits"
        )
    model.backbone.encoder = prepare_model_for_kbit_training(encoder, use_gradient_checkpointing=False)
    return _wrap(model, _lora_config(model, cfg), "qlora")
