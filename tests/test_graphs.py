import types

import networkx as nx
import numpy as np
import pytest
import torch
from _models import flat, small_mlp
import xarray as xr
from torch import nn

from netdyn.orbits.graphs import from_graph, graph_trajectory, layer_sizes_of, n_parameters, split_layers, to_graph

SIZES = [4, 5, 3]




def permute_hidden(model: nn.Sequential, perm: torch.Tensor) -> nn.Sequential:
    """The same function with hidden neurons relabelled: rows of W1, b1 and columns of W2."""
    out = small_mlp(0, model[0].weight.dtype)
    with torch.no_grad():
        out[0].weight.copy_(model[0].weight[perm])
        out[0].bias.copy_(model[0].bias[perm])
        out[2].weight.copy_(model[2].weight[:, perm])
        out[2].bias.copy_(model[2].bias)
    return out


def gd_trajectory_dataset(steps: int = 30, record: str = "all") -> xr.Dataset:
    """Full-batch GD (lr 0.5, cross-entropy) of the small MLP on seeded random data, float64,
    laid out as the netdyn data model."""
    model = small_mlp(1, torch.float64)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=gen)
    states, losses = [], []
    for _ in range(steps):
        states.append(flat(model).copy())
        loss = nn.functional.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    return xr.Dataset(
        {"state": (("step", "param"), np.array(states)), "loss": ("step", np.array(losses)), "diverged": ((), False)},
        coords={"step": np.arange(steps, dtype=np.int64), "param": np.arange(len(states[0]))},
        attrs={
            "map": "TrainingMap", "layer_sizes": SIZES, "record": record, "lr": 0.5, "record_every": 1, "complete": 1,
        },
    )


class TestLayerSizesOf:
    def test_sequential_with_any_activation(self):
        for act in (nn.Tanh(), nn.ReLU(), nn.GELU(), nn.Identity()):
            model = nn.Sequential(nn.Linear(4, 5), act, nn.Linear(5, 6), nn.Sigmoid(), nn.Linear(6, 3))
            assert layer_sizes_of(model) == [4, 5, 6, 3]

    def test_single_linear(self):
        assert layer_sizes_of(nn.Linear(7, 2)) == [7, 2]

    @pytest.mark.parametrize(
        "layer, name", [(nn.Conv2d(1, 1, 3), "Conv2d"), (nn.BatchNorm1d(5), "BatchNorm1d"), (nn.PReLU(), "PReLU")]
    )
    def test_refuses_other_parameterised_layers_by_name(self, layer, name):
        model = nn.Sequential(nn.Linear(4, 5), layer, nn.Linear(5, 3))
        with pytest.raises(ValueError, match=f"layer_sizes_of: .*{name} at '1'"):
            layer_sizes_of(model)

    def test_refuses_linear_without_bias(self):
        with pytest.raises(ValueError, match="bias=False"):
            layer_sizes_of(nn.Sequential(nn.Linear(4, 5, bias=False)))

    def test_refuses_widths_that_do_not_chain(self):
        with pytest.raises(ValueError, match="in_features=5"):
            layer_sizes_of(nn.Sequential(nn.Linear(4, 5), nn.Linear(6, 3)))

    def test_refuses_model_without_linear(self):
        with pytest.raises(ValueError, match="at least one nn.Linear"):
            layer_sizes_of(nn.Sequential(nn.Tanh()))


class TestSplitLayers:
    def test_matches_torch_parameter_order(self):
        model = small_mlp(3)
        (w1, b1), (w2, b2) = split_layers(flat(model), layer_sizes=SIZES)
        for got, want in zip((w1, b1, w2, b2), model.parameters()):
            assert np.array_equal(got, want.detach().numpy())

    def test_batched_over_steps(self):
        states = np.stack([flat(small_mlp(s)) for s in range(3)])
        (w1, _), (w2, b2) = split_layers(states, layer_sizes=SIZES)
        assert w1.shape == (3, 5, 4) and w2.shape == (3, 3, 5) and b2.shape == (3, 3)
        assert np.array_equal(w2[2], small_mlp(2)[2].weight.detach().numpy())

    def test_parameter_count(self):
        assert n_parameters(SIZES) == 4 * 5 + 5 + 5 * 3 + 3 == sum(p.numel() for p in small_mlp().parameters())

    def test_refuses_wrong_length(self):
        with pytest.raises(ValueError, match="split_layers: expected .*P=43"):
            split_layers(np.zeros(42), layer_sizes=SIZES)


class TestToGraph:
    def test_nodes_and_edges_carry_the_parameters(self):
        model = small_mlp(0)
        g = to_graph(model)
        assert g.number_of_nodes() == 4 + 5 + 3 and g.number_of_edges() == 4 * 5 + 5 * 3
        for layer, lin in ((1, model[0]), (2, model[2])):
            w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
            for i in range(w.shape[0]):
                node = g.nodes[(layer, i)]
                assert (node["layer"], node["index"], node["bias"]) == (layer, i, float(b[i]))
                for j in range(w.shape[1]):
                    assert g.edges[(layer - 1, j), (layer, i)]["weight"] == float(w[i, j])
        assert all(g.nodes[(0, j)]["bias"] == 0.0 and g.nodes[(0, j)]["layer"] == 0 for j in range(4))

    def test_state_and_model_give_the_same_graph(self):
        model = small_mlp(5)
        g1, g2 = to_graph(model), to_graph(torch.as_tensor(flat(model)), layer_sizes=SIZES)
        assert nx.utils.graphs_equal(g1, g2)

    def test_edges_only_between_consecutive_layers(self):
        g = to_graph(small_mlp(0))
        assert all(g.nodes[v]["layer"] == g.nodes[u]["layer"] + 1 for u, v in g.edges)

    def test_refuses_state_without_layer_sizes(self):
        with pytest.raises(ValueError, match="to_graph: expected layer_sizes"):
            to_graph(np.zeros(43))

    def test_refuses_wrong_state_length(self):
        with pytest.raises(ValueError, match=r"to_graph: expected a float state of shape \(43,\)"):
            to_graph(np.zeros(40), layer_sizes=SIZES)

    def test_refuses_layer_sizes_contradicting_the_model(self):
        with pytest.raises(ValueError, match="from the model"):
            to_graph(small_mlp(0), layer_sizes=[4, 6, 3])

    def test_refuses_conv_model(self):
        with pytest.raises(ValueError, match="Conv2d"):
            to_graph(nn.Sequential(nn.Conv2d(1, 2, 3)))


class TestFromGraph:
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_round_trip_is_bitwise(self, dtype):
        state = flat(small_mlp(7, dtype))
        back, sizes = from_graph(to_graph(state, layer_sizes=SIZES))
        assert sizes == SIZES and back.dtype == state.dtype
        assert back.tobytes() == state.tobytes()

    def test_round_trip_of_the_model(self):
        model = small_mlp(8)
        back, _ = from_graph(to_graph(model))
        assert back.tobytes() == flat(model).tobytes()

    def test_deeper_network(self):
        sizes = [3, 4, 4, 2]
        state = np.random.default_rng(0).normal(size=n_parameters(sizes))
        back, got = from_graph(to_graph(state, layer_sizes=sizes))
        assert got == sizes and back.tobytes() == state.tobytes()

    def test_refuses_foreign_graph(self):
        with pytest.raises(ValueError, match="from_graph: expected a graph built by to_graph"):
            from_graph(nx.path_graph(3, create_using=nx.DiGraph))


class TestPermutationIsomorphism:
    @staticmethod
    def match(a, b):
        return a["weight"] == b["weight"]

    @staticmethod
    def node_match(a, b):
        return (a["layer"], a["bias"]) == (b["layer"], b["bias"])

    def test_permuted_hidden_neurons_give_an_isomorphic_graph(self):
        model = small_mlp(4)
        perm = torch.tensor([3, 0, 4, 1, 2])
        permuted = permute_hidden(model, perm)
        assert not np.array_equal(flat(model), flat(permuted))
        x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert torch.allclose(model(x), permuted(x), atol=1e-6)  # same function
        assert nx.is_isomorphic(to_graph(model), to_graph(permuted), node_match=self.node_match, edge_match=self.match)

    def test_changed_weight_breaks_isomorphism(self):
        model = small_mlp(4)
        other = small_mlp(4)
        with torch.no_grad():
            other[2].weight[1, 1] += 1e-3
        assert not nx.is_isomorphic(to_graph(model), to_graph(other), edge_match=self.match)


class TestGraphTrajectory:
    def test_one_graph_per_step_from_a_file(self, tmp_path):
        ds = gd_trajectory_dataset(6)
        path = tmp_path / "run.nc"
        ds.to_netcdf(path)
        with xr.open_dataset(path) as opened:
            graphs = graph_trajectory(opened)
            assert isinstance(graphs, types.GeneratorType)
            got = list(graphs)
        assert [g.graph["step"] for g in got] == list(range(6))
        for g, state in zip(got, ds["state"].values):
            assert from_graph(g)[0].tobytes() == state.tobytes()

    def test_layer_sizes_argument_overrides_missing_attribute(self):
        ds = gd_trajectory_dataset(3)
        del ds.attrs["layer_sizes"]
        with pytest.raises(ValueError, match="graph_trajectory: expected layer_sizes"):
            graph_trajectory(ds)
        assert len(list(graph_trajectory(ds, layer_sizes=SIZES))) == 3

    def test_refuses_partial_records_at_the_call(self):
        ds = gd_trajectory_dataset(3, record="sketch:8")
        with pytest.raises(ValueError, match="record='all'.*sketch:8"):
            graph_trajectory(ds)

    def test_refuses_wrong_layer_sizes(self):
        with pytest.raises(ValueError, match=r"expected 51 parameters .* got param=43"):
            graph_trajectory(gd_trajectory_dataset(3), layer_sizes=[4, 6, 3])
