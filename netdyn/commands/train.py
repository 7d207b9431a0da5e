"""``netdyn train``: train an MLP on a bundled task and record its orbit to netCDF."""
from __future__ import annotations

import argparse

from ..problems import ACTIVATIONS, DATASETS, make_task, training_map
from ..trajectory import run


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that define a task and its training map (shared by several commands)."""
    parser.add_argument("--task", choices=DATASETS, default="digits", help="bundled data set (default: digits)")
    parser.add_argument("--hidden", default="32", help="hidden widths, comma-separated (default: 32)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh")
    parser.add_argument("--init", default="torch", help="torch | normal | lecun (default: torch)")
    parser.add_argument("--init-scale", type=float, default=1.0)
    parser.add_argument("--optimizer", default="sgd", help="sgd | adam | adamw | rmsprop (default: sgd)")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD/RMSprop momentum (default: 0)")
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate (default: 0.5)")
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: full batch)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch seed (default: 0)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")


def map_from_args(args: argparse.Namespace):
    """The :class:`~netdyn.training.TrainingMap` described by :func:`add_task_arguments` options."""
    hidden = tuple(int(h) for h in str(args.hidden).split(",") if h)
    task = make_task(args.task, hidden=hidden, activation=args.activation, dtype=args.dtype,
                     init=args.init, init_scale=args.init_scale, seed=args.seed)
    kwargs = {"momentum": args.momentum} if args.momentum and args.optimizer in ("sgd", "rmsprop") else {}
    return training_map(task, lr=args.lr, optimizer=args.optimizer, batch_size=args.batch_size, seed=args.seed, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an MLP and record its trajectory",
                                   description="Train an MLP on a bundled task; stream its orbit to netCDF.")
    add_task_arguments(parser)
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (default: 2000)")
    parser.add_argument("--record-every", type=int, default=1)
    parser.add_argument("--record", default="all", help="all | layer names comma-separated | sketch size k")
    parser.add_argument("--eval-every", type=int, default=50, help="test evaluation period (default: 50)")
    parser.add_argument("-o", "--output", required=True, help="netCDF file to write")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    tmap = map_from_args(args)
    record = args.record
    if record.isdigit():
        record = int(record)
    elif record != "all":
        record = record.split(",")
    ds = run(tmap, args.steps, seed=None, record_every=args.record_every, record=record, path=args.output,
             eval_every=args.eval_every, progress=True)
    last = ds.loss.dropna("step")
    print(f"wrote {args.output}: {ds.sizes['step']} recorded steps, diverged={bool(ds.diverged)}, "
          f"final loss {float(last[-1]) if last.size else float('nan'):.4g}")
    return 0
