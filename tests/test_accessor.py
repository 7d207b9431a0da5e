"""The ds.netdyn accessor forwards to the module functions and gives the same results."""
import numpy as np
import pytest

import netdyn
from netdyn.series.datadriven import rosenstein
from netdyn.orbits.distances import trajectory_distances
from netdyn.series.recurrence import rqa
from netdyn.orbits.stability import orbital_stability


@pytest.fixture(scope="module")
def trajectory():
    task = netdyn.make_task("iris", hidden=(5,), seed=0)
    return netdyn.run(netdyn.training_map(task, lr=0.5), None, 300)


def test_accessor_equals_functions(trajectory):
    ds = trajectory
    # the GD loss curve falls, so both are NaN with reliable=False: compare the whole results (NaN-aware)
    with pytest.warns(RuntimeWarning, match="no reliable exponent"):
        assert ds.netdyn.rosenstein("loss").to_dataset().identical(rosenstein(ds, observable="loss").to_dataset())
    assert ds.netdyn.rqa("loss", recurrence_rate=0.05).to_dataset().identical(
        rqa(ds.loss.values, recurrence_rate=0.05).to_dataset()
    )
    assert repr(ds.netdyn.orbital_stability()) == repr(orbital_stability(ds))
    assert ds.netdyn.trajectory_distances().identical(trajectory_distances(ds))
    np.testing.assert_array_equal(ds.netdyn.state_matrix(), ds.state.values)


def test_accessor_graphs_round_trip(trajectory):
    graphs = trajectory.netdyn.graph_trajectory()
    first = next(graphs)
    assert first.number_of_nodes() == 4 + 5 + 3
    assert first.number_of_edges() == 4 * 5 + 5 * 3
    # W1 is (out, in) row-major: entry [0, 1] is the edge input 1 -> hidden 0
    assert first.edges[(0, 1), (1, 0)]["weight"] == float(trajectory.state.values[0, 1])


def test_series_methods_forward_the_observable(trajectory):
    ds = trajectory
    np.testing.assert_array_equal(ds.netdyn.observable_series("loss"), netdyn.observable_series(ds, observable="loss"))
    assert ds.netdyn.chaos01("loss", seed=1).identical(netdyn.chaos01(ds, observable="loss", seed=1))
    assert ds.netdyn.summarize().identical(netdyn.summarize(ds))


def test_every_method_is_named_after_the_function_it_calls():
    from netdyn.accessor import NetdynAccessor

    methods = [name for name in vars(NetdynAccessor) if not name.startswith("_")]
    missing = [name for name in methods if not hasattr(netdyn, name) and name != "state_matrix"]
    assert not missing, f"accessor methods without a netdyn function of that name: {missing}"
    for old in ("orbit", "summary", "series", "analyze", "distances", "graphs"):
        assert not hasattr(NetdynAccessor, old)
