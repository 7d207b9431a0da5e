"""``netdyn lyapunov``: the maximal Lyapunov exponent of a training run.

Either from a recorded trajectory (``netdyn lyapunov run.nc``: the map is rebuilt
from the file's attributes and started from its first recorded state), or from
task options (``netdyn lyapunov --lr 0.5 --steps 300 --activation tanh --method twin``).
Prints the estimate with its error bar and writes a convergence plot.
"""
from __future__ import annotations

import argparse

import torch

from ..lyapunov import max_lyapunov
from .train import add_task_arguments, map_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lyapunov", help="maximal Lyapunov exponent of training",
                                   description="Maximal Lyapunov exponent (Benettin, tangent or twin) of "
                                               "training, with a convergence plot.")
    parser.add_argument("trajectory", nargs="?", help="recorded run (netCDF); else the task options build the map")
    add_task_arguments(parser)
    parser.add_argument("--steps", type=int, default=300, help="counted steps (default: 300)")
    parser.add_argument("--transient", type=int, default=0, help="uncounted steps first (default: 0)")
    parser.add_argument("--method", choices=("tangent", "twin"), default="tangent")
    parser.add_argument("--renorm-every", type=int, default=1)
    parser.add_argument("--d0", type=float, default=1e-9, help="twin distance (default: 1e-9)")
    parser.add_argument("--plot", default="lyapunov_convergence.png", help="figure file (default: %(default)s)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.trajectory:
        import xarray as xr

        from ..problems import map_from_attrs

        with xr.open_dataset(args.trajectory) as ds:
            tmap = map_from_attrs(ds.attrs)
            first = torch.as_tensor(ds["state"].isel(step=0).values, dtype=tmap.dtype)
        if first.shape[0] != tmap.param_dim:
            raise ValueError(f"netdyn lyapunov: expected all {tmap.param_dim} parameters recorded in "
                             f"{args.trajectory}, got {first.shape[0]}")
        x0 = torch.cat((first, first.new_zeros(tmap.dim - tmap.param_dim)))
    else:
        tmap = map_from_args(args)
        x0 = tmap.initial_state(args.seed)
    result = max_lyapunov(tmap, x0, args.steps, method=args.method, transient=args.transient,
                          renorm_every=args.renorm_every, d0=args.d0, seed=args.seed)
    print(f"lambda_max = {float(result.lyapunov):.4g} +- {float(result.lyapunov_stderr):.2g} per step "
          f"({args.method}, {args.steps} steps, lr={tmap.lr}, diverged={bool(result.diverged)})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from ..plot.lyapunov import plot_convergence

        plot_convergence(result).savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0
