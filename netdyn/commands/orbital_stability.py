"""``netdyn orbital-stability run.nc [-o outdir]``: the orbital class of a saved trajectory's tail.

Prints the class of the trajectory's tail with its evidence
(:func:`netdyn.orbits.stability.orbital_stability`) and writes the result,
``<stem>_orbital_stability.nc`` (:meth:`~netdyn.orbits.stability.OrbitalStability.to_dataset`;
reopen it with ``OrbitalStability.from_dataset``), to the output folder
(default ``./netdyn-out/orbital-stability-<stem>/``).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from netdyn.commands._output import add_output_arguments, default_output, manifest, open_input, staged_output
from netdyn.commands._report import divergence_words, orbit_words
from netdyn.commands.train import positive_float, positive_int
from netdyn.orbits.stability import orbital_stability

NAME = "orbital-stability"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        NAME,
        help="orbital class of a saved trajectory's tail (fixed point, periodic, quasi-periodic, chaotic, divergent)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("trajectory", type=Path, help="trajectory netCDF file (state over step, param)")
    add_output_arguments(parser, dest="outdir")
    parser.add_argument("--tail", type=positive_int, default=None, help="states classified (default: the last half)")
    parser.add_argument("--tol", type=positive_float, default=None, help="relative tolerance for equal states")
    parser.set_defaults(func=run)


def orbit_line(result: object) -> str:
    """``label`` or ``label (period p)`` of an orbital-stability result."""
    period = getattr(result, "period", None)
    return f"{result.label}" + (f" (period {period})" if period else "")


def run(args: argparse.Namespace) -> int:
    path = Path(args.trajectory)
    outdir = args.outdir if args.outdir is not None else default_output(NAME, path.stem)
    outputs = [f"{path.stem}_orbital_stability.nc"]
    with open_input(path) as ds, staged_output(outdir, outputs, manifest(NAME, args, path), args.force) as stage:
        result = orbital_stability(ds, tail=args.tail, tol=args.tol)
        diverged = divergence_words(ds)
        print(f"{path.name}: {orbit_line(result)}")
        print(f"  {result.reason}")
        for line in orbit_words(result) + ([diverged] if diverged else []):
            print(f"  note: {line}")
        for field in dataclasses.fields(result):
            if field.name not in ("label", "period", "reason"):
                print(f"  {field.name:16s} {_fmt(getattr(result, field.name))}")
        saved = result.to_dataset()
        saved.attrs["source"] = str(path)
        saved.to_netcdf(stage / outputs[0])
    print(f"wrote {', '.join(outputs)} in {outdir}")
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
