"""The ``netdyn`` command line: a thin layer over the library.

Each sub-command lives in its own module under :mod:`netdyn.commands` and
defines ``register(subparsers)``, which adds its parser and sets ``func`` — a
callable taking the parsed ``argparse.Namespace`` and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["demo", "train", "info", "lyapunov", "analyze", "orbit", "sweep"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdyn",
        description="Neural-network training as a discrete dynamical system.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"netdyn.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"netdyn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
