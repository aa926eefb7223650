"""The contract every registry entry keeps, checked for every entry registered now (issue #25).

Each pooler, head, training method, scheduler, metric (per problem type) and regularizer is trained
in a tiny run on synthetic data for one epoch, and then: its best checkpoint loads and predicts what
the run wrote (serialization), ``train --resume`` continues it to a second epoch without redoing the
first (resume), and the test metrics bootstrap into value / low / high. A new entry is covered
without an edit here; one that needs a setting to build at all gets it in ``NEEDS``.

Entries share runs so the file stays short: run ``i`` takes the ``i``-th method, pooler, head and
scheduler (cycling through the shorter lists), all metrics of its problem type and at most one
regularizer, placed on the first run whose config accepts it (a frozen-backbone method refuses
backbone techniques; DP-SGD needs ``freeze``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from protfit.config import ConfigError, RunConfig, apply_overrides, build_config
from protfit.data.loading import read_sequences
from protfit.data.synthetic import write_synthetic_dataset
from protfit.data.validation import FOLDSEEK_ALPHABET
from protfit.inference import load
from protfit.metrics import metrics_for, targets_from_frame
from protfit.registry import HEADS, METHODS, POOLERS, SCHEDULERS
from protfit.regularization.technique import regularizer_sections
from protfit.report.confidence import metrics_with_intervals
from protfit.training.train import train

PROBLEMS = ["single_label_classification", "multi_label_classification", "regression"]

# Settings an entry cannot build without (the default config suits every other entry).
NEEDS: dict[str, list[str]] = {
    "pooler:flatten": ["data.max_seq_len=32"],  # a fixed grid; the synthetic sequences have <= 30 residues
    "method:ses_adapter": ["model.ses.embedding_dim=16", "model.ses.num_heads=2"],  # smaller, faster
    "regularizer:augmentation": ["regularization.augmentation.substitution_prob=0.5"],  # all are 0 by default
}


# Entries that break the contract today, with why; strict: the test says when one is fixed.
@dataclass
class Slot:
    """One tiny run and the entries it covers."""

    index: int
    method: str
    pooler: str
    head: str
    scheduler: str
    problem: str
    regularizer: str | None = None

    def settings(self) -> list[str]:
        chosen = [
            f"model.method={self.method}",
            f"model.pooler={self.pooler}",
            f"model.head.type={self.head}",
            f"train.scheduler.name={self.scheduler}",
            *NEEDS.get(f"method:{self.method}", []),
            *NEEDS.get(f"pooler:{self.pooler}", []),
            *NEEDS.get(f"head:{self.head}", []),
            *NEEDS.get(f"scheduler:{self.scheduler}", []),
        ]
        if self.regularizer is not None:
            chosen += [f"regularization.{self.regularizer}.enabled=true"]
            chosen += NEEDS.get(f"regularizer:{self.regularizer}", [])
        return chosen


def base_config(data: Path, out_dir: Path, slot: Slot) -> RunConfig:
    raw = {
        "data": {"path": str(data), "problem_type": slot.problem, "batch_size": 8},
        "model": {"name": "tiny-esm2", "head": {"hidden_dims": [8]}},
        "train": {
            "epochs": 1,
            "learning_rate": 3e-3,
            "progress": False,
            "early_stopping": {"patience": None},
        },
        "evaluation": {
            "metrics": metrics_for(slot.problem),
            "bootstrap": {"resamples": 10},
            "baselines": {"enabled": False},
        },
        # keep_last: a finished run drops its optimizer state by default; the resume contract needs it
        "output": {"dir": str(out_dir), "name": f"run{slot.index}", "checkpoints": {"keep_last": True}},
    }
    return build_config(apply_overrides(raw, slot.settings()))


def unmet_requirement(method: str) -> str | None:
    """Why ``method`` cannot run here (its registered ``requirement`` check), or None."""
    requirement = METHODS.entry(method).options.get("requirement")
    if requirement is None:
        return None
    slot = Slot(0, method, "mean", HEADS.names()[0], "constant", PROBLEMS[0])
    try:
        requirement(base_config(Path("data"), Path("runs"), slot))
    except RuntimeError as error:
        return str(error)
    return None


def runnable_methods() -> list[str]:
    return [name for name in METHODS.names() if unmet_requirement(name) is None]


def accepts(slot: Slot, regularizer: str) -> bool:
    candidate = Slot(**{**slot.__dict__, "regularizer": regularizer})
    try:
        base_config(Path("data"), Path("runs"), candidate)
    except ConfigError:
        return False
    return True


@functools.cache
def plan() -> list[Slot]:
    """Runs covering every entry: one per method/pooler/head/scheduler position, then a regularizer
    on the first run that accepts it (a further run, with the first method that does, when none)."""
    methods, poolers, heads, schedulers = (
        runnable_methods(),
        POOLERS.names(),
        HEADS.names(),
        SCHEDULERS.names(),
    )

    def slot(index: int, method: str, problem: str | None = None) -> Slot:
        return Slot(
            index,
            method,
            poolers[index % len(poolers)],
            heads[index % len(heads)],
            schedulers[index % len(schedulers)],
            problem or PROBLEMS[index % len(PROBLEMS)],
        )

    count = max(len(methods), len(poolers), len(heads), len(schedulers))
    slots = [slot(index, methods[index % len(methods)]) for index in range(count)]
    # A regularizer's own run fine-tunes fully when it can: the plain case, and what most of them act on.
    preferred = sorted(methods, key=lambda method: method != "full")
    for regularizer in regularizer_sections():
        free = [candidate for candidate in slots if candidate.regularizer is None]
        chosen = next((candidate for candidate in free if accepts(candidate, regularizer)), None)
        if chosen is None:
            options = [slot(len(slots), method, problem) for method in preferred for problem in PROBLEMS]
            chosen = next((candidate for candidate in options if accepts(candidate, regularizer)), None)
            if chosen is None:
                continue  # its test says so
            slots.append(chosen)
        chosen.regularizer = regularizer
    return slots


def covering(kind: str, name: str) -> Slot:
    """The first run that covers the entry."""
    for slot in plan():
        if getattr(slot, kind, None) == name:
            return slot
        if kind.startswith("metric:") and slot.problem == kind.partition(":")[2]:
            return slot
    raise AssertionError(f"no run covers {kind} '{name}': does it need a setting in NEEDS?")


def entries() -> list[Any]:
    cases = [pytest.param("method", name, id=f"method-{name}") for name in METHODS.names()]
    cases += [pytest.param("pooler", name, id=f"pooler-{name}") for name in POOLERS.names()]
    cases += [pytest.param("head", name, id=f"head-{name}") for name in HEADS.names()]
    cases += [pytest.param("scheduler", name, id=f"scheduler-{name}") for name in SCHEDULERS.names()]
    cases += [
        pytest.param(f"metric:{problem}", name, id=f"metric-{problem}-{name}")
        for problem in PROBLEMS
        for name in metrics_for(problem)
    ]
    cases += [pytest.param("regularizer", name, id=f"regularizer-{name}") for name in regularizer_sections()]
    return cases


def with_structure(data: Path) -> Path:
    """Foldseek 3Di and DSSP strings beside every sequence: ses_adapter reads them; others ignore them."""
    rng = np.random.default_rng(0)
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(data / f"{split}.csv")
        lengths = frame["aa_seq"].str.len()
        frame["foldseek_seq"] = ["".join(rng.choice(list(FOLDSEEK_ALPHABET), n)) for n in lengths]
        frame["ss8_seq"] = ["".join(rng.choice(list("HBEGITS-"), n)) for n in lengths]
        frame.to_csv(data / f"{split}.csv", index=False)
    return data


@dataclass
class Contract:
    """What one run showed; each entry's test asserts on the run that covers it."""

    first_epoch: dict[str, Any]
    prediction_mismatch: list[str]
    resumed_history: list[dict[str, Any]]
    summary_metrics: dict[str, dict[str, float]]
    bootstrapped: dict[str, dict[str, float]]


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    root = tmp_path_factory.mktemp("contracts")
    datasets = {
        problem: with_structure(
            write_synthetic_dataset(
                root / problem, problem, n_train=16, n_validation=8, n_test=8, seed=5, max_len=30
            )
        )
        for problem in PROBLEMS
    }
    done: dict[int, Contract] = {}

    def run(slot: Slot) -> Contract:
        if slot.index not in done:
            done[slot.index] = check_run(base_config(datasets[slot.problem], root / "runs", slot))
        return done[slot.index]

    return run


def check_run(cfg: RunConfig) -> Contract:
    first = train(cfg)
    model = load(first.run_dir)
    test_file = Path(cfg.data.path) / "test.csv"
    model.predict(pd.read_csv(test_file), output_csv=first.run_dir / "predicted.csv")
    predicted = pd.read_csv(first.run_dir / "predicted.csv")
    written = pd.read_csv(first.run_dir / "test_predictions.csv")
    mismatch = [column for column in written.columns if not same_column(predicted[column], written[column])]
    frame = read_sequences(test_file, cfg.data, num_labels=model.num_labels)
    bootstrapped = metrics_with_intervals(
        cfg.metric_names,
        cfg.data.problem_type,
        model.outputs(frame),
        targets_from_frame(frame, cfg.data.problem_type, model.num_labels),
        model.num_labels,
        cfg.evaluation.bootstrap,
        cfg.evaluation.multi_label_threshold,
    )
    resumed = train(None, ["train.epochs=2"], resume_from=first.run_dir)
    return Contract(
        first.summary["history"][0],
        mismatch,
        resumed.summary["history"],
        first.summary["test_metrics"],
        bootstrapped,
    )


def same_column(predicted: pd.Series, written: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(written):
        return bool(np.allclose(predicted.to_numpy(), written.to_numpy(), atol=1e-5))
    return predicted.astype(str).tolist() == written.astype(str).tolist()


def without_time(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "epoch_time_s"}


@pytest.mark.parametrize(("kind", "name"), entries())
def test_every_entry_trains_serializes_resumes_and_bootstraps(kind, name, contract):
    if kind == "method" and (reason := unmet_requirement(name)):
        pytest.skip(f"{name} cannot run here: {reason}")
    slot = covering(kind, name)
    seen = contract(slot)

    assert math.isfinite(seen.first_epoch["train_loss"])  # trained one epoch
    assert seen.prediction_mismatch == []  # the saved checkpoint predicts what the run wrote
    assert len(seen.resumed_history) == 2  # --resume went on to epoch 2 ...
    assert without_time(seen.resumed_history[0]) == without_time(seen.first_epoch)  # ... without redoing 1
    assert all(set(interval) == {"value", "low", "high"} for interval in seen.bootstrapped.values())
    if kind.startswith("metric:"):
        again = seen.bootstrapped[name]  # from the reloaded model: the run's own test value again
        assert again["value"] == pytest.approx(seen.summary_metrics[name]["value"], abs=1e-5, nan_ok=True)
        if all(math.isfinite(again[key]) for key in again):
            assert again["low"] <= again["high"]
