"""Zero-shot AntiBERTy scores and the augmented one-hot models (Hsu et al. 2022) on variant data.

    python bench/zero_shot.py                                  # every task, seeds 0-2 -> docs/quality.md
    python bench/zero_shot.py --tasks gb1_quickstart --seeds 0 # a quick look

Every row comes from ordinary protfit runs (`protfit train` with the config below), so it measures
what a user gets: each run on variant data reports, besides its own test Spearman, the sanity
baselines `onehot_linear` (one-hot ridge), `zero_shot` (AntiBERTy's masked-marginal score against the
reference, no training) and `onehot_zero_shot_linear` (one-hot ridge + the score). The MLP rows are the
run itself: one-hot + flatten pooler + MLP head, without and with `model.extra_features: [zero_shot]`.
The baselines do not depend on the seed (checked: equal in every run of a task).

Reference: `data.reference_sequence` is not set, so protfit uses the most common training sequence,
else the per-position consensus (said per task in the output). Sequences keep their first
`max_seq_len` residues (GB1: 64, which keeps the varied positions 39-41 and 54; FLAb D44: all 222).
AntiBERTy was pretrained on antibody sequences: FLAb D44 (an antibody Fv) is in its domain, GB1 (a
bacterial protein domain) is not, so its GB1 scores say little about the protein.
Needs `pip install "protfit[antiberty]"` and ../shared/data (a task whose data is missing is skipped).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TASKS = {
    "flab_d44_binding": (DATA / "flab_d44_binding", 222),
    "gb1_quickstart": (REPO / "examples" / "data" / "gb1_quickstart", 64),
    "flip_gb1_two_vs_rest": (DATA / "flip_gb1_two_vs_rest", 64),
    "flip_gb1_three_vs_rest": (DATA / "flip_gb1_three_vs_rest", 64),
    "flip_gb1_low_vs_high": (DATA / "flip_gb1_low_vs_high", 64),
}
BASELINES = {
    "onehot_linear": "one-hot ridge",
    "zero_shot": "zero-shot AntiBERTy (masked marginal)",
    "onehot_zero_shot_linear": "augmented ridge (one-hot + zero-shot)",
}
MODELS = {"one-hot MLP": [], "augmented MLP (one-hot + zero-shot)": ["zero_shot"]}


def run_config(
    task: str, folder: Path, max_len: int | None, features: list[str], seed: int, out: Path
) -> dict:
    return {
        "data": {"path": str(folder), "problem_type": "regression", "max_seq_len": max_len, "batch_size": 32},
        "model": {
            "name": "onehot",
            "method": "full",
            "pooler": "flatten",
            "extra_features": features,
            "zero_shot_model": "antiberty",
            "head": {"hidden_dims": [64], "dropout": 0.2},
        },
        "train": {"epochs": 30, "learning_rate": 1e-3, "seed": seed, "progress": False},
        "evaluation": {"metrics": ["spearman"]},
        "output": {
            "dir": str(out),
            "name": f"{task}-{'aug' if features else 'onehot'}-{seed}",
            "overwrite": True,
        },
    }


def interval(entry: dict) -> str:
    return f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--results", default=str(REPO / "bench" / "results" / "zero_shot.csv"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from protfit.config import build_config
    from protfit.training.train import train

    records = []
    with tempfile.TemporaryDirectory(prefix="protfit-zero-shot-") as scratch:
        for task in args.tasks:
            folder, max_len = TASKS[task]
            if not (folder / "train.csv").is_file():
                print(f"{task}: no data at {folder}, skipped")
                continue
            for model, features in MODELS.items():
                for seed in args.seeds:
                    started = time.perf_counter()
                    raw = run_config(task, folder, max_len, features, seed, Path(scratch))
                    summary = train(build_config(raw)).summary
                    seconds = time.perf_counter() - started
                    record = {
                        "task": task,
                        "model": model,
                        "seed": seed,
                        "test_spearman": summary["test_metrics"]["spearman"]["value"],
                        "low": summary["test_metrics"]["spearman"]["low"],
                        "high": summary["test_metrics"]["spearman"]["high"],
                        "best_epoch": summary["best_epoch"],
                        "wall_s": round(seconds, 1),
                        "reference": summary.get("zero_shot", {}).get("reference", {}).get("detail"),
                    }
                    for name in BASELINES:
                        entry = summary["baselines"][name]["metrics"]["spearman"]
                        record |= {
                            name: entry["value"],
                            f"{name}_low": entry["low"],
                            f"{name}_high": entry["high"],
                        }
                    records.append(record)
                    print(json.dumps(record), flush=True)
    frame = pd.DataFrame(records)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.results, index=False)
    print(markdown(frame))
    libraries = ", ".join(
        f"{name} {version(name)}" for name in ("torch", "transformers", "antiberty", "numpy", "scikit-learn")
    )
    print(f"\n{libraries}, Python {platform.python_version()}; per-run results: {args.results}")


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| task | " + " | ".join([*BASELINES.values(), *MODELS]) + " |"]
    lines.append("|---" * (1 + len(BASELINES) + len(MODELS)) + "|")
    for task, rows in frame.groupby("task", sort=False):
        first = rows.iloc[0]
        for name in BASELINES:  # the baselines do not depend on the seed or the MLM row: check it
            if rows[name].nunique() != 1:
                raise RuntimeError(f"{task}: baseline {name} differs between runs: {rows[name].tolist()}")
        cells = [
            interval({"value": first[n], "low": first[f"{n}_low"], "high": first[f"{n}_high"]})
            for n in BASELINES
        ]
        for model in MODELS:
            values = rows[rows["model"] == model]["test_spearman"].tolist()
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
