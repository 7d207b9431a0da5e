"""The ``netdyn`` command line: a thin layer over the library.

The commands, each named after what it computes:

* ``netdyn demo``: edge of chaos vs fastest training on the digits MLP (a learning-rate sweep);
* ``netdyn train``: train a network and record its trajectory (:func:`netdyn.run`);
* ``netdyn info RUN.nc``: what a trajectory file holds (:func:`netdyn.summarize`);
* ``netdyn lyapunov RUN.nc``: the maximal Lyapunov exponent from a file's start (:func:`netdyn.max_lyapunov`);
* ``netdyn analyze RUN.nc``: data-driven analysis of a recorded series (:func:`netdyn.analyze_dataset`);
* ``netdyn orbital-stability RUN.nc``: the orbital class of the tail (:func:`netdyn.orbital_stability`);
* ``netdyn distances RUN.nc``: distance curves of the trajectory (:func:`netdyn.trajectory_distances`);
* ``netdyn sweep``: a learning-rate sweep (:func:`netdyn.run_sweep`).

Each sub-command lives in its own module under :mod:`netdyn.commands` (the
command's name with ``_`` for ``-``) and defines ``register(subparsers)``, which adds its parser and sets ``func`` — a
callable taking the parsed ``argparse.Namespace`` and returning an exit code —
and optionally ``on_interrupt(args) -> str``, the one line said after Ctrl-C/SIGTERM.

One error handler serves every command (:func:`main`):

* bad input (a usage error, an unreadable file, an invalid value) prints ONE line
  ``netdyn <command>: error: ...`` on stderr and exits with status 2;
* an unexpected exception prints one line naming it and exits with status 1;
* Ctrl-C exits with status 130 and SIGTERM with 143 (:mod:`netdyn._core.signals`),
  after the command's ``on_interrupt`` line;
* warnings are collected and said afterwards, one line each, translated where
  the raw text would mean nothing to a user, dropped where no user can act on them.

``--debug`` (anywhere on the line) or ``NETDYN_DEBUG=1`` lets exceptions through
with their traceback, for bug reports.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from netdyn._core.signals import exit_status, terminate_as_exception

COMMANDS = ["demo", "train", "info", "lyapunov", "analyze", "orbital-stability", "distances", "sweep"]

#: exit status of a usage or input error (as argparse uses)
EXIT_USAGE = 2
#: exit status of an unexpected failure (a bug: rerun with --debug and report it)
EXIT_INTERNAL = 1


class UsageError(Exception):
    """A command line that cannot be run; ``str()`` is the whole one-line message."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (one line, no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {one_line(message)}")


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space.

    Examples
    --------
    >>> from netdyn.cli import one_line
    >>> one_line("expected\\n  an int,   got 'x'")
    "expected an int, got 'x'"
    """
    return " ".join(str(text).split())


def build_parser() -> argparse.ArgumentParser:
    """The ``netdyn`` parser with every sub-command of :data:`COMMANDS` registered.

    Examples
    --------
    >>> from netdyn.cli import build_parser
    >>> build_parser().parse_args(["orbital-stability", "run.nc", "--tail", "20"]).tail
    20
    """
    parser = Parser(
        prog="netdyn",
        description="Neural-network training as a discrete dynamical system.",
        epilog="Outputs go to ./netdyn-out/<command>-<input>/ unless -o says otherwise. "
        "Set NETDYN_DEBUG=1 or pass --debug to see tracebacks.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (for bug reports)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"netdyn.commands.{name.replace('-', '_')}").register(subparsers)
    return parser


def _debug(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("NETDYN_DEBUG", "").strip() not in ("", "0")


def describe_warning(warning: warnings.WarningMessage) -> str | None:
    """The one line a user is told about a warning, or ``None`` to say nothing.

    Deprecation warnings of third-party packages (nolds' ``pkg_resources``) are
    dropped: no user of the command line can act on them.  The embedding's
    false-nearest-neighbour warning is said in words.  Others keep their message,
    on one line, without the source line Python would print.
    """
    message = one_line(warning.message)
    if issubclass(warning.category, (DeprecationWarning, PendingDeprecationWarning)) or "pkg_resources" in message:
        return None
    if message.startswith("false_nearest_neighbours:"):
        return ("the embedding dimension is uncertain: no dimension tried removes the false nearest neighbours "
                "(noisy or high-dimensional series); the largest was used — pass --emb-dim to choose it")
    return message


class WarningLines:
    """Collects warnings as the distinct lines a user is told (:func:`describe_warning`).

    Used as ``warnings.showwarning``: a warning repeated at every step of a long run
    is kept once, and at most ``limit`` distinct lines are kept (then a count).
    """

    def __init__(self, limit: int = 20):
        self.lines: dict[str, None] = {}
        self.limit, self.dropped = limit, 0

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        said = describe_warning(warnings.WarningMessage(message, category, filename, lineno, file, line))
        if said is None or said in self.lines:
            return
        if len(self.lines) < self.limit:
            self.lines[said] = None
        else:
            self.dropped += 1

    def report(self, command: str) -> None:
        """Print the collected lines on stderr, ``netdyn <command>: warning: ...`` each."""
        for said in self.lines:
            print(f"netdyn {command}: warning: {said}", file=sys.stderr)
        if self.dropped:
            print(f"netdyn {command}: warning: {self.dropped} more distinct warnings not shown", file=sys.stderr)


def _interrupt_line(args: argparse.Namespace | None) -> str:
    """The command's ``on_interrupt`` line; a plain one if it has none or it fails."""
    hook = getattr(args, "on_interrupt", None)
    if hook is None:
        return "interrupted; nothing was written"
    try:
        return hook(args)
    except Exception as err:  # noqa: BLE001 - the interrupt is what must be said
        return f"interrupted (what was kept could not be checked: {one_line(err)})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``netdyn`` on ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Examples
    --------
    >>> from netdyn.cli import main
    >>> main(["info", "missing.nc"])  # one line on stderr, usage status
    2
    """
    try:
        return _main(argv)
    finally:
        # Objects of a failed command (closed xarray/netCDF handles held in the exception's reference
        # cycles) are finalised here, at a safe point: collected later, in the middle of the next
        # netCDF open, their finalisers crashed HDF5 (segfault, seen with orbit refused then rerun).
        gc.collect()


def _main(argv: Sequence[str] | None) -> int:
    program = argv is None  # run as the program (not called from Python): the process ends after us
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug(argv)
    argv = [a for a in argv if a != "--debug"]
    command, args = "netdyn", None
    caught = WarningLines()
    with warnings.catch_warnings(), terminate_as_exception():
        warnings.simplefilter("always")
        warnings.showwarning = caught
        try:
            args, extra = build_parser().parse_known_args(argv)
            command = args.command
            if extra:
                raise UsageError(f"netdyn {command}: error: unrecognized arguments: {' '.join(extra)}")
            status = int(args.func(args) or 0)
        except UsageError as err:
            print(err, file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM as netdyn._core.signals.Terminated
            if debug:
                raise
            line = _interrupt_line(args)
            caught.report(command)
            print(f"netdyn {command}: {line}", file=sys.stderr)
            if program:  # objects of the interrupted work (Dask locks, xarray file managers) may fail to
                # finalise at exit once Dask's event loop is gone: "Exception ignored in ..." is noise here
                sys.unraisablehook = lambda unraisable: None
            return exit_status(interrupt)
        except (ValueError, TypeError, OSError) as err:
            if debug:
                raise
            print(f"netdyn {command}: error: {one_line(err)}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as err:  # noqa: BLE001 - the one place that turns a bug into one line
            if debug:
                raise
            print(f"netdyn {command}: error: unexpected {type(err).__name__}: {one_line(err)} "
                  "(rerun with --debug and report the traceback)", file=sys.stderr)
            return EXIT_INTERNAL
        caught.report(command)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
