"""epsilon-recurrence networks of a series or trajectory, built without an N x N matrix.

The recurrence network (Marwan et al. 2009; Donges et al. 2012) has the points
``X_0 .. X_{N-1}`` of :func:`netdyn.series.recurrence.recurrence_points` (a series, its
delay embedding, or a state trajectory) as nodes and a link ``i -- j`` whenever

    ||X_i - X_j|| < eps   and   |i - j| >= theiler     (theiler >= 1: never a self-loop),

i.e. its adjacency matrix is the recurrence matrix of :mod:`netdyn.series.recurrence`
without the line of identity (``theiler=1``, the default, is exactly
``pyunicorn.timeseries.RecurrenceNetwork``'s ``A = R - I``).  The threshold is
given, or chosen for a recurrence rate by
:func:`netdyn.series.recurrence.recurrence_threshold` (same metrics, same rank rule;
``rate_theiler=0`` reproduces pyunicorn's rule, which counts the N zeros of
the line of identity among the pairs).

The links are found with a k-d tree (``scipy.spatial.cKDTree.query_pairs``
with the metric's Minkowski ``p``: supremum ``inf``, Euclidean 2, Manhattan
1), then filtered with the exact strict test ``d < eps`` computed as
``cdist`` does, so the network equals the recurrence matrix bit for bit.  Memory
is ``O(N + links)``: nothing of size ``N x N`` is formed (the threshold search
of :func:`recurrence_threshold` is ``O(N)`` memory as well).

Measures (``network_measures``), on the undirected simple graph:

====================  ==================================================================
degree                ``k_i`` = number of neighbours
degree_distribution   ``P(k)`` = number of nodes of degree ``k`` (``k = 0 .. k_max``)
local_clustering      ``C_i = t_i / (k_i (k_i - 1) / 2)`` (``t_i`` triangles through ``i``;
                      0 when ``k_i < 2``: networkx's and pyunicorn's convention)
global_clustering     mean of ``C_i`` (Watts-Strogatz; Newman's C_2; networkx ``average_clustering``)
transitivity          ``3 x triangles / connected triples = sum t_i / sum k_i (k_i - 1) / 2``
                      (Newman's C_1; networkx ``transitivity``, igraph/pyunicorn ``transitivity``)
average_path_length   mean shortest-path length over the ordered pairs ``i != j`` joined
                      by a path (igraph's / pyunicorn's convention; networkx raises on a
                      disconnected graph and equals this on a connected one)
====================  ==================================================================

Triangles come from the sparse product ``(A A) o A``, over blocks of rows; path lengths from
breadth-first searches (``scipy.sparse.csgraph``) over blocks of source nodes,
so memory is ``O(block N)``; their cost ``O(N links)`` dominates for large N,
so ``path_sources=m`` averages over ``m`` random sources instead (an unbiased
estimate of the same mean over connected pairs when the graph is connected).

References
----------
N. Marwan, J. F. Donges, Y. Zou, R. V. Donner, J. Kurths, "Complex network
approach for recurrence analysis of time series", Phys. Lett. A 373, 4246 (2009).
J. F. Donges, J. Heitzig, R. V. Donner, J. Kurths, "Analytical framework for
recurrence network analysis of time series", Phys. Rev. E 85, 046105 (2012).
"""
from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy.sparse.csgraph import shortest_path
from scipy.spatial import cKDTree

from netdyn._core.validation import check_int
from netdyn.series.recurrence import recurrence_spec, recurrence_threshold, with_recurrence_doc

__all__ = ["recurrence_links", "recurrence_adjacency", "recurrence_network", "network_measures"]

_MINKOWSKI = {"supremum": np.inf, "euclidean": 2.0, "manhattan": 1.0}
_PAIR_BLOCK = 1 << 20


def _pair_distances(pts: np.ndarray, pairs: np.ndarray, metric: str) -> np.ndarray:
    """``||X_i - X_j||`` for the rows ``(i, j)`` of ``pairs``, accumulated over coordinates as ``cdist`` does."""
    out = np.empty(pairs.shape[0])
    for s in range(0, pairs.shape[0], _PAIR_BLOCK):
        diff = np.abs(pts[pairs[s : s + _PAIR_BLOCK, 0]] - pts[pairs[s : s + _PAIR_BLOCK, 1]])
        if metric == "supremum":
            out[s : s + _PAIR_BLOCK] = diff.max(axis=1)
        elif metric == "euclidean":
            out[s : s + _PAIR_BLOCK] = np.sqrt(np.sum(diff * diff, axis=1))
        else:
            out[s : s + _PAIR_BLOCK] = diff.sum(axis=1)
    return out


@with_recurrence_doc
def recurrence_links(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    rate_theiler: int | None = None,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
) -> tuple[np.ndarray, int, float]:
    """The links ``(i, j)``, ``i < j``, of the recurrence network: (array (L, 2) int64, N, eps).

    A network has no self-loops, so ``theiler >= 1`` here.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        :func:`netdyn.series.recurrence.recurrence_points`.
    {recurrence_parameters}
    rate_theiler : int, optional
        Theiler window of the threshold rule (default ``theiler``; 0 is pyunicorn's).

    Returns
    -------
    (numpy.ndarray, int, float)
        The links, int64 (L, 2), sorted; the number of nodes N; ``eps``.

    Raises
    ------
    ValueError
        For invalid settings or a zero threshold (too many coincident points for the rate).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.recurrence_network import recurrence_links
    >>> recurrence_links(np.array([0.0, 1.0, 0.1, 5.0]), threshold=0.5)[0].tolist()
    [[0, 2]]
    """
    caller = "recurrence_links"
    spec = recurrence_spec(caller, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
                           emb_dim=emb_dim, lag=lag, observable=observable, min_theiler=1)
    metric, theiler = spec.metric, spec.theiler
    pts = spec.points(x)
    n = pts.shape[0]
    if spec.threshold is None:
        rule = theiler if rate_theiler is None else check_int(rate_theiler, "rate_theiler", caller, minimum=0)
        eps = recurrence_threshold(pts, recurrence_rate=spec.recurrence_rate, metric=metric, theiler=rule)
    else:
        eps = spec.threshold
    if not eps > 0:
        raise ValueError(f"{caller}: expected a threshold > 0, got {eps} (too many coincident points for this rate?)")
    tree = cKDTree(pts)
    pairs = tree.query_pairs(eps * (1 + 1e-9), p=_MINKOWSKI[metric], output_type="ndarray").astype(np.int64)
    keep = _pair_distances(pts, pairs, metric) < eps
    pairs = pairs[keep]
    pairs = pairs[np.abs(pairs[:, 1] - pairs[:, 0]) >= theiler]
    pairs.sort(axis=1)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], n, eps


@with_recurrence_doc
def recurrence_adjacency(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    rate_theiler: int | None = None,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
) -> tuple[sp.csr_matrix, float]:
    """The symmetric 0/1 adjacency matrix as ``scipy.sparse`` CSR (N, N) int8, and ``eps``.

    Memory ``O(N + links)``.

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        :func:`netdyn.series.recurrence.recurrence_points`.
    {recurrence_parameters}
    rate_theiler : int, optional
        As :func:`recurrence_links`.

    Returns
    -------
    (scipy.sparse.csr_matrix, float)

    Raises
    ------
    ValueError
        As :func:`recurrence_links`.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.series.recurrence_network import recurrence_adjacency
    >>> adj, eps = recurrence_adjacency(np.array([0.0, 1.0, 0.1, 5.0]), threshold=0.5)
    >>> adj.toarray()[0].tolist()
    [0, 0, 1, 0]
    """
    pairs, n, eps = recurrence_links(
        x, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
        rate_theiler=rate_theiler, emb_dim=emb_dim, lag=lag, observable=observable,
    )
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    adj = sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    return adj, eps


@with_recurrence_doc
def recurrence_network(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    rate_theiler: int | None = None,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
) -> nx.Graph:
    """The recurrence network as a ``networkx.Graph`` (nodes ``0 .. N-1``, no self-loops).

    A networkx graph costs a few hundred bytes per link: for large N work on
    :func:`recurrence_adjacency` (what :func:`network_measures` does).

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray or trajectory xarray.Dataset
        :func:`netdyn.series.recurrence.recurrence_points`.
    {recurrence_parameters}
    rate_theiler : int, optional
        As :func:`recurrence_links`.

    Returns
    -------
    networkx.Graph
        ``graph.graph`` holds ``threshold``, ``metric``, ``theiler``, ``emb_dim``, ``lag``.

    Raises
    ------
    ValueError
        As :func:`recurrence_links`.

    References
    ----------
    N. Marwan, J. F. Donges, Y. Zou, R. V. Donner, J. Kurths, Phys. Lett. A 373, 4246 (2009).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> graph = nd.recurrence_network(np.sin(0.3 * np.arange(100)), recurrence_rate=0.1)
    >>> graph.number_of_nodes(), graph.graph["theiler"]
    (100, 1)
    """
    pairs, n, eps = recurrence_links(
        x, threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
        rate_theiler=rate_theiler, emb_dim=emb_dim, lag=lag, observable=observable,
    )
    graph = nx.Graph(threshold=eps, metric=metric, theiler=theiler, emb_dim=emb_dim, lag=lag)
    graph.add_nodes_from(range(n))
    graph.add_edges_from(pairs.tolist())
    return graph


#: the recurrence keywords of :func:`network_measures` and their defaults (they apply to a series, not to a graph)
_NETWORK_DEFAULTS = {"threshold": None, "recurrence_rate": None, "metric": "supremum", "theiler": 1,
                     "rate_theiler": None, "emb_dim": 1, "lag": 1, "observable": None}


def _as_adjacency(x: Any, settings: dict[str, Any]) -> tuple[sp.csr_matrix, dict[str, Any]]:
    if isinstance(x, nx.Graph):
        given = sorted(k for k, v in settings.items() if v != _NETWORK_DEFAULTS[k])
        if given:
            raise ValueError(f"network_measures: options {given} only apply to a series, got a graph")
        if x.is_directed() or nx.number_of_selfloops(x):
            raise ValueError("network_measures: expected an undirected graph without self-loops")
        adj = nx.to_scipy_sparse_array(x, nodelist=sorted(x.nodes), dtype=np.int8, format="csr")
        return sp.csr_matrix(adj), dict(x.graph)
    adj, eps = recurrence_adjacency(x, **settings)
    info = {"threshold": eps, "metric": settings["metric"], "theiler": settings["theiler"],
            "emb_dim": settings["emb_dim"], "lag": settings["lag"]}
    if settings["recurrence_rate"] is not None:
        info["recurrence_rate"] = settings["recurrence_rate"]
    return adj, info


def _average_path_length(adj: sp.csr_matrix, sources: np.ndarray, block: int) -> tuple[float, int]:
    """Mean finite shortest-path length from ``sources`` to every other node, and the number of such pairs."""
    total, pairs = 0.0, 0
    for s in range(0, sources.size, block):
        dist = shortest_path(adj, method="D", unweighted=True, directed=False, indices=sources[s : s + block])
        finite = np.isfinite(dist) & (dist > 0)
        total += float(dist[finite].sum())
        pairs += int(finite.sum())
    if pairs == 0:
        raise ValueError("network_measures: expected at least one linked pair for the path length, got none")
    return total / pairs, pairs


def _triangles(a: sp.csr_matrix, block: int) -> np.ndarray:
    """Triangles through each node, ``diag(A^3) / 2``, from ``(A_B A) o A_B`` over blocks of ``8 block`` rows."""
    out = np.empty(a.shape[0], dtype=np.int64)
    rows = 8 * block
    for s in range(0, a.shape[0], rows):
        part = a[s : s + rows]
        out[s : s + rows] = np.asarray((part @ a).multiply(part).sum(axis=1)).ravel() // 2
    return out


@with_recurrence_doc
def network_measures(
    x: Any,
    *,
    threshold: float | None = None,
    recurrence_rate: float | None = None,
    metric: str = "supremum",
    theiler: int = 1,
    rate_theiler: int | None = None,
    emb_dim: int = 1,
    lag: int = 1,
    observable: str | None = None,
    path_length: bool = True,
    path_sources: int | None = None,
    seed: int = 0,
    block: int = 256,
) -> xr.Dataset:
    """Degree, clustering, transitivity and path length of a recurrence network (module docstring).

    Parameters
    ----------
    x : numpy.ndarray (N,) / (N, d), xarray.DataArray, trajectory xarray.Dataset or networkx.Graph
        A series / trajectory, or a graph from :func:`recurrence_network`
        (then the recurrence keywords below must keep their defaults).
    {recurrence_parameters}
    rate_theiler : int, optional
        As :func:`recurrence_links`.
    path_length : bool, default True
        Compute the average shortest-path length (``O(N links)`` time).
    path_sources : int, optional
        Average over this many random source nodes (seeded by ``seed``)
        instead of all ``N``.
    seed : int, default 0
        Seed of the random source nodes.
    block : int, default 256
        Source nodes per breadth-first batch (memory ``block x N`` floats).

    Returns
    -------
    xarray.Dataset
        ``degree`` and ``local_clustering`` over ``node``;
        ``degree_distribution`` over ``k``; scalars ``transitivity``,
        ``global_clustering``, ``link_density``, ``average_path_length``
        (when asked); attrs: the network's settings, ``n_links``,
        ``path_sources`` and ``path_pairs``.

    Raises
    ------
    ValueError
        As :func:`recurrence_links`; for recurrence keywords with a graph, a
        directed graph or one with self-loops, or a network without a node of
        degree >= 2.

    References
    ----------
    J. F. Donges, J. Heitzig, R. V. Donner, J. Kurths, Phys. Rev. E 85, 046105 (2012).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> out = nd.network_measures(np.sin(0.3 * np.arange(100)), recurrence_rate=0.1)
    >>> round(float(out["link_density"]), 2)
    0.1
    """
    caller = "network_measures"
    block = check_int(block, "block", caller, minimum=1)
    settings = dict(threshold=threshold, recurrence_rate=recurrence_rate, metric=metric, theiler=theiler,
                    rate_theiler=rate_theiler, emb_dim=emb_dim, lag=lag, observable=observable)
    adj, info = _as_adjacency(x, settings)
    n = adj.shape[0]
    a = adj.astype(np.int64)
    degree = np.asarray(a.sum(axis=1)).ravel()
    triangles = _triangles(a, block)
    triples = degree * (degree - 1) // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        local = np.where(triples > 0, triangles / np.maximum(triples, 1), 0.0)
    if triples.sum() == 0:
        raise ValueError("network_measures: expected some node of degree >= 2 (raise the threshold), got none")
    data: dict[str, Any] = {
        "degree": ("node", degree),
        "local_clustering": ("node", local),
        "degree_distribution": ("k", np.bincount(degree)),
        "transitivity": ((), float(triangles.sum() / triples.sum())),
        "global_clustering": ((), float(local.mean())),
        "link_density": ((), float(degree.sum() / (n * (n - 1)))),
    }
    attrs = {**{k: v for k, v in info.items() if np.isscalar(v)}, "n_nodes": n, "n_links": int(degree.sum() // 2)}
    if path_length:
        if path_sources is None:
            sources = np.arange(n)
        else:
            count = check_int(path_sources, "path_sources", caller, minimum=1)
            sources = np.sort(np.random.default_rng(seed).choice(n, size=min(n, count), replace=False))
        value, pairs = _average_path_length(adj, sources, block)
        data["average_path_length"] = ((), value)
        attrs.update(path_sources=int(sources.size), path_pairs=pairs)
    return xr.Dataset(data, coords={"node": np.arange(n), "k": np.arange(degree.max() + 1)}, attrs=attrs)
