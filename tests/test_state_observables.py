"""Scalar observables of a recorded state stream over the steps: equal to the in-memory values, memory ~ a block."""
import tracemalloc

import numpy as np
import pytest
import torch

import netdyn
from netdyn.datadriven import observable_series
from netdyn.state_observables import state_observable

STEPS, DIM = 3000, 1500


class DriftingMap:
    """A three-member map: x -> 0.9995 roll(x) + a small step-dependent kick (cheap, float32)."""

    def __init__(self, dim: int = DIM):
        self.dim = dim

    def initial_state(self, seed=None):
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(0 if seed is None else seed))

    def step(self, x, t):
        return 0.9995 * torch.roll(x, 1) + 0.01 * torch.cos(torch.arange(self.dim, dtype=x.dtype) * 1e-3 * t)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "run.nc"
    netdyn.run(DriftingMap(), STEPS, path=path, flush_every=500).close()
    return path


@pytest.mark.parametrize("name", ["norm", "update_norm", "param:7", "projection:random", "projection"])
def test_streamed_equals_in_memory(recording, name):
    with netdyn.open_trajectory(recording) as ds:
        streamed = observable_series(ds, name)
        in_memory = observable_series(ds["state"].values, name)
    rtol = 1e-9 if name == "projection" else 1e-12  # power iteration summed in another order
    np.testing.assert_allclose(streamed, in_memory, rtol=rtol, atol=1e-12 * np.abs(in_memory).max())


def test_peak_memory_follows_the_block_not_the_file(recording):
    full = STEPS * DIM * 8  # the state as one float64 matrix: 36 MB
    with netdyn.open_trajectory(recording) as ds:
        tracemalloc.start()
        series = state_observable(ds["state"], "projection:random", chunk=200)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert series.shape == (STEPS,)
        tracemalloc.start()
        ds.netdyn.series("update_norm")
        accessor_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    block = 200 * DIM * 8  # 2.4 MB
    assert peak < 4 * block < full / 3
    assert accessor_peak < full / 2  # default blocks of 4 MiB (349 rows here) of a 36 MB matrix


def test_bad_names_and_chunks(recording):
    with netdyn.open_trajectory(recording) as ds:
        with pytest.raises(ValueError, match="expected a parameter index in"):
            state_observable(ds["state"], f"param:{DIM}")
        with pytest.raises(ValueError, match="expected an observable in"):
            state_observable(ds["state"], "entropy")
        with pytest.raises(ValueError, match="expected an integer chunk >= 1"):
            state_observable(ds["state"], "norm", chunk=0)


class ContractingMap(DriftingMap):
    """x -> 0.995 roll(x): converges to the fixed point 0."""

    def step(self, x, t):
        return 0.995 * torch.roll(x, 1)


def test_orbital_stability_of_a_large_recording_goes_through_a_sketch_in_bounded_memory(tmp_path, monkeypatch):
    import netdyn.stability as stability

    dim = 6000  # 2000 steps: a 96 MB state as float64, against blocks of 4 MiB and a 4 MB sketch
    paths = {"drifting": tmp_path / "drifting.nc", "converging": tmp_path / "converging.nc"}
    netdyn.run(DriftingMap(dim), 2000, path=paths["drifting"], flush_every=500).close()
    netdyn.run(ContractingMap(dim), 2000, path=paths["converging"], flush_every=500).close()
    results = {}
    for name, path in paths.items():
        with netdyn.open_trajectory(path) as ds:
            monkeypatch.setattr(stability, "STATE_BUDGET", 256 * 2**20)
            full = stability.orbital_stability(ds)
            monkeypatch.setattr(stability, "STATE_BUDGET", 4 * 2**20)  # the state is now "too large"
            tracemalloc.start()
            sketched = stability.orbital_stability(ds)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert full.sketch_dim == 0 and sketched.sketch_dim == 256 and peak < 2000 * dim * 8 / 3
        # distances survive the sketch to a few sqrt(2 / 256) = 9 %
        assert sketched.return_distance == pytest.approx(full.return_distance, rel=0.3, abs=1e-12)
        results[name] = full, sketched
    full, sketched = results["converging"]  # decided by return distances: kept exactly
    assert sketched.label == full.label == "fixed_point" and sketched.confidence == "high"
    full, sketched = results["drifting"]  # decided by a nearest-neighbour exponent: said to be uncertain
    assert full.label in ("quasi_periodic", "chaotic") and sketched.confidence == "low"
    assert "sketch" in sketched.conflict
