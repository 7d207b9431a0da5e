"""``netdyn sweep``: a learning-rate sweep, locally or on a Dask cluster, with its
edge of chaos, fastest learning rate, table and figure."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np
import xarray as xr

from ..problems import DATASETS
from ..sweep import edge_of_chaos, fastest_lr, sweep


def parse_lr(text: str) -> list[float]:
    """Learning rates from ``"a:b:Nlog"`` (N log-spaced from a to b), ``"a:b:N"``
    (N evenly spaced) or ``"x,y,..."``."""
    try:
        if ":" not in text:
            return [float(v) for v in text.split(",") if v]
        start, stop, count = text.split(":")
        log = count.endswith("log")
        n = int(count[:-3] if log else count)
        values = np.geomspace(float(start), float(stop), n) if log else np.linspace(float(start), float(stop), n)
        return [float(v) for v in values]
    except ValueError as err:
        raise ValueError(f"parse_lr: expected 'a:b:Nlog', 'a:b:N' or a comma list, got {text!r}") from err


def parse_seeds(text: str) -> list[int]:
    """``"4"`` -> seeds 0..3; ``"0,5,7"`` -> those seeds."""
    return [int(v) for v in text.split(",")] if "," in text else list(range(int(text)))


def add_sweep_arguments(parser: argparse.ArgumentParser, threshold: float = 0.01) -> None:
    """Where the sweep runs and what it measures (shared with ``netdyn demo``)."""
    parser.add_argument("--target", type=float, default=0.9, help="test accuracy of 'time to target' (default: 0.9)")
    parser.add_argument("--threshold", type=float, default=threshold,
                        help=f"exponent level (1/step) whose crossing is the edge of chaos (default: {threshold:g})")
    parser.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:port)")
    parser.add_argument("--workers", type=int, default=None,
                        help="LocalCluster worker processes (default: one per core; 0: a plain loop)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="learning-rate sweep: edge of chaos and fastest training",
        description="Train an MLP for every learning rate x seed x activation x optimizer; measure the maximal "
        "Lyapunov exponent, orbital class and time to target accuracy; write result.nc, sweep.png and the point "
        "store (an interrupted sweep resumes).",
    )
    parser.add_argument("--task", choices=DATASETS, default="digits")
    parser.add_argument("--hidden", default="32", help="hidden widths, comma-separated (default: 32)")
    parser.add_argument("--init", default="torch", help="torch | normal | lecun (default: torch)")
    parser.add_argument("--init-scale", type=float, default=1.0)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--n-train", type=int, default=None, help="keep only the first N training samples")
    parser.add_argument("--lr", type=parse_lr, default=parse_lr("0.01:10:24log"),
                        help="learning rates: a:b:Nlog, a:b:N or a comma list (default: 0.01:10:24log)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0], help="N (seeds 0..N-1) or a comma list")
    parser.add_argument("--activation", default="tanh", help="comma-separated (default: tanh)")
    parser.add_argument("--optimizer", default="sgd", help="comma-separated: sgd, adam, adamw, rmsprop")
    parser.add_argument("--optimizer-kwargs", default="{}", help='JSON, e.g. \'{"momentum": 0.9}\'')
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: full batch)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--lyapunov-method", choices=("twin", "tangent"), default="twin")
    parser.add_argument("--lyapunov-transient", type=int, default=0)
    add_sweep_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    task = {
        "dataset": args.task,
        "hidden": [int(h) for h in str(args.hidden).split(",") if h],
        "init": args.init,
        "init_scale": args.init_scale,
        "dtype": args.dtype,
        "n_train": args.n_train,
    }
    result = run_and_report(
        args, args.output, task=task, lr=args.lr, seed=args.seeds, activation=args.activation.split(","),
        optimizer=args.optimizer.split(","), optimizer_kwargs=json.loads(args.optimizer_kwargs),
        batch_size=args.batch_size, steps=args.steps, eval_every=args.eval_every,
        lyapunov_method=args.lyapunov_method, lyapunov_transient=args.lyapunov_transient,
    )
    return 0 if result is not None else 1


def run_and_report(args: argparse.Namespace, output: str, **options: Any) -> xr.Dataset:
    """Run the sweep into ``output`` (store ``points/``, ``result.nc``, ``sweep.png``)
    and print the table, the edge of chaos and the fastest learning rate.

    A grid other than the one of ``output/result.nc`` writes ``result-<grid>.nc`` and
    ``sweep-<grid>.png`` instead (:func:`netdyn.sweep_store.result_paths`); both files
    are replaced atomically, so concurrent identical sweeps never meet in one file."""
    from ..plot.sweep import plot_sweep
    from ..sweep_store import result_paths, write_atomic

    os.makedirs(output, exist_ok=True)
    result = sweep(
        **options, target_accuracy=args.target, store=os.path.join(output, "points"), scheduler=args.scheduler,
        n_workers=args.workers, progress=not args.no_progress,
    )
    nc_path, png_path = result_paths(output, result.attrs["grid_key"])
    write_atomic(nc_path, lambda tmp: result.to_netcdf(tmp, engine="netcdf4"))
    print(format_table(result))
    print(format_findings(result, args.threshold))
    fig = plot_sweep(result, threshold=args.threshold)
    write_atomic(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    if os.path.basename(nc_path) != "result.nc":
        print(f"{os.path.join(output, 'result.nc')} holds another grid: this one goes to {os.path.basename(nc_path)}")
    print(f"wrote {nc_path} and {os.path.basename(png_path)} ({result.attrs['points_computed']} points "
          f"computed, {result.attrs['points_loaded']} loaded, {result.attrs['points_failed']} failed; "
          f"{result.attrs['backend']})")
    return result


def format_table(result: xr.Dataset) -> str:
    """One row per (activation, optimizer, lr): exponent mean +- std over seeds, most
    common class, median time to target, mean final accuracy, failures."""
    lines = [f"{'act':<6} {'opt':<7} {'lr':>9} {'lambda_max':>19} {'class':<15} {'t_target':>8} "
             f"{'acc':>6} {'fail':>4}"]
    for act in result["activation"].values:
        for opt in result["optimizer"].values:
            for lr in result["lr"].values:
                one = result.sel(lr=lr, activation=act, optimizer=opt)
                lam = one["lyapunov"].values
                finite = lam[np.isfinite(lam)]
                lam_text = f"{finite.mean():+.4f} +- {finite.std():.4f}" if finite.size else "      --"
                if finite.size < lam.size:
                    lam_text += f" ({lam.size - finite.size} inf)" if np.isinf(lam).any() else ""
                classes, counts = np.unique(one["orbit_class"].values, return_counts=True)
                label = str(classes[np.argmax(counts)]) or "--"
                times = one["time_to_target"].values
                median = np.median(times[~np.isnan(times)]) if (~np.isnan(times)).any() else np.nan
                acc = one["final_test_accuracy"].values
                acc_text = f"{np.nanmean(acc):.3f}" if np.isfinite(acc).any() else "--"
                fails = int((one["status"] != "ok").sum())
                lines.append(f"{act:<6} {opt:<7} {lr:>9.4g} {lam_text:>19} {label:<15} {median:>8.4g} "
                             f"{acc_text:>6} {fails:>4}")
    return "\n".join(lines)


def format_findings(result: xr.Dataset, threshold: float = 0.01) -> str:
    """The edge of chaos (per seed and mean +- std) and the fastest learning rate, per curve."""
    edges, fastest = edge_of_chaos(result, threshold=threshold), fastest_lr(result)
    lines = []
    for act in result["activation"].values:
        for opt in result["optimizer"].values:
            e = edges.sel(activation=act, optimizer=opt)
            f = fastest.sel(activation=act, optimizer=opt)
            per_seed = ", ".join(f"{v:.4g}" for v in e["edge_lr"].values)
            lines.append(
                f"[{act}, {opt}] edge of chaos (lambda_max crosses {threshold:g}): lr = "
                f"{float(e['edge_lr_mean']):.4g} +- {float(e['edge_lr_std']):.2g} "
                f"({int(e['n_crossing'])} of {e.sizes['seed']} seeds cross; per seed: {per_seed})"
            )
            lines.append(
                f"[{act}, {opt}] fastest training: lr = {float(f['fastest_lr']):.4g} "
                f"(median {float(f['fastest_time']):.4g} steps to test accuracy >= {result.attrs.get('target_accuracy')})"
            )
    return "\n".join(lines)
