"""The run directory: what a finished (or interrupted) run leaves behind.

RUN_DIR/
  config.yaml            resolved config; `protfit train RUN_DIR/config.yaml` re-runs it
  model_meta.json        what prediction needs: labels, target scaling, backbone family
  model_stats.json       parameter counts (total / trainable / per component)
  data_report.json       truncation, residues mapped to X, sequences shared between splits
  history.csv/.jsonl     one row per epoch (train loss, val loss, val metrics, lr, time)
  checkpoints/best/      weights of the best validation epoch (safetensors)
  checkpoints/last/      weights + optimizer/scheduler/RNG/early-stopping state, for --resume
  test_results.csv       test metrics with bootstrap intervals, model and sanity baselines
  test_predictions.csv   per-sequence predictions on the test split
  loss.png, metrics.png  learning curves
  summary.json           best epoch, best val metric, test metrics, baselines, verdict, wall time
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from protfit.config import RunConfig, save_config

CONFIG_FILE = "config.yaml"


def write_json(path: Path, payload: Any) -> None:
    """Write via a temporary file and rename, so a crash never leaves a truncated JSON."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        if isinstance(value, dict):
            return {str(key): clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(clean(payload), indent=2))
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def default_run_name(cfg: RunConfig) -> str:
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(cfg.model.name.rstrip("/")).name)
    return f"{model}-{cfg.model.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(cfg: RunConfig) -> Path:
    run_dir = Path(cfg.output.dir) / (cfg.output.name or default_run_name(cfg))
    if run_dir.exists() and any(run_dir.iterdir()) and not cfg.output.overwrite:
        raise FileExistsError(
            f"run folder {run_dir} already exists and is not empty; choose another output.name, "
            "set output.overwrite=true, or continue it with `protfit train --resume "
            f"{run_dir}`"
        )
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_FILE)
    return run_dir


class History:
    """Per-epoch records, rewritten in full after every epoch (CSV and JSON lines)."""

    def __init__(self, run_dir: Path, records: list[dict[str, Any]] | None = None) -> None:
        self.run_dir = run_dir
        self.records = list(records or [])

    @classmethod
    def load(cls, run_dir: Path) -> History:
        path = run_dir / "history.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return cls(run_dir, records)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.records = [row for row in self.records if row["epoch"] <= record["epoch"]]
        jsonl = self.run_dir / "history.jsonl"
        temporary = jsonl.with_name("history.jsonl.tmp")
        temporary.write_text("".join(json.dumps(row) + "\n" for row in self.records))
        os.replace(temporary, jsonl)
        pd.DataFrame(self.records).to_csv(self.run_dir / "history.csv", index=False)

    def truncate(self, last_epoch: int) -> None:
        self.records = [row for row in self.records if row["epoch"] <= last_epoch]
