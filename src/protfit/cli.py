"""`protfit` command line: every command builds the same RunConfig and calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from protfit.config import ConfigError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, FileExistsError, RuntimeError, ValueError)


def _train(args: argparse.Namespace) -> None:
    from protfit.training.train import train

    if args.resume is None and args.config is None:
        raise ConfigError("give a CONFIG.yaml to train, or --resume RUN_DIR to continue a run")
    if args.resume is not None and args.config is not None:
        # `protfit train --resume RUN_DIR key=value`: the first positional is an override, not a file
        args.overrides.insert(0, args.config)
    train(args.config if args.resume is None else None, args.overrides, resume_from=args.resume)


def _models(args: argparse.Namespace) -> None:
    from protfit.models.catalog import format_model_catalog

    print(format_model_catalog())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protfit", description="Fine-tune protein language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a YAML config (+ key=value overrides)")
    train.add_argument("config", nargs="?", help="YAML config file")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 model.method=full")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    train.set_defaults(handler=_train)

    models = commands.add_parser("models", help="list model families and aliases, and what works offline")
    models.set_defaults(handler=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    handler: Callable[[argparse.Namespace], None] = args.handler
    try:
        handler(args)
    except USER_ERRORS as error:
        if args.verbose:
            raise
        print(f"protfit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
