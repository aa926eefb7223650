"""`fit`: the epochs of a run — train, validate, keep the best, checkpoint, stop early.

One optimizer step is a group of ``gradient_accumulation_steps`` micro-batches. The group is
collected from the loader as it streams (never a whole epoch in memory), then run through the
plug-ins' ``training_step`` chain around the default forward/backward; see protfit.plugins for
when each hook runs.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType
from tqdm.auto import tqdm

from protfit.config import RunConfig
from protfit.metrics import compute_metrics, targets_from_frame
from protfit.models.protein_model import load_trainable_state_dict, trainable_state_dict
from protfit.plugins import StepContext, TrainingState
from protfit.report.plots import plot_history
from protfit.report.run_dir import History, run_id_of
from protfit.report.summary import format_epoch_line
from protfit.training.checkpoint import (
    check_checkpoint_owner,
    load_model_state,
    load_training_state,
    save_checkpoint,
)
from protfit.training.collapse import collapse_reason
from protfit.training.early_stopping import EarlyStopping
from protfit.training.evaluation import evaluate, model_inputs
from protfit.training.setup import RunParts, bucket_sampler

logger = logging.getLogger("protfit")


def fit(parts: RunParts, run_dir: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train for ``train.epochs`` (or until early stopping); returns the fit part of the summary.

    Writes history and checkpoints (``best``: the evaluation weights of the best validation epoch;
    ``last``: live weights + optimizer, scheduler, RNG, early-stopping and plug-in state, when
    `last_due`) from the main process only.
    """
    cfg, accelerator = parts.cfg, parts.accelerator
    stopper = EarlyStopping(
        cfg.monitor, cfg.monitor_mode, cfg.train.early_stopping.patience, cfg.train.early_stopping.min_delta
    )
    history = History(run_dir)
    state = TrainingState(config=cfg, parts=parts, run_dir=run_dir)
    checkpoints = run_dir / "checkpoints"
    run_id = run_id_of(run_dir)
    if resume:
        check_checkpoint_owner(checkpoints / "last", run_id)
        restore(parts, state, stopper, checkpoints / "last")
        history = History.load(run_dir)
        history.truncate(state.epoch)
        print(f"resuming {run_dir} after epoch {state.epoch} (step {state.global_step})")
    val_targets = targets_from_frame(
        parts.splits.validation.frame, cfg.data.problem_type, parts.splits.num_labels
    )

    parts.plugins.call("on_train_start", state)
    plotted_at, plotted_epochs = -math.inf, len(history.records)
    last_written = time.monotonic()
    for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
        if stopper.should_stop:
            break
        state.epoch = epoch
        started = time.perf_counter()
        parts.plugins.call("on_epoch_start", state)
        train_loss, padding = train_one_epoch(parts, state)
        # `last` is the commit point of an epoch: the history line follows it, and Ctrl-C or SIGTERM
        # waits until the epoch's writes are done. A history line without its checkpoint made --resume
        # re-train that epoch and rewrite its line (as it does, by design, for the epochs after the
        # newest `last` when output.checkpoints writes it less often than every epoch).
        with ExitStack() as epoch_writes:
            with parts.plugins.evaluation_weights(state):
                improved = validate_epoch(parts, state, stopper, val_targets, train_loss, padding, started)
                # every process gathers (collective under FSDP / ZeRO-3); the main one writes
                best_weights = trainable_weights(parts) if improved else None
                if accelerator.is_main_process:
                    epoch_writes.enter_context(deferred_interrupts())
                    if best_weights is not None:
                        save_checkpoint(checkpoints / "best", best_weights, run_id=run_id, epoch=epoch)
            final = epoch == cfg.train.epochs or stopper.should_stop
            # decided and gathered on every process (the gather is collective under FSDP / ZeRO-3)
            last_weights = trainable_weights(parts) if last_due(cfg, epoch, final, last_written) else None
            if last_weights is not None:
                last_written = time.monotonic()
            if accelerator.is_main_process and last_weights is not None:
                save_checkpoint(
                    checkpoints / "last",
                    last_weights,
                    optimizer=parts.optimizer,
                    scheduler=parts.scheduler,
                    progress={
                        "epoch": epoch,
                        "global_step": state.global_step,
                        "early_stopping": stopper.state_dict(),
                    },
                    plugins=parts.plugins.state_dict(),
                    run_id=run_id,
                    epoch=epoch,
                )
            if accelerator.is_main_process:
                history.append(state.epoch_record)
                print(format_epoch_line(state.epoch_record, cfg, improved))
        if accelerator.is_main_process and time.perf_counter() - plotted_at >= PLOT_INTERVAL_S:
            plot_history(history.records, cfg.metric_names, run_dir)
            plotted_at, plotted_epochs = time.perf_counter(), len(history.records)
        accelerator.wait_for_everyone()
        parts.plugins.call("on_epoch_end", state)
    if accelerator.is_main_process and len(history.records) != plotted_epochs:
        plot_history(history.records, cfg.metric_names, run_dir)
    parts.plugins.call("on_train_end", state)
    return {
        "monitor": stopper.monitor,
        "monitor_mode": stopper.mode,
        "best_epoch": stopper.best_epoch,
        # always the monitored quantity at the best epoch (None: undefined there); never a fallback's
        "best_val_metric": stopper.best_value,
        "best_val_loss": stopper.best_loss,
        "selected_by": "val_loss" if stopper.selected_by_loss else f"val_{stopper.monitor}",
        "epochs_run": len(history.records),
        "stopped_early": stopper.should_stop and len(history.records) < cfg.train.epochs,
        "history": history.records,
    }


def last_due(cfg: RunConfig, epoch: int, final: bool, written_at: float) -> bool:
    """Whether this epoch writes ``checkpoints/last`` (output.checkpoints): every N epochs, once M
    minutes passed since the last write (``written_at``, time.monotonic()), and the final epoch of a
    run that keeps it (so a longer resume continues from the end)."""
    policy = cfg.output.checkpoints
    if final and policy.keep_last:
        return True
    if policy.last_every_epochs is not None and epoch % policy.last_every_epochs == 0:
        return True
    minutes = policy.last_every_minutes
    return minutes is not None and time.monotonic() - written_at >= 60 * minutes


def validate_epoch(
    parts: RunParts,
    state: TrainingState,
    stopper: EarlyStopping,
    val_targets: Any,
    train_loss: float,
    padding: float,
    started: float,
) -> bool:
    """Validate (under the evaluation weights), update early stopping and fill ``state.epoch_record``;
    returns whether the epoch is the best so far."""
    cfg, epoch = parts.cfg, state.epoch
    validation = evaluate(
        parts.model,
        parts.loaders["validation"],
        parts.criterion,
        parts.scaling,
        parts.accelerator,
        cfg.data.problem_type,
        progress=f"epoch {epoch}/{cfg.train.epochs} validation" if cfg.train.progress else None,
    )
    val_metrics = compute_metrics(
        cfg.metric_names,
        cfg.data.problem_type,
        validation.outputs,
        val_targets,
        parts.splits.num_labels,
        cfg.evaluation.multi_label_threshold,
    )
    monitored = monitored_value(stopper, validation.loss, val_metrics, epoch)
    improved = stopper.update(monitored, validation.loss, epoch)
    collapse = collapse_reason(
        validation.outputs,
        val_targets,
        cfg.data.problem_type,
        cfg.monitor,
        "validation",
        cfg.evaluation.multi_label_threshold,
    )
    state.epoch_record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": validation.loss,
        **{f"val_{name}": value for name, value in val_metrics.items()},
        "lr": parts.scheduler.get_last_lr()[0],
        "padding_fraction": padding,
        "epoch_time_s": round(time.perf_counter() - started, 3),
        "best": improved,
        **({"collapsed": collapse} if collapse else {}),
    }
    parts.plugins.call("on_validation_end", state)
    return improved


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then act on them as if they came now.

    Only the main thread receives signals; elsewhere this does nothing. An exception inside the block
    wins over a held signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, Any]] = []
    previous = {
        number: signal.signal(number, lambda *received: held.append(received))
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if held:
        number, frame = held[0]
        handler = previous[number]
        if callable(handler):  # Python's KeyboardInterrupt, or the run's SIGTERM-as-interrupt
            handler(number, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(number)


def trainable_weights(parts: RunParts) -> dict[str, torch.Tensor]:
    """What a checkpoint holds (see ``trainable_state_dict``). Under FSDP or DeepSpeed ZeRO-3 the
    parameters are sharded across processes: the full tensors are gathered first (on every process,
    as the gather is collective), then the trained ones kept."""
    model = parts.unwrapped_model
    if parts.accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return trainable_state_dict(model)
    full = parts.accelerator.get_state_dict(parts.model)
    return {key: full[key] for key in trainable_state_dict(model) if key in full}


# Drawing the two curve PNGs takes ~0.2-0.4 s; an epoch on cached features takes less. Curves are
# redrawn at most this often, and after the last epoch (a 20-trial sweep of 20-epoch runs on the
# embedding cache spent most of its time in matplotlib).
PLOT_INTERVAL_S = 10.0


def monitored_value(
    stopper: EarlyStopping, val_loss: float, val_metrics: dict[str, float], epoch: int
) -> float:
    """The epoch's value of the monitored quantity (nan when the metric is undefined this epoch).

    An undefined metric (Spearman of constant predictions, or of a constant validation label) is
    said once; such epochs are kept only while no epoch had a defined value, by validation loss
    (see EarlyStopping).
    """
    if stopper.monitor == "loss":
        return val_loss
    value = val_metrics[stopper.monitor]
    if math.isnan(value) and stopper.best_value is None and stopper.best_epoch is None:
        logger.warning(
            "validation %s is undefined (nan) at epoch %d: constant predictions, or a constant validation "
            "label / a single class; until an epoch has a defined value the lowest validation loss is kept",
            stopper.monitor,
            epoch,
        )
    return value


def restore(parts: RunParts, state: TrainingState, stopper: EarlyStopping, folder: Path) -> None:
    """Put the run back where ``checkpoints/last`` left it: weights, optimizer, scheduler, RNG,
    early stopping and every plug-in's state."""
    load_trainable_state_dict(parts.unwrapped_model, load_model_state(folder))
    progress, plugin_states = load_training_state(folder, parts.optimizer, parts.scheduler)
    parts.plugins.load_state_dict(plugin_states)
    state.epoch, state.global_step = progress["epoch"], progress["global_step"]
    stopper.load_state_dict(progress["early_stopping"])


def _groups(loader: Any, accumulation: int) -> Iterator[list[dict[str, Any]]]:
    """The loader's micro-batches in groups of ``accumulation`` (the last group may be shorter)."""
    group: list[dict[str, Any]] = []
    for batch in loader:
        group.append(batch)
        if len(group) == accumulation:
            yield group
            group = []
    if group:
        yield group


def train_one_epoch(parts: RunParts, state: TrainingState) -> tuple[float, float]:
    """One pass over the training data; returns (mean train loss over all processes, padding fraction)."""
    cfg, accelerator, model = parts.cfg, parts.accelerator, parts.model
    model.train()
    bucket_sampler(parts.loaders["train"]).set_epoch(state.epoch - 1)
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, samples, real tokens, padded tokens
    progress = tqdm(
        total=parts.steps_per_epoch[state.epoch - 1],
        desc=f"epoch {state.epoch}/{cfg.train.epochs} train",
        disable=not cfg.train.progress or not accelerator.is_main_process,
        leave=False,
        dynamic_ncols=True,
    )
    parts.optimizer.zero_grad(set_to_none=True)
    for group in _groups(parts.loaders["train"], cfg.train.gradient_accumulation_steps):
        micro_batches = [
            parts.plugins.transform_batch(state, _to_device(batch, accelerator.device)) for batch in group
        ]
        for batch in micro_batches:
            token_mask = batch.get("attention_mask", batch["residue_mask"])
            totals[2] += int(token_mask.sum())
            totals[3] += token_mask.numel()
        step = StepContext(micro_batches)
        loss = parts.plugins.training_step(
            state, step, partial(forward_backward, parts, state, micro_batches)
        )
        state.last_loss = loss
        size = sum(batch["labels"].shape[0] for batch in micro_batches)
        totals[0] += loss * size
        totals[1] += size
        parts.plugins.call("on_before_optimizer_step", state)
        if cfg.train.max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        parts.plugins.call("on_after_clip", state)
        parts.optimizer.step()
        parts.scheduler.step()
        state.global_step += 1
        parts.plugins.call("on_after_optimizer_step", state)  # gradients still present (AdaLoRA reads them)
        parts.optimizer.zero_grad(set_to_none=True)
        progress.update()
        progress.set_postfix(
            loss=f"{loss:.4f}", lr=f"{parts.scheduler.get_last_lr()[0]:.2e}", step=state.global_step
        )
    progress.close()
    if accelerator.num_processes > 1:
        totals = accelerator.reduce(totals.to(accelerator.device), reduction="sum").cpu()
    mean_loss = float(totals[0] / max(float(totals[1]), 1.0))
    if not math.isfinite(mean_loss):
        raise FloatingPointError(
            f"training loss became {mean_loss} in epoch {state.epoch}; lower train.learning_rate "
            "or set train.max_grad_norm"
        )
    return mean_loss, 1.0 - float(totals[2]) / max(float(totals[3]), 1.0)


def forward_backward(parts: RunParts, state: TrainingState, micro_batches: list[dict[str, Any]]) -> float:
    """The default step body: forward, task loss + plug-in loss terms, backward, per micro-batch.

    Each micro-batch contributes 1/len(group) of the step, so a short last group still averages
    rather than sums. Gradients are synchronised across processes only on the group's last
    micro-batch (``no_sync`` on the others). Returns the group's task loss, averaged over samples.
    """
    accelerator, model = parts.accelerator, parts.model
    total, samples = 0.0, 0
    for position, batch in enumerate(micro_batches):
        last = position == len(micro_batches) - 1
        sync = accelerator.no_sync(model) if not last and accelerator.num_processes > 1 else nullcontext()
        with sync:
            with accelerator.autocast():
                logits = model(**model_inputs(batch))
                loss = parts.criterion(logits, parts.scaling.scale(batch["labels"]))
                objective = parts.plugins.extra_loss(state, batch, logits, loss)
            accelerator.backward(objective / len(micro_batches))
        size = batch["labels"].shape[0]
        total += loss.item() * size
        samples += size
    return total / max(samples, 1)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {key: value.to(device) for key, value in batch.items()}
