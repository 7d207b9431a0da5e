"""Scalar observables of a recorded state stream over the steps: equal to the in-memory values, memory ~ a block."""
import tracemalloc

import numpy as np
import pytest
import torch

import netdyn
from netdyn.series.observables import observable_series
from netdyn.series.state_observables import state_observable

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
    netdyn.run(DriftingMap(), None, STEPS, path=path, flush_every=500).close()
    return path


def reference(state: np.ndarray, name: str) -> np.ndarray:
    """The observables by plain numpy on the whole matrix (module docstring's definitions; PCA by SVD)."""
    centred = state - state.mean(axis=0)
    if name == "norm":
        return np.linalg.norm(state, axis=1)
    if name == "update_norm":
        return np.linalg.norm(np.diff(state, axis=0), axis=1)
    if name == "param:7":
        return state[:, 7]
    if name == "projection:random":
        u = np.random.default_rng(0).standard_normal(state.shape[1])
        return centred @ (u / np.linalg.norm(u))
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return centred @ (axis * np.sign(axis[np.argmax(np.abs(axis))]))


@pytest.mark.parametrize("name", ["norm", "update_norm", "param:7", "projection:random"])
def test_streamed_equals_the_whole_matrix(recording, name):
    with netdyn.open_trajectory(recording) as ds:
        streamed = observable_series(ds, observable=name)
        whole = reference(ds["state"].values.astype(np.float64), name)
    np.testing.assert_allclose(streamed, whole, rtol=1e-12, atol=1e-12 * np.abs(whole).max())


class DominantMap(DriftingMap):
    """A drift along one fixed direction plus the rotating state: one principal axis dominates."""

    def step(self, x, t):
        return super().step(x, t) + 0.05 * torch.linspace(-1, 1, self.dim)


def test_principal_axis_streamed_equals_svd_and_warns_when_ill_defined(recording, tmp_path):
    path = tmp_path / "dominant.nc"
    netdyn.run(DominantMap(), None, 1000, path=path, flush_every=500).close()
    with netdyn.open_trajectory(path) as ds:
        streamed = observable_series(ds, observable="projection")
        whole = reference(ds["state"].values.astype(np.float64), "projection")
    # the power iteration stops at 1 - |w.v| < 1e-13, an axis angle ~5e-7: errors ~5e-7 x the largest value
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
    with netdyn.open_trajectory(recording) as ds:  # a rotating state: nearly equal top variances
        with pytest.warns(RuntimeWarning, match="principal axis did not converge"):
            observable_series(ds, observable="projection")


def test_peak_memory_follows_the_block_not_the_file(recording):
    full = STEPS * DIM * 8  # the state as one float64 matrix: 36 MB
    with netdyn.open_trajectory(recording) as ds:
        tracemalloc.start()
        series = state_observable(ds["state"], observable="projection:random", chunk=200)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert series.shape == (STEPS,)
        tracemalloc.start()
        ds.netdyn.observable_series("update_norm")
        accessor_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    block = 200 * DIM * 8  # 2.4 MB
    assert peak < 4 * block < full / 3
    assert accessor_peak < full / 2  # default blocks of 4 MiB (349 rows here) of a 36 MB matrix


def test_bad_names_and_chunks(recording):
    with netdyn.open_trajectory(recording) as ds:
        with pytest.raises(ValueError, match="expected a parameter index in"):
            state_observable(ds["state"], observable=f"param:{DIM}")
        with pytest.raises(ValueError, match="expected an observable in"):
            state_observable(ds["state"], observable="entropy")
        with pytest.raises(ValueError, match="expected chunk to be an int >= 1"):
            state_observable(ds["state"], observable="norm", chunk=0)


class ContractingMap(DriftingMap):
    """x -> 0.995 roll(x): converges to the fixed point 0."""

    def step(self, x, t):
        return 0.995 * torch.roll(x, 1)


def test_orbital_stability_of_a_large_recording_goes_through_a_sketch_in_bounded_memory(tmp_path, monkeypatch):
    import netdyn.orbits.stability as stability

    dim = 6000  # 2000 steps: a 96 MB state as float64, against blocks of 4 MiB and a 4 MB sketch
    paths = {"drifting": tmp_path / "drifting.nc", "converging": tmp_path / "converging.nc"}
    netdyn.run(DriftingMap(dim), None, 2000, path=paths["drifting"], flush_every=500).close()
    netdyn.run(ContractingMap(dim), None, 2000, path=paths["converging"], flush_every=500).close()
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
