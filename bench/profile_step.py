"""Where one protfit full-fine-tuning step spends its time on CPU, and what the cheap levers buy.

    python bench/profile_step.py --threads 1                  # ~5 min on a shared 2-core CPU

Model: ``esm2-8m-random`` (dropout set to 0 as in bench/performance.py, except the dropout variant),
one length-bucketed batch of 8 deeploc training sequences around the median length, protfit's own
model (backbone + mean pooler + MLP head), loss, optimizer and the loop's per-step work.

1. ``torch.profiler`` over a few steps, grouped by operator (self CPU time).
2. Phases of a step (forward, backward, clipping, optimizer step, zero_grad, the loop's ``.item()``
   and mask sums), timed with ``perf_counter``.
3. Variants, each a separate model from the same weights, timed in alternating rounds (A B C ... A B C)
   so load drifts hit all alike; median step time per variant and its ratio to protfit's default.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import performance  # (same data and model folder as the throughput benchmark)


def build(model_path: str, attention: str, optimizer_kind: str) -> dict[str, Any]:
    from protfit.config import build_config
    from protfit.models.methods import apply_method
    from protfit.models.protein_model import build_model
    from protfit.training.optim import build_optimizer

    cfg = build_config(
        {
            "data": {
                "path": str(performance.DATA),
                "problem_type": "single_label_classification",
                "num_labels": performance.NUM_LABELS,
            },
            "model": {"name": model_path, "method": "full", "pooler": "mean"},
            "train": {"learning_rate": 1e-4},
        }
    )
    torch.manual_seed(0)
    model = apply_method(build_model(cfg, performance.NUM_LABELS), cfg, total_steps=100)
    if attention != "sdpa":
        model.backbone.encoder.set_attn_implementation(attention)
    optimizer = build_optimizer(model, cfg.train)
    if optimizer_kind != "default":
        optimizer = torch.optim.AdamW(
            optimizer.param_groups, lr=cfg.train.learning_rate, **{optimizer_kind: True}
        )
    model.train()
    return {"model": model, "optimizer": optimizer}


def make_batch(model, count: int = 8) -> dict[str, torch.Tensor]:
    import pandas as pd

    from protfit.data.batching import ProteinCollator

    frame = pd.read_csv(performance.DATA / "train.csv")
    frame = frame[frame["aa_seq"].str.len() <= performance.MAX_SEQ_LEN]
    lengths = frame["aa_seq"].str.len().sort_values()
    middle = len(lengths) // 2
    chosen = frame.loc[lengths.index[middle : middle + count]]
    tokens = model.backbone.tokenize(chosen["aa_seq"].tolist())
    items = [
        {"input_ids": t.input_ids, "residue_mask": t.residue_mask, "index": i, "label": int(label)}
        for i, (t, label) in enumerate(zip(tokens, chosen["label"], strict=True))
    ]
    return ProteinCollator(model.backbone.pad_token_id, "single_label_classification", 11)(items)


def step(
    entry: dict[str, Any], batch: dict[str, torch.Tensor], phases: dict[str, list[float]] | None
) -> None:
    """protfit's train_one_epoch body for one optimizer step (no accumulation)."""
    model, optimizer = entry["model"], entry["optimizer"]
    clock = time.perf_counter
    t0 = clock()
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "residue_mask")}
    logits = model(**inputs)
    loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
    t1 = clock()
    loss.backward()
    t2 = clock()
    loss.item()
    int(batch["attention_mask"].sum())
    t3 = clock()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    t4 = clock()
    optimizer.step()
    t5 = clock()
    optimizer.zero_grad(set_to_none=True)
    t6 = clock()
    if phases is not None:
        for name, seconds in zip(
            (
                "forward + loss",
                "backward",
                "loop bookkeeping (.item, mask sum)",
                "clip_grad_norm_",
                "optimizer.step",
                "zero_grad",
            ),
            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5),
            strict=True,
        ):
            phases.setdefault(name, []).append(seconds)


def optimizer_step_times(model_path: str, repeats: int = 30) -> dict[str, float]:
    """Median seconds of ``optimizer.step()`` alone (gradients present) per AdamW implementation,
    alternating; the whole-step variants above are too noisy on a shared CPU to resolve it."""
    built = {kind: build(model_path, "sdpa", kind) for kind in ("default", "foreach", "fused")}
    for entry in built.values():
        for parameter in entry["model"].parameters():
            parameter.grad = torch.randn_like(parameter) * 1e-3
        entry["optimizer"].step()
    times: dict[str, list[float]] = {kind: [] for kind in built}
    for _ in range(repeats):
        for kind, entry in built.items():
            started = time.perf_counter()
            entry["optimizer"].step()
            times[kind].append(time.perf_counter() - started)
    return {kind: statistics.median(values) for kind, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--optimizer-only", action="store_true", help="only time optimizer.step()")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="protfit-profile-"))
    try:
        no_dropout, _ = performance.benchmark_model(workdir)
        if args.optimizer_only:
            print(json.dumps({"optimizer_step_median_s": optimizer_step_times(no_dropout)}, indent=1))
            return 0
        from protfit.models.aliases import resolve_model_source

        with_dropout = resolve_model_source(performance.MODEL)
        variants = {
            "protfit default (sdpa, dropout 0, AdamW for-loop)": (no_dropout, "sdpa", "default"),
            "eager attention": (no_dropout, "eager", "default"),
            "dropout 0.1 (alias config)": (with_dropout, "sdpa", "default"),
            "AdamW foreach=True": (no_dropout, "sdpa", "foreach"),
            "AdamW fused=True": (no_dropout, "sdpa", "fused"),
        }
        built = {name: build(*spec) for name, spec in variants.items()}
        default = next(iter(built))
        batch = make_batch(built[default]["model"])
        real = int(batch["attention_mask"].sum())
        shape = tuple(batch["input_ids"].shape)
        print(f"batch {shape}, {real} real tokens, threads {torch.get_num_threads()}", flush=True)
        for entry in built.values():  # warm-up: allocator, first-call dispatch, optimizer state
            step(entry, batch, None)

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step(built[default], batch, None)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(table, flush=True)
        ops = sorted(
            (
                {"op": e.key, "self_cpu_s": e.self_cpu_time_total / 1e6 / 3, "calls": e.count // 3}
                for e in prof.key_averages()
            ),
            key=lambda row: -row["self_cpu_s"],
        )

        phases: dict[str, list[float]] = {}
        times: dict[str, list[float]] = {name: [] for name in built}
        for round_index in range(args.rounds):
            for name, entry in built.items():
                started = time.perf_counter()
                step(entry, batch, phases if name == default else None)
                times[name].append(time.perf_counter() - started)
            print(
                f"round {round_index + 1}: " + ", ".join(f"{t[-1]:.2f}" for t in times.values()), flush=True
            )
        base = statistics.median(times[default])
        result = {
            "optimizer_step_median_s": optimizer_step_times(no_dropout),
            "batch_shape": shape,
            "real_tokens": real,
            "threads": torch.get_num_threads(),
            "top_ops": ops[:20],
            "total_self_cpu_s": sum(row["self_cpu_s"] for row in ops),
            "phases_median_s": {name: statistics.median(v) for name, v in phases.items()},
            "variants": {
                name: {
                    "median_s": statistics.median(t),
                    "all_s": t,
                    "speedup_vs_default": base / statistics.median(t),
                    "pairwise_speedups": [b / v for b, v in zip(times[default], t, strict=True)],
                }
                for name, t in times.items()
            },
        }
        print(json.dumps({k: v for k, v in result.items() if k != "top_ops"}, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
