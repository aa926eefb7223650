"""The training recipe: one run, read top to bottom.

setup (seed, data, model, method, optimizer, schedule) -> epochs (train, validate, early stop,
checkpoint) -> restore best -> test with bootstrap intervals -> sanity baselines -> report.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from protfit.config import RunConfig, TrainConfig, load_config
from protfit.data.batching import EncodedDataset, ProteinCollator, build_dataloader
from protfit.data.loading import DatasetSplits, load_dataset_splits
from protfit.metrics import compute_metrics, metric_mode, targets_from_frame
from protfit.models.embedding_cache import cached_loaders, uses_embedding_cache
from protfit.models.methods import (
    apply_method,
    check_method_requirements,
    format_model_statistics,
    model_statistics,
)
from protfit.models.protein_model import build_model, load_trainable_state_dict, trainable_state_dict
from protfit.report.baselines import (
    BaselineResult,
    constant_prediction_warning,
    fit_sanity_baselines,
    format_baseline_table,
    verdict,
)
from protfit.report.confidence import format_with_interval, metrics_with_intervals
from protfit.report.plots import plot_history
from protfit.report.run_dir import CONFIG_FILE, History, create_run_dir, write_json
from protfit.training.callbacks import Callback, CallbackList, TrainingState
from protfit.training.checkpoint import load_model_state, load_training_state, save_checkpoint
from protfit.training.early_stopping import EarlyStopping
from protfit.training.evaluation import (
    LabelScaling,
    evaluate,
    loss_function,
    model_inputs,
    write_predictions,
)
from protfit.training.optim import build_optimizer
from protfit.training.schedulers import build_scheduler

logger = logging.getLogger("protfit")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def build_accelerator(cfg: TrainConfig) -> Accelerator:
    """Refuse device / precision combinations that cannot work here, before any work is done."""
    has_cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not has_cuda:
        raise RuntimeError("train.device=cuda, but no CUDA GPU is visible; use train.device=auto or cpu")
    use_cpu = cfg.device == "cpu" or not has_cuda
    if cfg.mixed_precision == "fp16" and use_cpu:
        raise RuntimeError("train.mixed_precision=fp16 needs a CUDA GPU; on CPU use no (default) or bf16")
    return Accelerator(cpu=use_cpu, mixed_precision=cfg.mixed_precision)


def optimizer_steps_per_epoch(loader: torch.utils.data.DataLoader, epoch: int, accumulation: int) -> int:
    loader.batch_sampler.set_epoch(epoch)
    return math.ceil(len(loader.batch_sampler) / accumulation)


def train(
    config: RunConfig | str | Path,
    overrides: list[str] | None = None,
    *,
    resume_from: str | Path | None = None,
    callbacks: list[Callback] | None = None,
) -> RunResult:
    """Train, validate and test one model; everything lands in the run directory."""
    started = time.perf_counter()
    if resume_from is not None:
        run_dir = Path(resume_from)
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir} is not a protfit run folder (no {CONFIG_FILE})")
        cfg = load_config(run_dir / CONFIG_FILE, overrides)
    else:
        cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
        run_dir = None

    # ---- setup -------------------------------------------------------------------------------
    accelerator = build_accelerator(cfg.train)
    check_method_requirements(cfg)
    splits = load_dataset_splits(cfg.data)
    run_dir = run_dir or create_run_dir(cfg)
    logger.info("run folder: %s", run_dir)
    write_json(run_dir / "data_report.json", splits.report)

    try:
        summary = fit_and_test(
            cfg, splits, run_dir, accelerator, resume=resume_from is not None, callbacks=callbacks
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: completed epochs are saved in {run_dir}; "
            f"continue with `protfit train --resume {run_dir}`"
        )
        raise

    baselines: list[BaselineResult] = []
    if splits.test is not None and cfg.evaluation.baselines.enabled:
        baselines = fit_sanity_baselines(
            splits.train.frame,
            splits.validation.frame,
            splits.test.frame,
            cfg.data.problem_type,
            splits.num_labels,
            cfg.metric_names,
            cfg.evaluation.bootstrap,
            cfg.evaluation.multi_label_threshold,
        )
        if cfg.evaluation.baselines.shuffled_labels:
            baselines.append(shuffled_label_baseline(cfg, splits, run_dir, accelerator))
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    report_test_results(cfg, summary, baselines, run_dir)
    return RunResult(run_dir=run_dir, summary=summary)


def fit_and_test(
    cfg: RunConfig,
    splits: DatasetSplits,
    run_dir: Path,
    accelerator: Accelerator,
    *,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
) -> dict[str, Any]:
    set_seed(cfg.train.seed)
    problem = cfg.data.problem_type
    model = build_model(cfg, splits.num_labels)
    scaling = LabelScaling.fit(splits.train.frame, problem)
    write_json(
        run_dir / "model_meta.json",
        {
            "problem_type": problem,
            "num_labels": splits.num_labels,
            "label_names": splits.label_names,
            "label_scaling": scaling.as_dict(),
            "family": model.backbone.family,
        },
    )

    collator = ProteinCollator(model.backbone.pad_token_id, problem, splits.num_labels)
    loaders = {}
    for split in (splits.train, splits.validation, splits.test):
        if split is None:
            continue
        dataset = EncodedDataset(
            split.frame,
            model.backbone.tokenize(split.frame["aa_seq"].tolist()),
            problem,
            splits.num_labels,
            structure_inputs=cfg.model.structure_inputs,
            source=split.source,
        )
        loaders[split.name] = build_dataloader(
            dataset, cfg.data, shuffle=split.name == "train", seed=cfg.train.seed, collator=collator
        )

    accumulation = cfg.train.gradient_accumulation_steps
    steps_per_epoch = [
        optimizer_steps_per_epoch(loaders["train"], epoch, accumulation) for epoch in range(cfg.train.epochs)
    ]
    total_steps = sum(steps_per_epoch)
    model = apply_method(model, cfg, total_steps)
    embedding_cache = None
    if uses_embedding_cache(model, cfg):
        # A frozen backbone's outputs never change: computed once (or read from disk), the pooler and
        # head train on them without running the backbone again; same samplers, so the same batches.
        loaders, embedding_cache = cached_loaders(model, cfg, loaders, accelerator)
    stats = model_statistics(model)
    write_json(run_dir / "model_stats.json", stats)
    print(format_model_statistics(stats))

    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train.scheduler, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    criterion = loss_function(problem)
    stopper = EarlyStopping(
        cfg.monitor, cfg.monitor_mode, cfg.train.early_stopping.patience, cfg.train.early_stopping.min_delta
    )
    history = History(run_dir)
    state = TrainingState(config=cfg, model=model, optimizer=optimizer, run_dir=run_dir)
    hooks = CallbackList([*accelerator.unwrap_model(model).training_callbacks, *(callbacks or [])])
    checkpoints = run_dir / "checkpoints"

    if resume:
        load_trainable_state_dict(model, load_model_state(checkpoints / "last"))
        progress = load_training_state(checkpoints / "last", optimizer, scheduler)
        state.epoch, state.global_step = progress["epoch"], progress["global_step"]
        stopper.load_state_dict(progress["early_stopping"])
        history = History.load(run_dir)
        history.truncate(state.epoch)
        print(f"resuming {run_dir} after epoch {state.epoch} (step {state.global_step})")

    val_targets = targets_from_frame(splits.validation.frame, problem, splits.num_labels)

    # ---- epochs ------------------------------------------------------------------------------
    hooks.on_train_start(state)
    first_epoch = state.epoch + 1
    for epoch in range(first_epoch, cfg.train.epochs + 1):
        if stopper.should_stop:
            break
        state.epoch = epoch
        epoch_started = time.perf_counter()
        train_loss, padding = train_one_epoch(
            model,
            loaders["train"],
            optimizer,
            scheduler,
            criterion,
            scaling,
            accelerator,
            cfg,
            state,
            hooks,
            steps_per_epoch[epoch - 1],
        )
        validation = evaluate(
            model,
            loaders["validation"],
            criterion,
            scaling,
            accelerator,
            problem,
            progress=f"epoch {epoch}/{cfg.train.epochs} validation" if cfg.train.progress else None,
        )
        val_metrics = compute_metrics(
            cfg.metric_names,
            problem,
            validation.outputs,
            val_targets,
            splits.num_labels,
            cfg.evaluation.multi_label_threshold,
        )
        monitored = validation.loss if cfg.monitor == "loss" else val_metrics[cfg.monitor]
        improved = stopper.update(monitored, epoch)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": validation.loss,
            **{f"val_{name}": value for name, value in val_metrics.items()},
            "lr": scheduler.get_last_lr()[0],
            "padding_fraction": padding,
            "epoch_time_s": round(time.perf_counter() - epoch_started, 3),
            "best": improved,
        }
        state.epoch_record = record
        history.append(record)
        unwrapped = accelerator.unwrap_model(model)
        if improved:
            save_checkpoint(checkpoints / "best", trainable_state_dict(unwrapped))
        save_checkpoint(
            checkpoints / "last",
            trainable_state_dict(unwrapped),
            optimizer=optimizer,
            scheduler=scheduler,
            progress={
                "epoch": epoch,
                "global_step": state.global_step,
                "early_stopping": stopper.state_dict(),
            },
        )
        plot_history(history.records, cfg.metric_names, run_dir)
        print(format_epoch_line(record, cfg, improved))
        hooks.on_epoch_end(state)
    hooks.on_train_end(state)

    # ---- test with the best weights ----------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)
    load_trainable_state_dict(unwrapped, load_model_state(checkpoints / "best"))
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "monitor": cfg.monitor,
        "monitor_mode": cfg.monitor_mode,
        "best_epoch": stopper.best_epoch,
        "best_val_metric": stopper.best_value,
        "epochs_run": len(history.records),
        "stopped_early": stopper.should_stop and len(history.records) < cfg.train.epochs,
        "model_stats": stats,
        "embedding_cache": embedding_cache,
        "history": history.records,
    }
    if splits.test is not None:
        test = evaluate(
            unwrapped,
            loaders["test"],
            criterion,
            scaling,
            accelerator,
            problem,
            progress="test" if cfg.train.progress else None,
        )
        test_targets = targets_from_frame(splits.test.frame, problem, splits.num_labels)
        summary["test_loss"] = test.loss
        summary["test_metrics"] = metrics_with_intervals(
            cfg.metric_names,
            problem,
            test.outputs,
            test_targets,
            splits.num_labels,
            cfg.evaluation.bootstrap,
            cfg.evaluation.multi_label_threshold,
        )
        summary["_test_outputs"], summary["_test_targets"] = test.outputs, test_targets
        write_predictions(
            run_dir / "test_predictions.csv",
            splits.test.frame,
            test.outputs,
            problem,
            splits.label_names,
            cfg.evaluation.multi_label_threshold,
        )
    return summary


def train_one_epoch(
    model,
    loader,
    optimizer,
    scheduler,
    criterion,
    scaling,
    accelerator,
    cfg: RunConfig,
    state,
    hooks,
    optimizer_steps: int,
) -> tuple[float, float]:
    """One pass over the training data; returns (mean train loss, padding fraction)."""
    model.train()
    loader.batch_sampler.set_epoch(state.epoch - 1)
    accumulation = cfg.train.gradient_accumulation_steps
    batches = list(iter(loader))
    total_loss, samples, real_tokens, padded_tokens = 0.0, 0, 0, 0
    progress = tqdm(
        batches,
        desc=f"epoch {state.epoch}/{cfg.train.epochs} train",
        disable=not cfg.train.progress,
        leave=False,
        dynamic_ncols=True,
    )
    optimizer.zero_grad(set_to_none=True)
    for position, batch in enumerate(progress):
        group_start = position - position % accumulation
        group_size = min(accumulation, len(batches) - group_start)
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.autocast():
            logits = model(**model_inputs(batch))
            loss = criterion(logits, scaling.scale(batch["labels"]))
        # Each micro-batch contributes its share of the optimizer step; a short last group is
        # scaled by its own size so the step is an average, not a partial sum.
        accelerator.backward(loss / group_size)
        size = batch["labels"].shape[0]
        total_loss += loss.item() * size
        samples += size
        token_mask = batch.get("attention_mask", batch["residue_mask"])
        real_tokens += int(token_mask.sum())
        padded_tokens += token_mask.numel()
        if position - group_start + 1 == group_size:
            hooks.on_before_optimizer_step(state)
            if cfg.train.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            state.global_step += 1
            hooks.on_after_optimizer_step(state)  # gradients still present (AdaLoRA reads them)
            optimizer.zero_grad(set_to_none=True)
            progress.set_postfix(
                loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", step=state.global_step
            )
    if not math.isfinite(total_loss):
        raise FloatingPointError(
            f"training loss became {total_loss} in epoch {state.epoch}; lower train.learning_rate "
            "or set train.max_grad_norm"
        )
    return total_loss / max(samples, 1), 1.0 - real_tokens / max(padded_tokens, 1)


def format_epoch_line(record: dict[str, Any], cfg: RunConfig, improved: bool) -> str:
    metrics = "  ".join(f"val_{name} {record[f'val_{name}']:.4f}" for name in cfg.metric_names)
    marker = "  *best*" if improved else ""
    return (
        f"epoch {record['epoch']}/{cfg.train.epochs}  train_loss {record['train_loss']:.4f}  "
        f"val_loss {record['val_loss']:.4f}  {metrics}  lr {record['lr']:.2e}  "
        f"{record['epoch_time_s']:.1f}s{marker}"
    )


def shuffled_label_baseline(
    cfg: RunConfig, splits: DatasetSplits, run_dir: Path, accelerator
) -> BaselineResult:
    """The same model trained on permuted training labels: it must fall to chance."""
    rng = np.random.default_rng(cfg.train.seed)
    train_frame = splits.train.frame.copy()
    train_frame["label"] = train_frame["label"].to_numpy()[rng.permutation(len(train_frame))]
    shuffled = DatasetSplits(
        train=type(splits.train)(
            name="train", source=splits.train.source + " (labels shuffled)", frame=train_frame
        ),
        validation=splits.validation,
        test=splits.test,
        problem_type=splits.problem_type,
        num_labels=splits.num_labels,
        label_names=splits.label_names,
        report=splits.report,
    )
    folder = run_dir / "baselines" / "shuffled_labels"
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    print("training the shuffled-label baseline (evaluation.baselines.shuffled_labels=true)")
    result = fit_and_test(cfg, shuffled, folder, accelerator)
    return BaselineResult(
        name="shuffled_labels",
        description="this model trained on shuffled training labels (should be at chance)",
        test_outputs=result["_test_outputs"],
        metrics=result["test_metrics"],
    )


def report_test_results(
    cfg: RunConfig, summary: dict[str, Any], baselines: list[BaselineResult], run_dir: Path
) -> None:
    outputs, targets = summary.pop("_test_outputs", None), summary.pop("_test_targets", None)
    rows = []
    if "test_metrics" in summary:
        for name, entry in summary["test_metrics"].items():
            rows.append({"model": "model", "metric": name, **entry})
        for baseline in baselines:
            for name, entry in baseline.metrics.items():
                rows.append({"model": baseline.name, "metric": name, **entry})
        pd.DataFrame(rows).to_csv(run_dir / "test_results.csv", index=False)
        primary = cfg.monitor if cfg.monitor in summary["test_metrics"] else cfg.metric_names[0]
        summary["baselines"] = {
            baseline.name: {"description": baseline.description, "metrics": baseline.metrics}
            for baseline in baselines
        }
        summary["verdict"] = (
            verdict(summary["test_metrics"], baselines, primary, metric_mode(primary)) if baselines else None
        )
        warning = constant_prediction_warning(
            outputs, cfg.data.problem_type, targets=targets, threshold=cfg.evaluation.multi_label_threshold
        )
        summary["warnings"] = [warning] if warning else []
    write_json(run_dir / "summary.json", summary)

    print()
    print(
        f"best epoch {summary['best_epoch']} ({summary['monitor']} {summary['best_val_metric']:.4f} on validation)"
    )
    if "test_metrics" in summary:
        print("test metrics (bootstrap 95% interval):")
        for name, entry in summary["test_metrics"].items():
            print(f"  {name:<10} {format_with_interval(entry['value'], (entry['low'], entry['high']))}")
        if baselines:
            print(format_baseline_table(summary["test_metrics"], baselines))
            print(f"verdict: {summary['verdict']}")
        for warning in summary["warnings"]:
            print(f"WARNING: {warning}")
    else:
        print("no test split: test metrics skipped")
    print(f"run folder: {run_dir}")
