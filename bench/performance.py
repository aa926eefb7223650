"""Training-speed benchmark of protfit against the way users write it today; results -> docs/performance.md.

    python bench/performance.py --out docs/performance.md          # ~25 min on 2 idle cores
    python bench/performance.py --threads 1 --repeats 2 --out ...  # on a shared CPU (see docs)

Model: ``esm2-8m-random`` (the ESM2-8M architecture with random weights: speed does not depend on the
weights, and it builds offline). Data: a random subset of ``../shared/data/deeploc_localization``
(lengths 40-13,100, median 425; truncated at 1022 residues as in training), skipped cleanly when absent.

(a) full fine-tuning tokens/s, protfit vs two Hugging Face ``Trainer`` baselines (ESM encoder + mean pooling
    + the same MLP head, ``DataCollatorWithPadding``): fixed batches in random order, and batches grouped
    by length (``train_sampling_strategy="group_by_length"``, what a competent user sets). Runs alternate
    (protfit, random, grouped, protfit, ...); the headline is the median of the per-repeat ratios against
    the grouped Trainer. LoRA tokens/s when the ``lora`` method is registered.
(b) ``freeze`` epoch time with the embedding cache vs recomputing the backbone every epoch.
(c) padding fraction (deeploc, every batching mode), peak resident memory per run, and achieved training
    FLOP/s as a share of the fp32 matmul FLOP/s measured on this machine in the same run.

Every measurement runs in its own process (``--phase``), so one run's memory peak or allocator state
never leaks into the next one; the parent only prepares data, alternates runs and writes the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "deeploc_localization"
MODEL = "esm2-8m-random"
NUM_LABELS = 11  # deeploc localisation classes
MAX_SEQ_LEN = 1022
SHORT_SEQUENCES = 192  # (c) FLOP share on short sequences
FREEZE_SEQUENCES = 48  # (b) cache on/off
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"


# ---- measurements (each runs in a child process) ------------------------------------------------------


def training_flops(
    params: int, layers: int, hidden: int, lengths: list[int], linear_factor: int = 6
) -> float:
    """6·P·T for the weight matmuls (forward 2, backward 4) + 12·layers·hidden·ΣL² for attention scores
    (QKᵀ and AV: 4·L²·d forward, 8·L²·d backward per layer). Frozen weights (LoRA) skip the weight
    gradients: linear_factor 4. Real tokens only: padding is not useful work."""
    tokens = sum(lengths)
    return linear_factor * params * tokens + 12 * layers * hidden * sum(length**2 for length in lengths)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def phase_matmul(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    shapes = {
        "2048x2048 @ 2048x2048": (2048, 2048, 2048),
        "tokens 2048x320 @ 320x1280 (FFN up)": (2048, 320, 1280),
        "tokens 2048x1280 @ 1280x320 (FFN down)": (2048, 1280, 320),
        "tokens 2048x320 @ 320x320 (attention proj.)": (2048, 320, 320),
    }
    rates = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            torch.matmul(a, b)
        best = float("inf")
        for _ in range(7):
            started = time.perf_counter()
            for _ in range(3):
                torch.matmul(a, b)
            best = min(best, (time.perf_counter() - started) / 3)
        rates[name] = 2 * m * k * n / best
    return {"gflops": {name: rate / 1e9 for name, rate in rates.items()}}


def _step_clock():
    """A protfit training callback: wall time from the start of training to the last optimizer step
    (validation, checkpoints and reports after the epoch are not training throughput)."""
    from protfit.plugins import Plugin

    class StepClock(Plugin):
        start = end = cpu_start = cpu_end = 0.0

        def on_train_start(self, state):
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_after_optimizer_step(self, state):
            self.end, self.cpu_end = time.perf_counter(), time.process_time()

    return StepClock()


def _token_lengths(train_csv: Path, max_seq_len: int) -> list[int]:
    import pandas as pd

    return [min(len(seq), max_seq_len) + 2 for seq in pd.read_csv(train_csv)["aa_seq"]]  # + CLS, EOS


def phase_protfit(spec: dict[str, Any]) -> dict[str, Any]:
    from protfit.config import build_config
    from protfit.training.train import train

    raw = {
        "data": {
            "path": spec["data"],
            "problem_type": "single_label_classification",
            "num_labels": NUM_LABELS,
            "max_seq_len": spec["max_seq_len"],
            "batch_size": spec["batch_size"],
        },
        "model": {"name": spec["model"], "method": spec["method"], "pooler": spec.get("pooler", "mean")},
        "train": {"epochs": spec["epochs"], "learning_rate": 1e-4, "progress": False},
        "evaluation": {"bootstrap": {"resamples": 10}, "baselines": {"enabled": False}},
        "output": {"dir": spec["runs"], "name": spec["name"], "overwrite": True},
    }
    if "embedding_cache" in spec:
        raw["model"]["embedding_cache"] = spec["embedding_cache"]
    clock = _step_clock()
    result = train(build_config(raw), plugins=[clock])
    lengths = _token_lengths(Path(spec["data"]) / "train.csv", spec["max_seq_len"])
    history = result.summary["history"]
    return {
        "train_seconds": clock.end - clock.start,
        "train_cpu_seconds": clock.cpu_end - clock.cpu_start,
        "epoch_seconds": [row["epoch_time_s"] for row in history],
        "padding_fraction": history[0]["padding_fraction"],
        "tokens": sum(lengths) * spec["epochs"],
        "lengths": lengths,
        "params": result.summary["model_stats"]["total"],
        "embedding_cache": result.summary.get("embedding_cache"),
        "peak_rss_mb": peak_rss_mb(),
    }


def _grouping_arguments(grouped: bool) -> dict[str, Any]:
    """TrainingArguments for length grouping: ``train_sampling_strategy`` in transformers 5,
    ``group_by_length=True`` before."""
    import inspect

    from transformers import TrainingArguments

    parameters = inspect.signature(TrainingArguments).parameters
    if "train_sampling_strategy" in parameters:
        return {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    return {"group_by_length": grouped}


def phase_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """What a user writes today: HF Trainer, ESM encoder + mean pooling + MLP head, DataCollatorWithPadding,
    fixed-size batches in random order (Trainer's default sampler) or grouped by length (``grouped``:
    transformers' LengthGroupedSampler sorts random megabatches of min(N / (4 * batch), 50) batches)."""
    import datasets
    import pandas as pd
    import torch
    from torch import nn
    from transformers import AutoTokenizer, DataCollatorWithPadding, EsmModel, Trainer, TrainingArguments

    path = spec["model"]
    tokenizer = AutoTokenizer.from_pretrained(path)

    class MeanPoolClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.esm = EsmModel.from_pretrained(path, add_pooling_layer=False)
            hidden = self.esm.config.hidden_size
            # protfit's default head: dropout, Linear(H, 256), GELU, dropout, Linear(256, classes)
            self.head = nn.Sequential(
                nn.Dropout(0.1),
                nn.Linear(hidden, 256),
                nn.GELU(),
                nn.Dropout(0.1),
                nn.Linear(256, NUM_LABELS),
            )

        def forward(self, input_ids, attention_mask, labels=None):
            hidden = self.esm(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            logits = self.head((hidden * mask).sum(1) / mask.sum(1))
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return {"loss": loss, "logits": logits}

    frame = pd.read_csv(Path(spec["data"]) / "train.csv")
    encoded = tokenizer(frame["aa_seq"].tolist(), truncation=True, max_length=spec["max_seq_len"] + 2)
    dataset = datasets.Dataset.from_dict({**encoded, "labels": frame["label"].tolist()})
    padding = {"real": 0, "padded": 0}
    pad = DataCollatorWithPadding(tokenizer)

    def collate(features):
        batch = pad(features)
        padding["real"] += int(batch["attention_mask"].sum())
        padding["padded"] += batch["attention_mask"].numel()
        return batch

    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(Path(spec["runs"]) / spec["name"]),
        per_device_train_batch_size=spec["batch_size"],
        num_train_epochs=spec["epochs"],
        learning_rate=1e-4,
        weight_decay=0.01,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        **_grouping_arguments(spec.get("grouped", False)),
    )
    trainer = Trainer(model=MeanPoolClassifier(), args=args, train_dataset=dataset, data_collator=collate)
    cpu_start = time.process_time()
    metrics = trainer.train().metrics
    cpu_seconds = time.process_time() - cpu_start
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return {
        "train_seconds": metrics["train_runtime"],
        "train_cpu_seconds": cpu_seconds,
        "padding_fraction": 1 - padding["real"] / padding["padded"],
        "tokens": sum(lengths) * spec["epochs"],
        "lengths": lengths,
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "peak_rss_mb": peak_rss_mb(),
    }


PHASES = {"matmul": phase_matmul, "protfit": phase_protfit, "baseline": phase_baseline}


# ---- the parent: data, alternation, report ------------------------------------------------------------


def run_phase(phase: str, spec: dict[str, Any], workdir: Path, threads: int | None) -> dict[str, Any]:
    out = workdir / f"{spec.get('name', phase)}.json"
    command = [sys.executable, __file__, "--phase", phase, "--spec", json.dumps(spec), "--result", str(out)]
    if threads:
        command += ["--threads", str(threads)]
    env = {**os.environ, "PROTFIT_CACHE": str(workdir / "cache"), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"benchmark phase {phase} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    result = json.loads(out.read_text())
    print(f"  {spec.get('name', phase)}: {time.perf_counter() - started:.0f}s", flush=True)
    return result


def benchmark_model(workdir: Path) -> tuple[str, str | None]:
    """The alias's folder; when its config carries dropout (EsmConfig's defaults, 0.1) a copy with the
    released ESM-2 checkpoints' 0.0, because attention dropout forces PyTorch's math attention kernel
    (the L x L matrix in memory, a random mask per element) and would measure something no real
    ESM-2 run does."""
    from protfit.models.aliases import resolve_model_source

    source = Path(resolve_model_source(MODEL))
    config = json.loads((source / "config.json").read_text())
    dropout = {key: config.get(key, 0.0) for key in ("hidden_dropout_prob", "attention_probs_dropout_prob")}
    if not any(dropout.values()):
        return str(source), None
    target = workdir / "esm2-8m-random-no-dropout"
    shutil.copytree(source, target)
    (target / "config.json").write_text(json.dumps({**config, **dict.fromkeys(dropout, 0.0)}, indent=2))
    return str(
        target
    ), f"the `{MODEL}` alias config has {dropout}; the bench sets both to 0.0 like ESM-2's checkpoints"


def write_subset(source: Path, target: Path, count: int, seed: int) -> None:
    import pandas as pd

    target.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(source)
    frame.sample(n=min(count, len(frame)), random_state=seed)[["name", "aa_seq", "label"]].to_csv(
        target / source.name, index=False
    )


def padding_study(max_seq_len: int) -> list[dict[str, Any]]:
    """Padding of every batching mode on the whole deeploc training split, 3 epochs each (no model)."""
    import numpy as np
    import pandas as pd

    from protfit.data.batching import padding_fraction

    lengths = (pd.read_csv(DATA / "train.csv")["aa_seq"].str.len().clip(upper=max_seq_len) + 2).to_numpy()
    rows = []
    for batch_size in (8, 16, 32):
        rng = np.random.default_rng(0)
        random_order = []
        for _ in range(3):
            order = rng.permutation(len(lengths))
            random_order.append(
                padding_fraction(
                    [lengths[order[i : i + batch_size]] for i in range(0, len(order), batch_size)]
                )
            )
        rows.append(_bucketed(lengths, {"batch_size": batch_size}, f"batch_size={batch_size}", random_order))
    for budget in (4096, 8192, 16384):
        rows.append(_bucketed(lengths, {"max_tokens": budget}, f"max_tokens_per_batch={budget}", None))
    return rows


def _bucketed(lengths, mode: dict[str, int], label: str, random_order: list[float] | None) -> dict[str, Any]:
    from protfit.data.batching import LengthBucketSampler, padding_fraction

    sampler = LengthBucketSampler(lengths.tolist(), seed=0, **mode)
    fractions = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        fractions.append(padding_fraction([[lengths[i] for i in batch] for batch in sampler]))
    return {"mode": label, "bucketed": max(fractions), "random": max(random_order) if random_order else None}


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "performance.md"), help="report to write")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating protfit/random/grouped rounds")
    # 320: enough for the grouped Trainer to group (its megabatch is min(N / (4 * batch), 50) batches;
    # at 48 sequences it is one batch, i.e. random order) and for protfit's buckets to fill.
    parser.add_argument("--sequences", type=int, default=320, help="deeploc training sequences per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-lora", action="store_true", help="skip the LoRA row (saves one long run)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:  # child process: one measurement
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result = PHASES[args.phase](json.loads(args.spec))
        result["threads"] = torch.get_num_threads()
        Path(args.result).write_text(json.dumps(result))
        return 0

    if not (DATA / "train.csv").is_file():
        print(f"skipped: {DATA.resolve()} is absent (the shared deeploc data); nothing measured")
        return 0
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="protfit-bench-"))
    try:
        report = measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["total_minutes"] = (time.perf_counter() - started) / 60
    report["machine"]["load_after"] = os.getloadavg()[0]
    write_report(report, Path(args.out), args)
    print(f"wrote {args.out} ({report['total_minutes']:.1f} min)")
    return 0


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine()}
    data, short, small = workdir / "deeploc", workdir / "deeploc-short", workdir / "deeploc-small"
    write_subset(DATA / "train.csv", data, args.sequences, seed=0)
    write_subset(DATA / "validation.csv", data, 8, seed=0)
    write_subset(DATA / "train.csv", short, SHORT_SEQUENCES, seed=1)
    write_subset(DATA / "validation.csv", short, 8, seed=0)
    # (b) compares a run with itself (cache on/off): its ratio does not need the large subset.
    write_subset(DATA / "train.csv", small, FREEZE_SEQUENCES, seed=0)
    write_subset(DATA / "validation.csv", small, 8, seed=0)
    model, report["model_note"] = benchmark_model(workdir)
    common = {"data": str(data), "runs": str(workdir / "runs"), "max_seq_len": MAX_SEQ_LEN, "epochs": 1}
    common["model"] = model
    common["batch_size"] = args.batch_size
    threads = args.threads

    print("matmul peak", flush=True)
    report["matmul"] = run_phase("matmul", {"name": "matmul"}, workdir, threads)
    print("padding on deeploc", flush=True)
    report["padding"] = padding_study(MAX_SEQ_LEN)

    print(f"(a) full fine-tuning, {args.repeats} alternating rounds (protfit, random, grouped)", flush=True)
    rounds = []
    for repeat in range(args.repeats):
        ours = run_phase(
            "protfit", {**common, "method": "full", "name": f"protfit-full-{repeat}"}, workdir, threads
        )
        random_order = run_phase("baseline", {**common, "name": f"baseline-{repeat}"}, workdir, threads)
        grouped = run_phase(
            "baseline", {**common, "grouped": True, "name": f"baseline-grouped-{repeat}"}, workdir, threads
        )
        rounds.append((ours, random_order, grouped))
    report["rounds"] = rounds

    from protfit.models.methods import METHODS

    if "lora" in METHODS and not args.no_lora:
        print("(a) LoRA", flush=True)
        report["lora"] = run_phase(
            "protfit", {**common, "method": "lora", "name": "protfit-lora"}, workdir, threads
        )
    print("(c) short sequences (FLOP share)", flush=True)
    report["short"] = run_phase(
        "protfit",
        {
            **common,
            "data": str(short),
            "max_seq_len": 126,
            "batch_size": 16,
            "method": "full",
            "name": "short",
        },
        workdir,
        threads,
    )

    print("(b) freeze: cache off, cache cold, cache warm", flush=True)
    freeze = {**common, "data": str(small), "method": "freeze", "epochs": 2}
    report["freeze"] = {}
    for pooler in ("mean", "attention1d"):
        report["freeze"][pooler] = {
            state: run_phase(
                "protfit",
                {
                    **freeze,
                    "pooler": pooler,
                    "embedding_cache": state != "off",
                    "name": f"freeze-{pooler}-{state}",
                },
                workdir,
                threads,
            )
            for state in ("off", "cold", "warm")
        }
    return report


# ---- report -------------------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def write_report(report: dict[str, Any], path: Path, args: argparse.Namespace) -> None:
    machine_info, matmul = report["machine"], report["matmul"]["gflops"]
    peak = matmul["2048x2048 @ 2048x2048"]
    shape_peak = statistics.mean(value for name, value in matmul.items() if name.startswith("tokens"))
    layers, hidden = 6, 320
    embedding_params = 33 * hidden  # the token embedding is a lookup, not a matmul

    def tokens_per_s(result):
        return result["tokens"] / result["train_seconds"]

    def tokens_per_cpu_s(result):
        # CPU seconds of the (single-threaded) training loop: robust to other jobs taking turns on
        # the cores, which stretch wall time but not the work done.
        cpu = result.get("train_cpu_seconds")
        return f"{result['tokens'] / cpu:,.0f}" if cpu else "–"

    def flop_share(result, linear_factor=6):
        flops = training_flops(
            result["params"] - embedding_params, layers, hidden, result["lengths"], linear_factor
        )
        return flops / result["train_seconds"] / 1e9

    ours = [entry[0] for entry in report["rounds"]]
    theirs = [entry[1] for entry in report["rounds"]]
    grouped = [entry[2] for entry in report["rounds"]]
    ratios = [tokens_per_s(a) / tokens_per_s(b) for a, b in zip(ours, grouped, strict=True)]
    ratio = statistics.median(ratios)
    random_ratios = [tokens_per_s(a) / tokens_per_s(b) for a, b in zip(ours, theirs, strict=True)]
    cpu_note = ""
    if all(result.get("train_cpu_seconds") for result in ours + grouped):
        cpu_ratios = [
            (a["tokens"] / a["train_cpu_seconds"]) / (b["tokens"] / b["train_cpu_seconds"])
            for a, b in zip(ours, grouped, strict=True)
        ]
        cpu_note = f"; per CPU-second {statistics.median(cpu_ratios):.2f}×"
    threads = ours[0]["threads"]
    lines = [
        MARK_START,
        f"Measured {time.strftime('%Y-%m-%d')} by `python bench/performance.py"
        + (f" --threads {args.threads}" if args.threads else "")
        + f" --repeats {args.repeats} --sequences {args.sequences}"
        + (" --no-lora" if args.no_lora else "")
        + f"` in {report['total_minutes']:.1f} min.",
        "",
        f"Machine: {machine_info['cpu']}, {machine_info['cores']} cores, {threads} torch thread(s) per run; "
        f"torch {machine_info['torch']}, transformers {machine_info['transformers']}, "
        f"Python {machine_info['python']}. Load average {machine_info['load_before']:.1f} before, "
        f"{machine_info['load_after']:.1f} after (above {machine_info['cores']}: other jobs shared the CPU).",
        "",
        f"Model: `{MODEL}` (ESM2-8M architecture, random weights)"
        + (f"; {report['model_note']}." if report.get("model_note") else "."),
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    freeze_mean = report["freeze"]["mean"]
    speedups = {
        pooler: statistics.median(runs["off"]["epoch_seconds"])
        / statistics.median(runs["warm"]["epoch_seconds"])
        for pooler, runs in report["freeze"].items()
    }
    worst_padding = max(row["bucketed"] for row in report["padding"])
    short_share = flop_share(report["short"]) / peak
    lines += [
        f"| cached `freeze` epochs ≥10× faster than recomputing | {speedups['mean']:.0f}× (mean pooler), "
        f"{speedups['attention1d']:.0f}× (attention1d) | {_verdict(min(speedups.values()) >= 10)} |",
        f"| full fine-tuning ≥1.3× the length-grouped Trainer's tokens/s | {ratio:.2f}× (median of "
        f"{len(ratios)} rounds: {', '.join(f'{r:.2f}' for r in ratios)}; against random order "
        f"{statistics.median(random_ratios):.2f}×{cpu_note}) | {_verdict(ratio >= 1.3)} |",
        f"| padding <5% of tokens (deeploc, every batching mode) | at most {100 * worst_padding:.1f}% "
        f"| {_verdict(worst_padding < 0.05)} |",
        f"| ≥50% of measured matmul FLOP/s on short sequences | {100 * short_share:.0f}% of the 2048² rate "
        f"({100 * flop_share(report['short']) / shape_peak:.0f}% of the model-shape rate) "
        f"| {_verdict(short_share >= 0.5)} |",
        "",
        f"### (a) Full fine-tuning throughput ({args.sequences} deeploc sequences, batch size "
        f"{args.batch_size}, max_seq_len {MAX_SEQ_LEN}, 1 epoch)",
        "",
        "| run | tokens/s (median) | tokens per CPU-second | train time (s) | padding | FLOP/s (G) "
        "| share of 2048² matmul | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(name, results, linear_factor=6):
        rates = [tokens_per_s(result) for result in results]
        best = results[rates.index(statistics.median_low(rates))]
        gflops = flop_share(best, linear_factor)
        return (
            f"| {name} | {statistics.median(rates):,.0f} | {tokens_per_cpu_s(best)} | "
            f"{best['train_seconds']:.1f} | "
            f"{100 * best['padding_fraction']:.1f}% | {gflops:.1f} | {100 * gflops / peak:.0f}% | "
            f"{max(result['peak_rss_mb'] for result in results):,.0f} |"
        )

    lines += [
        row("protfit `full` (length-bucketed)", ours),
        row("HF Trainer, random order (default sampler)", theirs),
        row('HF Trainer, `train_sampling_strategy="group_by_length"`', grouped),
    ]
    if "lora" in report:
        lines.append(row("protfit `lora` (r=8; 4·P·T FLOPs)", [report["lora"]], linear_factor=4))
    else:
        lines.append("| protfit `lora` | skipped (`--no-lora`, or not registered) | | | | | | |")
    short = report["short"]
    lines.append(
        row(f"protfit `full`, short sequences (≤128 tokens, batch 16, {len(short['lengths'])} seqs)", [short])
    )
    lines += [
        "",
        f"### (b) `freeze`: embedding cache vs recomputing every epoch ({FREEZE_SEQUENCES} deeploc sequences, "
        "2 epochs each)",
        "",
        "| pooler | cache | epoch times (s) | cache build (s) | cache size (MB) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for pooler, runs in report["freeze"].items():
        for state, result in runs.items():
            cache = result.get("embedding_cache") or {}
            build = sum(split["build_s"] for split in cache.get("splits", {}).values())
            lines.append(
                f"| {pooler} | {state} | {', '.join(f'{s:.2f}' for s in result['epoch_seconds'])} | "
                f"{build:.1f} | {cache.get('size_mb', 0):.2f} | {result['peak_rss_mb']:,.0f} |"
            )
    lines += [
        "",
        f"Epoch times include the validation pass. Cold cache: computed once before epoch 1 "
        f"(build column), every epoch then reads it; warm: a later run, all hits (mean pooler: "
        f"{freeze_mean['warm']['embedding_cache']['hits']} hits, 0 backbone calls).",
        "",
        f"### (c) Padding on the whole deeploc training split (max_seq_len {MAX_SEQ_LEN}, worst of 3 epochs)",
        "",
        "| batching | protfit (length-bucketed) | random order |",
        "|---|---|---|",
    ]
    for entry in report["padding"]:
        random_order = f"{100 * entry['random']:.1f}%" if entry["random"] is not None else "–"
        lines.append(f"| {entry['mode']} | {100 * entry['bucketed']:.1f}% | {random_order} |")
    lines += [
        "",
        "### Matmul reference (fp32 `torch.matmul`, best of 7)",
        "",
        "| shape | GFLOP/s |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value:.1f} |" for name, value in matmul.items()]
    lines.append(MARK_END)
    block = "\n".join(lines)

    text = path.read_text() if path.is_file() else ""
    if MARK_START in text and MARK_END in text:
        before, rest = text.split(MARK_START, 1)
        after = rest.split(MARK_END, 1)[1]
        text = before + block + after
    else:
        text = "# Performance\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
