"""Regularization benchmark: each technique alone vs none, pretrained AntiBERTy on FLIP GB1 two_vs_rest.

    OMP_NUM_THREADS=1 python bench/regularization.py                        # every technique, 3 seeds
    OMP_NUM_THREADS=1 python bench/regularization.py --techniques none ema  # a subset
    OMP_NUM_THREADS=1 python bench/regularization.py --budget-min 45        # stop starting runs after 45 min

Every row is an ordinary protfit run (same splits, seeds and recipe; only `regularization.*`
differs), so the table measures what a user gets. The train split has 381 sequences: small enough
to overfit. Two blocks: techniques that act on the pooler/head run on the frozen backbone with the
embedding cache (`freeze`, cheap), techniques that act inside the backbone run with full
fine-tuning (`full`), each against its own `none` row. Columns: best validation Spearman, test
Spearman (fixed random test subset), the train - validation Spearman gap at the best epoch and the
run's overfitting verdict (protfit's diagnostics), seconds per epoch. The one-hot ridge row is
protfit's sanity baseline from the same runs. Runs are appended to `bench/results/regularization.csv`
as they finish; the Markdown table is rewritten after each run, so a stopped benchmark still reports
what it measured (and lists the rest as not measured).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from quality import DATA, write_splits  # noqa: E402
from quality import mean_sd as quality_mean_sd  # noqa: E402  (same data preparation as the quality benchmark)

R = "regularization."
# name -> (method, overrides); each technique with settings a user would try first
TECHNIQUES: dict[str, tuple[str, list[str]]] = {
    "none (freeze)": ("freeze", []),
    "scheduled head dropout 0.1→0.5": (
        "freeze",
        [
            R + "scheduled_dropout.enabled=true",
            R + "scheduled_dropout.start=0.1",
            R + "scheduled_dropout.end=0.5",
        ],
    ),
    "head weight decay 0.1 (L2 in loss)": (
        "freeze",
        [R + "weight_decay.enabled=true", R + "weight_decay.mode=l2", R + "weight_decay.head=0.1"],
    ),
    "activation noise 0.1": ("freeze", [R + "activation_noise.enabled=true"]),
    "gradient noise": ("freeze", [R + "gradient_noise.enabled=true"]),
    "R-Drop": ("freeze", [R + "rdrop.enabled=true"]),
    "EMA 0.99 (freeze)": ("freeze", [R + "ema.enabled=true"]),
    "SWA from epoch 10": ("freeze", [R + "swa.enabled=true", R + "swa.start_epoch=10"]),
    "SAM rho 0.05": ("freeze", [R + "sam.enabled=true"]),
    "Lookahead k5": ("freeze", [R + "lookahead.enabled=true"]),
    "clip by value 0.1": ("freeze", [R + "clip_value.enabled=true", R + "clip_value.value=0.1"]),
    "DP-SGD (noise 1.0)": ("freeze", [R + "privacy.enabled=true"]),
    "augmentation (BLOSUM62 0.5×10%)": (
        "freeze",
        [R + "augmentation.enabled=true", R + "augmentation.substitution_prob=0.5"],
    ),
    "none (full)": ("full", []),
    "L2-SP 0.01": ("full", [R + "l2_sp.enabled=true"]),
    "layer-wise LR decay 0.8": ("full", [R + "layerwise_lr.enabled=true", R + "layerwise_lr.head_lr=0.001"]),
    "freeze bottom 4 layers": ("full", [R + "freeze_layers.enabled=true", R + "freeze_layers.bottom=4"]),
    "EMA 0.99 (full)": ("full", [R + "ema.enabled=true"]),
    "backbone dropout 0.2": (
        "full",
        [R + "dropout.enabled=true", R + "dropout.hidden=0.2", R + "dropout.attention=0.2"],
    ),
    "NEFTune alpha 5": ("full", [R + "neftune.enabled=true"]),
    "FGM adversarial": ("full", [R + "adversarial.enabled=true"]),
    "re-init top layer": ("full", [R + "reinit_layers.enabled=true"]),
    "gradual unfreezing": ("full", [R + "gradual_unfreezing.enabled=true", R + "gradual_unfreezing.every=1"]),
    "weight noise 0.001": ("full", [R + "weight_noise.enabled=true", R + "weight_noise.std=0.001"]),
}


def run_one(name: str, data: Path, seed: int, out: Path, args: argparse.Namespace) -> dict:
    from protfit.config import apply_overrides, build_config
    from protfit.training.train import train

    method, overrides = TECHNIQUES[name]
    frozen = method == "freeze"
    raw = {
        "data": {
            "path": str(data),
            "problem_type": "regression",
            "max_seq_len": args.max_seq_len,
            "batch_size": 16,
        },
        "model": {
            "name": "antiberty",
            "method": method,
            "pooler": "mean",
            "head": {"hidden_dims": [128], "dropout": 0.1},
        },
        "train": {
            "seed": seed,
            "progress": False,
            "epochs": args.freeze_epochs if frozen else args.epochs,
            "learning_rate": 1e-3 if frozen else 1e-4,
            "scheduler": {"name": "linear", "warmup_ratio": 0.1},
            "early_stopping": {"monitor": "spearman", "patience": None},
        },
        "evaluation": {"metrics": ["spearman", "mse"], "bootstrap": {"resamples": 100}},
        "output": {
            "dir": str(out),
            "name": f"{''.join(c if c.isalnum() else '_' for c in name)}-seed{seed}",
            "overwrite": True,
        },
    }
    started = time.perf_counter()
    summary = train(build_config(apply_overrides(raw, overrides))).summary
    history = summary["history"]
    diagnosis = summary["diagnostics"]
    return {
        "technique": name,
        "method": method,
        "seed": seed,
        "best_val_spearman": summary["best_val_metric"],
        "test_spearman": summary["test_metrics"]["spearman"]["value"],
        "gap_spearman": diagnosis["gap_metric"],
        "verdict": diagnosis["verdict"],
        "undertrained": diagnosis["undertrained"],
        "best_epoch": summary["best_epoch"],
        "epochs": len(history),
        "s_per_epoch": statistics.mean(row["epoch_time_s"] for row in history),
        "dp_epsilon": (summary.get("privacy") or {}).get("epsilon"),
        "ridge_test_spearman": summary["baselines"]
        .get("onehot_linear", {})
        .get("metrics", {})
        .get("spearman", {})
        .get("value"),
        "wall_s": time.perf_counter() - started,
    }


def mean_sd(values: list) -> str:
    """quality.py's mean ± sd, over the finite values (a technique can leave a metric undefined)."""
    return quality_mean_sd([value for value in values if value is not None and value == value])


def seconds_per_epoch(value: float) -> str:
    """One decimal, or two below a second (cached frozen-backbone epochs take 0.05-0.2 s)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def write_report(results: pd.DataFrame, args: argparse.Namespace, test_rows: int, command: str) -> str:
    lines = [
        "<!-- bench:start (written by bench/regularization.py) -->",
        f"Task: FLIP GB1 `two_vs_rest` (regression; 381 train / 43 validation; test: fixed random subset of "
        f"{test_rows} test sequences, seed 0), sequences cut to {args.max_seq_len} residues. Model: pretrained "
        f"AntiBERTy, mean pooling, MLP head [128]. `freeze` rows: {args.freeze_epochs} epochs at LR 1e-3 (embedding "
        f"cache); `full` rows: {args.epochs} epochs at LR 1e-4; linear schedule with 10% warm-up, no early "
        "stopping (the best validation epoch is kept). Seeds: "
        + ", ".join(map(str, args.seeds))
        + "; mean ± sd over seeds.",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), shared with other jobs "
        f"(times are indicative); torch {torch.__version__}.",
        f"Command: `{command}`",
        "",
        "| technique | method | seeds | best val Spearman | test Spearman | train − val gap | verdict | s / epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ridge = results["ridge_test_spearman"].dropna().unique().tolist() if len(results) else []
    lines.append(f"| one-hot ridge (sanity baseline, same runs) | – | – | – | {mean_sd(ridge)} | – | – | – |")
    missing = []
    for name in args.techniques:
        group = results[results["technique"] == name] if len(results) else results
        if not len(group):
            missing.append(name)
            continue
        verdicts = collections.Counter(group["verdict"].fillna("n/a"))
        verdict = ", ".join(f"{v} ×{n}" for v, n in verdicts.most_common())
        if group["undertrained"].any():
            verdict += f"; undertrained ×{int(group['undertrained'].sum())}"
        extra = f" (ε {mean_sd(group['dp_epsilon'].tolist())})" if group["dp_epsilon"].notna().any() else ""
        lines.append(
            f"| {name}{extra} | {TECHNIQUES[name][0]} | {len(group)} | {mean_sd(group['best_val_spearman'].tolist())} "
            f"| {mean_sd(group['test_spearman'].tolist())} | {mean_sd(group['gap_spearman'].tolist())} | {verdict} "
            f"| {seconds_per_epoch(statistics.mean(group['s_per_epoch']))} |"
        )
    if missing:
        lines += ["", "Not measured (time budget): " + ", ".join(missing) + "."]
    lines += ["", "Per-run results: `bench/results/regularization.csv`.", "<!-- bench:end -->"]
    return "\n".join(lines)


def update_doc(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else "<!-- bench:start -->\n<!-- bench:end -->\n"
    start, end = text.find("<!-- bench:start"), text.find("<!-- bench:end -->")
    if start < 0 or end < 0:
        text = text.rstrip() + "\n\n" + block + "\n"
    else:
        text = text[:start] + block + text[end + len("<!-- bench:end -->") :]
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--techniques",
        nargs="+",
        default=list(TECHNIQUES),
        help="rows, by name (see TECHNIQUES); default: all",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the `full` rows")
    parser.add_argument("--freeze-epochs", type=int, default=30, help="epochs of the `freeze` rows")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--test-subset", type=int, default=500)
    parser.add_argument("--budget-min", type=float, default=None, help="start no run after this many minutes")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the table from --results, run nothing"
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "regularization.md"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results" / "regularization.csv"))
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        help="with --report-only: first combine these per-run CSVs (e.g. of two invocations run side by side "
        "with their own --results) into --results; a later file's row replaces an earlier one's",
    )
    args = parser.parse_args()
    unknown = [name for name in args.techniques if name not in TECHNIQUES]
    if unknown:
        parser.error(f"unknown techniques {unknown}; choose from {list(TECHNIQUES)}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    task = DATA / "flip_gb1_two_vs_rest"
    if not task.is_dir():
        print(f"skipped: {task} not found (the benchmark needs ../shared/data)")
        return 0
    command = "OMP_NUM_THREADS=1 python bench/regularization.py " + " ".join(
        f"'{a}'" if " " in a else a for a in sys.argv[1:]
    )
    work = Path(tempfile.mkdtemp(prefix="protfit-regularization-"))
    data = write_splits("flip_gb1_two_vs_rest", args.test_subset, work / "data")
    test_rows = len(pd.read_csv(data / "test.csv"))
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    if args.merge:
        if not args.report_only:
            parser.error("--merge goes with --report-only")
        merged = pd.concat([pd.read_csv(path) for path in args.merge], ignore_index=True)
        merged.drop_duplicates(["technique", "seed"], keep="last").to_csv(results_path, index=False)
    records = pd.read_csv(results_path).to_dict("records") if results_path.exists() else []
    if args.report_only:
        update_doc(Path(args.out), write_report(pd.DataFrame(records), args, test_rows, command))
        return 0
    started = time.perf_counter()
    # seed-major order: every technique gets seed 0 before any gets seed 1, so a budget cut leaves
    # comparable rows rather than three seeds of the first few
    for seed in args.seeds:
        for name in args.techniques:
            if any(r["technique"] == name and r["seed"] == seed for r in records):
                continue  # measured by an earlier invocation
            if args.budget_min is not None and time.perf_counter() - started > 60 * args.budget_min:
                break
            record = run_one(name, data, seed, work / "runs", args)
            print(
                f"== {name} seed {seed}: val {record['best_val_spearman']:.3f} test {record['test_spearman']:.3f} "
                f"gap {record['gap_spearman']:+.3f} {record['verdict']} ({record['wall_s']:.0f}s)",
                flush=True,
            )
            records.append(record)
            pd.DataFrame(records).to_csv(results_path, index=False)
            update_doc(Path(args.out), write_report(pd.DataFrame(records), args, test_rows, command))
    print(write_report(pd.DataFrame(records), args, test_rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
