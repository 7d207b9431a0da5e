import argparse
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from _models import flat, small_mlp
import xarray as xr
from torch import nn

from netdyn.commands import distances as distances_command
from netdyn.commands import orbital_stability as stability_command
from netdyn.orbits.distances import GRAPH_MEASURES, STATE_MEASURES, graph_distances, trajectory_distances
from netdyn.orbits.graphs import n_parameters, split_layers, to_graph
from netdyn.plot.orbits import plot_distance_curves

SIZES = [4, 5, 3]
P = n_parameters(SIZES)
# The fast and graph paths use different algorithms (vectorised numpy vs networkx + scipy
# per snapshot) on O(1) numbers: they agree to a few ulps, far below 1e-12.
PATH_TOL = 1e-12




def gd_states(steps: int, lr: float = 0.5) -> np.ndarray:
    """Full-batch GD of the small MLP on seeded random data (float64), states (steps, 43)."""
    model = small_mlp(1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=gen)
    states = []
    for _ in range(steps):
        states.append(flat(model))
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    return np.array(states)


def as_dataset(states: np.ndarray, record: str = "all", sizes=SIZES) -> xr.Dataset:
    attrs = {"map": "TrainingMap", "record": record, "lr": 0.5}
    if sizes is not None:
        attrs["layer_sizes"] = list(sizes)
    return xr.Dataset(
        {
            "state": (("step", "param"), states),
            "loss": ("step", np.full(len(states), np.nan)),
            "grad_norm": ("step", np.full(len(states), np.nan)),
            "diverged": ((), False),
        },
        coords={"step": np.arange(10, 10 + len(states), dtype=np.int64), "param": np.arange(states.shape[1])},
        attrs=attrs,
    )


def assert_paths_agree(fast: xr.Dataset, slow: xr.Dataset) -> None:
    assert set(fast.data_vars) == set(slow.data_vars)
    assert np.array_equal(fast["step"].values, slow["step"].values)
    for name in fast.data_vars:
        a, b = fast[name].values, slow[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        assert np.nanmax(np.abs(a - b)) < PATH_TOL, (name, np.nanmax(np.abs(a - b)))


class TestTrajectoryDistances:
    def test_straight_line_is_exact(self):
        # x_t = x0 + t v: successive distances are |v| in each norm, distance to the end (T-1-t)|v|
        rng = np.random.default_rng(0)
        x0, v = rng.normal(size=P), rng.normal(size=P)
        states = x0 + np.arange(8)[:, None] * v
        d = trajectory_distances(states)
        assert set(d.data_vars) == set(STATE_MEASURES)
        assert np.isnan(d["euclidean"][0]) and np.isnan(d["l1"][0]) and np.isnan(d["cosine"][0])
        np.testing.assert_allclose(d["euclidean"][1:], np.linalg.norm(v), rtol=1e-13)
        np.testing.assert_allclose(d["l1"][1:], np.abs(v).sum(), rtol=1e-13)
        expected = (7 - np.arange(8)) * np.linalg.norm(v)
        np.testing.assert_allclose(d["euclidean_to_final"], expected, rtol=1e-12, atol=1e-12)

    def test_cosine_is_zero_along_a_ray_and_one_for_orthogonal_states(self):
        u = np.zeros(P)
        u[0] = 1.0
        w = np.zeros(P)
        w[1] = 2.0
        d = trajectory_distances(np.array([u, 3 * u, w]))
        np.testing.assert_allclose(d["cosine"].values[1:], [0.0, 1.0], atol=1e-15)
        np.testing.assert_allclose(d["cosine_to_final"].values, [1.0, 1.0, 0.0], atol=1e-15)

    def test_scaling_the_weights(self):
        # x_t = c^t x0: spectra scale (sigma(cW) = c sigma(W)), strengths scale, ranks are kept
        c, x0 = 1.1, flat(small_mlp(3))
        states = c ** np.arange(5)[:, None] * x0
        d = trajectory_distances(states, layer_sizes=SIZES)
        layers = split_layers(x0, layer_sizes=SIZES)
        spec = np.concatenate([np.linalg.svd(w, compute_uv=False) for w, _ in layers])
        s_in = np.concatenate([w.sum(axis=1) for w, _ in layers])
        t = np.arange(1, 5)
        np.testing.assert_allclose(d["spectral"][1:], (c**t - c ** (t - 1)) * np.linalg.norm(spec), rtol=1e-12)
        np.testing.assert_allclose(d["in_strength_w1"][1:], (c**t - c ** (t - 1)) * np.abs(s_in).mean(), rtol=1e-12)
        np.testing.assert_allclose(d["spearman"][1:], 1.0, rtol=1e-14)
        np.testing.assert_allclose(d["kendall"][1:], 1.0, rtol=1e-14)

    def test_fast_path_equals_graph_path(self):
        states = gd_states(25)
        fast = trajectory_distances(as_dataset(states))
        assert set(fast.data_vars) == set(STATE_MEASURES) | set(GRAPH_MEASURES)
        assert np.all(fast["euclidean"][1:] > 0) and np.all(fast["spectral"][1:] > 0)
        slow = graph_distances(to_graph(x, layer_sizes=SIZES) for x in states)
        assert_paths_agree(fast, slow.assign_coords(step=fast["step"].values))

    def test_graph_path_reads_steps_from_graphs(self, tmp_path):
        from netdyn.orbits.graphs import graph_trajectory

        ds = as_dataset(gd_states(6))
        slow = graph_distances(graph_trajectory(ds))
        assert_paths_agree(trajectory_distances(ds), slow)

    def test_blocks_do_not_change_the_result(self):
        ds = as_dataset(gd_states(20))
        whole = trajectory_distances(ds)
        for chunk in (1, 3, 7):
            blocked = trajectory_distances(ds, chunk=chunk)
            for name in whole.data_vars:
                np.testing.assert_allclose(blocked[name], whole[name], rtol=0, atol=1e-15)

    def test_file_backed_equals_in_memory(self, tmp_path):
        ds = as_dataset(gd_states(12))
        ds.to_netcdf(tmp_path / "run.nc")
        with xr.open_dataset(tmp_path / "run.nc") as opened:
            from_file = trajectory_distances(opened, chunk=5)
        xr.testing.assert_allclose(from_file, trajectory_distances(ds), rtol=0, atol=1e-15)

    def test_permuted_hidden_neurons(self):
        # same network relabelled: far in state space, at distance 0 in the invariant graph measures
        model = small_mlp(4)
        perm = torch.tensor([3, 0, 4, 1, 2])
        permuted = small_mlp(4)
        with torch.no_grad():
            permuted[0].weight.copy_(model[0].weight[perm])
            permuted[0].bias.copy_(model[0].bias[perm])
            permuted[2].weight.copy_(model[2].weight[:, perm])
        states = np.array([flat(model), flat(permuted)])
        for d in (trajectory_distances(states, layer_sizes=SIZES), graph_distances([to_graph(x, layer_sizes=SIZES) for x in states])):
            assert d["euclidean"][1] > 1.0 and d["l1"][1] > 1.0 and d["cosine"][1] > 0.01
            for name in ("spectral", "in_strength_w1", "out_strength_w1"):
                assert abs(float(d[name][1])) < 1e-12, name  # rounding of re-ordered sums only
            assert d["spearman"][1] < 0.99 and d["kendall"][1] < 0.99

    def test_ties_get_average_ranks_as_scipy(self):
        rng = np.random.default_rng(1)
        states = np.round(rng.normal(size=(5, P)), 1)  # many tied edge weights
        fast = trajectory_distances(states, layer_sizes=SIZES)
        slow = graph_distances([to_graph(x, layer_sizes=SIZES) for x in states])
        assert_paths_agree(fast, slow)

    def test_subset_records_get_state_measures_only(self):
        ds = as_dataset(gd_states(5)[:, :8], record="layers:0")
        assert set(trajectory_distances(ds).data_vars) == set(STATE_MEASURES)
        with pytest.raises(ValueError, match="trajectory_distances: expected a trajectory recorded with record='all'"):
            trajectory_distances(ds, layer_sizes=SIZES)

    def test_without_kendall(self):
        d = trajectory_distances(gd_states(4), layer_sizes=SIZES, kendall=False)
        assert "kendall" not in d and "spearman" in d

    def test_non_finite_states_are_recorded_with_a_warning(self):
        states = gd_states(6)
        states[4:, 3] = np.inf
        with pytest.warns(UserWarning, match="trajectory_distances: non-finite"):
            d = trajectory_distances(states, layer_sizes=SIZES)
        assert np.isfinite(d["spectral"][1:4]).all()
        assert np.isnan(d["spectral"][4]) and np.isnan(d["spearman"][5]) and np.isnan(d["kendall"][4])

    def test_refuses_a_single_state(self):
        with pytest.raises(ValueError, match=r"trajectory_distances: expected states of shape \(T, P\) with T >= 2"):
            trajectory_distances(np.zeros((1, P)))

    def test_refuses_wrong_width(self):
        with pytest.raises(ValueError, match="P=43"):
            trajectory_distances(np.zeros((3, 40)), layer_sizes=SIZES)


class TestGraphDistances:
    def test_refuses_a_single_graph(self):
        with pytest.raises(ValueError, match="graph_distances: expected at least 2 graphs, got 1"):
            graph_distances([to_graph(np.zeros(P), layer_sizes=SIZES)])

    def test_refuses_mixed_architectures(self):
        other = [3, 2]
        with pytest.raises(ValueError, match="graph_distances: expected all graphs with layer_sizes"):
            graph_distances([to_graph(np.ones(P), layer_sizes=SIZES), to_graph(np.ones(n_parameters(other)), layer_sizes=other)])


class TestPlotDistanceCurves:
    def test_one_panel_per_group(self):
        import matplotlib.pyplot as plt

        fig = plot_distance_curves(trajectory_distances(gd_states(10), layer_sizes=SIZES))
        assert len(fig.axes) == 4
        assert [len(ax.lines) for ax in fig.axes] == [3, 3, 3, 2]
        plt.close(fig)

    def test_state_measures_only(self):
        import matplotlib.pyplot as plt

        fig = plot_distance_curves(trajectory_distances(gd_states(10)))
        assert len(fig.axes) == 2
        plt.close(fig)

    def test_refuses_unrelated_dataset(self):
        with pytest.raises(ValueError, match="plot_distance_curves"):
            plot_distance_curves(xr.Dataset({"loss": ("step", np.zeros(3))}))


class TestDistanceAndStabilityCommands:
    @staticmethod
    def run(argv):
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        distances_command.register(subparsers)
        stability_command.register(subparsers)
        args = parser.parse_args(argv)
        return args.func(args)

    def test_mlp_run(self, tmp_path, capsys):
        ds = as_dataset(gd_states(40))
        ds.to_netcdf(tmp_path / "run.nc")
        assert self.run(["distances", str(tmp_path / "run.nc"), "-o", str(tmp_path / "out")]) == 0
        out = capsys.readouterr().out
        assert "run.nc:" in out and "spectral" in out and "kendall" in out
        assert self.run(["orbital-stability", str(tmp_path / "run.nc"), "-o", str(tmp_path / "out2")]) == 0
        assert "recurrence_rate" in capsys.readouterr().out
        saved = xr.open_dataset(tmp_path / "out" / "run_distances.nc")
        with saved:
            xr.testing.assert_allclose(saved.drop_attrs(), trajectory_distances(ds).drop_attrs())
        assert (tmp_path / "out" / "run_distances.png").stat().st_size > 0

    def test_period_two_orbit(self, tmp_path, capsys):
        states = np.tile([[0.5, -1.0], [-0.5, 1.0]], (50, 1))
        ds = as_dataset(states, sizes=None)
        ds.to_netcdf(tmp_path / "cycle.nc")
        assert self.run(["orbital-stability", str(tmp_path / "cycle.nc"), "-o", str(tmp_path / "o")]) == 0
        assert "cycle.nc: periodic (period 2)" in capsys.readouterr().out
        assert self.run(["distances", str(tmp_path / "cycle.nc"), "-o", str(tmp_path / "o2")]) == 0
        assert "spectral" not in capsys.readouterr().out
        assert (tmp_path / "o2" / "cycle_distances.nc").exists() and not (tmp_path / "cycle_distances.nc").exists()
        assert (tmp_path / "o" / "cycle_orbital_stability.nc").exists()

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no such file"):
            self.run(["distances", str(tmp_path / "nope.nc")])


def test_no_warnings_on_a_regular_trajectory():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trajectory_distances(gd_states(5), layer_sizes=SIZES)
