"""``netdyn demo``: the headline result in a couple of minutes — on the digits MLP,
the maximal Lyapunov exponent rises through the chaos threshold as the learning
rate grows, and training is fastest near that edge (Jiménez-González et al. 2025)."""
from __future__ import annotations

import argparse
import math

import numpy as np

from netdyn.sweep.grid import edge_of_chaos, fastest_lr
from netdyn.commands._output import default_output
from netdyn.commands.sweep import add_sweep_arguments, interrupted, run_and_report

# The authors' set-up (weights ~ N(0, 1), biases 0, tanh, full-batch GD, float64) on
# the bundled 8x8 digits with 32 hidden units.  Measured on this grid: the exponent
# is ~1e-3 per step (marginal) below lr ~ 1, rises through 0.01 per step between
# lr ~ 1.5 and 3.5, and training stops reaching 90 % test accuracy in 200 steps
# above lr ~ 4.
DEMO = dict(
    task={"dataset": "digits", "hidden": [32], "init": "normal", "init_scale": 1.0},
    lr=[float(v) for v in np.geomspace(0.3, 10.0, 12)],
    seed=[0, 1],
    activation=["tanh"],
    optimizer=["sgd"],
    steps=200,
    eval_every=1,
)
QUICK = dict(
    task={"dataset": "digits", "hidden": [16], "init": "normal", "init_scale": 1.0, "n_train": 300},
    lr=[0.5, 8.0],
    seed=[0],
    activation=["tanh"],
    optimizer=["sgd"],
    steps=40,
    eval_every=1,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="edge of chaos vs fastest training on the digits MLP (about a minute on 2 CPUs)",
        description="Sweep the learning rate of a tanh MLP on the bundled digits: maximal Lyapunov exponent, "
        "orbital class and time to 90%% test accuracy; print the edge of chaos and the fastest learning rate; "
        "write result.nc and sweep.png (default folder: ./netdyn-out/demo-digits/).",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny sweep (seconds), for tests")
    add_sweep_arguments(parser, threshold=0.01)
    parser.set_defaults(func=main, on_interrupt=interrupted)


def main(args: argparse.Namespace) -> int:
    output = args.output or default_output("demo", "quick" if args.quick else "digits")
    result = run_and_report(args, output, command="demo", **(QUICK if args.quick else DEMO))
    edge = float(edge_of_chaos(result, threshold=args.threshold)["edge_lr_mean"].squeeze())
    fast = float(fastest_lr(result)["fastest_lr"].squeeze())
    if math.isfinite(edge) and math.isfinite(fast):
        where = "below" if fast < edge else "above"
        print(f"fastest lr / edge of chaos = {fast / edge:.2f}: the fastest training sits {where} the onset of chaos, "
              f"{abs(math.log2(fast / edge)):.2f} octaves away")
    return 0
