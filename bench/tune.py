"""Tuning benchmark: does `protfit tune` beat its own starting config and a tuned scikit-learn MLP?

    OMP_NUM_THREADS=1 python bench/tune.py                                      # every default row, budget 20
    OMP_NUM_THREADS=1 python bench/tune.py --rows gb1_two_vs_rest:onehot,deeploc:onehot --jobs 2
    OMP_NUM_THREADS=1 python bench/tune.py --report-only                        # tables from finished tunes
    OMP_NUM_THREADS=1 python bench/tune.py --rows flab_d44:onehot --keep          # rerun one, keep the rest

Each row (data set, start) is an ordinary `protfit tune` of a starting config in bench/configs/tune/
(one file per start; the data set is set by overrides), run as a subprocess in WORK/<dataset>-<start>.
A finished tune (tune.json) is reused and a cut-off one is resumed, so the benchmark can be stopped
and started again. Two anchors per data set, cached in WORK/anchors/<dataset>.json: protfit's linear
sanity baseline (from the untuned run's summary.json) and a scikit-learn MLP on the same features,
chosen on validation, tested once with protfit's bootstrap interval. Results go to --out-csv, the
table into --doc and the learning-rate calibration into --calibration-doc (only between markers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bench" / "configs" / "tune"


@dataclass(frozen=True)
class Dataset:
    path: str  # relative to the repository root, where every tune runs
    problem_type: str
    max_seq_len: int


DATASETS = {
    # GB1 variants differ at positions 39-41 and 54 only: the first 64 residues keep all of them
    "gb1_two_vs_rest": Dataset("../shared/data/flip_gb1_two_vs_rest", "regression", 64),
    "gb1_three_vs_rest": Dataset("../shared/data/flip_gb1_three_vs_rest", "regression", 64),
    "gb1_low_vs_high": Dataset("../shared/data/flip_gb1_low_vs_high", "regression", 64),
    "deeploc": Dataset("../shared/data/deeploc_localization", "single_label_classification", 1000),
    "flab_d44": Dataset("../shared/data/flab_d44_binding", "regression", 222),  # every Fv is 222 long
    "quickstart": Dataset("examples/data/gb1_quickstart", "regression", 64),
}
STARTS = ("onehot", "antiberty")
# AntiBERTy has 512 positions (510 residues + 2 special tokens)
START_MAX_LEN = {"antiberty": 510}
# AntiBERTy on the large GB1 sets and deeploc takes hours on a CPU: only by --rows
DEFAULT_ROWS = [f"{name}:onehot" for name in DATASETS] + ["flab_d44:antiberty", "quickstart:antiberty"]
MLP_HIDDEN = ((64,), (128,), (256,))
MLP_ALPHAS = (1.0, 1e-2, 1e-4)  # strongest first, so a validation tie keeps the more regularised one
MARKERS = {"tune": "Benchmark: tuned vs untuned vs anchors", "lr": "Benchmark: learning-rate calibration"}


def row_dir(work: Path, row: str) -> Path:
    return work / row.replace(":", "-")


def overrides(row: str, extra: list[str]) -> list[str]:
    name, start = row.split(":")
    data = DATASETS[name]
    items = [
        f"data.path={data.path}",
        f"data.problem_type={data.problem_type}",
        f"data.max_seq_len={min(data.max_seq_len, START_MAX_LEN.get(start, data.max_seq_len))}",
    ]
    if name == "deeploc" and start == "onehot":
        items.append("model.pooler=light_attention")  # flatten needs one length; deeploc's vary
    return items + extra


def run_tune(row: str, args: argparse.Namespace) -> tuple[str, int]:
    """`protfit tune` of one row (started, resumed or reused), its output in WORK/<row>.log."""
    folder = row_dir(args.work, row)
    if (folder / "tune.json").is_file():
        return row, 0
    command = [sys.executable, "-m", "protfit.cli", "tune"]
    if (folder / "tune.yaml").is_file():
        command += ["--resume", str(folder)]  # the tune.yaml holds config and budget
    else:
        start = row.split(":")[1]
        command += [str(CONFIGS / f"{start}.yaml"), *overrides(row, args.extra)]
        command += ["--budget", str(args.budget), "-o", str(folder)]
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    print(f"== {row}: {shlex.join(command)}", flush=True)
    with open(folder.with_suffix(".log"), "a") as log:
        return row, subprocess.run(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode


def mlp_anchor(folder: Path, metric: str, threads: int) -> dict[str, Any]:
    """The MLP grid on the features of protfit's linear baseline, for the data config of this tune."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    from protfit.config import load_config
    from protfit.data.loading import load_dataset_splits
    from protfit.metrics import REGRESSION, compute_metrics, metric_mode, targets_from_frame
    from protfit.report import baselines  # its private helpers are the baseline's exact featurisation
    from protfit.report.confidence import metrics_with_intervals

    cfg = load_config(folder / "untuned" / "config.yaml")
    # the loader validates and truncates to data.max_seq_len exactly as the runs saw the sequences
    splits = load_dataset_splits(cfg.data.model_copy(update={"path": str(REPO / cfg.data.path)}))
    frames = {"train": splits.train.frame, "validation": splits.validation.frame, "test": splits.test.frame}
    problem, labels = splits.problem_type, splits.num_labels
    threshold = cfg.evaluation.multi_label_threshold
    targets = {name: targets_from_frame(frame, problem, labels) for name, frame in frames.items()}
    length = len(frames["train"]["aa_seq"].iloc[0]) if baselines._same_length(*frames.values()) else None
    featurise = baselines._residue_grid if length is not None else baselines._composition
    features = {name: featurise(frame["aa_seq"].tolist()) for name, frame in frames.items()}
    encoder = baselines._estimator(problem, 1.0, length)[0]  # one-hot encoder, or the composition scaler
    better = max if metric_mode(metric) == "max" else min
    scores: dict[tuple[tuple[int, ...], float], float] = {}
    fitted = {}
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter 300 is part of the grid's definition
        kind = MLPRegressor if problem == REGRESSION else MLPClassifier
        for hidden in MLP_HIDDEN:
            for alpha in MLP_ALPHAS:
                model = kind(
                    hidden_layer_sizes=hidden, alpha=alpha, early_stopping=False, max_iter=300, random_state=0
                )
                pipeline = make_pipeline(clone(encoder), model).fit(features["train"], targets["train"])
                outputs = baselines._predict(pipeline, features["validation"], problem, labels)
                value = compute_metrics([metric], problem, outputs, targets["validation"], labels, threshold)[
                    metric
                ]
                fitted[hidden, alpha] = pipeline
                scores[hidden, alpha] = value
    defined = {key: value for key, value in scores.items() if not math.isnan(value)}
    hidden, alpha = better(defined, key=defined.__getitem__) if defined else ((128,), 1e-2)
    outputs = baselines._predict(fitted[hidden, alpha], features["test"], problem, labels)
    test = metrics_with_intervals(
        [metric], problem, outputs, targets["test"], labels, cfg.evaluation.bootstrap, threshold
    )
    return {
        "hidden": list(hidden),
        "alpha": alpha,
        "val": scores[hidden, alpha],
        "features": "one-hot" if length is not None else "composition",
        "validation_scores": {f"{list(h)} alpha={a:g}": value for (h, a), value in scores.items()},
        **test[metric],
    }


def anchors(dataset: str, folder: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """Linear baseline and MLP of one data set, cached; computed from the first finished row of it."""
    cache = args.work / "anchors" / f"{dataset}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    if args.report_only or not (folder / "tune.json").is_file():
        return None
    metric = json.loads((folder / "tune.json").read_text())["metric"]
    found = json.loads((folder / "untuned" / "summary.json").read_text()).get("baselines") or {}
    # one-hot when every sequence has one length (GB1, FLAb), else composition (deeploc)
    name = next((n for n in ("onehot_linear", "composition_linear") if n in found), None)
    linear = {"name": name, **found[name]["metrics"][metric]} if name else {}
    result = {"dataset": dataset, "source": folder.name, "metric": metric, "linear": linear}
    result["mlp"] = mlp_anchor(folder, metric, args.threads)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=2))
    return result


def number(value: Any) -> bool:
    """A finite number (JSON gives None for what a run could not measure; bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def at_least(a: Any, b: Any, mode: str) -> bool | None:
    """a is as good as b or better, in the metric's direction; None when either is missing."""
    if not (number(a) and number(b)):
        return None
    return a >= b if mode == "max" else a <= b


def record(row: str, args: argparse.Namespace) -> dict[str, Any] | None:
    from protfit.metrics import metric_mode

    folder = row_dir(args.work, row)
    if not (folder / "tune.json").is_file():
        return None
    tune = json.loads((folder / "tune.json").read_text())
    dataset, start = row.split(":")
    metric, untuned, tuned = tune["metric"], tune["untuned"], tune["tuned"]
    anchor = anchors(dataset, folder, args) or {}
    linear, mlp = anchor.get("linear") or {}, anchor.get("mlp") or {}
    untuned_test = untuned.get("test") or {}
    recommended, lr = tune.get("recommended") or {}, tune.get("lr") or {}
    mode = metric_mode(metric)
    bounds = [untuned_test.get(key) for key in ("value", "low", "high")]
    # the untuned value moved half its interval towards "worse": the noise a re-run could show
    floor = None
    if all(map(number, bounds)):
        floor = bounds[0] - (1 if mode == "max" else -1) * (bounds[2] - bounds[1]) / 2
    return {
        "dataset": dataset,
        "start": start,
        "metric": metric,
        "budget": yaml.safe_load((folder / "tune.yaml").read_text()).get("budget"),
        "untuned_val": untuned.get("val"),
        **{f"untuned_test_{key}": untuned_test.get(key) for key in ("value", "low", "high")},
        "tuned_val_mean": tuned.get("val_mean"),
        "tuned_test_mean": tuned.get("test_mean"),
        "tuned_test_sd": tuned.get("test_sd"),
        "tuned_test_seeds": ", ".join(present((t or {}).get("value")) for t in tuned.get("test", [])),
        "linear_name": linear.get("name"),
        **{f"linear_test_{key}": linear.get(key) for key in ("value", "low", "high")},
        **{f"mlp_test_{key}": mlp.get(key) for key in ("value", "low", "high")},
        "mlp_hidden": mlp.get("hidden"),
        "mlp_alpha": mlp.get("alpha"),
        "mlp_val": mlp.get("val"),
        "recommended": recommended.get("name", tune.get("recommended_trial")),
        "is_start": recommended.get("is_start"),
        **{
            f"lr_{key}": lr.get(key)
            for key in (
                "start",
                "suggestion",
                "rule",
                "trusted",
                "note",
                "low",
                "high",
                "best_trial",
                "recommended",
            )
        },
        "collapsed_trials": len(tune["collapsed_trials"]) if "collapsed_trials" in tune else None,
        "wall_time_s": tune.get("wall_time_s"),
        "protfit_commit": tuned_by(folder),
        "never_worse": at_least(tuned.get("test_mean"), floor, mode),
        "beats_mlp": at_least(tuned.get("test_mean"), mlp.get("value"), mode),
    }


def tuned_by(folder: Path) -> str | None:
    """The protfit commit the untuned run recorded (run.json), short, with -dirty kept."""
    run = folder / "untuned" / "run.json"
    if not run.is_file():
        return None
    commit = (json.loads(run.read_text()).get("environment") or {}).get("protfit_git_commit") or ""
    return (commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")) or None


def kept_records(rows: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """--keep: the rows of the existing --out-csv that this command does not measure, as they were."""
    if not (args.keep and args.out_csv.is_file()):
        return []
    frame = pd.read_csv(args.out_csv)
    frame = frame[[f"{d}:{s}" not in rows for d, s in zip(frame["dataset"], frame["start"], strict=True)]]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def present(value: Any, digits: str = ".3f") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if number(value):
        return str(value) if isinstance(value, int) else format(value, digits)
    return "–" if value is None or isinstance(value, float) else str(value)


def interval(entry: dict[str, Any], prefix: str) -> str:
    from protfit.report.confidence import format_with_interval

    value = entry.get(f"{prefix}_value")
    if not number(value):
        return "–"
    return format_with_interval(value, (entry[f"{prefix}_low"], entry[f"{prefix}_high"]))


def header(args: argparse.Namespace) -> list[str]:
    def git(*command: str) -> str:
        return subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = " (uncommitted changes in src/)" if git("status", "--porcelain", "src") else ""
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("torch", "transformers", "optuna", "scikit-learn")
    )
    return [
        f"Command: `OMP_NUM_THREADS={args.threads} python bench/tune.py {shlex.join(sys.argv[1:])}`",
        f"Python {platform.python_version()}, {packages}, protfit {git('rev-parse', '--short', 'HEAD')}{dirty}; "
        f"{args.threads} thread(s) per tune, {args.jobs} tune(s) at a time, {platform.machine()}.",
        "",
    ]


def tune_block(records: list[dict[str, Any]], missing: list[str], args: argparse.Namespace) -> str:
    lines = [
        *header(args),
        "| data set | start | metric | untuned val | untuned test | tuned val (mean) | tuned test (mean ± sd) "
        "| tuned test per seed | linear baseline test | sklearn MLP test (grid choice, val) | recommended "
        "| collapsed trials | wall time (s) | protfit | never worse | beats MLP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        sd = f" ± {r['tuned_test_sd']:.3f}" if number(r["tuned_test_sd"]) else ""
        grid = f"{r['mlp_hidden']}, α {r['mlp_alpha']:g}, val {r['mlp_val']:.3f}" if r["mlp_hidden"] else ""
        start = " (the start)" if r["is_start"] is True and r["recommended"] != "start" else ""
        lines.append(
            f"| {r['dataset']} | {r['start']} | {r['metric']} | {present(r['untuned_val'])} | {interval(r, 'untuned_test')} "
            f"| {present(r['tuned_val_mean'])} | {present(r['tuned_test_mean'])}{sd} | {r['tuned_test_seeds'] or '–'} "
            f"| {interval(r, 'linear_test')} {r['linear_name'] or ''} | {interval(r, 'mlp_test')} ({grid or '–'}) "
            f"| {present(r['recommended'])}{start} | {present(r['collapsed_trials'])} | {present(r['wall_time_s'], '.0f')} "
            f"| {present(r.get('protfit_commit'))} | {present(r['never_worse'])} | {present(r['beats_mlp'])} |"
        )
    if missing:
        lines += ["", "Not measured: " + "; ".join(missing) + "."]
    lines += [
        "",
        "Never worse: tuned mean test ≥ untuned test − half its 95% interval. Beats MLP: tuned mean test ≥ "
        "the MLP's (both in the metric's direction). Per-row results: `bench/results/tune.csv`.",
    ]
    return "\n".join(lines)


def lr_block(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        *header(args),
        "| data set | start | start LR | range-test suggestion (rule) | trusted | searched LR | best trial LR "
        "| recommended LR | suggestion / best trial |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        both = number(r["lr_suggestion"]) and number(r["lr_best_trial"]) and r["lr_best_trial"]
        ratio = r["lr_suggestion"] / r["lr_best_trial"] if both else None
        searched = f"{r['lr_low']:.3g}–{r['lr_high']:.3g}" if number(r["lr_low"]) else "–"
        lines.append(
            f"| {r['dataset']} | {r['start']} | {present(r['lr_start'], '.3g')} | {present(r['lr_suggestion'], '.3g')} "
            f"({present(r['lr_rule'])}) | {present(r['lr_trusted'])} | {searched} | {present(r['lr_best_trial'], '.3g')} "
            f"| {present(r['lr_recommended'], '.3g')} | {present(ratio, '.2f')} |"
        )
    return "\n".join(lines)


def update_doc(path: Path, key: str, block: str) -> None:
    """Rewrite the block between the key's markers; append it as a new section when they are absent."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    text = path.read_text() if path.exists() else ""
    wrapped = f"{start}\n{block}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + wrapped + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {MARKERS[key]} (`bench/tune.py`)\n\n{wrapped}\n"
    path.write_text(text)


def report(rows: list[str], skipped: dict[str, str], args: argparse.Namespace) -> None:
    records = [r for row in rows if (r := record(row, args)) is not None]
    done = {f"{r['dataset']}:{r['start']}" for r in records}
    missing = [f"{row} ({skipped.get(row, 'no tune.json')})" for row in rows if row not in done]
    records += kept_records(rows, args)
    order = {row: index for index, row in enumerate(DEFAULT_ROWS)}
    records.sort(key=lambda r: order.get(f"{r['dataset']}:{r['start']}", len(order)))
    args.out_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(args.out_csv, index=False)
    update_doc(args.doc, "tune", tune_block(records, missing, args))
    update_doc(args.calibration_doc, "lr", lr_block(records, args))
    print(f"{len(records)} row(s) -> {args.out_csv}, {args.doc}, {args.calibration_doc}")


def skip_reason(row: str) -> str | None:
    dataset, start = row.split(":")
    if not (REPO / DATASETS[dataset].path).is_dir():
        return f"{DATASETS[dataset].path} not found"
    if start == "antiberty":
        try:
            from protfit.models.antiberty import antiberty_model_dir

            antiberty_model_dir()
        except RuntimeError as error:
            return str(error)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="comma list of DATASET:START")
    parser.add_argument("--budget", type=int, default=20, help="sweep trials per tune")
    parser.add_argument("--jobs", type=int, default=1, help="tunes at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads of each tune")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every new tune (repeatable)",
    )
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "tune_runs")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the tables from existing tune.json files"
    )
    parser.add_argument("--out-csv", type=Path, default=REPO / "bench" / "results" / "tune.csv")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the rows of the existing --out-csv that --rows does not name (each names its protfit commit)",
    )
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "tuning.md")
    parser.add_argument("--calibration-doc", type=Path, default=REPO / "docs" / "sweeps.md")
    args = parser.parse_args()
    args.work = args.work.resolve()
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = [
        row
        for row in rows
        if row.count(":") != 1 or row.split(":")[0] not in DATASETS or row.split(":")[1] not in STARTS
    ]
    if unknown:
        parser.error(f"unknown rows {unknown}; DATASET in {list(DATASETS)}, START in {list(STARTS)}")
    skipped = {row: reason for row in rows if (reason := skip_reason(row))}
    for row, reason in skipped.items():
        print(f"skipped {row}: {reason}")
    if not args.report_only:
        args.work.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_tune, row, args) for row in rows if row not in skipped]
            for future in as_completed(futures):
                row, code = future.result()
                if code:
                    print(
                        f"== {row}: protfit tune failed (exit {code}); see {row_dir(args.work, row)}.log",
                        flush=True,
                    )
                    continue
                print(f"== {row}: done", flush=True)
                # after every row (anchors computed here, in one thread: one writer per cache), so a
                # stopped benchmark reports what it has
                report(rows, skipped, args)
    else:
        report(rows, skipped, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
