"""Overfitting diagnostics in every run: per-epoch keys, the verdict rules, undertraining, advice;
the overfitting scenario (severe without a regularizer, a smaller gap with one)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from reg_helpers import R, make_config

from protfit.data.synthetic import write_synthetic_dataset
from protfit.regularization.diagnostics import epoch_verdict, is_undertrained, run_diagnosis, train_rows
from protfit.regularization.sections.diagnostics import DiagnosticsConfig
from protfit.training.setup import setup_run
from protfit.training.train import train

EPOCH_KEYS = {"train_eval_loss", "gap_loss", "gap_metric", "overfitting"}
SUMMARY_KEYS = {"best_epoch", "gap_loss", "gap_metric", "train_metric", "verdict", "undertrained", "advice"}


@pytest.fixture(scope="module")
def noisy_data(tmp_path_factory):
    """32 training rows with 35% of the labels flipped, clean validation: memorising the training
    split (training MCC 1.0) cannot carry over to validation."""
    root = write_synthetic_dataset(
        tmp_path_factory.mktemp("noisy"),
        "single_label_classification",
        n_train=32,
        n_validation=16,
        n_test=8,
        seed=5,
        max_len=40,
    )
    frame = pd.read_csv(root / "train.csv")
    flip = np.random.default_rng(0).random(len(frame)) < 0.35
    frame.loc[flip, "label"] = (frame.loc[flip, "label"] + 1) % 3
    frame.to_csv(root / "train.csv", index=False)
    return root


def overfit_run(data, out, *overrides):
    # a small position-aware model (one-hot + flatten + MLP), trained long at a constant LR
    cfg = make_config(
        data,
        out,
        "model.name=onehot",
        "model.pooler=flatten",
        "model.head.dropout=0.0",
        "model.head.hidden_dims=[32]",
        "train.epochs=8",
        "data.max_seq_len=40",
        "train.learning_rate=0.01",
        "train.scheduler.name=constant",
        *overrides,
    )
    return train(cfg)


def test_overfitting_scenario_is_severe_and_a_regularizer_narrows_the_gap(noisy_data, tmp_path):
    plain = overfit_run(noisy_data, tmp_path / "plain")
    history = plain.summary["history"]
    assert all(
        EPOCH_KEYS | {"train_mcc", "train_accuracy", "train_f1", "train_auroc"} <= set(row) for row in history
    )
    assert history[-1]["train_mcc"] == 1.0 and history[-1]["val_mcc"] < 0.8
    diagnosis = plain.summary["diagnostics"]
    assert set(diagnosis) >= SUMMARY_KEYS and diagnosis["verdict"] == "severe"
    assert any("regularization." in tip for tip in diagnosis["advice"])
    # the same keys land in history.csv and summary.json
    csv = pd.read_csv(plain.run_dir / "history.csv")
    assert set(csv.columns) >= EPOCH_KEYS and set(csv["overfitting"]) <= {"none", "mild", "severe"}
    assert json.loads((plain.run_dir / "summary.json").read_text())["diagnostics"]["verdict"] == "severe"

    regularized = overfit_run(
        noisy_data,
        tmp_path / "l2",
        R + "weight_decay.enabled=true",
        R + "weight_decay.mode=l2",
        R + "weight_decay.head=0.3",
    )
    gaps = {
        name: [row["gap_loss"] for row in run.summary["history"]]
        for name, run in (("plain", plain), ("l2", regularized))
    }
    assert gaps["l2"][-1] < gaps["plain"][-1]
    assert np.mean(gaps["l2"]) < np.mean(gaps["plain"])


def records(*rows):
    return [
        {
            "epoch": i + 1,
            "val_mcc": val,
            "train_loss_eval_metric": train,
            "gap_metric": train - val,
            "val_loss": 1.0,
            "train_eval_loss": 1.0,
        }
        for i, (train, val) in enumerate(rows)
    ]


def test_verdict_rules():
    cfg = DiagnosticsConfig()
    assert epoch_verdict(records((0.6, 0.58)), "mcc", "max", cfg) == "none"
    assert epoch_verdict(records((0.7, 0.6)), "mcc", "max", cfg) == "mild"
    assert epoch_verdict(records((0.9, 0.6)), "mcc", "max", cfg) == "severe"
    # a saturated training metric while validation stalls: severe even with a small gap
    stalled = records((0.9, 0.88), (0.99, 0.87), (1.0, 0.87))
    assert epoch_verdict(stalled, "mcc", "max", DiagnosticsConfig(severe_gap=0.5)) == "severe"
    # validation loss rising from its minimum while training loss falls
    rising = records((0.5, 0.5), (0.5, 0.5))
    rising[1].update(val_loss=1.5, train_eval_loss=0.5)
    assert epoch_verdict(rising, "mcc", "max", cfg) == "severe"
    rising[1].update(val_loss=1.15)
    assert epoch_verdict(rising, "mcc", "max", cfg) == "mild"


def test_an_undefined_or_zero_gap_is_never_severe():
    cfg = DiagnosticsConfig()
    # accuracy 1.0 on both splits: validation cannot improve on its ceiling, nothing is overfitted
    ceiling = records((1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    assert epoch_verdict(ceiling, "mcc", "max", cfg) == "none"
    # a constant validation label: the monitored metric, so the gap, is nan; the validation loss rises
    # as the model learns the training labels' spread, which was reported as severe
    constant = records((0.9, math.nan), (0.95, math.nan), (0.97, math.nan))
    constant[1].update(val_loss=1.5, train_eval_loss=0.5)
    constant[2].update(val_loss=1.6, train_eval_loss=0.4)
    assert [epoch_verdict(constant[:n], "mcc", "max", cfg) for n in (1, 2, 3)] == ["n/a"] * 3
    undefined = summary([math.nan] * 3, best=1)
    for record in undefined["history"]:
        record.update(overfitting="n/a", gap_metric=math.nan)
    run_cfg = make_config("unused", "unused", problem="regression")
    diagnosis = run_diagnosis(undefined, cfg, run_cfg)
    assert diagnosis["verdict"] == "n/a" and diagnosis["advice"] == []
    # one defined epoch after the best outranks n/a
    undefined["history"][2]["overfitting"] = "mild"
    assert run_diagnosis(undefined, cfg, run_cfg)["verdict"] == "mild"


def summary(values, best, lr_last=0.0, stopped=False):
    history = [
        {
            "epoch": i + 1,
            "val_spearman": v,
            "lr": 1e-3,
            "overfitting": "none",
            "gap_loss": 0.0,
            "gap_metric": 0.0,
            "train_eval_loss": 0.1,
            "train_spearman": 0.5,
        }
        for i, v in enumerate(values)
    ]
    history[-1]["lr"] = lr_last
    return {
        "history": history,
        "best_epoch": best,
        "monitor": "spearman",
        "monitor_mode": "max",
        "stopped_early": stopped,
        "epochs_run": len(values),
    }


def test_undertrained_when_the_best_epoch_is_last_or_still_rising():
    cfg = DiagnosticsConfig()
    assert is_undertrained(summary([0.1, 0.2, 0.3], best=3), cfg)
    assert is_undertrained(summary([0.1, 0.2, 0.31, 0.3], best=3), cfg)  # within the window, trend rising
    assert not is_undertrained(summary([0.1, 0.5, 0.3, 0.2, 0.2], best=2), cfg)  # peaked early
    assert not is_undertrained(summary([0.1, 0.2, 0.3], best=3, stopped=True), cfg)
    run_cfg = make_config("unused", "unused", problem="regression")
    diagnosis = run_diagnosis(summary([0.1, 0.2, 0.3], best=3), cfg, run_cfg)
    assert diagnosis["undertrained"] and diagnosis["verdict"] == "none"
    text = " ".join(diagnosis["advice"])
    assert "train.epochs=6" in text and "decayed to 0" in text and "does not end at zero" in text


def test_advice_does_not_suggest_what_the_run_already_does():
    cfg = DiagnosticsConfig()
    # still rising at the end, but the learning rate ended at a floor: no "schedule ends at zero" tip
    run_cfg = make_config("unused", "unused", problem="regression")
    diagnosis = run_diagnosis(summary([0.1, 0.2, 0.3], best=3, lr_last=2e-5), cfg, run_cfg)
    text = " ".join(diagnosis["advice"])
    assert diagnosis["undertrained"] and "train.epochs=6" in text
    assert "does not end at zero" not in text and "decayed to 0" not in text
    # a severe run that peaked early: the patience tip only when patience is unset or longer than 3
    peaked = summary([0.5, 0.9, 0.6, 0.5, 0.4, 0.3], best=2)
    for record in peaked["history"][2:]:
        record["overfitting"] = "severe"
    tip = "train.early_stopping.patience=3"
    patient = make_config("unused", "unused", "train.early_stopping.patience=10", problem="regression")
    assert run_diagnosis(peaked, cfg, patient)["verdict"] == "severe"
    assert any(tip in t for t in run_diagnosis(peaked, cfg, patient)["advice"])
    short = make_config("unused", "unused", "train.early_stopping.patience=3", problem="regression")
    assert not any(tip in t for t in run_diagnosis(peaked, cfg, short)["advice"])


def test_train_split_subset_is_bounded_and_fixed(classification_data, tmp_path):
    cfg = make_config(classification_data, tmp_path, R + "diagnostics.train_rows=5", method="freeze")
    parts = setup_run(cfg)
    rows = train_rows(parts, 5)
    assert len(rows) == 8  # max(train_rows, validation rows)
    assert np.array_equal(rows, train_rows(parts, 5)) and len(set(rows)) == 8
    assert len(train_rows(parts, 1000)) == 24  # small split: all rows


def test_diagnostics_observe_without_changing_the_training(tmp_path):
    # head dropout draws from the global RNG every step; the train-split evaluation must not shift it
    from protfit.training.train import train

    data = write_synthetic_dataset(tmp_path / "data", "regression", n_train=40, n_validation=12, n_test=12)
    histories = {}
    for on in (True, False):
        cfg = make_config(
            data,
            tmp_path / str(on),
            "train.epochs=3",
            "model.head.dropout=0.5",
            f"regularization.diagnostics.enabled={str(on).lower()}",
            problem="regression",
        )
        rows = train(cfg).summary["history"]
        histories[on] = [(row["train_loss"], row["val_loss"], row["val_spearman"]) for row in rows]
    assert histories[True] == histories[False]
