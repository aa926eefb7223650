"""Cost of a `freeze` sweep against one run: trials share one embedding-cache entry.

    python bench/sweep_cost.py                   # 20 trials, AntiBERTy freeze, GB1 two_vs_rest
    python bench/sweep_cost.py --trials 5 --test-subset 1000

Both measurements start from an empty embedding cache (a fresh PROTFIT_CACHE that links only the
converted model folders), so the one run and the sweep each pay for building the cache once. Each runs
in its own process (`protfit train` / `protfit sweep`) with the given thread count; the wall time is
the whole process, imports included. The sweep uses no pruner, so every trial trains all its epochs
(an upper bound). Results: printed and written to bench/results/sweep_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"


def fresh_cache(folder: Path) -> Path:
    """An empty embedding cache that still finds the models already converted in the user's cache."""
    user_cache = Path(os.environ.get("PROTFIT_CACHE", Path.home() / ".cache" / "protfit"))
    folder.mkdir(parents=True)
    for entry in user_cache.iterdir() if user_cache.is_dir() else []:
        if entry.name != "embeddings":
            (folder / entry.name).symlink_to(entry)
    return folder


def timed(command: list[str], cache: Path, threads: int) -> float:
    env = {**os.environ, "PROTFIT_CACHE": str(cache), "OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="antiberty")
    parser.add_argument("--task", default="flip_gb1_two_vs_rest")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--test-subset", type=int, default=0, help="random test rows (0: the whole test split)"
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "sweep_cost.json"))
    args = parser.parse_args()
    source = DATA / args.task
    if not source.is_dir():
        sys.exit(f"{source} is absent; this benchmark needs ../shared/data")

    with tempfile.TemporaryDirectory(prefix="protfit-sweep-cost-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        for split in ("train", "validation"):
            (data / f"{split}.csv").write_bytes((source / f"{split}.csv").read_bytes())
        test = pd.read_csv(source / "test.csv")
        if args.test_subset and len(test) > args.test_subset:
            test = test.sample(n=args.test_subset, random_state=0).sort_index()
        test.to_csv(data / "test.csv", index=False)
        base = {
            "data": {"path": str(data), "problem_type": "regression", "max_seq_len": args.max_seq_len},
            "model": {
                "name": args.model,
                "method": "freeze",
                "pooler": "mean",
                "head": {"hidden_dims": [128]},
            },
            "train": {"epochs": args.epochs, "learning_rate": 1e-3, "progress": False},
            "output": {"dir": str(work / "runs"), "name": "one-run"},
        }
        (work / "run.yaml").write_text(yaml.safe_dump(base))
        sweep = {
            "base": "run.yaml",
            "preset": "quick",
            "n_trials": args.trials,
            "pruner": {"name": "none"},
            "output": {"dir": str(work / "sweeps"), "name": "sweep"},
        }
        (work / "sweep.yaml").write_text(yaml.safe_dump(sweep))
        cli = [sys.executable, "-m", "protfit.cli"]
        one_run = timed(
            [*cli, "train", str(work / "run.yaml")], fresh_cache(work / "cache-run"), args.threads
        )
        sweep_s = timed(
            [*cli, "sweep", str(work / "sweep.yaml")], fresh_cache(work / "cache-sweep"), args.threads
        )
        summary = json.loads((work / "runs" / "one-run" / "summary.json").read_text())
        trials = pd.read_csv(work / "sweeps" / "sweep" / "trials.csv")

    result = {
        "command": "python bench/sweep_cost.py " + " ".join(sys.argv[1:]),
        "model": args.model,
        "task": args.task,
        "sequences": {
            "train+validation+test": int(sum(1 for _ in (source / "train.csv").open()) - 1)
            + int(sum(1 for _ in (source / "validation.csv").open()) - 1)
            + len(test)
        },
        "max_seq_len": args.max_seq_len,
        "epochs": args.epochs,
        "trials": args.trials,
        "threads": args.threads,
        "one_run_s": round(one_run, 1),
        "one_run_cache_build_s": round(
            sum(
                entry["build_s"]
                for entry in (summary.get("embedding_cache") or {}).get("splits", {}).values()
            ),
            1,
        ),
        "sweep_s": round(sweep_s, 1),
        "ratio": round(sweep_s / one_run, 2),
        "trial_states": trials["state"].value_counts().to_dict(),
        "median_trial_s": float(trials["wall_time_s"].median()),
        "machine": f"{platform.machine()}, torch threads {args.threads}, Python {platform.python_version()}",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
