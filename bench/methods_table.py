"""Measure the methods table of docs/methods.md: trainable share and time per epoch of every method.

    python bench/methods_table.py            # print the table
    python bench/methods_table.py --write    # also replace the table in docs/methods.md

Every row is an ordinary protfit run of the `esm2-8m-random` alias (the ESM2-8M architecture with
random weights, built locally: the speed of ESM2-8M without a download) on a fixed subset of
../shared/data/deeploc_localization (length-varied sequences, truncated at 256 residues), one row per
method with the same data, batches and seed. Times are wall-clock seconds of one epoch (training
pass + validation pass) as the recipe records them (`epoch_time_s`); `freeze` also pays once, before
its first epoch, for computing the frozen features of every split (the embedding cache), shown apart.
The model cache (PROTFIT_CACHE) is a fresh temporary folder, so no run reuses another's features.
The CPU may be shared with other jobs, so the times are indicative: compare rows of one table, not
tables. Skips with a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "deeploc_localization"
DOC = REPO / "docs" / "methods.md"
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"
METHODS = ["freeze", "full", "lora", "dora", "adalora", "ia3"]


def write_subset(folder: Path, n_train: int, n_validation: int) -> Path:
    """Fixed random subsets (seed 0) of DeepLoc's train and validation splits; no test split."""
    for split, count in (("train", n_train), ("validation", n_validation)):
        frame = pd.read_csv(DATA / f"{split}.csv")
        frame.sample(n=min(count, len(frame)), random_state=0).to_csv(folder / f"{split}.csv", index=False)
    return folder


def run_method(method: str, data: Path, out: Path, epochs: int, batch_size: int) -> dict[str, object]:
    from protfit.config import build_config
    from protfit.training.train import train

    raw = {
        "data": {
            "path": str(data),
            "problem_type": "single_label_classification",
            "num_labels": 11,
            "max_seq_len": 256,
            "unknown_residues": "map_to_x",
            "batch_size": batch_size,
        },
        "model": {"name": "esm2-8m-random", "method": method},
        "train": {"epochs": epochs, "learning_rate": 1e-3, "progress": False, "device": "cpu"},
        "evaluation": {"baselines": {"enabled": False}},
        "output": {"dir": str(out), "name": method},
    }
    summary = train(build_config(raw)).summary
    stats, history = summary["model_stats"], summary["history"]
    cache = summary.get("embedding_cache") or {}
    return {
        "method": method,
        "trainable": stats["trainable"],
        "backbone_trainable": stats["components"]["backbone"]["trainable"],
        "total": stats["total"],
        "backbone_total": stats["components"]["backbone"]["total"],  # adapters included
        "percent": stats["percent_trainable"],
        "epoch_s": sum(row["epoch_time_s"] for row in history) / len(history),
        "cache_s": sum(split["build_s"] for split in cache.get("splits", {}).values()) if cache else None,
    }


def format_table(rows: list[dict[str, object]], setup: str) -> str:
    lines = [
        "| method | trainable parameters | share of all | in the backbone | time per epoch (s) "
        "| once: feature cache (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cache = f"{row['cache_s']:.1f}" if row["cache_s"] is not None else "-"
        lines.append(
            f"| {row['method']} | {row['trainable']:,} | {row['percent']:.2f}% | "
            f"{row['backbone_trainable']:,} | {row['epoch_s']:.1f} | {cache} |"
        )
    lines.append("| qlora | as lora | | | not measured: needs a CUDA GPU | |")
    return "\n".join([*lines, "", setup])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-size", type=int, default=96)
    parser.add_argument("--validation-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--write", action="store_true", help=f"replace the table in {DOC.relative_to(REPO)}")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the shared benchmark data is not on this machine)")
        return 0

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROTFIT_CACHE"] = str(Path(tmp) / "cache")
        data = write_subset(Path(tmp), args.train_size, args.validation_size)
        for method in args.methods:
            rows.append(run_method(method, data, Path(tmp) / "runs", args.epochs, args.batch_size))
            print(f"{method}: {rows[-1]}", flush=True)
    setup = (
        f"Measured by `python bench/methods_table.py` on {time.strftime('%Y-%m-%d')}: esm2-8m-random "
        f"({min(row['backbone_total'] for row in rows):,} backbone parameters), DeepLoc subset of "
        f"{args.train_size} train / {args.validation_size} validation sequences, max_seq_len 256, "
        f"batch size {args.batch_size}, {args.epochs} epoch(s), mean pooler, head [256], "
        f"default model.lora settings; CPU ({platform.machine()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, load average {load:.1f} at the "
        f"start: shared with other jobs), torch {torch.__version__}. "
        f"Total {time.perf_counter() - started:.0f} s."
    )
    table = format_table(rows, setup)
    print(table)
    if args.write:
        text = DOC.read_text()
        if START not in text or END not in text:
            print(f"{DOC} has no {START} ... {END} markers; table not written", file=sys.stderr)
            return 1
        head, rest = text.split(START, 1)
        DOC.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")
        print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
