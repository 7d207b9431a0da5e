"""Tests of netdyn.sweep.grid, netdyn.sweep.store, netdyn.plot.sweep and ``netdyn sweep``.

Sweeps run on iris (4-32-3 MLP, ~1 ms a step) with short orbits; the Dask path runs
on a real two-process LocalCluster.  Exponent *values* are tested in
test_lyapunov.py; here the sweep must reproduce them, wherever a point runs.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import xarray as xr

from netdyn.commands import sweep as sweep_command
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.problems import make_task, training_map
from netdyn.sweep.grid import edge_of_chaos, fastest_lr, point_specs, run_sweep, train_point
from netdyn.sweep.store import load_point, point_key, save_point, stored_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = dict(lr=[0.5, 5.0], seed=[0, 1], steps=40, progress=False)


def comparable(ds: xr.Dataset) -> xr.Dataset:
    """Everything that must not depend on where points ran: drop timings and run bookkeeping."""
    return ds.drop_vars("wall_time").assign_attrs(backend="", points_loaded=0, points_computed=0)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    ) as cluster, distributed.Client(cluster) as c:
        yield c


class TestPointSpecs:
    def test_grid_order_and_equal_tasks_hash_equal(self):
        axes, points = point_specs(task="iris", lr=[0.1, 1.0], seed=3, activation=["tanh", "relu"], steps=40)
        assert axes == {"lr": [0.1, 1.0], "seed": [3], "activation": ["tanh", "relu"], "optimizer": ["sgd"]}
        assert [i for i, _ in points] == [(0, 0, 0, 0), (0, 0, 1, 0), (1, 0, 0, 0), (1, 0, 1, 0)]
        _, again = point_specs(task={"dataset": "iris", "hidden": 32, "init_scale": 1}, lr=[0.1, 1.0], seed=3,
                               activation=["tanh", "relu"], steps=40)
        assert [point_key(s) for _, s in points] == [point_key(s) for _, s in again]
        assert len({point_key(s) for _, s in points}) == 4

    def test_signatures_are_keyword_only_and_the_settings_are_one_dataclass(self):
        import dataclasses
        import inspect

        from netdyn.sweep.grid import PointSettings

        for function in (run_sweep, point_specs):
            kinds = {p.kind for p in inspect.signature(function).parameters.values()}
            assert kinds == {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD}, function.__name__
        _, [(_, spec)] = point_specs(task="iris", steps=40, lyapunov_transient=5)
        settings = PointSettings(task="iris", steps=40, lyapunov_transient=5).spec()
        assert {k: spec[k] for k in settings} == settings
        assert "steps" in {f.name for f in dataclasses.fields(PointSettings)}
        with pytest.raises(TypeError):
            point_specs(task="iris", stepz=40)

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(lr=[0.1, 0.1]), "distinct lr"),
            (dict(lr=[-1.0]), "learning rates > 0"),
            (dict(steps=10), "steps to be an int >= 32"),
            (dict(task={"dataset": "iris", "activation": "relu"}), "task options"),
            (dict(task="mnist"), "dataset"),
            (dict(activation="swish"), "activations"),
            (dict(target_accuracy=1.5), "target_accuracy"),
        ],
    )
    def test_bad_input(self, kwargs, message):
        with pytest.raises(ValueError, match=f"^run_sweep: .*{message}"):
            point_specs(**{"task": "iris", **kwargs})


class TestTrainPoint:
    def test_reproduces_the_exponent_and_the_time_to_target(self):
        _, [(_, spec)] = point_specs(task="iris", lr=0.5, seed=1, steps=60, target_accuracy=0.9)
        result = train_point(spec)
        assert result["status"] == "ok" and result["error"] == ""
        tmap = training_map(make_task("iris", seed=1), lr=0.5, seed=1)
        direct = max_lyapunov(tmap, tmap.initial_state(), 60, method="twin")
        assert result["lyapunov"] == float(direct["lyapunov"])  # same orbit, same bits
        accuracy = result["test_accuracy"]
        first = int(np.flatnonzero(accuracy >= 0.9)[0])
        assert result["time_to_target"] == first and (accuracy[:first] < 0.9).all()
        assert result["final_test_accuracy"] == accuracy[-1]

    def test_target_never_reached_is_inf(self):
        _, [(_, spec)] = point_specs(task="iris", lr=1e-4, steps=40, target_accuracy=1.0)
        assert train_point(spec)["time_to_target"] == math.inf

    def test_unknown_optimizer_is_an_error_point(self):
        _, [(_, spec)] = point_specs(task="iris", lr=0.5, optimizer="bogus", steps=40)
        result = train_point(spec)
        assert result["status"] == "error" and "bogus" in result["error"]
        assert math.isnan(result["lyapunov"]) and np.isnan(result["loss"]).all()

    def test_overflowing_learning_rate_is_a_diverged_point(self):
        _, [(_, spec)] = point_specs(task="iris", lr=1e200, activation="relu", steps=40)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_point(spec)
        assert not caught  # the divergence warnings are recorded in the result, not let out
        assert result["status"] == "diverged" and result["diverged"] and result["orbit_class"] == "divergent"
        assert result["lyapunov"] == math.inf and result["final_loss"] == math.inf
        assert "non-finite" in result["error"]


class TestStore:
    def test_round_trip_keeps_types_and_infinities(self, tmp_path):
        spec = {"lr": 0.5, "seed": 1, "task": {"dataset": "iris"}}
        result = {"lyapunov": math.inf, "orbit_class": "chaotic", "error": "", "diverged": True, "orbit_period": 0,
                  "loss": np.array([1.0, np.nan, 0.5])}
        save_point(tmp_path, spec, result)
        back = load_point(tmp_path, spec)
        assert back["lyapunov"] == math.inf and back["orbit_class"] == "chaotic" and back["error"] == ""
        assert back["diverged"] is True and back["orbit_period"] == 0
        np.testing.assert_array_equal(back["loss"], result["loss"])
        assert stored_keys(tmp_path) == {point_key(spec)} and os.listdir(tmp_path) == [point_key(spec) + ".nc"]
        assert load_point(tmp_path, {**spec, "seed": 2}) is None

    def test_claims_exclude_live_owners_and_take_over_stale_ones(self, tmp_path):
        import json
        import socket

        import netdyn.sweep.store as sweep_store
        from netdyn.sweep.store import Claims

        def claim_of(key, pid, host=socket.gethostname()):
            (tmp_path / f"{key}.claim").write_text(json.dumps({"pid": pid, "host": host, "time": 0}))

        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        claim_of("live", os.getppid())
        claim_of("dead", dead.pid)
        claim_of("remote", os.getpid(), host="elsewhere")
        claim_of("old", os.getppid(), host="elsewhere")
        old = time.time() - sweep_store.CLAIM_STALE_S - 1
        os.utime(tmp_path / "old.claim", (old, old))
        with Claims(tmp_path) as claims:
            assert claims.acquire("free") and not claims.acquire("free")  # held: not twice
            assert [claims.acquire(k) for k in ("live", "dead", "remote", "old")] == [False, True, False, True]
            owner = json.loads((tmp_path / "dead.claim").read_text())
            assert owner["pid"] == os.getpid() and claims.held == {"free", "dead", "old"}
            claims.release("free")
            assert not (tmp_path / "free.claim").exists()
        # leaving releases what is held, and only that
        assert sorted(p.name for p in tmp_path.iterdir()) == ["live.claim", "remote.claim"]


class TestSweep:
    def test_cluster_and_loop_give_identical_datasets_with_poisoned_points(self, client, tmp_path):
        grid = dict(GRID, lr=[0.5, 5.0, 1e200], optimizer=["sgd", "bogus"])
        loop = run_sweep(task="iris", n_workers=0, **grid)
        dask = run_sweep(task="iris", client=client, store=tmp_path, **grid)
        xr.testing.assert_identical(comparable(loop), comparable(dask))
        assert dask.attrs["points_computed"] == 12 and dask.sizes == {"lr": 3, "seed": 2, "activation": 1,
                                                                      "optimizer": 2, "step": 40}
        status = dask["status"]
        assert (status.sel(optimizer="bogus") == "error").all()
        assert (status.sel(optimizer="sgd", lr=1e200) == "diverged").all()
        assert (status.sel(optimizer="sgd", lr=[0.5, 5.0]) == "ok").all()
        assert np.isfinite(dask["lyapunov"].sel(optimizer="sgd", lr=[0.5, 5.0])).all()
        # the 6 error points are not stored (a rerun retries them); the 6 others, diverged included, are
        assert len(stored_keys(tmp_path)) == 6 and dask.attrs["points_failed"] == 6

    def test_back_to_back_sweeps_on_one_client_each_compute_every_point(self, client):
        # a task key shared by consecutive calls let the scheduler hand the second sweep a released result it
        # had not yet forgotten (about 1 resubmission in 3 on a LocalCluster): the same wall_time twice
        grid = dict(GRID, lr=[0.5, 1.0], seed=[0, 1])
        runs = [run_sweep(task="iris", client=client, **grid) for _ in range(6)]
        times = np.stack([r["wall_time"].values.ravel() for r in runs])
        assert all(r.attrs["points_computed"] == 4 for r in runs)
        for later in range(1, len(runs)):
            assert not np.isin(times[later], times[:later]).any(), times
            xr.testing.assert_identical(comparable(runs[0]), comparable(runs[later]))

    def test_resume_after_sigkill_recomputes_nothing_stored(self, tmp_path):
        store = tmp_path / "points"
        kwargs = dict(lr=[0.2, 0.5, 1.0, 2.0], seed=[0, 1], steps=200, progress=False)
        code = (
            "from netdyn.sweep.grid import run_sweep\n"
            f"run_sweep(task='iris', store={str(store)!r}, n_workers=0, **{kwargs!r})\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            while len(stored_keys(store)) < 2:
                assert proc.poll() is None, "the sweep ended before it could be killed"
                assert time.monotonic() < deadline, "no point was stored in 120 s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        kept = {name: os.stat(store / name).st_mtime_ns for name in os.listdir(store) if name.endswith(".nc")}
        assert 2 <= len(kept) < 8  # killed midway
        resumed = run_sweep(task="iris", store=store, n_workers=0, **kwargs)
        assert resumed.attrs["points_loaded"] == len(kept)
        assert resumed.attrs["points_computed"] == 8 - len(kept)
        assert all(os.stat(store / name).st_mtime_ns == mtime for name, mtime in kept.items())
        assert (resumed["status"] == "ok").all() and len(stored_keys(store)) == 8
        fresh = run_sweep(task="iris", n_workers=0, **kwargs)
        xr.testing.assert_identical(comparable(resumed), comparable(fresh))

    def test_a_ctrl_c_netcdf_would_swallow_still_stops_the_sweep(self, tmp_path, monkeypatch):
        # netCDF4 can swallow a KeyboardInterrupt raised inside it (tests/test_interrupt_sections.py): a
        # Ctrl-C while the second point's file is written must still stop the sweep, after that file is whole
        real, writes = xr.Dataset.to_netcdf, []

        def swallowing_to_netcdf(ds, *args, **kwargs):
            writes.append(args)
            if len(writes) == 2:
                try:
                    signal.raise_signal(signal.SIGINT)
                except KeyboardInterrupt:
                    pass  # what netCDF4's compiled code did with it
            return real(ds, *args, **kwargs)

        monkeypatch.setattr(xr.Dataset, "to_netcdf", swallowing_to_netcdf)
        store = tmp_path / "points"
        with pytest.raises(KeyboardInterrupt):
            run_sweep(task="iris", store=store, n_workers=0, **GRID)
        monkeypatch.undo()
        assert len(writes) == 2 and len(stored_keys(store)) == 2  # stopped right after the second point
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        resumed = run_sweep(task="iris", store=store, n_workers=0, **GRID)
        assert resumed.attrs["points_loaded"] == 2 and resumed.attrs["points_computed"] == 2

    def test_a_script_without_a_main_guard_is_told_why_its_workers_did_not_start(self, tmp_path):
        # spawned Dask workers re-import the running script: at its top level the sweep starts again in each
        # worker, and Dask only said "Nanny failed to start" (tutorial 04 at full size hit it)
        call = "run_sweep(task='iris', lr=[0.5, 1.0], seed=[0], steps=40, n_workers=2, progress=False)"
        script = tmp_path / "sweep_script.py"
        script.write_text(f"from netdyn.sweep.grid import run_sweep\n{call}\n")
        env = {**os.environ, "PYTHONPATH": ROOT}
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 1
        assert "re-import the running script 'sweep_script.py'" in done.stderr.splitlines()[-1]
        assert 'if __name__ == "__main__":' in done.stderr.splitlines()[-1]
        script.write_text(f"from netdyn.sweep.grid import run_sweep\nif __name__ == '__main__':\n    "
                          f"print({call}.attrs['points_computed'])\n")  # the advice works
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr[-2000:]

    def test_result_writes_to_netcdf(self, tmp_path):
        ds = run_sweep(task="iris", n_workers=0, **GRID)
        ds.to_netcdf(tmp_path / "r.nc")
        with xr.open_dataset(tmp_path / "r.nc") as back:
            xr.testing.assert_equal(back.load(), ds)  # values, strings, infinities; attrs below
            assert back.attrs["dataset"] == "iris" and back.attrs["points_total"] == 4


def synthetic(edges: list[float], lrs: np.ndarray, slope: float = 0.3) -> xr.Dataset:
    """lambda(lr, seed) = slope * ln(lr / edge_seed): crosses 0 exactly at edge_seed, linear in ln lr."""
    lam = slope * np.log(lrs[:, None] / np.array(edges)[None, :])
    return xr.Dataset({"lyapunov": (("lr", "seed"), lam)}, coords={"lr": lrs, "seed": range(len(edges))})


class TestEdgeOfChaos:
    def test_log_linear_exponent_gives_the_exact_crossing(self):
        lrs = np.geomspace(0.01, 10, 13)
        edges = [0.3, 0.5, 1.7]
        out = edge_of_chaos(synthetic(edges, lrs), threshold=0.0)
        # interpolation is exact for a linear function of ln lr: only rounding remains
        np.testing.assert_allclose(out["edge_lr"].values, edges, rtol=1e-12)
        assert out["edge_lr_mean"] == pytest.approx(np.mean(edges), rel=1e-12)
        assert out["edge_lr_std"] == pytest.approx(np.std(edges), rel=1e-10)
        assert int(out["n_crossing"]) == 3

    def test_threshold_shifts_the_crossing(self):
        lrs = np.geomspace(0.01, 10, 13)
        out = edge_of_chaos(synthetic([0.5], lrs, slope=0.3), threshold=0.03)
        # 0.3 ln(lr / 0.5) = 0.03  <=>  lr = 0.5 e^0.1
        assert float(out["edge_lr"][0]) == pytest.approx(0.5 * math.exp(0.1), rel=1e-12)

    def test_last_crossing_wins_and_diverged_points_are_skipped(self):
        # a diverged training point is dropped whatever its exponent (here +inf)
        lrs = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
        lam = np.array([-1e-3, 2e-3, -1e-2, -5e-3, math.inf, 0.2])[:, None]  # noise crossing, then the edge
        diverged = np.array([False, False, False, False, True, False])[:, None]
        ds = xr.Dataset({"lyapunov": (("lr", "seed"), lam), "diverged": (("lr", "seed"), diverged)},
                        coords={"lr": lrs, "seed": [0]})
        expected = math.exp(math.log(0.8) + 5e-3 / 0.205 * (math.log(3.2) - math.log(0.8)))
        assert float(edge_of_chaos(ds, threshold=0.0)["edge_lr"][0]) == pytest.approx(expected, rel=1e-12)

    def test_unresolved_exponent_is_above_every_threshold(self):
        # +inf on a sound training orbit (exponent_unresolved): kept, above the threshold; the crossing
        # into it is placed at the lower learning rate (the interpolation's limit lam -> inf)
        lrs = np.array([0.1, 0.2, 0.4, 0.8])
        lam = np.array([-0.2, -0.1, math.inf, math.inf])[:, None]
        ds = xr.Dataset({"lyapunov": (("lr", "seed"), lam), "diverged": (("lr", "seed"), np.zeros((4, 1), bool))},
                        coords={"lr": lrs, "seed": [0]})
        for threshold in (0.0, 0.01, 10.0):
            assert float(edge_of_chaos(ds, threshold=threshold)["edge_lr"][0]) == pytest.approx(0.2, rel=1e-12)
        dropped = edge_of_chaos(ds.assign(diverged=ds["diverged"] | (ds["lyapunov"] == math.inf)))
        assert math.isnan(float(dropped["edge_lr"][0]))

    def test_no_crossing_is_nan(self):
        ds = synthetic([100.0], np.geomspace(0.01, 10, 5))  # all negative
        out = edge_of_chaos(ds, threshold=0.0)
        assert math.isnan(float(out["edge_lr"][0])) and int(out["n_crossing"]) == 0

    def test_bad_input(self):
        with pytest.raises(ValueError, match="^edge_of_chaos: expected lyapunov with dims"):
            edge_of_chaos(xr.Dataset({"lyapunov": ("lr", [1.0])}, coords={"lr": [1.0]}))


class TestFastestLr:
    def test_minimum_of_the_seed_median(self):
        lrs = [0.1, 1.0, 10.0]
        times = np.array([[50, 60, 70], [30, 20, math.inf], [math.inf, math.inf, 5]], dtype=float)
        ds = xr.Dataset({"time_to_target": (("lr", "seed"), times)}, coords={"lr": lrs, "seed": [0, 1, 2]})
        out = fastest_lr(ds)
        np.testing.assert_array_equal(out["median_time"].values, [60, 30, math.inf])
        assert float(out["fastest_lr"]) == 1.0 and float(out["fastest_time"]) == 30

    def test_diverged_points_never_reach_the_target(self):
        # lr = 10 reached the target fastest on two seeds before blowing up: not a trained network
        lrs = [0.1, 1.0, 10.0]
        times = np.array([[50, 60, 70], [30, 20, math.inf], [5, 5, 5]], dtype=float)
        diverged = np.array([[False] * 3, [False] * 3, [True, True, False]])
        ds = xr.Dataset({"time_to_target": (("lr", "seed"), times), "diverged": (("lr", "seed"), diverged)},
                        coords={"lr": lrs, "seed": [0, 1, 2]})
        out = fastest_lr(ds)
        np.testing.assert_array_equal(out["median_time"].values, [60, 30, math.inf])
        assert float(out["fastest_lr"]) == 1.0

    def test_ties_go_to_the_smallest_lr_and_never_is_nan(self):
        ds = xr.Dataset({"time_to_target": (("lr", "seed"), [[20.0], [20.0]])}, coords={"lr": [3.0, 1.0], "seed": [0]})
        assert float(fastest_lr(ds)["fastest_lr"]) == 1.0
        never = ds.copy(data={"time_to_target": np.full((2, 1), math.inf)})
        assert math.isnan(float(fastest_lr(never)["fastest_lr"]))


class TestPlotSweep:
    def test_marks_edge_and_fastest(self):
        import matplotlib

        matplotlib.use("Agg")
        from netdyn.plot.sweep import plot_sweep

        lrs = np.geomspace(0.01, 10, 7)
        ds = synthetic([0.3, 0.6], lrs).expand_dims(activation=["tanh"], optimizer=["sgd"])
        ds["lyapunov_stderr"] = ds["lyapunov"] * 0 + 0.01
        ds["time_to_target"] = xr.DataArray([90.0, 60, 40, 20, 30, math.inf, math.inf], coords={"lr": lrs}) + 0 * ds["lyapunov"]
        ds["orbit_class"] = xr.where(ds["lyapunov"] > 0.01, "chaotic", "fixed_point")
        fig = plot_sweep(ds, threshold=0.0)
        top, strip, bottom = fig.axes[:3]
        assert top.get_xscale() == "log" and top.get_shared_x_axes().joined(top, bottom)
        edge = float(edge_of_chaos(ds, threshold=0.0)["edge_lr_mean"].squeeze())
        xs = [line.get_xdata()[0] for line in top.get_lines() if line.get_gid() == "edge"]
        assert xs == [pytest.approx(edge)]
        fast = [line.get_xdata()[0] for line in bottom.get_lines() if line.get_gid() == "fastest"]
        assert fast == [pytest.approx(lrs[3])]

    def test_explains_itself(self):
        """A title stating the finding, a legend entry for every line, band and marker, named class rows."""
        import matplotlib

        matplotlib.use("Agg")
        from netdyn.plot.sweep import plot_sweep

        lrs = np.geomspace(0.01, 10, 7)
        ds = synthetic([0.3, 0.6], lrs).expand_dims(activation=["tanh", "relu"], optimizer=["sgd"])
        ds["time_to_target"] = xr.DataArray([90.0, 60, 40, 20, 30, math.inf, math.inf], coords={"lr": lrs}) + 0 * ds["lyapunov"]
        ds["orbit_class"] = xr.where(ds["lyapunov"] > 0.01, "chaotic", "fixed_point")
        fig = plot_sweep(ds, threshold=0.01)
        top, strip, bottom = fig.axes[:3]
        assert "fastest" in top.get_title() and "edge of chaos" in top.get_title()
        for ax in (top, bottom):
            in_errorbars = {id(line) for c in ax.containers for line in [c.lines[0], *c.lines[1]]}
            unlabelled = [line for line in ax.get_lines() if line.get_label().startswith("_")
                          and id(line) not in in_errorbars]
            assert not unlabelled
            assert all(not patch.get_label().startswith("_") for patch in ax.patches)  # the edge bands
            assert all(not c.get_label().startswith("_") for c in ax.containers)
        assert [t.get_text() for t in strip.get_yticklabels()] == ["tanh, sgd", "relu, sgd"]
        assert strip.get_legend() is not None

    def test_says_when_no_run_reached_the_target(self):
        import matplotlib

        matplotlib.use("Agg")
        from netdyn.plot.sweep import plot_sweep

        lrs = np.geomspace(0.01, 10, 4)
        ds = synthetic([0.3, 0.6], lrs)
        ds["time_to_target"] = ds["lyapunov"] * 0 + math.inf
        bottom = plot_sweep(ds).axes[2]
        assert any("no run reached" in t.get_text() for t in bottom.texts)


class TestSweepCommand:
    def test_lr_grammar(self):
        parse = sweep_command.parse_lr
        np.testing.assert_allclose(parse("0.01:10:4log"), [0.01, 0.1, 1, 10])
        np.testing.assert_allclose(parse("1:2:3"), [1, 1.5, 2])
        assert parse("0.1,0.5") == [0.1, 0.5]
        with pytest.raises(ValueError, match="^parse_lr: expected"):
            parse("1:2")

    def test_writes_result_and_figure(self, tmp_path, capsys):
        parser = argparse.ArgumentParser()
        sweep_command.register(parser.add_subparsers())
        args = parser.parse_args(
            ["sweep", "--task", "iris", "--lr", "0.5:5:2log", "--seeds", "2", "--steps", "40", "--workers", "0",
             "--no-progress", "-o", str(tmp_path)]
        )
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert "edge of chaos" in out and "fastest" in out
        with xr.open_dataset(tmp_path / "result.nc") as ds:
            assert ds.sizes["lr"] == 2 and ds.sizes["seed"] == 2 and (ds["status"] == "ok").all()
        assert (tmp_path / "sweep.png").stat().st_size > 0
        assert len(stored_keys(tmp_path / "points")) == 4

    def test_table_shows_the_window_of_each_verdict(self):
        # A run that was chaotic early and settled: its whole-run exponent is above the edge's
        # level, its second half's is not, and the class (of the second half) is a fixed point.
        # The row must show both exponents, and the legend which window each column is.
        dims = ("lr", "seed", "activation", "optimizer")
        coords = {"lr": [2.8], "seed": [0, 1], "activation": ["tanh"], "optimizer": ["sgd"]}
        ds = xr.Dataset(
            {
                "lyapunov": (dims, [[[[0.0516]], [[0.0522]]]]),
                "lyapunov_tail": (dims, [[[[0.0015]], [[0.0007]]]]),
                "orbit_class": (dims, [[[["fixed_point"]], [["fixed_point"]]]]),
                "time_to_target": (dims, [[[[44.0]], [[44.0]]]]),
                "final_test_accuracy": (dims, [[[[0.95]], [[0.948]]]]),
                "status": (dims, [[[["ok"]], [["ok"]]]]),
                "orbit_confidence": (dims, [[[["high"]], [["high"]]]]),
            },
            coords=coords,
        )
        header, row, *legend = sweep_command.format_table(ds).splitlines()
        assert "lambda_max (run)" in header and "(2nd half)" in header and "class (2nd half)" in header
        assert "+0.0519 +- 0.0003" in row and "+0.0011" in row and "fixed_point " in row
        assert legend[0].startswith("lambda_max (run): the exponent over the whole run")
        assert "chaos that has ended counts as transient" in legend[1]
        # a seed that gave the class with low confidence marks it
        ds["orbit_confidence"][0, 1, 0, 0] = "low"
        row = sweep_command.format_table(ds).splitlines()[1]
        assert "fixed_point? " in row and legend[2].startswith("?: low confidence for some seed")


def test_local_cluster_workers_keep_glibcs_adaptive_malloc_trim():
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 made training points 46 % slower in workers."""
    import os

    from distributed import Client

    from netdyn.sweep.grid import local_cluster

    with local_cluster(n_workers=1) as cluster, Client(cluster) as client:
        env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
        scratch = client.run(lambda dask_worker: dask_worker.local_directory)
        port = client.scheduler_info()["services"].get("dashboard")
        dashboard = cluster.scheduler_spec["options"]["dashboard"]
    assert list(env.values()) == [(os.environ.get("MALLOC_TRIM_THRESHOLD_"), "1")]
    # scratch space in the temporary folder, not the current directory; no dashboard unless asked
    import tempfile

    assert all(path.startswith(tempfile.gettempdir()) for path in scratch.values()), scratch
    # (the scheduler's health/metrics HTTP server stays, on a free port rather than 8787)
    assert dashboard is False and port != 8787
