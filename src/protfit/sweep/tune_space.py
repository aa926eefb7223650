"""What `protfit tune` searches: the learning-rate range and the parameters the diagnosis names.

The rules (also in docs/tuning.md), from the starting config, the range test and the untuned run:

* **learning rate**, always, log-uniform in [min(start, suggestion / 10), max(start, suggestion x 3)]
  (only up to max(start, suggestion) when the range test's curve was too flat or noisy to trust:
  its suggestion is then a tenth of the divergence point, an upper bound). The range always
  contains the starting rate, so the start is a point of the search (it is trial 0), and reaches a
  decade below the suggestion: on real data the suggestion was off by 10-100x in both directions
  (GB1 one-hot: 0.1 against a start of 1e-3 that trains fine; AntiBERTy features: 9.3e-5 with the
  best trials at the top of the searched range), and a range that excludes the start can only do
  worse than it. x3 above, not more: trials above the suggestion blew their predictions up.
* **overfitting** (``mild``/``severe``): more head dropout and weight decay than the start, the
  regularizers of the suite that cost no extra passes (EMA of the weights; label smoothing for
  classification) on or off, and smaller heads (half the first width, and no hidden layer).
* **underfit**: less dropout and weight decay than the start.
* **none / no diagnosis**: the `quick` preset's dropout and weight-decay ranges.
* **undertrained** (the diagnostics' ``undertrained``, or a run that early stopping did not end: all
  its epochs used and its best epoch within the last ``patience`` of them, the last tenth without
  early stopping. By the run's own stopping rule it was still improving when the epochs ran out, and
  a schedule that decays to zero flattens the last epochs, so "still rising" misses such runs; GB1
  three_vs_rest's start, best at epoch 27 of 30, gained from longer training): longer training
  (epochs x1, x2, x5), more patience (x1, x4) and a constant schedule besides the start's.
* **more epochs where early stopping guards them**: a start that early stopping ended still gets
  epochs x1, x2, x5 searched (not patience or the schedule): a trial with more dropout or weight
  decay, or another rate, learns slower than the start (on the quickstart subset with AntiBERTy
  features the best trials peaked at epoch 38 of 40), and early stopping ends each trial once it
  stops improving, so the longer limit costs time only where training still helps.
* **frozen backbone** (``method: freeze``): the pooler (mean pooling over a few hundred residues
  hides a single substitution; attention pooling and, for equal-length variants, flatten do not).
  Flatten only where the one-hot residues (below) do not fit: both give the head each position, and
  flatten's L x H inputs (113,664 for a 222-residue antibody at H = 512) made one trial 25x as long
  as a mean-pooled one (327 s against 13 s on FLAb D44) for validation Spearman 0.04.
  And the head's normalisation, the start's or ``layernorm``: the pooled states of a frozen model
  keep its scales (nothing upstream adapts them), and without a norm the best FLAb D44 trial
  (AntiBERTy + one-hot + zero-shot, learning rate 0.008) collapsed or stalled on 2 of 3 seeds
  (validation 0.48, 0.14, a constant) where layernorm trained on all three (0.45, 0.48, 0.46).
  ``light_attention`` only when the start uses it: its two width-9 convolutions over the residue
  states cost ~36 H^2 FLOP per residue (4.7 GFLOP per 222-residue antibody at H = 512, ~100x the
  head), so one such trial takes as long as dozens of others on a CPU.
* **zero-shot score as a feature**: for equal-length variants with ``model.zero_shot_model`` set, or
  whose untuned run has a zero-shot baseline (its backbone is a masked LM that scored them), with
  and without ``zero_shot`` in ``model.extra_features`` (Hsu et al. 2022's augmented model). Cheap:
  the score of every variant is a lookup in one reference table, cached on disk for every trial.
* **one-hot residues beside a frozen backbone**: for equal-length variants with ``data.max_seq_len``
  at most twice their length (the block has max_seq_len x 21 columns), with and without ``onehot`` in
  ``model.extra_features``: the pooled vector of a frozen model blurs the one residue a variant
  changes, and a frozen backbone cannot learn to sharpen it. Cheap:
  the head's input grows by 21 columns per position, the backbone's cached states are shared.
* **batch size**: half and double the start's where the training split still gives 20 batches an
  epoch at the larger size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from protfit.config import RunConfig

# learning-rate range around the range test's suggestion (see the module doc)
LR_BELOW = 10.0
LR_ABOVE = 3.0
EPOCH_FACTORS = (1, 2, 5)
PATIENCE_FACTORS = (1, 4)
MIN_BATCHES = 20
FROZEN_POOLERS = ("mean", "attention1d")
ONEHOT_PADDING = 2  # the one-hot feature is searched while data.max_seq_len <= 2x the variants' length


@dataclass
class Diagnosis:
    """What the untuned run said about itself."""

    verdict: str  # none / mild / severe / underfit / collapsed / n/a
    undertrained: bool = False  # see the module doc: the diagnostics' flag or a best epoch in the last tenth
    train_rows: int = 0
    equal_lengths: bool = False
    length: int | None = None  # the one length of equal-length variants
    zero_shot_scored: bool = False  # the untuned run has a zero-shot baseline (a masked LM scored it)


@dataclass
class Space:
    params: dict[str, Any] = field(default_factory=dict)
    start: dict[str, Any] = field(default_factory=dict)  # the starting config's value of each parameter
    why: list[str] = field(default_factory=list)


def lr_range(start: float, suggestion: float, trusted: bool, tested_up_to: float) -> tuple[float, float]:
    """[low, high] of the searched rate; never above the highest rate the range test tried."""
    low = min(start, suggestion / LR_BELOW)
    high = max(start, min(suggestion * LR_ABOVE if trusted else suggestion, tested_up_to))
    return low, high


def _float(space: Space, key: str, start: float, low: float, high: float, log: bool = False) -> None:
    space.params[key] = {"type": "float", "low": low, "high": high, "log": log}
    # trial 0 is the start; a value a log range cannot hold (weight decay 0) becomes its lower end
    space.start[key] = min(max(start, low), high)


def _choices(space: Space, key: str, start: Any, choices: list[Any]) -> None:
    unique = [start] + [choice for choice in choices if choice != start]
    unique = [choice for index, choice in enumerate(unique) if choice not in unique[:index]]
    if len(unique) > 1:
        space.params[key] = {"type": "categorical", "choices": unique}
        space.start[key] = start


def search_space(base: RunConfig, start_lr: float, range_test: dict[str, Any], diagnosis: Diagnosis) -> Space:
    """The tune's search space and, per parameter, the start's value (trial 0); see the module doc.
    ``start_lr`` is the start's rate as it trained (the range test's pick when it said ``auto``);
    ``range_test`` is the range test's lr_find.json."""
    space = Space()
    suggestion, trusted = float(range_test["suggested_lr"]), bool(range_test.get("trusted", True))
    tested_up_to = float(range_test.get("end_lr", math.inf))
    low, high = lr_range(start_lr, suggestion, trusted, tested_up_to)
    _float(space, "train.learning_rate", start_lr, low, high, log=True)
    space.why.append(
        f"learning rate {low:.3g}-{high:.3g} (start {start_lr:.3g}, range test {suggestion:.3g}"
        f"{'' if trusted else ', curve too flat or noisy to trust: an upper bound'})"
    )
    dropout, decay = base.model.head.dropout, base.train.weight_decay
    verdict = diagnosis.verdict
    if verdict in ("mild", "severe"):
        _float(space, "model.head.dropout", dropout, dropout, max(0.8, dropout))
        _float(space, "train.weight_decay", decay, max(decay, 1e-4), 0.3, log=True)
        regularizers = ["ema"] + (["label_smoothing"] if base.data.problem_type != "regression" else [])
        for name in regularizers:
            if not getattr(base.regularization, name).enabled:
                _choices(space, f"regularization.{name}.enabled", False, [True])
        dims = list(base.model.head.hidden_dims)
        if dims:
            _choices(space, "model.head.hidden_dims", dims, [[max(1, dims[0] // 2)], []])
        space.why.append(
            f"the untuned run overfits ({verdict}): more dropout and weight decay, "
            f"{' and '.join(regularizers)} on or off, smaller heads"
        )
    elif verdict == "underfit":
        _float(space, "model.head.dropout", dropout, 0.0, max(dropout, 0.05))
        _float(space, "train.weight_decay", decay, 1e-6, max(decay, 1e-5), log=True)
        space.why.append("the untuned run underfits: less dropout and weight decay")
    else:
        _float(space, "model.head.dropout", dropout, 0.0, max(0.5, dropout))
        _float(space, "train.weight_decay", decay, 1e-5, max(1e-1, decay), log=True)
        space.why.append(f"no overfitting diagnosis ({verdict}): the quick preset's dropout and weight decay")
    patience = base.train.early_stopping.patience
    if diagnosis.undertrained or patience is not None:
        epochs = base.train.epochs
        _choices(space, "train.epochs", epochs, [epochs * factor for factor in EPOCH_FACTORS])
    if diagnosis.undertrained:
        if patience is not None:
            _choices(
                space, "train.early_stopping.patience", patience, [patience * f for f in PATIENCE_FACTORS]
            )
        _choices(space, "train.scheduler.name", base.train.scheduler.name, ["constant"])
        space.why.append(
            "the untuned run is undertrained (validation still improving at the end): more epochs, "
            "more patience, a constant schedule"
        )
    elif patience is not None:
        space.why.append(
            "more epochs (early stopping ends a trial once it stops improving): a trial with more "
            "dropout or weight decay, or another rate, learns slower than the start"
        )
    if base.model.method == "freeze":
        poolers = list(FROZEN_POOLERS)
        if diagnosis.equal_lengths and base.data.max_seq_len is not None and not onehot_fits(base, diagnosis):
            poolers.append("flatten")
        _choices(space, "model.pooler", base.model.pooler, poolers)
        head = base.model.head
        if head.hidden_dims and head.norm != "layernorm":
            _choices(space, "model.head.norm", head.norm, ["layernorm"])
            space.why.append(
                "a frozen backbone: the head's normalisation (its pooled states keep the scales the frozen "
                "model gave them; layernorm after the first linear map steadies the head)"
            )
        space.why.append(
            f"a frozen backbone: the pooler ({', '.join(space.params['model.pooler']['choices'])})"
        )
    _features(space, base, diagnosis)
    batch = base.data.batch_size
    if base.data.max_tokens_per_batch is None:  # a token budget decides the batches instead
        sizes = [size for size in (max(1, batch // 2), batch, batch * 2) if size == batch or size >= 4]
        sizes = [size for size in sizes if math.ceil(diagnosis.train_rows / size) >= MIN_BATCHES]
        if batch in sizes:
            _choices(space, "data.batch_size", batch, sizes)
            if "data.batch_size" in space.params:
                space.why.append(
                    f"batch size {', '.join(str(s) for s in space.params['data.batch_size']['choices'])}"
                )
    return space


def onehot_fits(base: RunConfig, diagnosis: Diagnosis) -> bool:
    """Equal-length variants and a data.max_seq_len at most ONEHOT_PADDING x their length (the one-hot
    block has max_seq_len x 21 columns: mostly padding above that)."""
    length, limit = diagnosis.length, base.data.max_seq_len
    return (
        diagnosis.equal_lengths
        and length is not None
        and limit is not None
        and limit <= ONEHOT_PADDING * length
    )


def _features(space: Space, base: RunConfig, diagnosis: Diagnosis) -> None:
    """model.extra_features for equal-length variants: the zero-shot score when a scorer is set, and
    the position-wise one-hot beside a frozen backbone; each with and without (every combination)."""
    if not diagnosis.equal_lengths:
        return
    features = list(base.model.extra_features)
    extras = []
    scorer = base.model.zero_shot_model is not None or diagnosis.zero_shot_scored
    if scorer and "zero_shot" not in features:
        extras.append("zero_shot")
        space.why.append(
            f"variants of one length: with and without the zero-shot score of {base.model.zero_shot_scorer} "
            "as a feature (model.extra_features)"
        )
    if base.model.method == "freeze" and "onehot" not in features:
        # the block has data.max_seq_len x 21 columns: mostly padding when that is far above the length
        length, limit = diagnosis.length, base.data.max_seq_len
        if onehot_fits(base, diagnosis):
            extras.append("onehot")
            space.why.append(
                "a frozen backbone on variants of one length: with and without the one-hot residues "
                "beside its pooled vector (model.extra_features)"
            )
        else:
            space.why.append(
                f"not searched: the one-hot residues beside the frozen backbone (set data.max_seq_len to "
                f"the variants' length, {length}; it is {limit})"
            )
    combinations = [[]] + [[name] for name in extras] + ([extras] if len(extras) > 1 else [])
    _choices(space, "model.extra_features", features, [[*features, *added] for added in combinations])
