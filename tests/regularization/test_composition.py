"""Techniques compose with each other and with the PEFT methods: one run with several at once."""

from __future__ import annotations

import math

from reg_helpers import R, make_config

from protfit.training.train import train


def test_several_techniques_together_under_lora(classification_data, tmp_path):
    cfg = make_config(
        classification_data,
        tmp_path,
        R + "ema.enabled=true",
        R + "sam.enabled=true",
        R + "layerwise_lr.enabled=true",
        R + "dropout.enabled=true",
        R + "dropout.hidden=0.2",
        R + "label_smoothing.enabled=true",
        R + "augmentation.enabled=true",
        R + "augmentation.substitution_prob=0.5",
        R + "l2_sp.enabled=true",
        R + "clip_value.enabled=true",
        method="lora",
    )
    result = train(cfg)
    row = result.summary["history"][-1]
    assert math.isfinite(row["train_loss"]) and row["overfitting"] in {"none", "mild", "severe"}
    assert result.summary["diagnostics"]["verdict"] is not None
