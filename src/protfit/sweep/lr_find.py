"""`protfit lr-find`: the learning-rate range test on a run built exactly as `protfit train` builds it.

The test itself (ramp, smoothing, suggestion rules, curve and plot) is
:mod:`protfit.training.lr_range_test`, which ``train.learning_rate=auto`` uses too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from protfit.config import with_learning_rate
from protfit.report.run_dir import default_run_name, write_json
from protfit.training.lr_range_test import (
    PLACEHOLDER_LR,
    RangeTestResult,
    RangeTestSettings,
    run_range_test,
    write_range_test,
)
from protfit.training.setup import setup_run
from protfit.training.train import resolve_config

logger = logging.getLogger("protfit")
# The smoothed loss is an exponential average with beta 0.98, i.e. over ~1 / (1 - beta) = 50 batches:
# a shorter ramp cannot show a descent beyond its noise, so its suggestion always falls back to the
# noise rule (a tenth of where the loss diverged).
MIN_USEFUL_STEPS = 50


def lr_find(
    config: Any,
    overrides: list[str] | None = None,
    *,
    settings: RangeTestSettings | None = None,
    out_dir: str | Path | None = None,
) -> tuple[RangeTestResult, Path]:
    """`protfit lr-find`: build the run exactly as `protfit train` would, run the range test on it,
    write the curve, plot and result to ``out_dir``; nothing is trained."""
    cfg = resolve_config(config, overrides)
    settings = settings or RangeTestSettings()
    if not 0 < settings.start_lr < settings.end_lr:
        raise ValueError(
            f"the range test needs 0 < start_lr < end_lr (got {settings.start_lr}, {settings.end_lr})"
        )
    if settings.num_steps < 2:
        raise ValueError(f"the range test needs at least 2 steps (got {settings.num_steps})")
    if settings.num_steps < MIN_USEFUL_STEPS:
        logger.warning(
            "%d steps are too few for the range test: its smoothed loss averages ~%d batches, so the curve "
            "cannot show a descent and the suggestion will be the noise rule's upper bound; use %d (the "
            "default) or more",
            settings.num_steps,
            MIN_USEFUL_STEPS,
            RangeTestSettings().num_steps,
        )
    if cfg.train.learning_rate == "auto":
        # the run's own optimizer is built with a rate; the ramp replaces it anyway
        cfg = with_learning_rate(cfg, PLACEHOLDER_LR)
    parts = setup_run(cfg)
    result = run_range_test(parts, parts.optimizer, parts.cfg.train.learning_rate, settings)
    folder = Path(out_dir) if out_dir else Path(cfg.output.dir) / f"lr-find-{default_run_name(cfg)}"
    write_range_test(result, folder)
    write_json(folder / "lr_find.json", result.as_dict())
    return result, folder
