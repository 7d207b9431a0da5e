"""Recurrence networks against pyunicorn's RecurrenceNetwork and networkx, and at N = 20 000 in bounded memory.

pyunicorn stores the series in float32, so the inputs are float32-exact; with
them every measure agrees to <= 2.3e-16 (measured; tolerance 1e-12) and the
adjacency and degrees are identical.
"""
from _series import henon
import tracemalloc

import networkx as nx
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from netdyn.series.recurrence_network import network_measures, recurrence_adjacency, recurrence_links, recurrence_network

RecurrenceNetwork = pytest.importorskip("pyunicorn.timeseries").RecurrenceNetwork


PTS = henon(600).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("metric", ["supremum", "euclidean", "manhattan"])
def test_matches_pyunicorn_at_a_fixed_threshold(metric):
    ref = RecurrenceNetwork(PTS, metric=metric, threshold=0.1, silence_level=3)
    graph = recurrence_network(PTS, threshold=0.1, metric=metric)
    assert nx.number_of_selfloops(graph) == 0
    assert np.array_equal(nx.to_numpy_array(graph, nodelist=range(PTS.shape[0]), dtype=int), ref.adjacency)
    ds = network_measures(PTS, threshold=0.1, metric=metric)
    assert np.array_equal(ds["degree"].values, ref.degree())
    np.testing.assert_allclose(ds["local_clustering"].values, ref.local_clustering(), rtol=0, atol=1e-12)
    assert float(ds["transitivity"]) == pytest.approx(ref.transitivity(), abs=1e-12)
    assert float(ds["global_clustering"]) == pytest.approx(ref.global_clustering(), abs=1e-12)
    assert float(ds["average_path_length"]) == pytest.approx(ref.average_path_length(), abs=1e-12)
    assert np.array_equal(ds["degree_distribution"].values, np.bincount(ref.degree()))  # pyunicorn bins differently
    assert ds.attrs["n_links"] == ref.adjacency.sum() // 2


def test_matches_pyunicorn_with_embedding_and_recurrence_rate():
    x = PTS[:, 0]
    ref = RecurrenceNetwork(x, dim=3, tau=2, metric="supremum", recurrence_rate=0.05, silence_level=3)
    ds = network_measures(x, emb_dim=3, lag=2, recurrence_rate=0.05, rate_theiler=0)
    assert np.array_equal(ds["degree"].values, ref.degree())
    assert float(ds["transitivity"]) == pytest.approx(ref.transitivity(), abs=1e-12)
    assert float(ds["average_path_length"]) == pytest.approx(ref.average_path_length(), abs=1e-12)


def test_measures_match_networkx_on_a_connected_network():
    pts = PTS[:300]
    graph = recurrence_network(pts, threshold=0.3)
    assert nx.is_connected(graph)
    ds = network_measures(graph)
    assert float(ds["transitivity"]) == pytest.approx(nx.transitivity(graph), abs=1e-12)
    assert float(ds["global_clustering"]) == pytest.approx(nx.average_clustering(graph), abs=1e-12)
    assert float(ds["average_path_length"]) == pytest.approx(nx.average_shortest_path_length(graph), abs=1e-12)
    clustering = nx.clustering(graph)
    np.testing.assert_allclose(ds["local_clustering"].values, [clustering[i] for i in range(pts.shape[0])], atol=1e-12)
    # sampled sources estimate the same mean
    est = network_measures(graph, path_sources=60, seed=1)
    assert float(est["average_path_length"]) == pytest.approx(float(ds["average_path_length"]), rel=0.1)
    assert est.attrs["path_sources"] == 60


def test_theiler_window_removes_the_near_diagonal_links():
    pairs, n, _ = recurrence_links(PTS, threshold=0.2, theiler=5)
    assert n == PTS.shape[0] and np.all(pairs[:, 1] - pairs[:, 0] >= 5)
    full, _, _ = recurrence_links(PTS, threshold=0.2)
    assert pairs.shape[0] < full.shape[0]


def test_large_network_in_bounded_memory():
    n = 20_000
    pts = henon(n)
    tracemalloc.start()
    adj, eps = recurrence_adjacency(pts, threshold=0.01)
    ds = network_measures(pts, threshold=0.01, path_length=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a dense bool N x N would be 400 MB, its float64 distances 3.2 GB
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
    degree = np.zeros(n, dtype=np.int64)
    for s in range(0, n, 1000):  # the exact degrees, by brute force in blocks
        block = cdist(pts[s : s + 1000], pts, metric="chebyshev") < eps
        block[np.arange(block.shape[0]), np.arange(s, s + block.shape[0])] = False
        degree[s : s + 1000] = block.sum(axis=1)
    assert np.array_equal(ds["degree"].values, degree)
    assert np.array_equal(np.asarray(adj.sum(axis=1)).ravel(), degree)
    assert 0 < float(ds["transitivity"]) < 1


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="recurrence_links: expected theiler to be an int >= 1"):
        recurrence_links(PTS, threshold=0.1, theiler=0)
    with pytest.raises(ValueError, match="recurrence_links: expected at most one of threshold"):
        recurrence_links(PTS, threshold=0.1, recurrence_rate=0.1)
    default, rate = recurrence_links(PTS), recurrence_links(PTS, recurrence_rate=0.05)  # neither: the default rate
    assert np.array_equal(default[0], rate[0]) and default[2] == rate[2]
    with pytest.raises(ValueError, match="expected metric"):
        recurrence_links(PTS, threshold=0.1, metric="cosine")
