"""``netdyn orbit run.nc [-o outdir]``: orbital class and distance curves of a saved trajectory.

Prints the orbital class of the trajectory's tail with its evidence
(:func:`netdyn.orbits.stability.orbital_stability`) and a summary of its distance curves
(:func:`netdyn.orbits.distances.trajectory_distances`), then writes
``<stem>_distances.nc`` and the figure ``<stem>_distances.png`` to the output folder
(default ``./netdyn-out/orbit-<stem>/``).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from netdyn.orbits.distances import trajectory_distances
from netdyn.orbits.stability import orbital_stability
from netdyn.commands._output import add_output_arguments, default_output, manifest, open_input, staged_output
from netdyn.commands._report import divergence_words, orbit_words
from netdyn.commands.train import hidden_widths, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "orbit",
        help="orbital class and distance curves of a saved trajectory",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("trajectory", type=Path, help="trajectory netCDF file (state over step, param)")
    add_output_arguments(parser, dest="outdir")
    parser.add_argument("--tail", type=positive_int, default=None, help="states classified (default: the last half)")
    parser.add_argument("--tol", type=positive_float, default=None, help="relative tolerance for equal states")
    parser.add_argument(
        "--layer-sizes", type=hidden_widths, default=None,
        help="MLP widths, e.g. 4,5,3 (default: the file's layer_sizes attribute, if any)",
    )
    parser.add_argument("--no-kendall", action="store_true", help="skip Kendall's tau (the slowest curve)")
    parser.set_defaults(func=run)


def orbit_line(result: object) -> str:
    """``label`` or ``label (period p)`` of an orbital-stability result."""
    period = getattr(result, "period", None)
    return f"{result.label}" + (f" (period {period})" if period else "")


def run(args: argparse.Namespace) -> int:
    path = Path(args.trajectory)
    sizes = None if args.layer_sizes is None else list(args.layer_sizes)
    outdir = args.outdir if args.outdir is not None else default_output("orbit", path.stem)
    outputs = [f"{path.stem}_distances.nc", f"{path.stem}_distances.png"]
    with open_input(path) as ds, staged_output(outdir, outputs, manifest("orbit", args, path), args.force) as stage:
        result = orbital_stability(ds, tail=args.tail, tol=args.tol)
        distances = trajectory_distances(ds, layer_sizes=sizes, kendall=not args.no_kendall)
        diverged = divergence_words(ds)
        print(f"{path.name}: {orbit_line(result)}")
        print(f"  {result.reason}")
        for line in orbit_words(result) + ([diverged] if diverged else []):
            print(f"  note: {line}")
        for field in dataclasses.fields(result):
            if field.name not in ("label", "period", "reason"):
                print(f"  {field.name:16s} {_fmt(getattr(result, field.name))}")
        print(distance_summary(distances))
        distances.attrs["source"] = str(path)
        distances.to_netcdf(stage / outputs[0])
        _figure(distances, stage / outputs[1], f"{path.name}: {result.label}")
    print(f"wrote {', '.join(outputs)} in {outdir}")
    return 0


def distance_summary(distances: xr.Dataset) -> str:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
