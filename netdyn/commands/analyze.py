"""``netdyn analyze run.nc``: data-driven exponents and RQA of a recorded trajectory.

A thin layer over :func:`netdyn.series.datadriven.analyze_dataset`: prints a report
(saying in words when an estimate cannot be trusted), writes ``analysis.nc`` (the
result Dataset), ``distances.nc``, ``divergence.png`` and ``recurrence.png`` to the
output folder (default ``./netdyn-out/analyze-<file stem>/``).
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
from netdyn.commands._report import divergence_words, orbit_words, rosenstein_words
from netdyn.commands.distances import distance_summary
from netdyn.commands.orbital_stability import orbit_line
from netdyn.commands.train import nonnegative_int, positive_float, positive_int

__all__ = ["register", "run", "format_report"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` sub-command."""
    p = subparsers.add_parser(
        "analyze",
        help="data-driven Lyapunov exponents and recurrence analysis of a trajectory file",
        description="Rosenstein / Eckmann exponents and RQA of one observable of a recorded trajectory.",
    )
    p.add_argument("path", help="trajectory netCDF file")
    p.add_argument("--observable", default="loss", help="loss, grad_norm, param:<i>, norm, update_norm, projection, "
                   "projection:random, state (default: loss)")
    add_output_arguments(p, dest="outdir")
    p.add_argument("--emb-dim", type=positive_int, default=None, help="embedding dimension (default: false nearest neighbours)")
    p.add_argument("--lag", type=positive_int, default=None, help="embedding lag (default: AMI / autocorrelation)")
    p.add_argument("--trajectory-len", type=positive_int, default=20, help="steps the neighbour pairs are followed (default 20)")
    p.add_argument("--recurrence-rate", type=positive_float, default=0.05, help="fixed recurrence rate of the RQA (default 0.05)")
    p.add_argument("--theiler", type=nonnegative_int, default=None,
                   help="Theiler window of all three estimators (default: each its own: the mean period for "
                        "Rosenstein, 0 for Eckmann, 1 (the LOI) for the RQA)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of projection observables")
    p.add_argument("--surrogates", type=nonnegative_int, default=39,
                   help="IAAFT surrogates for the significance of the chaos verdict (default 39: p >= 0.025; 0 skips)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=run)


def format_report(result: xr.Dataset, path: str = "") -> str:
    """Human-readable summary of an :func:`analyze_dataset` result."""
    a = result.attrs
    lines = [
        f"netdyn analyze {path}".rstrip(),
        f"observable: {a['observable']}   points: {a['n_points']}",
        "",
        "data-driven Lyapunov exponents",
        f"  Rosenstein (k-d tree):  lambda_1 = {float(result['lyap_rosenstein']):+.5f} per step",
        f"    fitted on k in [{a['rosenstein_fit_start']}, {a['rosenstein_fit_stop']}) of {a['rosenstein_trajectory_len']}"
        f"; emb_dim={a['rosenstein_emb_dim']}, lag={a['rosenstein_lag']}, theiler={a['rosenstein_theiler']}",
    ]
    if "eckmann_exponents" in result:
        spectrum = ", ".join(f"{v:+.4f}" for v in result["eckmann_exponents"].values)
        lines.append(f"  Eckmann (nolds, m={a['eckmann_emb_dim']}, d={a['eckmann_matrix_dim']}):  [{spectrum}]")
    else:
        lines.append("  Eckmann: skipped (multivariate observable or series too long)")
    lines += [
        "",
        f"recurrence quantification (RR target {a['rqa_recurrence_rate']}, eps = {a['rqa_threshold']:.4g}, "
        f"{a['rqa_metric']}, Theiler {a['rqa_theiler']}, l_min={a['rqa_l_min']}, v_min={a['rqa_v_min']})",
    ]
    for name in ("RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax"):
        value = float(result[f"rqa_{name}"])
        lines.append(f"  {name:<5} {value:12.5g}")
    return "\n".join(lines)


def _significance(ds: xr.Dataset, args: argparse.Namespace) -> xr.Dataset | None:
    """:func:`netdyn.series.significance.chaos_test` of the observable, None (said) for a multivariate one."""
    from netdyn.series.significance import chaos_test

    try:
        return chaos_test(ds, observable=args.observable, n=args.surrogates, seed=args.seed)
    except ValueError as err:
        print(f"\nis it chaos? skipped: {err}")
        return None


def significance_report(test: xr.Dataset) -> str:
    """The chaos verdict with its evidence and surrogate p-values, in words."""
    a = test.attrs
    rule = f"one-sided rank p = (1 + #surrogates >= data) / ({a['n']} + 1)"
    lines = [
        "",
        f"is it chaos? (0-1 test, then {a['n']} {a['kind'].upper()} surrogates; {rule})",
        f"  0-1 test:    K = {float(test['K']):.3f}   (about 0: regular, about 1: irregular; regular below "
        f"{a['k_regular']:g})",
        f"  determinism: DET = {float(test['DET']):.4f}   p = {float(test['p_DET']):.3f}",
    ]
    if np.isfinite(float(test["rosenstein"])):
        lines.append(f"  Rosenstein:  {float(test['rosenstein']):+.5f} per step   p = {float(test['p_rosenstein']):.3f}"
                     "   (reported, not part of the verdict)")
    if a.get("rosenstein_note"):
        lines.append(f"  note: Rosenstein: {a['rosenstein_note']}")
    lines.append(f"  verdict: {a['verdict']} (level {a['level']:g})")
    return "\n".join(lines)


OUTPUTS = ["analysis.nc", "distances.nc", "divergence.png", "recurrence.png"]


def run(args: argparse.Namespace) -> int:
    """Analyse ``args.path``; returns the exit code."""
    if not 0 < args.recurrence_rate < 1:
        raise ValueError(f"expected 0 < --recurrence-rate < 1, got {args.recurrence_rate}")
    outdir = args.outdir if args.outdir is not None else default_output("analyze", Path(args.path).stem)
    with open_input(args.path) as ds, staged_output(outdir, OUTPUTS, manifest("analyze", args, args.path),
                                                    args.force) as stage:
        written = _analyze(args, ds, stage)
    print(f"\nwrote {', '.join(written)} in {outdir}")
    return 0


def _analyze(args: argparse.Namespace, ds: xr.Dataset, stage: Path) -> list[str]:
    from netdyn.series.datadriven import analyze_dataset, rosenstein
    from netdyn.series.observables import observable_series

    result = analyze_dataset(
        ds,
        observable=args.observable,
        emb_dim=args.emb_dim,
        lag=args.lag,
        trajectory_len=args.trajectory_len,
        recurrence_rate=args.recurrence_rate,
        theiler=args.theiler,
        seed=args.seed,
    )
    orbit = orbital_stability(ds)
    test = _significance(ds, args) if args.surrogates else None
    if test is not None:
        result = result.assign({f"chaos_test_{name}": test[name] for name in test.data_vars})
        result.attrs.update({f"chaos_test_{k}": v for k, v in test.attrs.items()})
    distances = trajectory_distances(ds, kendall=False) if ds.attrs.get("record", "all") == "all" and "layer_sizes" in ds.attrs else None
    result.to_netcdf(stage / "analysis.nc")
    print(format_report(result, args.path))
    for line in rosenstein_words(result) + ([divergence_words(ds)] if divergence_words(ds) else []):
        print(f"  note: {line}")
    print(f"\norbital stability: {orbit_line(orbit)}\n  {orbit.reason}")
    for line in orbit_words(orbit):
        print(f"  note: {line}")
    if test is not None:
        print(significance_report(test))
    written = ["analysis.nc"]
    if distances is not None:
        print(distance_summary(distances))
        distances.to_netcdf(stage / "distances.nc")
        written.append("distances.nc")
    if not args.no_figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from netdyn.plot.recurrence import plot_divergence, plot_recurrence

        series = observable_series(ds, observable=args.observable, seed=args.seed)
        a = result.attrs
        curve = rosenstein(
            series, emb_dim=a["rosenstein_emb_dim"], lag=a["rosenstein_lag"], theiler=a["rosenstein_theiler"],
            trajectory_len=a["rosenstein_trajectory_len"],
        )
        fig = plot_divergence(dataclasses.replace(curve, observable=args.observable))
        fig.savefig(stage / "divergence.png", dpi=120)
        plt.close(fig)
        steps = ds["step"].values[: series.shape[0]] if "step" in ds.coords else np.arange(series.shape[0])
        fig = plot_recurrence(series, threshold=a["rqa_threshold"], theiler=a["rqa_theiler"], steps=steps)
        fig.savefig(stage / "recurrence.png", dpi=120)
        plt.close(fig)
        written += ["divergence.png", "recurrence.png"]
    return written
