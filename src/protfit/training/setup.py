"""`setup_run`: everything a run trains with, built in one place that every entry point calls.

`protfit train`, the shuffled-label baseline, the LR range test and sweep trials all call
:func:`setup_run` and get the same :class:`RunParts`; none of them copies this wiring. Nothing
here writes to a run folder, so a setup can be built and thrown away (the LR range test does).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn

from protfit.config import ConfigError, RunConfig, TrainConfig, ignored_settings, with_learning_rate
from protfit.data.batching import EncodedDataset, ProteinCollator, build_dataloader
from protfit.data.loading import DatasetSplits, load_dataset_splits
from protfit.models.embedding_cache import cached_loaders, uses_embedding_cache
from protfit.models.extra_features import compute_extra_features
from protfit.models.methods import apply_method, check_method_requirements, model_statistics
from protfit.models.protein_model import ProteinModel, build_model
from protfit.models.zero_shot import masked_lm_family
from protfit.plugins import Plugin, PluginList
from protfit.registry import PLUGINS
from protfit.training.evaluation import LabelScaling, loss_function
from protfit.training.lr_range_test import (
    PLACEHOLDER_LR,
    SUGGESTION_RULES,
    RangeTestResult,
    RangeTestSettings,
    run_range_test,
)
from protfit.training.optim import build_optimizer, parameter_groups
from protfit.training.schedulers import build_scheduler

logger = logging.getLogger("protfit")


@dataclass
class RunParts:
    """What a run trains with. ``model`` and ``optimizer`` are as prepared by ``accelerator``."""

    cfg: RunConfig
    splits: DatasetSplits
    accelerator: Accelerator
    model: nn.Module
    loaders: dict[str, Any]
    criterion: nn.Module
    scaling: LabelScaling
    plugins: PluginList
    steps_per_epoch: list[int]
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    stats: dict[str, Any] = field(default_factory=dict)
    embedding_cache: dict[str, Any] | None = None
    lr_find: RangeTestResult | None = None  # the range test's result when train.learning_rate was auto
    # model.extra_features: how each was computed (reference, scoring model), for model_meta.json
    extra_feature_states: dict[str, Any] = field(default_factory=dict)
    # parameters whose requires_grad a plug-in changed after the method set it (freeze_layers freezes
    # the bottom layers): the checkpoint holds only what trained, so reloading must repeat this
    trainable_overrides: dict[str, bool] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_epoch)

    @property
    def unwrapped_model(self) -> ProteinModel:
        return self.accelerator.unwrap_model(self.model)


def build_accelerator(cfg: TrainConfig) -> Accelerator:
    """Refuse device / precision combinations that cannot work here, before any work is done.

    Under ``accelerate launch`` / ``torchrun`` the process group comes from the environment
    (one process per GPU, or gloo on CPU); a plain ``protfit train`` is one process.
    """
    has_cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not has_cuda:
        raise RuntimeError("train.device=cuda, but no CUDA GPU is visible; use train.device=auto or cpu")
    use_cpu = cfg.device == "cpu" or not has_cuda
    if cfg.mixed_precision == "fp16" and use_cpu:
        raise RuntimeError("train.mixed_precision=fp16 needs a CUDA GPU; on CPU use no (default) or bf16")
    # Some backbones hold parameters that a protein forward pass never touches (e.g. ESM's unused
    # embeddings); DDP must be told, or it waits for their gradients forever.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=use_cpu, mixed_precision=cfg.mixed_precision, kwargs_handlers=[ddp])


def bucket_sampler(loader: Any) -> Any:
    """The LengthBucketSampler under a loader, also when accelerate wrapped it for sharding."""
    sampler = loader.batch_sampler
    while not hasattr(sampler, "set_epoch") and hasattr(sampler, "batch_sampler"):
        sampler = sampler.batch_sampler
    return sampler


def optimizer_steps_per_epoch(loader: Any, epoch: int, accumulation: int, num_processes: int = 1) -> int:
    """Optimizer steps of one epoch in each process: its share of the batches, grouped by accumulation.

    accelerate gives every process ceil(batches / processes) batches (it pads the last round), so all
    processes step together."""
    sampler = bucket_sampler(loader)
    sampler.set_epoch(epoch)
    return math.ceil(math.ceil(len(sampler) / num_processes) / accumulation)


def build_loaders(
    cfg: RunConfig,
    splits: DatasetSplits,
    model: ProteinModel,
    extra_features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenized, length-bucketed loaders for each split; only the training one is shuffled.
    ``extra_features`` holds each split's (N, K) model.extra_features."""
    collator = ProteinCollator(model.backbone.pad_token_id, cfg.data.problem_type, splits.num_labels)
    loaders = {}
    for split in (splits.train, splits.validation, splits.test):
        if split is None:
            continue
        dataset = EncodedDataset(
            split.frame,
            model.backbone.tokenize(split.frame["aa_seq"].tolist()),
            cfg.data.problem_type,
            splits.num_labels,
            structure_inputs=cfg.model.structure_inputs,
            source=split.source,
            extra_features=(extra_features or {}).get(split.name),
        )
        loaders[split.name] = build_dataloader(
            dataset, cfg.data, shuffle=split.name == "train", seed=cfg.train.seed, collator=collator
        )
    return loaders


def config_plugins(cfg: RunConfig) -> list[Plugin]:
    """The plug-ins the config turns on: each PLUGINS entry builds one from the config, or None."""
    plugins = []
    for entry in PLUGINS.entries():
        plugin = entry.item(cfg)
        if plugin is not None:
            plugins.append(plugin)
    return plugins


def setup_run(
    cfg: RunConfig,
    *,
    splits: DatasetSplits | None = None,
    plugins: list[Plugin] | None = None,
    warn_ignored: bool = True,
) -> RunParts:
    """Data, model after the method, loaders (embedding cache included), optimizer, scheduler.

    ``splits`` replaces the configured data (the shuffled-label baseline, cross-validation folds);
    ``plugins`` are added after the ones the config and the method bring. With
    ``train.learning_rate=auto`` the rate is resolved first (:func:`resolve_auto_learning_rate`) and
    the run is built from a new config that carries it (``parts.cfg``; ``cfg`` itself is never changed).
    """
    # Device and method checks first: a run that cannot work here (QLoRA on CPU, fp16 without a GPU)
    # stops before any data or weights are read.
    accelerator = build_accelerator(cfg.train)
    check_method_requirements(cfg)
    lr_find = None
    if cfg.train.learning_rate == "auto":
        if accelerator.num_processes > 1:
            raise ConfigError(
                "train.learning_rate=auto runs the range test in one process; run `protfit lr-find CONFIG` "
                "first and set train.learning_rate to its suggestion"
            )
        # Before anything of the real run is built: every plug-in then sees a number (layer-wise LR
        # decay multiplies it), never the string "auto".
        cfg, lr_find = resolve_auto_learning_rate(cfg, splits=splits, plugins=plugins)
    if warn_ignored:
        for key, reason in ignored_settings(cfg):
            logger.warning("%s is set but ignored: %s", key, reason)
    if splits is None:
        splits = load_dataset_splits(cfg.data)
    # Seed right before the first random draw (head and pooler initialisation), so the same seed
    # gives the same weights whatever was loaded before.
    set_seed(cfg.train.seed)
    # With several processes the main one builds or converts an alias's folder first (transformers
    # writes model files from rank 0 only); the others then load the finished folder.
    with accelerator.main_process_first():
        model = build_model(cfg, splits.num_labels)
    extra, extra_states = _extra_features(cfg, splits, model)
    loaders = build_loaders(cfg, splits, model, extra)

    # The method needs the run's optimizer-step count (AdaLoRA's rank schedule), which needs the
    # training loader: so loaders come before the method.
    accumulation = cfg.train.gradient_accumulation_steps
    processes = accelerator.num_processes
    steps_per_epoch = [
        optimizer_steps_per_epoch(loaders["train"], epoch, accumulation, processes)
        for epoch in range(cfg.train.epochs)
    ]
    model = apply_method(model, cfg, sum(steps_per_epoch))
    parts = RunParts(
        cfg=cfg,
        splits=splits,
        accelerator=accelerator,
        model=model,
        loaders=loaders,
        criterion=loss_function(cfg.data.problem_type),
        scaling=LabelScaling.fit(splits.train.frame, cfg.data.problem_type),
        plugins=PluginList([*config_plugins(cfg), *model.training_plugins, *(plugins or [])]),
        steps_per_epoch=steps_per_epoch,
        lr_find=lr_find,
        extra_feature_states=extra_states,
    )
    # Plug-ins adjust the model after the method (a method sets requires_grad wholesale; partial
    # freezing, re-initialisation and dropout changes refine it) and before the cache decision.
    method_trains = {name: p.requires_grad for name, p in parts.model.named_parameters()}
    parts.plugins.call("configure_model", parts)
    parts.trainable_overrides = {
        name: p.requires_grad
        for name, p in parts.model.named_parameters()
        if method_trains.get(name, not p.requires_grad) != p.requires_grad
    }

    if uses_embedding_cache(parts.model, cfg):
        if parts.plugins.needs_backbone_forward:
            names = [plugin.key for plugin in parts.plugins if plugin.needs_backbone_forward]
            logger.warning(
                "embedding cache off: %s change the backbone's inputs or weights during training, so "
                "the frozen backbone runs on every batch",
                ", ".join(names),
            )
        else:
            # A frozen backbone's outputs never change: computed once (or read from disk), the pooler
            # and head train on them without running the backbone again; same samplers, same batches.
            parts.loaders, parts.embedding_cache = _cached_loaders(parts)
    parts.stats = model_statistics(parts.model)

    # Parameter groups, then the optimizer; plug-ins may wrap it (Lookahead) or replace it together
    # with model and loader (DP-SGD); the scheduler is built last, on the optimizer that will step.
    groups = parts.plugins.param_groups(parts, parameter_groups(parts.model, cfg.train))
    parts.optimizer = build_optimizer(groups, cfg.train)
    parts.plugins.call("configure_optimizer", parts)
    parts.scheduler = build_scheduler(parts.optimizer, cfg.train.scheduler, parts.total_steps)
    _prepare(parts)
    return parts


def resolve_auto_learning_rate(
    cfg: RunConfig,
    *,
    splits: DatasetSplits | None = None,
    plugins: list[Plugin] | None = None,
    settings: RangeTestSettings | None = None,
) -> tuple[RunConfig, RangeTestResult]:
    """train.learning_rate=auto: the range test on a throw-away setup of the run (built with a
    placeholder rate: only the ratios between parameter groups matter, the ramp sets the rate), and a
    new config carrying the suggestion."""
    probe = setup_run(
        with_learning_rate(cfg, PLACEHOLDER_LR), splits=splits, plugins=plugins, warn_ignored=False
    )
    result = run_range_test(probe, probe.optimizer, PLACEHOLDER_LR, settings or RangeTestSettings())
    logger.info(
        "train.learning_rate=auto: range test %.0e..%.0e over %d steps (%s) suggests %.3g (%s)",
        result.start_lr,
        result.end_lr,
        len(result.learning_rates),
        result.stopped,
        result.suggestion,
        SUGGESTION_RULES[result.rule],
    )
    if result.note:
        logger.warning("train.learning_rate=auto: %s", result.note)
    return with_learning_rate(cfg, result.suggestion), result


def _extra_features(
    cfg: RunConfig, splits: DatasetSplits, model: ProteinModel
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """model.extra_features of every split, the scaler fitted on train; refuses a zero-shot scorer that
    is no masked LM (evaluation.baselines.zero_shot=true included) before any training."""
    if cfg.evaluation.baselines.zero_shot is True or "zero_shot" in cfg.model.extra_features:
        masked_lm_family(cfg.model.zero_shot_scorer)
    if model.feature_scaler is None:
        return None, {}
    frames = {split.name: split.frame for split in (splits.train, splits.validation, splits.test) if split}
    values, states = compute_extra_features(cfg, frames, progress=cfg.train.progress)
    model.feature_scaler.fit(values["train"])
    return values, states


def _cached_loaders(parts: RunParts) -> tuple[dict[str, Any], dict[str, Any]]:
    accelerator = parts.accelerator
    # Several processes: the main one builds (or finds) the cache entry first, the others then read it.
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
    loaders, report = cached_loaders(parts.model, parts.cfg, parts.loaders, accelerator)
    if accelerator.is_main_process:
        accelerator.wait_for_everyone()
    return loaders, report


def _prepare(parts: RunParts) -> None:
    """Hand model and optimizer (and, with several processes, the loaders) to accelerate.

    The loaders are sharded only when there is more than one process: one process then keeps
    protfit's own loader, whose batches (and so a resumed run) are exactly reproducible.
    """
    accelerator = parts.accelerator
    parts.model, parts.optimizer = accelerator.prepare(parts.model, parts.optimizer)
    if accelerator.num_processes > 1:
        for name, loader in parts.loaders.items():
            parts.loaders[name] = accelerator.prepare_data_loader(loader)
