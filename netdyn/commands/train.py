"""``netdyn train``: train an MLP on a bundled task and record its orbit to netCDF.

Ctrl-C or SIGTERM stops the run: every computed row is in the file (``netdyn.run``
flushes before re-raising), and the command says up to which step.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from netdyn.maps.optim import FUNCTIONAL_OPTIMIZERS
from netdyn.maps.schedules import NAMED_SCHEDULES
from netdyn.maps.problems import ACTIVATIONS, DATASETS, INITS, make_task, training_map
from netdyn.orbits.trajectory import run
from netdyn.commands._output import add_output_arguments, default_output, quiet_open, task_stem


def _number(kind: type, low: float, strict: bool, what: str):
    """An argparse ``type`` that parses ``kind`` and checks ``value > low`` (``>=`` if not ``strict``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value) or (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


positive_int = _number(int, 0, True, "an integer >= 1")
nonnegative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a finite number > 0")
nonnegative_float = _number(float, 0.0, False, "a finite number >= 0")


def hidden_widths(text: str) -> tuple[int, ...]:
    """``"32"`` or ``"16,8"`` -> the hidden widths (each >= 1)."""
    try:
        widths = tuple(int(h) for h in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths >= 1 such as 32 or 16,8, got {text!r}")
    return widths


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The data set and the network (shared by ``train``, ``lyapunov`` and ``sweep``): ``--task``,
    ``--hidden``, ``--init``, ``--init-scale``, ``--dtype``, ``--batch-size``."""
    parser.add_argument("--task", choices=DATASETS, default="digits", help="bundled data set (default: digits)")
    parser.add_argument("--hidden", type=hidden_widths, default=(32,), help="hidden widths, comma-separated (default: 32)")
    parser.add_argument("--init", choices=sorted(INITS), default="torch", help="weight initialisation (default: torch)")
    parser.add_argument("--init-scale", type=positive_float, default=1.0,
                        help="multiplies the initial weights (default: 1)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="floating-point type of the model and data (default: float64)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="mini-batch size (default: full batch)")


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that define a task and its training map (shared by several commands)."""
    add_model_arguments(parser)
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh", help="(default: tanh)")
    parser.add_argument("--optimizer", choices=sorted(FUNCTIONAL_OPTIMIZERS), default="sgd", help="(default: sgd)")
    parser.add_argument("--momentum", type=nonnegative_float, default=0.0, help="SGD/RMSprop momentum (default: 0)")
    parser.add_argument("--lr", type=positive_float, default=0.5, help="learning rate (default: 0.5)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="initialisation and batch seed (default: 0)")
    parser.add_argument("--schedule", choices=sorted(NAMED_SCHEDULES), default=None,
                        help="learning-rate schedule; --lr is then its peak rate (default: constant)")
    parser.add_argument("--warmup", type=nonnegative_int, default=0,
                        help="linear warm-up steps (with --schedule cosine/warmup, or alone: warm-up to --lr)")
    parser.add_argument("--total", type=positive_int, default=None,
                        help="steps of the whole schedule (default: --steps)")
    parser.add_argument("--schedule-options", type=json_object, default=None,
                        help='more schedule settings as JSON, e.g. \'{"min_factor": 0.1}\' or \'{"step_size": 50}\'')


def json_object(text: str) -> dict:
    """A JSON object given on the command line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"min_factor\": 0.1}}', got {text!r}")
    return value


def map_from_args(args: argparse.Namespace):
    """The :class:`~netdyn.maps.training.TrainingMap` described by :func:`add_task_arguments` options."""
    hidden = args.hidden if isinstance(args.hidden, tuple) else hidden_widths(str(args.hidden))
    task = make_task(args.task, hidden=hidden, activation=args.activation, dtype=args.dtype,
                     init=args.init, init_scale=args.init_scale, seed=args.seed)
    kwargs = {"momentum": args.momentum} if args.momentum and args.optimizer in ("sgd", "rmsprop") else {}
    total = args.total if args.total is not None else getattr(args, "steps", None)
    schedule = {"schedule": args.schedule, "warmup": args.warmup, "schedule_options": args.schedule_options}
    if args.schedule not in (None, "constant", "warmup", "step", "exponential"):
        schedule["total"] = total
    return training_map(task, lr=args.lr, optimizer=args.optimizer, batch_size=args.batch_size, seed=args.seed,
                        **schedule, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an MLP and record its trajectory",
                                   description="Train an MLP on a bundled task; stream its orbit to netCDF. "
                                   "Ctrl-C keeps every computed step in the file.")
    add_task_arguments(parser)
    parser.add_argument("--steps", type=positive_int, default=2000, help="optimiser steps (default: 2000)")
    parser.add_argument("--record-every", type=positive_int, default=1,
                        help="record one step in this many (default: 1, every step)")
    parser.add_argument("--record", default="all", help="all | layer names comma-separated | sketch size k")
    parser.add_argument("--eval-every", type=positive_int, default=50, help="test evaluation period (default: 50)")
    add_output_arguments(parser, what="file")
    parser.set_defaults(func=main, on_interrupt=interrupted)


def output_path(args: argparse.Namespace) -> Path:
    """``-o`` or ``./netdyn-out/train-<task>-<optimizer>-lr<lr>-seed<seed>.nc``."""
    return Path(args.output) if args.output is not None else default_output("train", task_stem(args), ".nc")


def main(args: argparse.Namespace) -> int:
    path = output_path(args)
    if path.is_dir():
        raise ValueError(f"expected -o to name a netCDF file, got the folder {os.fspath(path)!r}")
    if path.exists() and not args.force:
        raise ValueError(f"{os.fspath(path)!r} exists; pass --force to overwrite it or -o to write elsewhere")
    if args.eval_every % args.record_every:
        raise ValueError(f"expected --eval-every to be a multiple of --record-every={args.record_every}, "
                         f"got {args.eval_every}")
    tmap = map_from_args(args)
    record = args.record
    if record.isdigit():
        record = int(record)
    elif record != "all":
        record = record.split(",")
    from netdyn.io.recording import resolve_record

    resolve_record(tmap, record=record)  # a bad --record fails here, before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    args.output = path  # the interrupt handler reads the file back
    ds = run(tmap, None, args.steps, record_every=args.record_every, record=record, path=path,
             eval_every=args.eval_every, progress=True)
    last = ds.loss.dropna("step")
    diverged = bool(ds.diverged)
    reason = str(ds["divergence_reason"].values) if "divergence_reason" in ds else ""
    at = int(ds["diverged_step"]) if "diverged_step" in ds else -1
    print(f"wrote {os.fspath(path)}: {ds.sizes['step']} recorded steps, "
          + (f"training diverged at step {at} ({reason})" if diverged else "training sound (did not diverge)")
          + f", final loss {float(last[-1]) if last.size else float('nan'):.4g}")
    ds.close()
    return 0


def interrupted(args: argparse.Namespace) -> str:
    """What an interrupted ``train`` left: read back from the file, not assumed."""
    path = Path(args.output) if args.output is not None else None
    if path is None or not path.is_file():
        return "interrupted before the first row was written; no file was written"
    with quiet_open(path) as ds:
        if ds is None:
            return f"interrupted; {os.fspath(path)} could not be read back"
        n = int(ds.sizes.get("step", 0))
        if n == 0:
            return f"interrupted before the first row was written; {os.fspath(path)} holds no steps"
        last = int(ds["step"][-1])
        at = int(ds.attrs.get("interrupted_at", last))  # written by run() when it flushed on the interrupt
    return f"interrupted at step {at}; {os.fspath(path)} is complete up to step {last} ({n} recorded steps)"
