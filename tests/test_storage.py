import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

import netdyn.io.storage as storage
from netdyn.maps.classic import PotentialGD, QuadraticGD
from netdyn.io.storage import netcdf_attrs, open_trajectory, save_trajectory
from netdyn.orbits.trajectory import run

from _killed_run import FLUSH_EVERY, SEED, SlowQuadraticGD
from test_trajectory import FakeNet

REPO = Path(__file__).resolve().parents[1]


def _without_created(ds):
    out = ds.load().copy()
    out.attrs.pop("created")
    return out


class TestNetcdfAttrs:
    def test_conversions(self):
        out = netcdf_attrs({"b": True, "n": None, "ints": [1, 2], "floats": (0.5, 1.0), "d": {"x": [1]},
                            "strs": ["a", "b"], "empty": [], "f": np.float32(0.25), "s": "x", "o": torch.float32})
        assert out["b"] == 1 and out["n"] == "None" and out["d"] == '{"x": [1]}'
        assert out["ints"].dtype == np.int64 and out["floats"].dtype == np.float64
        assert out["strs"] == '["a", "b"]' and out["empty"] == "[]" and out["f"] == 0.25 and out["o"] == "torch.float32"


class TestSaveTrajectory:
    @pytest.mark.parametrize("record", ["all", ["W1"], 3])
    def test_round_trip_is_identical(self, tmp_path, record):
        ds = run(FakeNet(), FakeNet().initial_state(2), 11, eval_every=5, record=record)
        save_trajectory(ds, tmp_path / "r.nc")
        back = open_trajectory(tmp_path / "r.nc")
        xr.testing.assert_identical(back, ds)
        assert set(back.attrs) == set(ds.attrs)  # assert_identical compared the values
        np.testing.assert_array_equal(back.attrs["layer_sizes"], [3, 2])
        back.close()

    def test_diverged_round_trips_as_bool(self, tmp_path):
        with pytest.warns(RuntimeWarning):
            ds = run(QuadraticGD([1.0], lr=1000.0), None, 300)
        save_trajectory(ds, tmp_path / "d.nc")
        with open_trajectory(tmp_path / "d.nc") as back:
            assert back["diverged"].dtype == bool and bool(back["diverged"])

    def test_rejects_non_trajectories(self, tmp_path):
        with pytest.raises(ValueError, match=r"^save_trajectory: .*missing variable\(s\) \['state'"):
            save_trajectory(xr.Dataset({"x": ("t", [1.0])}), tmp_path / "x.nc")


class TestOpenTrajectory:
    def test_opens_lazily(self, tmp_path):
        run(FakeNet(), FakeNet().initial_state(0), 20, path=tmp_path / "r.nc", flush_every=7)
        with open_trajectory(tmp_path / "r.nc") as ds:
            assert not ds["state"].variable._in_memory
            assert ds.sizes["step"] == 20 and ds.attrs["complete"] == 1

    def test_missing_path(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing.nc"):
            open_trajectory(tmp_path / "missing.nc")

    def test_foreign_netcdf_names_the_missing_variables(self, tmp_path):
        xr.Dataset({"loss": ("step", [1.0, 2.0])}).to_netcdf(tmp_path / "f.nc", engine="netcdf4")
        with pytest.raises(ValueError, match=r"f\.nc.*missing variable\(s\) \['state', 'grad_norm', 'diverged'\]"):
            open_trajectory(tmp_path / "f.nc")

    def test_truncated_file(self, tmp_path):
        run(FakeNet(), FakeNet().initial_state(0), 200, path=tmp_path / "r.nc")
        data = (tmp_path / "r.nc").read_bytes()
        (tmp_path / "t.nc").write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=r"^open_trajectory: .*t\.nc"):
            open_trajectory(tmp_path / "t.nc")

    def test_random_bytes(self, tmp_path):
        (tmp_path / "junk.nc").write_bytes(np.random.default_rng(0).bytes(4096))
        with pytest.raises(ValueError, match=r"junk\.nc.*not a readable netCDF file"):
            open_trajectory(tmp_path / "junk.nc")

    def test_incomplete_file_warns_with_its_length(self, tmp_path):
        ds = run(FakeNet(), FakeNet().initial_state(0), 4)
        ds.attrs["complete"] = 0
        save_trajectory(ds, tmp_path / "i.nc")
        with pytest.warns(RuntimeWarning, match=r"incomplete .* holds 4 steps, the last is step 3"):
            open_trajectory(tmp_path / "i.nc").close()


class TestStreaming:
    def test_streaming_equals_in_memory(self, tmp_path):
        kwargs = dict(record_every=2, eval_every=4, record=["W1", "b1"])
        x0 = FakeNet().initial_state(1)
        mem = run(FakeNet(), x0, 23, **kwargs)
        with run(FakeNet(), x0, 23, path=tmp_path / "s.nc", flush_every=3, **kwargs) as disk:
            xr.testing.assert_identical(_without_created(disk), _without_created(mem))

    def test_diverging_streamed_run_is_completed(self, tmp_path):
        # divergence=None: only non-finite values stop the run, so it spans several flushed blocks
        with pytest.warns(RuntimeWarning, match="non-finite"):
            disk = run(QuadraticGD([1.0], lr=1000.0), None, 300, path=tmp_path / "d.nc", flush_every=7, divergence=None)
        with pytest.warns(RuntimeWarning, match="non-finite"):
            mem = run(QuadraticGD([1.0], lr=1000.0), None, 300, divergence=None)
        xr.testing.assert_identical(_without_created(disk), _without_created(mem))
        assert disk.attrs["complete"] == 1 and bool(disk["diverged"])
        disk.close()

    def test_memory_does_not_grow_with_steps(self, tmp_path, monkeypatch):
        # 1500 steps x 2000 float64 params = 24 MB if held; the streaming buffer holds
        # flush_every = 10 rows (160 kB).  tracemalloc sees numpy allocations; a short
        # warm-up run keeps one-off imports out of the measured peak.
        m = PotentialGD(lambda x: (x**2).sum() / 2, dim=2000, lr=0.001)
        run(m, None, 3, path=tmp_path / "warm.nc", flush_every=2).close()
        blocks = []
        append = storage.TrajectoryWriter.append
        monkeypatch.setattr(storage.TrajectoryWriter, "append",
                            lambda self, rows, *a: (blocks.append(len(rows["step"])), append(self, rows, *a)))
        tracemalloc.start()
        try:
            ds = run(m, m.initial_state(0), 1500, path=tmp_path / "m.nc", flush_every=10)
            _, peak_stream = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            run(m, m.initial_state(0), 1500)
            _, peak_memory = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ds.sizes["step"] == 1500 and max(blocks) == 10 and len(blocks) == 150
        assert peak_stream < 2e6 < 24e6 <= peak_memory
        ds.close()

    def test_rows_survive_a_reader_holding_the_file(self, tmp_path):
        path = tmp_path / "l.nc"

        class Peeking(FakeNet):
            def step_with_metrics(self, x, t):
                if t == 3:
                    self.reader = netCDF4.Dataset(path, "r")
                if t == 12:
                    self.reader.close()
                return super().step_with_metrics(x, t)

        with pytest.warns(RuntimeWarning, match="cannot reopen"):
            disk = run(Peeking(), Peeking().initial_state(0), 20, path=path, flush_every=2)
        xr.testing.assert_identical(_without_created(disk), _without_created(run(FakeNet(), FakeNet().initial_state(0), 20)))
        disk.close()

    def test_killed_run_keeps_every_flushed_step(self, tmp_path):
        path = tmp_path / "killed.nc"
        proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_killed_run.py"), str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        # "step 20" is printed when step 20 starts: rows 0..19 are then on disk and the
        # next write comes after 5 more 0.05 s steps.
        deadline = time.monotonic() + 60
        try:
            while True:
                line = proc.stdout.readline()
                assert line, f"_killed_run.py ended early: {proc.stderr.read()}"
                if line.strip() == "step 20" or time.monotonic() > deadline:
                    break
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        with pytest.warns(RuntimeWarning, match="incomplete"):
            disk = open_trajectory(path)
        n = disk.sizes["step"]
        assert n >= 20 and n % FLUSH_EVERY == 0 and disk.attrs["complete"] == 0
        ref = run(SlowQuadraticGD(), SlowQuadraticGD().initial_state(SEED), n)
        assert disk["state"].values.tobytes() == ref["state"].values.tobytes()
        assert disk["loss"].values.tobytes() == ref["loss"].values.tobytes()
        np.testing.assert_array_equal(disk["final_state"], ref["final_state"])
        assert int(disk["final_step"]) == n and not bool(disk["diverged"])
        disk.close()
