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
    """A three-member map of dimension DIM: x -> 0.9995 roll(x) + a small step-dependent kick (cheap, float32)."""

    dim = DIM

    def initial_state(self, seed=None):
        return torch.randn(DIM, generator=torch.Generator().manual_seed(0 if seed is None else seed))

    def step(self, x, t):
        return 0.9995 * torch.roll(x, 1) + 0.01 * torch.cos(torch.arange(DIM, dtype=x.dtype) * 1e-3 * t)


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
