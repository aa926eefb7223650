"""Overfitting diagnostics, in every run: the train-validation gap per epoch, a verdict, and advice.

Each epoch, after validation and with the same (evaluation) weights, the training split is evaluated
exactly like validation: eval mode (no dropout, no noise, no augmentation), the same loss and
metrics, an unshuffled loader over the training rows (cached features when the run uses the
embedding cache, so it is cheap there). To bound the cost on large training splits, at most
``max(train_rows, validation rows)`` rows are evaluated: a fixed random subset (seed
``train.seed``), the same rows every epoch. The epoch record gets ``train_eval_loss``,
``train_<metric>`` for every metric, ``gap_loss`` (val - train loss), ``gap_metric`` (monitored
metric, positive when the training split scores better) and ``overfitting`` (none/mild/severe, or
n/a when the monitored metric is undefined);
the summary gets a ``diagnostics`` entry. The rules are in :func:`epoch_verdict` and
:func:`run_diagnosis` (and docs/regularization.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from protfit.plugins import Plugin, TrainingState
from protfit.regularization.sections.diagnostics import DiagnosticsConfig

# n/a (no verdict: see epoch_verdict) ranks below every verdict, so a run's worst epoch is a real one
SEVERITY = {"n/a": -1, "none": 0, "mild": 1, "severe": 2}


class _Rows(Dataset):
    """Selected rows of a split's dataset, re-indexed 0..n-1 (evaluate orders outputs by ``index``)."""

    def __init__(self, dataset: Any, rows: np.ndarray) -> None:
        self.dataset, self.rows = dataset, rows
        self.lengths = [dataset.lengths[row] for row in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[int(self.rows[index])], "index": index}


def train_rows(parts: Any, limit: int) -> np.ndarray:
    """The training rows evaluated each epoch: all, or a fixed random subset of max(limit, |val|)."""
    size = len(parts.splits.train.frame)
    budget = max(limit, len(parts.splits.validation.frame))
    if size <= budget:
        return np.arange(size)
    rng = np.random.default_rng(parts.cfg.train.seed)
    return np.sort(rng.choice(size, size=budget, replace=False))


def train_eval_loader(parts: Any, rows: np.ndarray | None = None) -> Any:
    """An unshuffled loader over (some of) the training rows, batched like the validation split."""
    from protfit.data.batching import build_dataloader

    loader = parts.loaders["train"]
    dataset = loader.dataset
    rows = np.arange(len(dataset)) if rows is None else rows
    return build_dataloader(
        _Rows(dataset, rows),
        parts.cfg.data,
        shuffle=False,
        seed=parts.cfg.train.seed,
        collator=loader.collate_fn,
    )


def signed_gap(train: float, val: float, mode: str) -> float:
    """Positive when the training split scores better, whatever the metric's direction."""
    return train - val if mode == "max" else val - train


def epoch_verdict(records: list[dict[str, Any]], monitor: str, mode: str, cfg: DiagnosticsConfig) -> str:
    """none / mild / severe (or n/a) for the last record, given the records so far.

    severe: gap >= severe_gap; or the training metric is saturated (>= saturation, metrics to
      maximise) while validation has not improved for stall_epochs and trails it by mild_gap or more;
      or validation loss is 3 x loss_rise above its minimum while the training loss kept falling.
    mild: gap >= mild_gap; or validation loss is loss_rise above its minimum while training loss fell.
    n/a: the gap is undefined (nan: a constant validation label, or constant predictions).
    The gap of a metric to minimise (mse, mae, loss) is taken relative to the validation value.
    """
    record = records[-1]
    gap = record["gap_metric"]
    if math.isnan(gap):
        # Such a validation split cannot tell generalisation from memorising: its loss on a constant
        # label rises as the model learns the training labels' spread ("severe" on every such run).
        return "n/a"
    val_key = "val_loss" if monitor == "loss" else f"val_{monitor}"
    if mode == "min" and val_key in record and record[val_key]:
        gap = gap / abs(record[val_key])
    values = [r.get(val_key, math.nan) for r in records]
    finite = [(i, v) for i, v in enumerate(values) if not math.isnan(v)]
    best_index = (
        (max if mode == "max" else min)(finite, key=lambda item: item[1])[0] if finite else len(records) - 1
    )
    stalled = len(records) - 1 - best_index >= cfg.stall_epochs
    train_value = record.get("train_loss_eval_metric")
    saturated = mode == "max" and train_value is not None and train_value >= cfg.saturation
    losses = [r["val_loss"] for r in records]
    low = int(np.nanargmin(losses)) if not all(math.isnan(v) for v in losses) else len(records) - 1
    rise = (record["val_loss"] - losses[low]) / max(abs(losses[low]), 1e-12)
    train_fell = record["train_eval_loss"] < records[low]["train_eval_loss"]
    # Validation at the same ceiling (accuracy 1.0 on both, gap 0) cannot improve: that stall is no
    # overfitting, so a saturated training metric counts only with a gap.
    memorised = saturated and stalled and gap >= cfg.mild_gap
    if gap >= cfg.severe_gap or memorised or (train_fell and rise >= 3 * cfg.loss_rise):
        return "severe"
    if gap >= cfg.mild_gap or (train_fell and rise >= cfg.loss_rise):
        return "mild"
    return "none"


class OverfittingDiagnostics(Plugin):
    name = "diagnostics"

    def __init__(self, cfg: DiagnosticsConfig) -> None:
        self.cfg = cfg
        self.loader: Any = None
        self.records: list[dict[str, Any]] = []

    def configure_optimizer(self, parts: Any) -> None:
        self.rows = train_rows(parts, self.cfg.train_rows)

    def on_validation_end(self, state: TrainingState) -> None:
        from protfit.metrics import compute_metrics, metric_mode, targets_from_frame
        from protfit.training.evaluation import evaluate

        parts, cfg = state.parts, state.config
        if self.loader is None:  # built late: after the embedding cache replaced the loaders
            self.loader = train_eval_loader(parts, self.rows)
            frame = parts.splits.train.frame.iloc[self.rows]
            self.targets = targets_from_frame(frame, cfg.data.problem_type, parts.splits.num_labels)
        # Observation only: iterating a DataLoader draws a seed from the global torch RNG, which would
        # shift every later dropout mask; forked, a run trains the same with the diagnostics on or off.
        with torch.random.fork_rng(devices=[]):
            result = evaluate(
                parts.model,
                self.loader,
                parts.criterion,
                parts.scaling,
                parts.accelerator,
                cfg.data.problem_type,
            )
        metrics = compute_metrics(
            cfg.metric_names,
            cfg.data.problem_type,
            result.outputs,
            self.targets,
            parts.splits.num_labels,
            cfg.evaluation.multi_label_threshold,
        )
        record = state.epoch_record
        monitor = cfg.monitor if cfg.monitor == "loss" or f"val_{cfg.monitor}" in record else "loss"
        mode = metric_mode(monitor)
        record["train_eval_loss"] = result.loss
        record.update({f"train_{name}": value for name, value in metrics.items()})
        record["gap_loss"] = record["val_loss"] - result.loss
        train_value = result.loss if monitor == "loss" else metrics[monitor]
        val_value = record["val_loss"] if monitor == "loss" else record[f"val_{monitor}"]
        record["gap_metric"] = signed_gap(train_value, val_value, mode)
        self.records.append({**record, "train_loss_eval_metric": train_value})
        record["overfitting"] = epoch_verdict(self.records, monitor, mode, self.cfg)
        self.records[-1]["overfitting"] = record["overfitting"]

    def state_dict(self) -> dict[str, Any]:
        keep = ("epoch", "val_loss", "train_eval_loss", "gap_metric", "train_loss_eval_metric", "overfitting")
        return {
            "records": [
                {k: v for k, v in r.items() if k in keep or k.startswith("val_")} for r in self.records
            ]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = list(state.get("records", []))

    def summary_entries(self, summary: dict[str, Any]) -> dict[str, Any]:
        """``diagnostics`` for summary.json, from fit's summary (history, best epoch, monitor)."""
        return {"diagnostics": run_diagnosis(summary, self.cfg, self._config)}

    def on_train_start(self, state: TrainingState) -> None:
        self._config = state.config


def run_diagnosis(summary: dict[str, Any], cfg: DiagnosticsConfig, run_cfg: Any) -> dict[str, Any]:
    """The run's diagnosis: values at the best epoch, the worst verdict from the best epoch on (a run
    that went on to overfit after its best epoch is diagnosed as such), undertraining, and advice."""
    history = [r for r in summary.get("history", []) if "overfitting" in r]
    best = summary.get("best_epoch")
    if not history or best is None:
        return {
            "best_epoch": best,
            "gap_loss": None,
            "gap_metric": None,
            "train_metric": None,
            "verdict": None,
            "undertrained": False,
            "advice": [],
        }
    monitor = summary["monitor"]
    at_best = next(r for r in history if r["epoch"] == best)
    verdict = max((r["overfitting"] for r in history if r["epoch"] >= best), key=SEVERITY.__getitem__)
    undertrained = is_undertrained(summary, cfg)
    train_metric = at_best["train_eval_loss"] if monitor == "loss" else at_best.get(f"train_{monitor}")
    return {
        "best_epoch": best,
        "gap_loss": at_best["gap_loss"],
        "gap_metric": at_best["gap_metric"],
        "train_metric": train_metric,
        "verdict": verdict,
        "verdict_at_best_epoch": at_best["overfitting"],
        "undertrained": undertrained,
        "advice": advice(verdict, undertrained, summary, run_cfg),
    }


def is_undertrained(summary: dict[str, Any], cfg: DiagnosticsConfig) -> bool:
    """The best epoch is the last one, or within the last ``undertrained_window`` epochs with the
    monitored value still moving the right way at the end; never for a run that stopped early."""
    history, best = summary["history"], summary["best_epoch"]
    if summary.get("stopped_early") or best is None or not history:
        return False
    last = history[-1]["epoch"]
    if best == last:
        return True
    if best <= last - cfg.undertrained_window:
        return False
    key = "val_loss" if summary["monitor"] == "loss" else f"val_{summary['monitor']}"
    tail = [r.get(key, math.nan) for r in history[-(cfg.undertrained_window + 1) :]]
    rising = tail[-1] - tail[0] if summary["monitor_mode"] == "max" else tail[0] - tail[-1]
    return bool(rising > 0)


def advice(verdict: str, undertrained: bool, summary: dict[str, Any], run_cfg: Any) -> list[str]:
    """What to try next, from this suite, for the diagnosis (techniques already on are skipped)."""
    tips: list[str] = []
    if run_cfg is None:
        return tips
    on = set(run_cfg.regularization.enabled())
    method, problem = run_cfg.model.method, run_cfg.data.problem_type

    def tip(name: str, text: str) -> None:
        if name not in on:
            tips.append(text)

    if SEVERITY.get(verdict, 0) >= 1:
        if method in ("freeze", "ses_adapter"):
            tips.append(
                "raise model.head.dropout (e.g. 0.3) or use a smaller head (model.head.hidden_dims=[])"
            )
            tip(
                "weight_decay",
                "stronger head weight decay: regularization.weight_decay.enabled=true regularization.weight_decay.head=0.1",
            )
        else:
            tip(
                "freeze_layers",
                "train fewer weights: regularization.freeze_layers.enabled=true (bottom layers), or model.method=lora",
            )
            tip("l2_sp", "stay near the pretrained weights: regularization.l2_sp.enabled=true")
            tip("layerwise_lr", "layer-wise LR decay: regularization.layerwise_lr.enabled=true")
        tip("ema", "average the weights: regularization.ema.enabled=true (or regularization.swa)")
        if problem != "regression":
            tip("label_smoothing", "regularization.label_smoothing.enabled=true")
        tip(
            "augmentation",
            "sequence augmentation: regularization.augmentation.enabled=true regularization.augmentation.substitution_prob=0.5",
        )
        del tips[4:]  # the first few, most specific, are enough
        patience = run_cfg.train.early_stopping.patience
        if (
            verdict == "severe"
            and summary.get("best_epoch")
            and summary.get("epochs_run", 0) > summary["best_epoch"] + 2
            and (patience is None or patience > 3)  # a shorter patience already ended the run near its peak
        ):
            tips.append(
                f"validation peaked at epoch {summary['best_epoch']}: fewer epochs or train.early_stopping.patience=3"
            )
    if undertrained:
        epochs = summary.get("epochs_run", 0)
        history = summary.get("history") or [{}]
        final_lr = history[-1].get("lr")
        ended = " (the learning rate had decayed to 0)" if final_lr is not None and final_lr < 1e-12 else ""
        tips.append(
            f"validation was still improving at the last epoch{ended}: train longer (train.epochs={2 * epochs})"
        )
        if ended:
            tips.append(
                "use a schedule that does not end at zero: train.scheduler.name=constant, or polynomial with train.scheduler.lr_end > 0"
            )
    return tips
