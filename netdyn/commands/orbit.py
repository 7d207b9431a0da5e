"""``netdyn orbit run.nc [-o outdir]``: orbital class and distance curves of a saved trajectory.

Prints the orbital class of the trajectory's tail with its evidence
(:func:`netdyn.stability.orbital_stability`) and a summary of its distance curves
(:func:`netdyn.distances.trajectory_distances`), then writes
``<outdir>/<stem>_distances.nc`` and the figure ``<outdir>/<stem>_distances.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from ..distances import trajectory_distances
from ..stability import orbital_stability


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "orbit",
        help="orbital class and distance curves of a saved trajectory",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("trajectory", type=Path, help="trajectory netCDF file (state over step, param)")
    parser.add_argument("-o", "--outdir", type=Path, default=None, help="output folder (default: the file's folder)")
    parser.add_argument("--tail", type=int, default=None, help="states classified (default: the last half)")
    parser.add_argument("--tol", type=float, default=None, help="relative tolerance for equal states")
    parser.add_argument(
        "--layer-sizes", default=None,
        help="MLP widths, e.g. 4,5,3 (default: the file's layer_sizes attribute, if any)",
    )
    parser.add_argument("--no-kendall", action="store_true", help="skip Kendall's tau (the slowest curve)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.trajectory
    if not path.is_file():
        raise FileNotFoundError(f"orbit: expected a trajectory file, got {path}")
    sizes = None if args.layer_sizes is None else [int(n) for n in args.layer_sizes.split(",")]
    outdir = path.parent if args.outdir is None else args.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    with _open_trajectory(path) as ds:
        result = orbital_stability(ds, tail=args.tail, tol=args.tol)
        distances = trajectory_distances(ds, sizes, kendall=not args.no_kendall)
    print(f"{path.name}: {result.label}" + (f" (period {result.period})" if result.period else ""))
    print(f"  {result.reason}")
    for field in dataclasses.fields(result):
        if field.name not in ("label", "period", "reason"):
            print(f"  {field.name:16s} {_fmt(getattr(result, field.name))}")
    print(_summary(distances))
    stem = path.stem
    nc_path, fig_path = outdir / f"{stem}_distances.nc", outdir / f"{stem}_distances.png"
    distances.attrs["source"] = str(path)
    distances.to_netcdf(nc_path)
    _figure(distances, fig_path, f"{path.name}: {result.label}")
    print(f"wrote {nc_path}\nwrote {fig_path}")
    return 0


def _open_trajectory(path: Path) -> xr.Dataset:
    """Open a saved trajectory (to be replaced by ``netdyn.trajectory.open_trajectory``)."""
    return xr.open_dataset(path)


def _summary(distances: xr.Dataset) -> str:
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

    from ..plot.orbits import plot_distance_curves

    fig = plot_distance_curves(distances)
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
