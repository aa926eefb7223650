"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates", section 3.3).

The learning rate grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps`` mini-batches
while the training loss is recorded. The raw loss of one batch is noisy, so the curve is smoothed
with an exponential moving average (bias-corrected, as in Adam, so the first points are not pulled
towards zero). The test stops once the smoothed loss exceeds ``diverge_factor`` times its minimum or
is no longer finite: past that point the curve only says "too large".

Two suggestion rules are common:

- ``steepest``: the learning rate where the smoothed loss falls fastest against log(lr), taken
  before the minimum (fastai's ``valley``/``steep`` family; davidtvs/pytorch-lr-finder);
- ``min_div_10``: the learning rate at the minimum smoothed loss, divided by 10 (the fastai v1
  rule of thumb: the minimum is already on the edge of divergence);
- ``divergence_div_10``: the rate where the ramp stopped (divergence) divided by 10 (Smith's upper
  bound "where the loss starts to rise", with a safety factor). Chosen automatically, and named in
  the result, when the smoothed loss never falls by more than its own noise: on small, noisy
  training sets the curve stays flat until it diverges and its minimum is a noise dip.

The model, the optimizer and the torch / numpy / python RNG states are restored afterwards, so a run
that follows starts exactly as if the test never happened.

Used by ``train.learning_rate=auto`` (``resolve_auto_learning_rate`` in ``training/setup.py``, on a
throw-away setup of the run) and by ``protfit lr-find`` (``protfit.sweep.lr_find``), so it lives in
the training layer.
"""

from __future__ import annotations

import copy
import csv
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from protfit.training.evaluation import model_inputs

SuggestionRule = Literal["steepest", "min_div_10", "divergence_div_10"]
SUGGESTION_RULES: dict[str, str] = {
    "steepest": "steepest descent of the smoothed loss against log10(lr), before its minimum",
    "min_div_10": "learning rate at the minimum smoothed loss, divided by 10",
    "divergence_div_10": "last learning rate of the ramp (where the loss diverged, or end_lr), divided "
    "by 10; used instead of the others when the smoothed loss shows no descent beyond its noise",
}


@dataclass
class RangeTestResult:
    """The recorded curve and the suggestion; ``stopped`` says why the ramp ended."""

    learning_rates: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggestion: float
    rule: SuggestionRule
    stopped: str
    start_lr: float
    end_lr: float
    num_steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        """False when the curve was too flat or noisy for the requested rule (the noise fallback
        ``divergence_div_10`` was used instead): the suggestion is then only an upper bound."""
        return "requested_rule" not in self.extra

    @property
    def note(self) -> str | None:
        if self.trusted:
            return None
        return (
            f"the loss curve is too flat or noisy to trust ({self.extra['requested_rule']} found no descent "
            f"beyond the loss noise): {self.suggestion:.3g} is a tenth of where the loss diverged, an upper "
            "bound rather than a tuned rate; keep a rate that already trains, or sweep a range below it"
        )

    def as_dict(self) -> dict[str, Any]:
        """What a run's summary records (the curve itself goes to the CSV)."""
        return {
            "suggested_lr": self.suggestion,
            "rule": self.rule,
            "rule_description": SUGGESTION_RULES[self.rule],
            "trusted": self.trusted,
            "note": self.note,
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "num_steps": self.num_steps,
            "steps_run": len(self.learning_rates),
            "stopped": self.stopped,
            **self.extra,
        }


def ramp(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` learning rates growing geometrically from start_lr to end_lr (both included)."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"the range test needs 0 < start_lr < end_lr (got {start_lr} and {end_lr})")
    if num_steps < 2:
        raise ValueError(f"the range test needs at least 2 steps (got {num_steps})")
    return np.geomspace(start_lr, end_lr, num_steps)


def suggest(
    learning_rates: list[float], smoothed: list[float], rule: SuggestionRule = "steepest", skip_start: int = 0
) -> float:
    """The suggested learning rate from a (finite part of a) smoothed curve, by ``rule``."""
    if rule not in SUGGESTION_RULES:
        raise ValueError(f"unknown suggestion rule '{rule}'; choose from {sorted(SUGGESTION_RULES)}")
    lrs = np.asarray(learning_rates, dtype=float)
    losses = np.asarray(smoothed, dtype=float)
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(lrs) == 0:
        raise ValueError("the range test recorded no finite loss; lower start_lr")
    if rule == "divergence_div_10":
        return float(max(learning_rates[-1] / 10, lrs[0]))
    # the first smoothed points average only a few batches: they are noise, not the curve's shape
    skip = min(skip_start, len(lrs) - 1)
    minimum = skip + int(np.argmin(losses[skip:]))
    if rule == "min_div_10":
        return float(max(lrs[minimum] / 10, lrs[0]))
    # the steepest descent before the minimum: past it the curve is rising towards divergence
    if minimum - skip < 2:
        return float(lrs[minimum])
    # slope over a window of ~1/20 of the ramp: step-to-step wiggles of the smoothed curve divided by
    # a tiny log-lr step look steeper than the real descent
    window = max(1, round(len(lrs) / 20))
    log_lrs = np.log10(lrs)
    best, steepest = None, math.inf
    for index in range(skip, minimum + 1):
        low, high = max(skip, index - window), min(minimum, index + window)
        if high == low:
            continue
        slope = (losses[high] - losses[low]) / (log_lrs[high] - log_lrs[low])
        if slope < steepest:
            best, steepest = index, slope
    return float(lrs[best if best is not None else minimum])


def significant_descent(losses: list[float], smoothed: list[float], beta: float, skip_start: int) -> bool:
    """Does the smoothed loss fall below its early level by more than 3 sd of the noise?

    On a small or noisy training set the curve can stay flat until it diverges; its minimum is then a
    noise dip, and both the steepest-descent and the minimum rules would point at it. The sd of an
    EMA of independent noise is sd(raw) * sqrt((1 - beta) / (1 + beta)); the raw spread is taken
    (robustly, median absolute deviation) over the curve before it diverges. 3 sd rather than 2:
    the minimum of ~100 correlated smoothed points is itself ~2 sd below their mean.
    """
    raw, curve = np.asarray(losses, dtype=float), np.asarray(smoothed, dtype=float)
    finite = np.isfinite(raw) & np.isfinite(curve)
    raw, curve = raw[finite], curve[finite]
    skip = min(skip_start, len(curve) - 1)
    minimum = skip + int(np.argmin(curve[skip:]))
    if minimum - skip < 3:
        return False
    below = np.nonzero(curve[skip:] <= 1.25 * curve[minimum])[0]
    end = skip + int(below.max()) + 1
    residuals = raw[skip:end] - curve[skip:end]
    spread = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    # the early level: the mean raw loss over the first fifth of the ramp (a bias-corrected EMA of a
    # few points is far noisier than the steady-state EMA, so it is not the reference)
    early = raw[skip : skip + max(3, len(raw) // 5)]
    noise = math.hypot(spread * math.sqrt((1 - beta) / (1 + beta)), spread / math.sqrt(len(early)))
    return float(curve[minimum]) < float(early.mean()) - 3 * noise


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of what training can change: trainable parameters and all buffers (BatchNorm statistics).
    A frozen backbone is not copied: nothing changes it, and it can be most of the memory."""
    saved = {f"param:{name}": p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    saved.update({f"buffer:{name}": b.detach().clone() for name, b in model.named_buffers()})
    return saved


def _restore(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    tensors = {f"param:{name}": p for name, p in model.named_parameters()}
    tensors.update({f"buffer:{name}": b for name, b in model.named_buffers()})
    with torch.no_grad():
        for key, value in saved.items():
            tensors[key].copy_(value)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _cycle(loader: Iterable[Any]):
    """Batches for as many steps as asked: the loader restarts when it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the range test got an empty training loader")


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    batch_loss: Callable[[torch.nn.Module, Any], torch.Tensor],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_steps: int = 100,
    beta: float = 0.98,
    diverge_factor: float = 4.0,
    rule: SuggestionRule = "steepest",
    max_grad_norm: float | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
    base_lr: float | None = None,
) -> RangeTestResult:
    """Ramp the learning rate over mini-batches and suggest one; model, optimizer and RNG are restored.

    ``batch_loss(model, batch)`` returns the scalar training loss of one batch (the caller moves the
    batch to the device and applies any label scaling). ``backward`` replaces ``loss.backward()``
    (e.g. ``accelerator.backward``). With ``base_lr`` (the rate the optimizer was built with), a
    parameter group whose own rate is k x base_lr gets k x the ramped rate; without it every group
    gets the ramped rate.
    """
    if rule not in SUGGESTION_RULES:
        raise ValueError(f"unknown suggestion rule '{rule}'; choose from {sorted(SUGGESTION_RULES)}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"smoothing beta must be in [0, 1) (got {beta})")
    if diverge_factor <= 1.0:
        raise ValueError(f"diverge_factor must be above 1 (got {diverge_factor})")
    schedule = ramp(start_lr, end_lr, num_steps)
    # groups with a learning rate of their own (a separate head LR, layer-wise decay) keep their ratio
    # to the base rate while the base rate ramps
    ratios = [group["lr"] / base_lr if base_lr else 1.0 for group in optimizer.param_groups]
    saved_model = _snapshot(model)
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = _rng_state()
    was_training = model.training
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best, stopped = 0.0, math.inf, "reached end_lr"
    try:
        model.train()
        batches = _cycle(loader)
        for step, lr in enumerate(schedule, start=1):
            for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
                group["lr"] = float(lr) * ratio
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(model, next(batches))
            value = float(loss.detach())
            lrs.append(float(lr))
            losses.append(value)
            if not math.isfinite(value):
                smoothed.append(math.nan)
                stopped = f"loss not finite at lr {lr:.3g}"
                break
            average = beta * average + (1 - beta) * value
            current = average / (1 - beta**step)
            smoothed.append(current)
            best = min(best, current)
            if current > diverge_factor * best:
                stopped = f"diverged at lr {lr:.3g} (smoothed loss > {diverge_factor:g} x its minimum)"
                break
            (backward or torch.Tensor.backward)(loss)
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
    finally:
        _restore(model, saved_model)
        optimizer.load_state_dict(saved_optimizer)
        optimizer.zero_grad(set_to_none=True)
        _restore_rng_state(saved_rng)
        model.train(was_training)
    skip = max(1, len(lrs) // 10)
    used: SuggestionRule = rule
    if rule != "divergence_div_10" and not significant_descent(losses, smoothed, beta, skip):
        used = "divergence_div_10"
    suggestion = suggest(lrs, smoothed, used, skip_start=skip)
    return RangeTestResult(
        learning_rates=lrs,
        losses=losses,
        smoothed_losses=smoothed,
        suggestion=suggestion,
        rule=used,
        stopped=stopped,
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        extra={"requested_rule": rule} if used != rule else {},
    )


def write_curve_csv(result: RangeTestResult, path: str | Path) -> Path:
    """(lr, loss, smoothed_loss) per step."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lr", "loss", "smoothed_loss"])
        for row in zip(result.learning_rates, result.losses, result.smoothed_losses, strict=True):
            writer.writerow(row)
    return path


def plot_curve(result: RangeTestResult, path: str | Path) -> Path:
    """Loss against learning rate (log axis), smoothed curve, the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(result.learning_rates, result.losses, color="0.75", linewidth=0.8, label="loss")
    axis.plot(result.learning_rates, result.smoothed_losses, color="C0", label="smoothed loss")
    finite = [
        (lr, loss)
        for lr, loss in zip(result.learning_rates, result.smoothed_losses, strict=True)
        if math.isfinite(loss)
    ]
    marker_loss = min(finite, key=lambda point: abs(math.log(point[0] / result.suggestion)))[1]
    axis.scatter([result.suggestion], [marker_loss], color="C3", zorder=3, s=40)
    axis.axvline(result.suggestion, color="C3", linestyle="--", linewidth=0.8)
    axis.annotate(
        f"suggested {result.suggestion:.2e}\n({result.rule})",
        (result.suggestion, marker_loss),
        textcoords="offset points",
        xytext=(8, 8),
        color="C3",
    )
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    finite_losses = [loss for _, loss in finite]
    low, high = min(finite_losses), max(finite_losses)
    axis.set_ylim(low - 0.05 * (high - low + 1e-12), min(high, 4 * low if low > 0 else high) * 1.05 + 1e-12)
    axis.set_title("learning-rate range test")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


# ---- on a protfit run (setup_run): `protfit lr-find` and train.learning_rate=auto ----------------

# The rate the throw-away setup of train.learning_rate=auto (and `protfit lr-find` on such a config) is
# built with; only ratios between parameter groups matter, the ramp sets the rate itself.
PLACEHOLDER_LR = 1e-3


@dataclass
class RangeTestSettings:
    start_lr: float = 1e-7
    end_lr: float = 1.0
    num_steps: int = 100
    rule: SuggestionRule = "steepest"


def run_range_test(
    parts: Any, optimizer: torch.optim.Optimizer, base_lr: float, settings: RangeTestSettings
) -> RangeTestResult:
    """The range test on a built run: its model, training loader (the embedding cache with a frozen
    backbone), task loss and label scaling, gradient clipping and precision."""
    accelerator, cfg = parts.accelerator, parts.cfg

    def batch_loss(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.autocast():
            logits = model(**model_inputs(batch))
            return parts.criterion(logits, parts.scaling.scale(batch["labels"]))

    result = range_test(
        parts.model,
        optimizer,
        parts.loaders["train"],
        batch_loss,
        start_lr=settings.start_lr,
        end_lr=settings.end_lr,
        num_steps=settings.num_steps,
        rule=settings.rule,
        max_grad_norm=cfg.train.max_grad_norm,
        backward=accelerator.backward,
        base_lr=base_lr,
    )
    result.extra["method"] = cfg.model.method
    result.extra["embedding_cache"] = parts.embedding_cache is not None
    return result


def write_range_test(result: RangeTestResult, folder: str | Path) -> tuple[Path, Path]:
    """lr_find.csv (the curve) and lr_find.png (the plot, suggestion marked) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_curve_csv(result, folder / "lr_find.csv"), plot_curve(result, folder / "lr_find.png")
