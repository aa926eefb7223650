"""`protfit` command line: every command builds the same RunConfig and calls the library."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from protfit.config import ConfigError
from protfit.registry import PluginModuleError, load_plugin_modules

# Expected failures: one line and exit code 2 (`-v` shows the traceback). OSError covers missing
# files, existing folders and permissions; FloatingPointError is a diverging loss.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    PluginModuleError,
    OSError,
    RuntimeError,
    ValueError,
    FloatingPointError,
)


def _launch_processes(argv: list[str], processes: int) -> int:
    """Re-run this command as ``processes`` cooperating processes (torch.distributed, gloo on CPU).

    Each process gets an equal share of the CPU threads: N processes that each start every core's
    worth of threads run several times slower than one.
    """
    import os
    import subprocess

    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.call([*command, "-m", "protfit", *argv], env=env)


def _describe(error: BaseException) -> str:
    """An OSError raised by the system reads `[Errno 17] File exists: 'x'`; say it in words with the path."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        target = str(error.filename) + (f" -> {error.filename2}" if error.filename2 is not None else "")
        hint = (
            " (check the folder's permissions, or choose another folder)"
            if isinstance(error, PermissionError)
            else ""
        )
        return f"{target}: {error.strerror.lower()}{hint}"
    return str(error)


def _check_before_training(args: argparse.Namespace) -> None:
    """Everything that can be refused in a second is refused before data or models load, and before
    a run folder exists: an unknown model name, an output folder that cannot be written."""
    from protfit.config import load_config
    from protfit.models.sources import resolve_model_or_fail
    from protfit.report.run_dir import CONFIG_FILE, ensure_writable

    if args.resume is not None:
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_FILE).is_file():
            return  # train() says it is not a run folder
        ensure_writable(run_dir, "run folder")
        ensure_writable(run_dir / "checkpoints", "checkpoint folder")
        cfg = load_config(run_dir / CONFIG_FILE, args.overrides)
    else:
        cfg = load_config(args.config, args.overrides)
        ensure_writable(cfg.output.dir, "output.dir")
    resolve_model_or_fail(cfg.model.name)


def _train(args: argparse.Namespace) -> None:
    if args.resume is None and args.config is None:
        raise ConfigError("give a CONFIG.yaml to train, or --resume RUN_DIR to continue a run")
    if args.resume is not None and args.config is not None:
        # `protfit train --resume RUN_DIR key=value`: the first positional is an override, not a file
        args.overrides.insert(0, args.config)
    _check_before_training(args)
    from protfit.training.train import train

    train(args.config if args.resume is None else None, args.overrides, resume_from=args.resume)


def _eval(args: argparse.Namespace) -> None:
    from protfit.data.loading import load_dataset_splits
    from protfit.inference import load, read_labelled
    from protfit.report.confidence import format_with_interval
    from protfit.report.run_dir import ensure_output_folder

    if args.output:
        ensure_output_folder(args.output, "-o")
    else:
        ensure_output_folder(Path(args.run_dir) / "eval", "eval folder")
    model = load(args.run_dir)
    epoch = "epoch not recorded" if model.checkpoint_epoch is None else f"epoch {model.checkpoint_epoch}"
    if not (Path(args.run_dir) / "summary.json").is_file():
        epoch += "; the run has not finished: a later epoch may replace it"
    print(f"checkpoint: {model.checkpoint} ({epoch})")
    if args.data is not None:
        frame, label = read_labelled(model, args.data), Path(args.data).stem
    else:
        split = getattr(load_dataset_splits(model.config.data), args.split)
        if split is None:
            raise FileNotFoundError(f"the run's data ({model.config.data.path}) has no {args.split} split")
        frame, label = split.frame, args.split
    out_dir = Path(args.output) if args.output else Path(args.run_dir) / "eval" / label
    metrics = model.evaluate(frame, out_dir, progress=True)
    print(
        f"{len(frame)} sequences ({label}); metrics with bootstrap {model.config.evaluation.bootstrap.confidence:.0%} interval:"
    )
    for name, entry in metrics.items():
        print(f"  {name:<10} {format_with_interval(entry['value'], (entry['low'], entry['high']))}")
    print(f"written to {out_dir}")


def _predict(args: argparse.Namespace) -> None:
    from protfit.data.loading import read_sequences
    from protfit.inference import load
    from protfit.report.run_dir import ensure_output_file

    ensure_output_file(args.output, "-o")  # before minutes of predicting, not after
    model = load(args.run_dir)
    frame = read_sequences(args.input, model.config.data, num_labels=model.num_labels)
    table = model.predict(frame, output_csv=args.output, progress=True)
    print(f"{len(table)} predictions written to {args.output}")


def _score(args: argparse.Namespace) -> None:
    from protfit.config import DataConfig, load_config
    from protfit.data.loading import load_dataset_splits, read_sequences
    from protfit.models.zero_shot import Reference, ZeroShotScorer, choose_reference, run_reference
    from protfit.report.run_dir import CONFIG_FILE, ensure_output_file

    ensure_output_file(args.output, "-o")
    run = Path(args.model)
    if (run / CONFIG_FILE).is_file():
        cfg = load_config(run / CONFIG_FILE)
        model, data = cfg.model.zero_shot_scorer, cfg.data
    else:
        cfg, model = None, args.model
        data = DataConfig(path=".", problem_type="regression", max_seq_len=None)
    scorer = ZeroShotScorer(model, batch_size=args.batch_size, progress=True)  # refuses non-MLMs first
    frame = read_sequences(args.input, data)
    if args.reference is not None:
        given = (
            "the sequence in " + args.reference if Path(args.reference).is_file() else "the given sequence"
        )
        reference = Reference(_reference_sequence(args.reference, data), "given", f"{given} (--reference)")
    elif cfg is not None:
        reference = run_reference(cfg, load_dataset_splits(cfg.data).train.frame["aa_seq"].tolist())
    else:
        reference = choose_reference(frame["aa_seq"].tolist(), "input sequences")
    print(f"reference: {reference.describe()}")
    scores = scorer.score(frame["aa_seq"].tolist(), reference)
    scores.frame(frame).to_csv(args.output, index=False)
    counts = {method: scores.methods.count(method) for method in sorted(set(scores.methods))}
    print(
        f"{len(frame)} zero-shot scores of {model} written to {args.output} "
        f"({', '.join(f'{count} {method}' for method, count in counts.items())})"
    )


def _reference_sequence(text: str, data: object) -> str:
    """``--reference``: a sequence, or a file (FASTA, CSV, ...) holding exactly one."""
    from protfit.config import REFERENCE_RESIDUES
    from protfit.data.loading import read_sequences

    if Path(text).is_file():
        sequences = read_sequences(text, data)["aa_seq"].tolist()  # type: ignore[arg-type]
        if len(sequences) != 1:
            raise ValueError(
                f"--reference {text}: holds {len(sequences)} sequences; give a file with exactly one"
            )
        return sequences[0]
    sequence = text.strip().upper()
    unknown = sorted(set(sequence) - set(REFERENCE_RESIDUES))
    if unknown:
        raise ValueError(
            f"--reference: '{text[:30]}' is neither a file nor a sequence (letters {''.join(unknown)} are no residues)"
        )
    max_len = getattr(data, "max_seq_len", None)
    return sequence[:max_len] if max_len is not None else sequence


def _export(args: argparse.Namespace) -> None:
    from protfit.export import export_run

    out_dir = export_run(args.run_dir, args.out_dir, checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(f"exported {args.run_dir} ({args.checkpoint} checkpoint) to {out_dir}")
    print(f"  transformers: AutoModel.from_pretrained('{out_dir / 'backbone'}')")
    print(f"  protfit:      protfit predict {out_dir} SEQUENCES.fasta -o predictions.csv")


def _models(args: argparse.Namespace) -> None:
    from protfit.models.catalog import format_model_catalog

    print(format_model_catalog(markdown=args.markdown), end="\n" if not args.markdown else "")


# ---- sweep and lr-find (src/protfit/sweep) -------------------------------------------------------


def _sweep(args: argparse.Namespace) -> None:
    from protfit.sweep.config import build_sweep_config, load_sweep_config
    from protfit.sweep.presets import describe_presets
    from protfit.sweep.study import open_sweep_folder, prepare_sweep, run_sweep

    if args.list_presets:
        print(describe_presets())
        return
    if args.sweep_file is not None and "=" in args.sweep_file and not Path(args.sweep_file).is_file():
        args.overrides.insert(0, args.sweep_file)  # `--preset quick --base run.yaml n_trials=10`
        args.sweep_file = None
    if args.resume is not None:
        if args.sweep_file is not None:
            args.overrides.insert(0, args.sweep_file)  # `--resume DIR n_trials=30`: an override, not a file
        sweep = open_sweep_folder(args.resume, args.overrides)
        run_sweep(sweep, resume=True)
        return
    extra = [
        f"{key}={value}"
        for key, value in (("study.storage", args.storage), ("study.name", args.study))
        if value
    ]
    extra += [f"preset={args.preset}"] if args.preset else []
    if args.sweep_file is not None:
        if args.base is not None:
            raise ConfigError("give --base only without a SWEEP.yaml (the sweep file names its base)")
        config = load_sweep_config(args.sweep_file, [*args.overrides, *extra])
        source = args.sweep_file
    else:
        if args.base is None or args.preset is None:
            raise ConfigError("give a SWEEP.yaml, or --preset NAME --base RUN.yaml, or --resume SWEEP_DIR")
        from protfit.config import apply_overrides

        config = build_sweep_config(
            apply_overrides({"base": args.base}, [*args.overrides, *extra]), "command line"
        )
        source = "command line"
    run_sweep(prepare_sweep(config, source))


def _lr_find(args: argparse.Namespace) -> None:
    from protfit.sweep.lr_find import lr_find
    from protfit.training.lr_range_test import SUGGESTION_RULES, RangeTestSettings

    settings = RangeTestSettings(args.start_lr, args.end_lr, args.num_steps, args.rule)
    result, folder = lr_find(args.config, args.overrides, settings=settings, out_dir=args.output)
    print(
        f"range test {result.start_lr:.0e} -> {result.end_lr:.0e}: {len(result.learning_rates)} steps, {result.stopped}"
    )
    print(f"suggested learning rate: {result.suggestion:.3g}  ({SUGGESTION_RULES[result.rule]})")
    if result.note:
        print(f"WARNING: {result.note}")
    print(f"curve: {folder / 'lr_find.csv'}  plot: {folder / 'lr_find.png'}")
    # the suggestion holds for the config as overridden here, so the command repeats the overrides
    kept = [o for o in args.overrides if not o.startswith(("train.learning_rate=", "output."))]
    command = shlex.join(
        ["protfit", "train", str(args.config), *kept, f"train.learning_rate={result.suggestion:.3g}"]
    )
    print(f"use it: {command}  (or =auto)")


def add_sweep_commands(commands: argparse._SubParsersAction) -> None:
    lr = commands.add_parser(
        "lr-find", help="learning-rate range test: loss over an exponential LR ramp, a suggested rate"
    )
    lr.add_argument("config", help="YAML run config (the run is built exactly as `protfit train` would)")
    lr.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.method=lora")
    lr.add_argument("--start-lr", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    lr.add_argument("--end-lr", type=float, default=1.0, help="last learning rate (default 1)")
    lr.add_argument("--num-steps", type=int, default=100, help="mini-batches of the ramp (default 100)")
    lr.add_argument(
        "--rule",
        choices=["steepest", "min_div_10", "divergence_div_10"],
        default="steepest",
        help="steepest: steepest descent of the smoothed loss (default); min_div_10: minimum / 10; "
        "divergence_div_10: where it diverged / 10 (used automatically when the curve is flat)",
    )
    lr.add_argument(
        "-o", "--output", help="folder for lr_find.csv/.png/.json (default: output.dir/lr-find-...)"
    )
    lr.set_defaults(handler=_lr_find)

    sweep = commands.add_parser("sweep", help="hyper-parameter search (Optuna); every trial is a run folder")
    sweep.add_argument("sweep_file", nargs="?", metavar="SWEEP.yaml", help="sweep file (docs/sweeps.md)")
    sweep.add_argument("overrides", nargs="*", help="dotted overrides of the sweep file, e.g. n_trials=10")
    sweep.add_argument(
        "--resume", metavar="SWEEP_DIR", help="continue a sweep (accepts n_trials= n_jobs= timeout=)"
    )
    sweep.add_argument("--storage", help="shared Optuna storage URL, e.g. postgresql://user@host/db")
    sweep.add_argument("--study", help="study name in the storage (workers with the same name share it)")
    sweep.add_argument("--preset", help="ready-made search space (see --list-presets)")
    sweep.add_argument("--base", metavar="RUN.yaml", help="with --preset and no sweep file: the run config")
    sweep.add_argument("--list-presets", action="store_true", help="print the presets and their ranges")
    sweep.set_defaults(handler=_sweep)


def _webui(args: argparse.Namespace) -> None:
    import os

    # Gradio's upload/download cache inside the workspace too (read by gradio when it is imported)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(args.workspace).expanduser().resolve() / ".gradio"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from protfit.webui.app import serve
    except ModuleNotFoundError as error:
        raise RuntimeError(f'the web UI needs {error.name}: pip install "protfit[webui]"') from None

    serve(args.workspace, host=args.host, port=args.port, share=args.share, auth=args.auth)


def _compare(args: argparse.Namespace) -> None:
    from protfit.report.compare import (
        compare_runs,
        default_output_dir,
        markdown_table,
        recommendation_yaml,
        terminal_table,
    )
    from protfit.report.compare_html import write_outputs

    comparison = compare_runs(args.runs)
    if args.format == "markdown":
        print(markdown_table(comparison))
    elif args.format == "csv":
        from protfit.report.compare import csv_frame

        print(csv_frame(comparison).to_csv(index=False), end="")
    else:
        print(terminal_table(comparison))
    out_dir = Path(args.output) if args.output else default_output_dir(comparison, args.runs)
    written = write_outputs(comparison, out_dir)
    print(f"written: {', '.join(str(path) for path in written.values())}", file=sys.stderr)
    if args.recommend:
        if comparison.recommended is None:
            print("no run has a validation value: nothing to recommend")
            return
        print()
        print(recommendation_yaml(comparison), end="")


def _tune(args: argparse.Namespace) -> None:
    from protfit.sweep.tune import start_tune, tune
    from protfit.training.lr_range_test import RangeTestSettings

    if args.resume is None:
        if args.config is None or args.budget is None:
            raise ConfigError("give CONFIG.yaml --budget N to start a tune, or --resume TUNE_DIR")
        from protfit.config import load_config

        cfg = load_config(args.config, args.overrides)
        folder = Path(args.output) if args.output else Path(cfg.output.dir) / f"tune-{Path(args.config).stem}"
        start_tune(cfg, args.budget, folder)
    else:
        folder = Path(args.resume)
    tune(folder, range_test=RangeTestSettings(num_steps=args.lr_steps))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protfit", description="Fine-tune protein language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a YAML config (+ key=value overrides)")
    train.add_argument("config", nargs="?", help="YAML config file")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 model.method=full")
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint"
    )
    train.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel processes on this machine (one per GPU; on CPU they share the cores); "
        "same as `accelerate launch --num_processes N -m protfit train ...`",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "eval", help="metrics (with bootstrap intervals) of a trained run on labelled data"
    )
    evaluate.add_argument("run_dir", help="run folder written by `protfit train`")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--data", help="labelled file (CSV/TSV/JSON/parquet/FASTA) to evaluate on")
    source.add_argument(
        "--split",
        choices=["train", "validation", "test"],
        default="test",
        help="a split of the run's own data (default: test)",
    )
    evaluate.add_argument("-o", "--output", help="output folder (default: RUN_DIR/eval/<data name>)")
    evaluate.set_defaults(handler=_eval)

    predict = commands.add_parser(
        "predict", help="predict labels / values for sequences in a FASTA or CSV file"
    )
    predict.add_argument("run_dir", help="run folder written by `protfit train`")
    predict.add_argument("input", help="FASTA or CSV/TSV/JSON/parquet file with sequences")
    predict.add_argument("-o", "--output", required=True, help="CSV file to write")
    predict.set_defaults(handler=_predict)

    score = commands.add_parser(
        "score",
        help="zero-shot masked-LM scores of variants against a reference (no training; docs/zero_shot.md)",
    )
    score.add_argument(
        "model", metavar="MODEL_OR_RUN", help="masked LM (alias, folder, hub id) or a run folder"
    )
    score.add_argument("input", help="FASTA or CSV/TSV/JSON/parquet file with sequences")
    score.add_argument("-o", "--output", required=True, help="CSV file to write")
    score.add_argument(
        "--reference",
        metavar="SEQ|FILE",
        help="reference sequence, or a file with one; default: a run's data.reference_sequence, else the "
        "most common (else consensus) training sequence of a run, or of the input for a bare model",
    )
    score.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="masked copies per forward pass (default 32)"
    )
    score.set_defaults(handler=_score)

    export = commands.add_parser(
        "export", help="write a trained run as a standalone Hugging Face model (adapters merged)"
    )
    export.add_argument("run_dir", help="run folder written by `protfit train`")
    export.add_argument("out_dir", help="folder to write (backbone/, head weights, config.yaml)")
    export.add_argument(
        "--checkpoint", choices=["best", "last"], default="best", help="which weights (default: best)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    export.set_defaults(handler=_export)

    models = commands.add_parser("models", help="list model families and aliases, and what works offline")
    models.add_argument("--markdown", action="store_true", help="as Markdown (docs/components.md)")
    models.set_defaults(handler=_models)
    add_sweep_commands(commands)

    webui = commands.add_parser(
        "webui", help="web UI: train, tune, compare and predict in the browser (docs/webui.md)"
    )
    webui.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    webui.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    webui.add_argument("--auth", metavar="USER:PASSWORD", help="require this login")
    webui.add_argument(
        "--workspace", default=".", metavar="DIR", help="folder the UI reads and writes (default: .)"
    )
    webui.add_argument("--share", action="store_true", help="also create a public Gradio share link")
    webui.set_defaults(handler=_webui)

    compare = commands.add_parser(
        "compare",
        help="table of runs (or a sweep's trials): settings that differ, validation, gap, verdict, stars",
    )
    compare.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run folders, a sweep folder, or a folder of runs"
    )
    compare.add_argument(
        "--recommend", action="store_true", help="print the recommended config as YAML and the reason"
    )
    compare.add_argument(
        "--format",
        choices=["table", "markdown", "csv"],
        default="table",
        help="what to print (default: table)",
    )
    compare.add_argument(
        "-o",
        "--output",
        help="folder for compare.md/.csv/.html and recommended.yaml (default: SWEEP_DIR/compare, or compare/ beside the runs)",
    )
    compare.set_defaults(handler=_compare)

    tune_parser = commands.add_parser(
        "tune",
        help="untuned run, LR range test, sweep, comparison, multi-seed confirmation against the start",
    )
    tune_parser.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="the starting run config")
    tune_parser.add_argument("overrides", nargs="*", help="dotted overrides of the run config")
    tune_parser.add_argument("--budget", type=int, metavar="N", help="sweep trials")
    tune_parser.add_argument("-o", "--output", help="tune folder (default: output.dir/tune-<config name>)")
    tune_parser.add_argument("--resume", metavar="TUNE_DIR", help="continue a tune where it stopped")
    tune_parser.add_argument(
        "--lr-steps", type=int, default=100, help="mini-batches of the LR range test (default 100)"
    )
    tune_parser.set_defaults(handler=_tune)

    for name in PLUGIN_COMMANDS:
        commands.choices[name].add_argument(
            "--plugins",
            default="",
            metavar="MODULE[,MODULE]",
            help="import these modules first: their poolers, heads, metrics, schedulers and regularizers "
            "join the registries (a run records them; eval/predict/export import them again)",
        )
    return parser


# The commands that build or read a run config, so may name a user's component.
PLUGIN_COMMANDS = ("train", "eval", "predict", "export", "lr-find", "sweep", "tune", "webui")


def _without_num_processes(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--num-processes":
            skip = True
        elif not item.startswith("--num-processes="):
            kept.append(item)
    return kept


def main(argv: list[str] | None = None) -> int:
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # key=value overrides may also follow an option (`train run.yaml --num-processes 2 train.epochs=3`);
    # argparse stops collecting positionals at the first option, so they are picked up here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    processes = getattr(args, "num_processes", 1)
    if processes < 1:
        print("protfit train: error: --num-processes must be at least 1", file=sys.stderr)
        return 2
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_processes(_without_num_processes(argv), processes)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        # before any config is validated: a user's pooler or regularizer section must be known by then
        load_plugin_modules(getattr(args, "plugins", "").split(","))
        handler(args)
    except USER_ERRORS as error:
        if args.verbose:
            raise
        print(f"protfit {args.command}: error: {_describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        terminated = type(interrupt).__name__ == "RunInterrupted"  # SIGTERM during a run
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        return 143 if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
