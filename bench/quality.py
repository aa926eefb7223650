"""Quality benchmark: does a pretrained PLM, fine-tuned by protfit, beat position-aware one-hot models?

    python bench/quality.py                       # FLIP GB1 two_vs_rest, 3 seeds -> docs/quality.md
    python bench/quality.py --seeds 0 --epochs 2  # a quick look

Every row is an ordinary protfit run (same splits, same seeds, same recipe), so the table measures
what a user gets:
  1. one-hot baselines — ridge (protfit's sanity baseline, fitted on train, strength chosen on
     validation), a flattened one-hot MLP (encoder `onehot` + pooler `flatten`) and a small 1-D CNN
     (encoder `onehot` + the convolutional `light_attention` pooler);
  2. `freeze`: pretrained AntiBERTy + mean pooling + MLP head;
  3. `full`: pretrained AntiBERTy fine-tuned end to end;
  4. the AntiBERTy architecture from random initialisation, `full`.
Model selection uses the validation split only; the test split is scored once per run. Needs
`pip install "protfit[antiberty]"` and ../shared/data (skips with a message otherwise).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def random_init_antiberty(folder: Path, seed: int) -> Path:
    """The AntiBERTy architecture and tokenizer with freshly initialised weights."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from protfit.models.aliases import resolve_model_source

    pretrained = Path(resolve_model_source("antiberty"))
    target = folder / f"antiberty-random-{seed}"
    torch.manual_seed(seed)
    BertModel(AutoConfig.from_pretrained(pretrained), add_pooling_layer=False).save_pretrained(target)
    AutoTokenizer.from_pretrained(pretrained).save_pretrained(target)
    return target


def write_splits(task: str, test_subset: int, folder: Path) -> Path:
    """The task's own train/validation splits and a fixed random subset of its test split."""
    source = DATA / task
    target = folder / task
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        shutil.copy(source / f"{split}.csv", target / f"{split}.csv")
    test = pd.read_csv(source / "test.csv")
    if test_subset and len(test) > test_subset:
        test = test.sample(n=test_subset, random_state=0).sort_index()
    test.to_csv(target / "test.csv", index=False)
    return target


def rows(epochs: int) -> list[tuple[str, dict, bool]]:
    """(row name, config overrides, needs a random-init folder per seed)."""
    plm = {"pooler": "mean", "head": {"hidden_dims": [128], "dropout": 0.1}}
    return [
        (
            "one-hot MLP (flattened)",
            {
                "model": {
                    "name": "onehot",
                    "method": "full",
                    "pooler": "flatten",
                    "head": {"hidden_dims": [64], "dropout": 0.2},
                },
                "train": {"epochs": max(epochs, 30), "learning_rate": 1e-3},
            },
            False,
        ),
        (
            "one-hot 1-D CNN (light attention)",
            {
                "model": {
                    "name": "onehot",
                    "method": "full",
                    "pooler": "light_attention",
                    "head": {"hidden_dims": [64], "dropout": 0.2},
                },
                "train": {"epochs": max(epochs, 30), "learning_rate": 1e-3},
            },
            False,
        ),
        (
            "AntiBERTy freeze + MLP head",
            {
                "model": {"name": "antiberty", "method": "freeze", **plm},
                "train": {"epochs": max(epochs, 30), "learning_rate": 1e-3},
            },
            False,
        ),
        (
            "AntiBERTy full fine-tuning",
            {
                "model": {"name": "antiberty", "method": "full", **plm},
                "train": {"epochs": epochs, "learning_rate": 1e-4},
            },
            False,
        ),
        (
            "AntiBERTy architecture, random init, full",
            {"model": {"method": "full", **plm}, "train": {"epochs": epochs, "learning_rate": 1e-4}},
            True,
        ),
    ]


def run_row(name: str, overrides: dict, data: Path, seed: int, out: Path, max_seq_len: int) -> dict:
    from protfit.config import build_config
    from protfit.inference import load
    from protfit.training.train import train

    raw = {
        "data": {
            "path": str(data),
            "problem_type": "regression",
            "max_seq_len": max_seq_len,
            "batch_size": 16,
        },
        "model": overrides["model"],
        "train": {
            "seed": seed,
            "progress": False,
            "scheduler": {"name": "linear", "warmup_ratio": 0.1},
            "early_stopping": {"monitor": "spearman", "patience": 5},
            **overrides["train"],
        },
        "evaluation": {"metrics": ["spearman", "mse"]},
        "output": {
            "dir": str(out),
            "name": f"{name.replace(' ', '_').replace('/', '')}-seed{seed}",
            "overwrite": True,
        },
    }
    started = time.perf_counter()
    result = train(build_config(raw))
    summary = result.summary
    train_frame = pd.read_csv(data / "train.csv")
    train_metrics = load(result.run_dir).evaluate(train_frame, result.run_dir / "eval_train")
    return {
        "row": name,
        "seed": seed,
        "test_spearman": summary["test_metrics"]["spearman"]["value"],
        "best_val_spearman": summary["best_val_metric"],
        "train_val_gap": train_metrics["spearman"]["value"] - summary["best_val_metric"],
        "wall_s": time.perf_counter() - started,
        "ridge_test_spearman": summary["baselines"]
        .get("onehot_linear", {})
        .get("metrics", {})
        .get("spearman", {})
        .get("value"),
        "best_epoch": summary["best_epoch"],
    }


def mean_sd(values: list[float]) -> str:
    values = [value for value in values if value is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_report(results: pd.DataFrame, args: argparse.Namespace, test_rows: int, out_path: Path) -> str:
    ridge = results["ridge_test_spearman"].dropna()
    lines = [
        "# Quality benchmark: pretrained AntiBERTy vs one-hot models",
        "",
        f"Task: FLIP GB1 `{args.task}` (regression, metric Spearman), train/validation as published,",
        f"test: a fixed random subset of {test_rows} test sequences (seed 0) to keep CPU time bounded.",
        f"Sequences truncated to the first {args.max_seq_len} residues (`keep_start`), which keeps all four",
        "varied positions (39, 40, 41, 54). Seeds: "
        + ", ".join(map(str, args.seeds))
        + "; mean ± sd over seeds.",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}.",
        "Command: `python bench/quality.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "| model | test Spearman | best val Spearman | train − val gap | wall time / run (s) |",
        "|---|---|---|---|---|",
        f"| one-hot ridge (protfit sanity baseline) | {mean_sd(list(ridge.unique()))} | – | – | < 5 |",
    ]
    for row, group in results.groupby("row", sort=False):
        lines.append(
            f"| {row} | {mean_sd(group['test_spearman'].tolist())} | {mean_sd(group['best_val_spearman'].tolist())} "
            f"| {mean_sd(group['train_val_gap'].tolist())} | {statistics.mean(group['wall_s']):.0f} |"
        )
    lines += ["", "Per-run results: `bench/results/quality.csv`.", ""]
    text = "\n".join(lines)
    out_path.write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="flip_gb1_two_vs_rest")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6, help="epochs for full fine-tuning rows")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--rows", nargs="*", help="only rows whose name contains one of these words")
    parser.add_argument("--out", default=str(REPO / "docs" / "quality.md"))
    args = parser.parse_args()

    if not (DATA / args.task).is_dir():
        print(f"skipped: {DATA / args.task} not found (the benchmark needs ../shared/data)")
        return 0
    try:
        from protfit.models.antiberty import antiberty_model_dir

        antiberty_model_dir()
    except RuntimeError as error:
        print(f"skipped: {error}")
        return 0

    work = Path(tempfile.mkdtemp(prefix="protfit-quality-"))
    data = write_splits(args.task, args.test_subset, work / "data")
    test_rows = len(pd.read_csv(data / "test.csv"))
    records = []
    for name, overrides, needs_random in rows(args.epochs):
        if args.rows and not any(word.lower() in name.lower() for word in args.rows):
            continue
        for seed in args.seeds:
            if needs_random:
                overrides = {
                    **overrides,
                    "model": {**overrides["model"], "name": str(random_init_antiberty(work, seed))},
                }
            record = run_row(name, overrides, data, seed, work / "runs", args.max_seq_len)
            print(
                f"== {name} seed {seed}: test spearman {record['test_spearman']:.3f} ({record['wall_s']:.0f}s)",
                flush=True,
            )
            records.append(record)
    results = pd.DataFrame(records)
    results_csv = REPO / "bench" / "results" / "quality.csv"
    results_csv.parent.mkdir(parents=True, exist_ok=True)
    if args.rows and results_csv.exists():
        # a partial re-run replaces its own rows and keeps the others
        earlier = pd.read_csv(results_csv)
        results = pd.concat([earlier[~earlier["row"].isin(results["row"])], results], ignore_index=True)
        order = [name for name, _, _ in rows(args.epochs)]
        results = results.sort_values("row", key=lambda column: column.map(order.index), kind="stable")
    results.to_csv(results_csv, index=False)
    print(write_report(results, args, test_rows, Path(args.out)))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
