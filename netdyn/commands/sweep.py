"""``netdyn sweep``: a learning-rate sweep, locally or on a Dask cluster, with its
edge of chaos, fastest learning rate, table and figure."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from netdyn.maps.optim import FUNCTIONAL_OPTIMIZERS, functional_optimizer
from netdyn.maps.problems import ACTIVATIONS
from netdyn.sweep.grid import edge_of_chaos, fastest_lr, point_specs, run_sweep
from netdyn.commands._output import add_output_arguments, default_output
from netdyn.commands.train import add_model_arguments, nonnegative_int, positive_float, positive_int


class OptionError(argparse.ArgumentTypeError, ValueError):
    """A bad option value: argparse reports it in one line; callers outside argparse see a ``ValueError``."""


def parse_lr(text: str) -> list[float]:
    """Learning rates from ``"a:b:Nlog"`` (N log-spaced from a to b), ``"a:b:N"``
    (N evenly spaced) or ``"x,y,..."``: distinct, finite and > 0, in the order given
    (a reversed range ``10:0.01:5log`` gives descending values; the sweep sorts them)."""
    try:
        if ":" not in text:
            values = [float(v) for v in text.split(",")]
        else:
            start, stop, count = text.split(":")
            log = count.endswith("log")
            n = int(count[:-3] if log else count)
            if n < 1:
                raise ValueError(text)
            grid = np.geomspace if log else np.linspace
            with np.errstate(all="ignore"):
                values = [float(v) for v in grid(float(start), float(stop), n)]
    except ValueError:
        raise OptionError(f"parse_lr: expected 'a:b:Nlog', 'a:b:N' or a comma list, got {text!r}") from None
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise OptionError(f"parse_lr: expected learning rates that are finite and > 0, got {text!r}")
    if len(set(values)) != len(values):
        raise OptionError(f"parse_lr: expected distinct learning rates, got {text!r}")
    return values


def parse_seeds(text: str) -> list[int]:
    """``"4"`` -> seeds 0..3; ``"0,5,7"`` -> those seeds (distinct, >= 0)."""
    try:
        seeds = [int(v) for v in text.split(",")] if "," in text else list(range(int(text)))
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise OptionError(f"parse_seeds: expected a count N >= 1 (seeds 0..N-1) or distinct seeds >= 0 "
                                         f"such as 0,5,7, got {text!r}")
    return seeds


def _names(known: Any, what: str):
    """An argparse ``type``: a comma list of distinct names among ``known``."""
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",")]
        bad = [n for n in names if n not in known]
        if bad or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"expected distinct {what} among {', '.join(sorted(known))}, got {text!r}")
        return names
    parse.__name__ = what
    return parse


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"momentum\": 0.9}}', got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_sweep_arguments(parser: argparse.ArgumentParser, threshold: float = 0.01) -> None:
    """Where the sweep runs and what it measures (shared with ``netdyn demo``)."""
    parser.add_argument("--target", type=positive_float, default=0.9,
                        help="test accuracy of 'time to target' (default: 0.9)")
    parser.add_argument("--threshold", type=_finite_float, default=threshold,
                        help=f"exponent level (1/step) whose crossing is the edge of chaos (default: {threshold:g})")
    parser.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:port)")
    parser.add_argument("--scheduler-timeout", type=positive_float, default=10.0,
                        help="seconds to wait for the scheduler (default: 10)")
    parser.add_argument("--workers", type=nonnegative_int, default=None,
                        help="LocalCluster worker processes (default: one per core; 0: a plain loop)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="learning-rate sweep: edge of chaos and fastest training",
        description="Train an MLP for every learning rate x seed x activation x optimizer; measure the maximal "
        "Lyapunov exponent, orbital class and time to target accuracy; write result.nc, sweep.png and the point "
        "store (an interrupted sweep resumes: rerun the same command).",
    )
    add_model_arguments(parser)
    parser.add_argument("--n-train", type=positive_int, default=None, help="keep only the first N training samples")
    parser.add_argument("--lr", type=parse_lr, default=parse_lr("0.01:10:24log"),
                        help="learning rates: a:b:Nlog, a:b:N or a comma list (default: 0.01:10:24log)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0], help="N (seeds 0..N-1) or a comma list")
    parser.add_argument("--activation", type=_names(ACTIVATIONS, "activations"), default=["tanh"],
                        help="comma-separated (default: tanh)")
    parser.add_argument("--optimizer", type=_names(FUNCTIONAL_OPTIMIZERS, "optimizers"), default=["sgd"],
                        help="comma-separated: " + ", ".join(sorted(FUNCTIONAL_OPTIMIZERS)) + " (default: sgd)")
    parser.add_argument("--optimizer-kwargs", type=_json_object, default={}, help='JSON, e.g. \'{"momentum": 0.9}\'')
    parser.add_argument("--steps", type=positive_int, default=200, help="training steps per point, >= 32 (default: 200)")
    parser.add_argument("--eval-every", type=positive_int, default=1,
                        help="steps between test evaluations, for the time to target (default: 1)")
    parser.add_argument("--lyapunov-method", choices=("twin", "tangent"), default="twin",
                        help="how each point's exponent is measured (default: twin)")
    parser.add_argument("--lyapunov-transient", type=nonnegative_int, default=0,
                        help="uncounted steps before the exponent is averaged (default: 0)")
    add_sweep_arguments(parser)
    parser.set_defaults(func=main, on_interrupt=interrupted)


def main(args: argparse.Namespace) -> int:
    task = {
        "dataset": args.task,
        "hidden": list(args.hidden),
        "init": args.init,
        "init_scale": args.init_scale,
        "dtype": args.dtype,
        "n_train": args.n_train,
    }
    result = run_and_report(
        args, args.output or default_output("sweep", args.task), task=task, lr=args.lr, seed=args.seeds,
        activation=args.activation, optimizer=args.optimizer, optimizer_kwargs=args.optimizer_kwargs,
        batch_size=args.batch_size, steps=args.steps, eval_every=args.eval_every,
        lyapunov_method=args.lyapunov_method, lyapunov_transient=args.lyapunov_transient,
    )
    return 0 if int(result.attrs["points_failed"]) < int(result.attrs["points_total"]) else 1


def validate_grid(options: dict[str, Any], target: float) -> list[float]:
    """Check a sweep's grid before any work (``ValueError`` naming the bad value); returns the sorted lrs.

    The library's own checks (:func:`netdyn.sweep.grid.point_specs`: steps, eval_every,
    transient, activations, lr > 0) plus the optimiser names and their keyword
    arguments, which would otherwise fail inside every point.
    """
    lrs = sorted(float(v) for v in options["lr"])
    for name in options.get("optimizer", ["sgd"]):
        if name not in FUNCTIONAL_OPTIMIZERS:
            raise ValueError(f"expected optimizers among {sorted(FUNCTIONAL_OPTIMIZERS)}, got {name!r}")
        functional_optimizer(name, lrs[0], **dict(options.get("optimizer_kwargs") or {}))
    point_specs(**{**options, "lr": lrs}, target_accuracy=target)
    return lrs


def probe_scheduler(address: str, timeout: float) -> None:
    """Check that ``address`` is a Dask scheduler answering within ``timeout`` seconds.

    Raises ``ValueError`` in one sentence: unreachable or refused (no answer), a
    server that does not speak Dask's protocol (an HTTP server: Dask would misread
    its reply as a message of exabytes), or a Dask server that is not a scheduler.
    The probe is one ``identity`` request on a bare comm, so a failure leaves no
    half-built ``Client`` behind.
    """
    import asyncio

    from distributed.comm import connect as comm_connect

    if "://" not in address and ":" not in address:
        raise ValueError(f"expected a scheduler address such as tcp://host:8786, got {address!r}")

    async def identity() -> Any:
        comm = await comm_connect(address, timeout=timeout)
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
            return await asyncio.wait_for(comm.read(), timeout)
        finally:
            comm.abort()

    where = f"{address!r} within {timeout:g} s"
    try:
        reply = asyncio.run(identity())
    except (OSError, asyncio.TimeoutError) as err:
        raise ValueError(f"could not reach a Dask scheduler at {where} ({' '.join(str(err).split())[:160]})") from err
    except Exception as err:  # noqa: BLE001 - garbage from a foreign server fails in many ways
        raise ValueError(f"{address!r} answered but is not a Dask scheduler (its reply is not Dask's protocol: "
                         f"{type(err).__name__})") from err
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise ValueError(f"{address!r} answered but is not a Dask scheduler (it says it is {kind or reply!r})")


def connect(address: str, timeout: float) -> Any:
    """A ``distributed.Client`` of the Dask scheduler at ``address`` (checked first by
    :func:`probe_scheduler`), or ``ValueError`` in one sentence."""
    from distributed import Client

    probe_scheduler(address, timeout)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as err:  # noqa: BLE001 - every failure to connect is said the same way
        raise ValueError(f"could not connect to the Dask scheduler at {address!r} within {timeout:g} s "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:160]})") from err


def run_and_report(args: argparse.Namespace, output: str | os.PathLike, command: str = "sweep",
                   **options: Any) -> xr.Dataset:
    """Run the sweep into ``output`` (store ``points/``, ``result.nc``, ``sweep.png``)
    and print the table, the edge of chaos and the fastest learning rate.

    Everything is checked before any work or any file: the grid, the output folder and
    the scheduler.  A grid other than the one of ``output/result.nc`` writes
    ``result-<grid>.nc`` and ``sweep-<grid>.png`` instead
    (:func:`netdyn.sweep.store.result_paths`); both files are replaced atomically, so
    concurrent identical sweeps never meet in one file and no other grid's result is
    overwritten."""
    from netdyn.plot.sweep import plot_sweep
    from netdyn.io.storage import write_atomic
    from netdyn.sweep.store import result_paths

    given = [float(v) for v in options["lr"]]
    options["lr"] = validate_grid(options, args.target)
    if options["lr"] != given:
        print(f"note: the learning rates were given in descending order; the sweep runs them ascending "
              f"({options['lr'][0]:g} to {options['lr'][-1]:g})")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"expected an output folder, got the existing file {os.fspath(output)!r}")
    client = connect(args.scheduler, args.scheduler_timeout) if args.scheduler else None
    # an interrupted Dask client logs tornado callback tracebacks nobody can act on; the interrupt is said in one line
    tornado_log = logging.getLogger("tornado.application")
    level, tornado_log.level = tornado_log.level, logging.CRITICAL
    try:
        output.mkdir(parents=True, exist_ok=True)
        args.output, args.points_total = output, int(np.prod([len(options[k]) for k in ("lr", "seed", "activation",
                                                                                         "optimizer")]))
        result = run_sweep(
            **options, target_accuracy=args.target, store=os.path.join(output, "points"), client=client,
            n_workers=args.workers, progress=not args.no_progress,
        )
    finally:
        tornado_log.setLevel(level)
        if client is not None:
            client.close()
    nc_path, png_path = result_paths(output, result.attrs["grid_key"])
    write_atomic(nc_path, lambda tmp: result.to_netcdf(tmp, engine="netcdf4"))
    print(format_table(result))
    print(format_findings(result, args.threshold))
    fig = plot_sweep(result, threshold=args.threshold)
    write_atomic(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    if os.path.basename(nc_path) != "result.nc":
        print(f"note: {os.path.join(output, 'result.nc')} holds another grid: this one goes to "
              f"{os.path.basename(nc_path)}")
    print(f"wrote {nc_path} and {os.path.basename(png_path)} ({result.attrs['points_computed']} points "
          f"computed, {result.attrs['points_loaded']} loaded, {result.attrs['points_failed']} failed; "
          f"{result.attrs['backend']})")
    failed = result["status"].values == "error"
    if failed.any():
        first = str(result["error"].values[failed][0])
        print(f"note: {int(failed.sum())} of {failed.size} points failed (not stored; a rerun retries them); "
              f"first error: {' '.join(first.split())[:300]}")
    return result


def interrupted(args: argparse.Namespace) -> str:
    """What an interrupted sweep kept: the finished points in its store, counted on disk."""
    from netdyn.sweep.store import stored_keys

    output = getattr(args, "output", None)
    total = getattr(args, "points_total", None)
    if output is None or total is None:
        return "interrupted before any point ran; nothing was written"
    done = len(stored_keys(os.path.join(output, "points")))
    return (f"interrupted; {done} of {total} points are stored in {os.path.join(output, 'points')} "
            "(rerun the same command to resume)")


def format_table(result: xr.Dataset) -> str:
    """One row per (activation, optimizer, lr): the exponent over the whole run (mean +- std over
    seeds) and over its second half (mean), the most common class of the second half (``?`` when a
    seed gave it with low confidence), median time to target, mean final accuracy, failures; legend
    lines say which window each column is."""
    lines = [f"{'act':<6} {'opt':<7} {'lr':>9} {'lambda_max (run)':>19} {'(2nd half)':>10} {'class (2nd half)':<16} "
             f"{'t_target':>8} {'acc':>6} {'fail':>4}"]
    for act in result["activation"].values:
        for opt in result["optimizer"].values:
            for lr in result["lr"].values:
                one = result.sel(lr=lr, activation=act, optimizer=opt)
                lam = one["lyapunov"].values
                finite = lam[np.isfinite(lam)]
                lam_text = f"{finite.mean():+.4f} +- {finite.std():.4f}" if finite.size else "      --"
                if finite.size < lam.size:
                    lam_text += f" ({lam.size - finite.size} inf)" if np.isinf(lam).any() else ""
                tail = one["lyapunov_tail"].values
                tail_text = f"{np.nanmean(tail):+.4f}" if np.isfinite(tail).any() else "--"
                classes, counts = np.unique(one["orbit_class"].values, return_counts=True)
                label = str(classes[np.argmax(counts)]) or "--"
                if "orbit_confidence" in one and (one["orbit_confidence"].values[one["orbit_class"].values == label]
                                                  == "low").any():
                    label += "?"
                times = one["time_to_target"].values
                median = np.median(times[~np.isnan(times)]) if (~np.isnan(times)).any() else np.nan
                acc = one["final_test_accuracy"].values
                acc_text = f"{np.nanmean(acc):.3f}" if np.isfinite(acc).any() else "--"
                fails = int((one["status"] != "ok").sum())
                lines.append(f"{act:<6} {opt:<7} {lr:>9.4g} {lam_text:>19} {tail_text:>10} {label:<16} "
                             f"{median:>8.4g} {acc_text:>6} {fails:>4}")
    lines += ["lambda_max (run): the exponent over the whole run, per step, mean +- std over seeds;",
              "(2nd half), class: the run's second half, where chaos that has ended counts as transient;",
              "?: low confidence for some seed: its tests conflict (orbit_conflict in result.nc says how) or",
              "   its deciding exponent lies within two standard errors of the chaos threshold"]
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
            edge = float(e["edge_lr_mean"])
            if math.isfinite(edge):
                lines.append(
                    f"[{act}, {opt}] edge of chaos (lambda_max crosses {threshold:g}): lr = "
                    f"{edge:.4g} +- {float(e['edge_lr_std']):.2g} "
                    f"({int(e['n_crossing'])} of {e.sizes['seed']} seeds cross; per seed: {per_seed})"
                )
            else:
                lines.append(f"[{act}, {opt}] edge of chaos (lambda_max crosses {threshold:g}): not found — no seed's "
                             f"exponent crosses {threshold:g} inside the learning rates swept")
            fast = float(f["fastest_lr"])
            target = result.attrs.get("target_accuracy")
            if math.isfinite(fast):
                lines.append(f"[{act}, {opt}] fastest training: lr = {fast:.4g} "
                             f"(median {float(f['fastest_time']):.4g} steps to test accuracy >= {target})")
            else:
                lines.append(f"[{act}, {opt}] fastest training: not found — no learning rate reached test accuracy "
                             f">= {target} within {result.sizes.get('step', '?')} steps")
    return "\n".join(lines)
