"""``netdyn distances run.nc [-o outdir]``: distance curves of a saved trajectory.

Prints a summary of the trajectory's distance curves
(:func:`netdyn.orbits.distances.trajectory_distances`: state distances between
successive steps and to the final state, and for an MLP the graph measures), then
writes ``<stem>_distances.nc`` and the figure ``<stem>_distances.png`` to the output
folder (default ``./netdyn-out/distances-<stem>/``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr

from netdyn.commands._output import add_output_arguments, default_output, manifest, open_input, staged_output
from netdyn.commands._report import divergence_words
from netdyn.commands.train import hidden_widths
from netdyn.orbits.distances import trajectory_distances

NAME = "distances"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="distance curves of a saved trajectory (state and, for an MLP, graph measures)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("trajectory", type=Path, help="trajectory netCDF file (state over step, param)")
    add_output_arguments(parser, dest="outdir")
    parser.add_argument(
        "--layer-sizes", type=hidden_widths, default=None,
        help="MLP widths, e.g. 4,5,3 (default: the file's layer_sizes attribute, if any)",
    )
    parser.add_argument("--no-kendall", action="store_true", help="skip Kendall's tau (the slowest curve)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = Path(args.trajectory)
    sizes = None if args.layer_sizes is None else list(args.layer_sizes)
    outdir = args.outdir if args.outdir is not None else default_output(NAME, path.stem)
    outputs = [f"{path.stem}_distances.nc", f"{path.stem}_distances.png"]
    with open_input(path) as ds, staged_output(outdir, outputs, manifest(NAME, args, path), args.force) as stage:
        distances = trajectory_distances(ds, layer_sizes=sizes, kendall=not args.no_kendall)
        diverged = divergence_words(ds)
        print(f"{path.name}:" + (f" note: {diverged}" if diverged else ""))
        print(distance_summary(distances))
        distances.attrs["source"] = str(path)
        distances.to_netcdf(stage / outputs[0])
        _figure(distances, stage / outputs[1], f"{path.name}: distance curves")
    print(f"wrote {', '.join(outputs)} in {outdir}")
    return 0


def distance_summary(distances: xr.Dataset) -> str:
    """A table of the first, last, min, max and mean finite value of each distance curve."""
    lines = [f"distance curves over {distances.sizes['step']} steps:",
             f"  {'measure':20s} {'first':>11s} {'last':>11s} {'min':>11s} {'max':>11s} {'mean':>11s}"]
    for name, var in distances.data_vars.items():
        y = var.values
        ok = y[np.isfinite(y)]
        if ok.size == 0:
            lines.append(f"  {name:20s} {'(no finite values)':>11s}")
            continue
        row = [ok[0], ok[-1], ok.min(), ok.max(), ok.mean()]
        lines.append(f"  {name:20s} " + " ".join(f"{v:11.4g}" for v in row))
    return "\n".join(lines)


def _figure(distances: xr.Dataset, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from netdyn.plot.orbits import plot_distance_curves

    fig = plot_distance_curves(distances)
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
