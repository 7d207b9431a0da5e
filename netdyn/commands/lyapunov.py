"""``netdyn lyapunov``: the maximal Lyapunov exponent of a training run.

Either from a recorded trajectory (``netdyn lyapunov run.nc``: the map is rebuilt
from the file's attributes and started from the file's full ``initial_state`` —
parameters and optimiser buffers — at its map time ``t0``, so a continued Adam run
is measured where it really started), or from task options
(``netdyn lyapunov --lr 0.5 --steps 300 --activation tanh --method twin``).
Prints the estimate with its error bar (and, in words, when it cannot be trusted)
and writes ``lyapunov.nc`` and a convergence plot to the output folder.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.commands._output import add_output_arguments, default_output, manifest, open_input, staged_output, task_stem
from netdyn.commands._report import exponent_words
from netdyn.commands.train import add_task_arguments, map_from_args, nonnegative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lyapunov", help="maximal Lyapunov exponent of training",
                                   description="Maximal Lyapunov exponent (Benettin, tangent or twin) of "
                                               "training, with a convergence plot.")
    parser.add_argument("trajectory", nargs="?", help="recorded run (netCDF); else the task options build the map")
    add_task_arguments(parser)
    parser.add_argument("--steps", type=positive_int, default=300, help="counted steps (default: 300)")
    parser.add_argument("--transient", type=nonnegative_int, default=0, help="uncounted steps first (default: 0)")
    parser.add_argument("--method", choices=("tangent", "twin"), default="tangent",
                        help="tangent: the exact tangent map (Jacobian-vector products); twin: Benettin's "
                        "perturbed copy, for any optimiser (default: tangent)")
    parser.add_argument("--renorm-every", type=positive_int, default=1,
                        help="steps between renormalisations of the separation (default: 1)")
    parser.add_argument("--d0", type=positive_float, default=None,
                        help="twin distance, in the units of the parameters (default: sqrt(eps) x |theta_0| "
                        "for the state's dtype, e.g. 1.5e-8 |theta_0| in float64 and 3.5e-4 |theta_0| in float32)")
    parser.add_argument("--plot", default="convergence.png",
                        help="figure: a file name is written inside the output folder, a path with a folder "
                        "where it says; '' for none (default: %(default)s)")
    add_output_arguments(parser)
    parser.set_defaults(func=main)


def start_from_file(path: str | os.PathLike) -> tuple[Any, torch.Tensor, int]:
    """``(map, x0, t0)`` to restart the run recorded in ``path`` exactly.

    ``x0`` is the file's ``initial_state`` (parameters and optimiser buffers) and
    ``t0`` its ``t0`` attribute (the map time of that state; mini-batch maps and
    Adam's bias correction depend on it).  Raises ``ValueError`` for a file that
    cannot be restarted: not a bundled-task TrainingMap, no ``initial_state``, a
    state of the wrong size or with non-finite entries.
    """
    from netdyn.maps.problems import map_from_attrs

    with open_input(path, min_steps=0) as ds:
        tmap = map_from_attrs(ds.attrs)
        if "initial_state" not in ds.variables:
            raise ValueError(f"expected an initial_state variable (the full state at t0) in {os.fspath(path)!r}, "
                             "got none: the file was written by an older netdyn and cannot be restarted exactly")
        x0 = np.asarray(ds["initial_state"].values, dtype=np.float64)
        t0 = int(ds.attrs.get("t0", 0))
    if x0.shape != (tmap.dim,):
        raise ValueError(f"expected initial_state of shape ({tmap.dim},) for the recorded map in "
                         f"{os.fspath(path)!r}, got {x0.shape}")
    if not np.isfinite(x0).all():
        raise ValueError(f"expected a finite initial_state in {os.fspath(path)!r}, got non-finite entries")
    return tmap, torch.as_tensor(x0, dtype=tmap.dtype), t0


def main(args: argparse.Namespace) -> int:
    plot, elsewhere = args.plot, None
    if plot and Path(plot).name != plot:  # a path the user chose: written there, not in the output folder
        elsewhere, plot = Path(plot), ""
        if not elsewhere.parent.is_dir():
            raise ValueError(f"expected --plot in an existing folder, got {os.fspath(elsewhere)!r}")
        if elsewhere.exists() and not args.force:
            raise ValueError(f"{os.fspath(elsewhere)!r} exists; pass --force to overwrite it")
    if args.steps % args.renorm_every:
        raise ValueError(f"expected --steps to be a multiple of --renorm-every={args.renorm_every}, got {args.steps}")
    if args.trajectory:
        tmap, x0, t0 = start_from_file(args.trajectory)
        stem = Path(args.trajectory).stem
        made_by = manifest("lyapunov", args, args.trajectory)
    else:
        tmap = map_from_args(args)
        x0, t0 = tmap.initial_state(args.seed), 0
        stem = task_stem(args)
        made_by = manifest("lyapunov", args)
    outdir = args.output if args.output is not None else default_output("lyapunov", stem)
    names = ["lyapunov.nc"] + ([plot] if plot else [])
    with staged_output(outdir, names, made_by, args.force) as stage:
        result = max_lyapunov(tmap, x0, args.steps, method=args.method, transient=args.transient,
                              renorm_every=args.renorm_every, d0=args.d0, seed=args.seed, t0=t0)
        print(f"lambda_max = {float(result.lyapunov):.4g} +- {float(result.lyapunov_stderr):.2g} per step "
              f"({args.method}, {args.steps} steps from t0={t0}, lr={tmap.lr}, diverged={bool(result.diverged)})")
        for line in exponent_words(result):
            print(f"  note: {line}")
        from netdyn.io.storage import netcdf_attrs

        result.assign_attrs(netcdf_attrs(result.attrs)).to_netcdf(stage / "lyapunov.nc")
        if plot:
            _figure(result, stage / plot)
    print(f"wrote {', '.join(names)} in {os.fspath(outdir)}")
    if elsewhere is not None:
        _figure(result, elsewhere)
        print(f"wrote {os.fspath(elsewhere)}")
    return 0


def _figure(result: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from netdyn.plot.lyapunov import plot_convergence

    fig = plot_convergence(result)
    fig.savefig(path, dpi=120)
    plt.close(fig)
