"""Distances between the networks of a trajectory: in state space and as graphs.

Two paths give the same numbers (tested to 1e-12):

* :func:`trajectory_distances` — the fast path, straight from the flat states with
  numpy, vectorised over blocks of steps, no graph built;
* :func:`graph_distances` — the same measures computed from networkx graphs
  (:func:`netdyn.orbits.graphs.to_graph`) with networkx / scipy routines; it is the
  reference that the fast path is checked against, and the way to measure graphs
  that did not come from a flat state.

The measures (variables of the returned Dataset, over ``step``)
---------------------------------------------------------------
For states ``x_t`` (all ``P`` parameters, biases included):

``euclidean``, ``l1``, ``cosine``
    ``||x_t - x_{t-1}||_2``, ``||x_t - x_{t-1}||_1`` and
    ``1 - <x_t, x_{t-1}> / (||x_t|| ||x_{t-1}||)``; NaN at the first step, which has
    no predecessor;
``euclidean_to_final``, ``l1_to_final``, ``cosine_to_final``
    the same with ``x_T`` (the last recorded state) in place of ``x_{t-1}``.

For an MLP (``layer_sizes`` known) the graph measures between successive
snapshots, NaN at the first step.  They read only the edge weights ``W_l``
(biases are node attributes and do not enter):

``spectral``
    ``sqrt( sum_l || sigma(W_l(t)) - sigma(W_l(t-1)) ||_2^2 )`` with ``sigma(W)`` the
    singular values of the layer's weight matrix in descending order.  Per-layer
    spectra are used rather than the spectrum of the whole adjacency matrix (which
    is the union of the per-layer ones plus zeros) so that singular values of
    different layers are never paired with each other.  Invariant under any
    permutation of the neurons within a layer.
``in_strength_w1``, ``out_strength_w1``
    1-Wasserstein distance between the empirical distributions of node
    in-strengths ``s_in(l, i) = sum_j W_l[i, j]`` over all non-input nodes (resp.
    out-strengths ``s_out(l-1, j) = sum_i W_l[i, j]`` over all non-output nodes),
    signed weights as networkx's ``in_degree(weight="weight")``.  For two samples
    of equal size ``n`` it is ``mean_k |a_(k) - b_(k)|`` over the sorted values.
    Permutation invariant.
``spearman``, ``kendall``
    Spearman's rho and Kendall's tau-b between the weights of the *same* edges at
    ``t`` and ``t - 1`` (ties get average ranks): 1 when the ranking of the edges
    is unchanged, lower as weights overtake one another.  Not permutation
    invariant — they follow individual edges.

Non-finite states (a diverged run) give NaN measures and one warning.

References
----------
Danovski, Soriano & Lacasa, "Dynamical stability and chaos in artificial neural
network trajectories along training", Front. Complex Syst. (2024).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np
import scipy.spatial.distance as ssd
import scipy.stats
import xarray as xr

from netdyn._core.validation import check_int
from netdyn.orbits.graphs import from_graph, n_parameters, split_layers, trajectory_layer_sizes

__all__ = ["trajectory_distances", "graph_distances", "STATE_MEASURES", "GRAPH_MEASURES"]

STATE_MEASURES = ("euclidean", "l1", "cosine", "euclidean_to_final", "l1_to_final", "cosine_to_final")
GRAPH_MEASURES = ("spectral", "in_strength_w1", "out_strength_w1", "spearman", "kendall")

_DESCRIPTIONS = {
    "euclidean": "L2 distance to the previous state",
    "l1": "L1 distance to the previous state",
    "cosine": "cosine distance to the previous state",
    "euclidean_to_final": "L2 distance to the final state",
    "l1_to_final": "L1 distance to the final state",
    "cosine_to_final": "cosine distance to the final state",
    "spectral": "L2 distance between per-layer sorted singular values of successive weight matrices",
    "in_strength_w1": "1-Wasserstein distance between successive in-strength distributions (non-input nodes)",
    "out_strength_w1": "1-Wasserstein distance between successive out-strength distributions (non-output nodes)",
    "spearman": "Spearman rho between successive edge-weight rankings",
    "kendall": "Kendall tau-b between successive edge-weight rankings",
}


def trajectory_distances(
    x: xr.Dataset | xr.DataArray | np.ndarray,
    *,
    layer_sizes: Sequence[int] | None = None,
    kendall: bool = True,
    chunk: int = 1024,
) -> xr.Dataset:
    """Distance curves of a trajectory, from its flat states (the fast path).

    Parameters
    ----------
    x
        a trajectory Dataset (its ``state`` over ``(step, param)``), a DataArray of
        that shape, or an array ``(T, P)``; ``T >= 2``.
    layer_sizes
        ``[n_0, ..., n_L]`` of the MLP.  Default ``None``: for a Dataset recorded with
        ``record="all"``, ``ds.attrs["layer_sizes"]`` when present; otherwise only
        the state measures are computed.
    kendall
        default ``True``: include Kendall's tau (a scipy call per step, the
        slowest measure; Spearman is vectorised).
    chunk
        default 1024: steps per block; bounds memory to about ``chunk * P`` floats
        times a small factor, and a file-backed Dataset is read block by block.

    Returns
    -------
    xarray.Dataset
        variables :data:`STATE_MEASURES` and, for an MLP, :data:`GRAPH_MEASURES`
        (without ``kendall`` if ``kendall=False``), all float64 over ``step``; attrs
        ``layer_sizes`` when known.  Definitions in the module docstring.

    Raises
    ------
    ValueError
        When there are fewer than 2 steps, ``chunk < 1`` or the layer sizes do not match the state.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.outer(np.arange(1.0, 6.0), [3.0, 4.0])  # a straight line, |step| = 5
    >>> d = nd.trajectory_distances(x)
    >>> d["euclidean"].values[1:].tolist(), float(d["euclidean_to_final"][0])
    ([5.0, 5.0, 5.0, 5.0], 20.0)
    """
    states, steps, sizes = _inputs(x, layer_sizes)
    chunk = check_int(chunk, "chunk", "trajectory_distances", minimum=1)
    n_steps = states.shape[0]
    final = np.asarray(states[n_steps - 1], dtype=np.float64)
    names = list(STATE_MEASURES) + ([m for m in GRAPH_MEASURES if kendall or m != "kendall"] if sizes else [])
    out = {name: np.full(n_steps, np.nan) for name in names}
    for start in range(0, n_steps, chunk):
        stop = min(start + chunk, n_steps)
        first = max(start - 1, 0)
        block = np.asarray(states[first:stop], dtype=np.float64)
        # pairs (block[i-1], block[i]) are the steps first+1 .. stop-1, each with its predecessor
        _state_block(block, final, start - first, out, slice(first + 1, stop), slice(start, stop))
        if sizes:
            _graph_block(block, sizes, out, first, kendall)
    _warn_non_finite("trajectory_distances", out)
    return _dataset(out, steps, sizes)


def graph_distances(
    graphs: Iterable[nx.DiGraph], *, steps: Sequence[int] | None = None, kendall: bool = True
) -> xr.Dataset:
    """The measures of :func:`trajectory_distances`, computed from graphs.

    Parameters
    ----------
    graphs
        snapshots built by :func:`netdyn.orbits.graphs.to_graph` (e.g. from
        :func:`netdyn.orbits.graphs.graph_trajectory`), all with the same layer sizes; at
        least 2.  They are held in memory together (the final one is needed for
        the distances to it).
    steps
        default ``None``: ``G.graph["step"]`` when every graph has it, else 0, 1, ...
    kendall
        default ``True``: include Kendall's tau.

    Returns
    -------
    xarray.Dataset
        the same variables, coordinates and attrs as :func:`trajectory_distances`.
        State measures use ``scipy.spatial.distance`` on :func:`from_graph` states;
        spectra use ``networkx.bipartite.biadjacency_matrix`` per layer pair;
        strengths ``DiGraph.in_degree/out_degree(weight="weight")`` and
        ``scipy.stats.wasserstein_distance``; rankings ``scipy.stats.spearmanr`` and
        ``kendalltau`` on the edges in sorted ``(u, v)`` order.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> rng = np.random.default_rng(0)
    >>> graphs = [nd.to_graph(rng.normal(size=43), layer_sizes=[4, 5, 3]) for _ in range(3)]
    >>> d = nd.graph_distances(graphs, kendall=False)
    >>> d.sizes["step"], "spectral" in d, bool(np.isnan(d["euclidean"][0]))
    (3, True, True)
    """
    graphs = list(graphs)
    if len(graphs) < 2:
        raise ValueError(f"graph_distances: expected at least 2 graphs, got {len(graphs)}")
    flat = [from_graph(g) for g in graphs]
    sizes = flat[0][1]
    if any(s != sizes for _, s in flat):
        raise ValueError(f"graph_distances: expected all graphs with layer_sizes {sizes}, got {[s for _, s in flat]}")
    if steps is None:
        steps = [g.graph["step"] for g in graphs] if all("step" in g.graph for g in graphs) else range(len(graphs))
    steps = np.asarray(steps, dtype=np.int64)
    if steps.shape != (len(graphs),):
        raise ValueError(f"graph_distances: expected {len(graphs)} steps, got shape {steps.shape}")
    states = [np.asarray(x, dtype=np.float64) for x, _ in flat]
    features = [_graph_features(g, sizes) for g in graphs]
    names = list(STATE_MEASURES) + [m for m in GRAPH_MEASURES if kendall or m != "kendall"]
    out = {name: np.full(len(graphs), np.nan) for name in names}
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; the NaN is reported below
        for t, x in enumerate(states):
            out["euclidean_to_final"][t] = ssd.euclidean(x, states[-1])
            out["l1_to_final"][t] = ssd.cityblock(x, states[-1])
            out["cosine_to_final"][t] = ssd.cosine(x, states[-1])
            if t == 0:
                continue
            prev, (spec, s_in, s_out, w) = states[t - 1], features[t]
            spec0, s_in0, s_out0, w0 = features[t - 1]
            out["euclidean"][t] = ssd.euclidean(x, prev)
            out["l1"][t] = ssd.cityblock(x, prev)
            out["cosine"][t] = ssd.cosine(x, prev)
            out["spectral"][t] = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(spec, spec0)))
            out["in_strength_w1"][t] = _wasserstein(s_in, s_in0)
            out["out_strength_w1"][t] = _wasserstein(s_out, s_out0)
            out["spearman"][t] = scipy.stats.spearmanr(w, w0).statistic
            if kendall:
                out["kendall"][t] = scipy.stats.kendalltau(w, w0).statistic
    _warn_non_finite("graph_distances", out)
    return _dataset(out, steps, sizes)


def _inputs(
    trajectory: xr.Dataset | xr.DataArray | np.ndarray, layer_sizes: Sequence[int] | None
) -> tuple[xr.DataArray | np.ndarray, np.ndarray, list[int] | None]:
    """(states indexable by row blocks, step coordinate, layer sizes or None)."""
    if isinstance(trajectory, xr.Dataset):
        if "state" not in trajectory:
            raise ValueError("trajectory_distances: expected a Dataset with a 'state' variable, got none")
        wants_graph = layer_sizes is not None or (
            "layer_sizes" in trajectory.attrs and trajectory.attrs.get("record", "all") == "all"
        )
        sizes = trajectory_layer_sizes(trajectory, layer_sizes=layer_sizes, caller="trajectory_distances") if wants_graph else None
        trajectory = trajectory["state"]
    else:
        sizes = None if layer_sizes is None else [int(n) for n in layer_sizes]
    if isinstance(trajectory, xr.DataArray):
        steps = trajectory["step"].values if "step" in trajectory.coords else None
        states = trajectory.variable  # lazy: row blocks are read on demand
    else:
        states, steps = np.asarray(trajectory), None
    if states.ndim != 2 or states.shape[0] < 2:
        raise ValueError(f"trajectory_distances: expected states of shape (T, P) with T >= 2, got {states.shape}")
    if sizes is not None and states.shape[1] != n_parameters(sizes):
        raise ValueError(
            f"trajectory_distances: expected P={n_parameters(sizes)} for layer_sizes {sizes}, got P={states.shape[1]}"
        )
    steps = np.arange(states.shape[0], dtype=np.int64) if steps is None else np.asarray(steps, dtype=np.int64)
    return states, steps, sizes


def _state_block(block: np.ndarray, final: np.ndarray, lead: int, out: dict, pairs: slice, own_rows: slice) -> None:
    """State measures for one block; ``lead`` = 1 when its first row is the previous block's last."""
    cur, prev, own = block[1:], block[:-1], block[lead:]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff, to_final = cur - prev, own - final
        norms = np.linalg.norm(block, axis=1)
        out["euclidean"][pairs] = np.linalg.norm(diff, axis=1)
        out["l1"][pairs] = np.abs(diff).sum(axis=1)
        out["cosine"][pairs] = 1.0 - np.einsum("ij,ij->i", cur, prev) / (norms[1:] * norms[:-1])
        out["euclidean_to_final"][own_rows] = np.linalg.norm(to_final, axis=1)
        out["l1_to_final"][own_rows] = np.abs(to_final).sum(axis=1)
        out["cosine_to_final"][own_rows] = 1.0 - own @ final / (norms[lead:] * np.linalg.norm(final))


def _graph_block(block: np.ndarray, sizes: list[int], out: dict, first: int, kendall: bool) -> None:
    """Graph measures between successive rows of a block whose row 0 is step index ``first``
    (vectorised but for Kendall)."""
    finite = np.isfinite(block).all(axis=1)
    layers = split_layers(block, layer_sizes=sizes)
    spectra = np.full((len(block), sum(min(w.shape[1:]) for w, _ in layers)), np.nan)
    col = 0
    for w, _ in layers:
        k = min(w.shape[1:])
        spectra[finite, col : col + k] = np.linalg.svd(w[finite], compute_uv=False)
        col += k
    s_in = np.sort(np.concatenate([w.sum(axis=2) for w, _ in layers], axis=1), axis=1)
    s_out = np.sort(np.concatenate([w.sum(axis=1) for w, _ in layers], axis=1), axis=1)
    weights = np.concatenate([w.reshape(len(block), -1) for w, _ in layers], axis=1)
    ranks = scipy.stats.rankdata(weights, axis=1)  # ties share their average rank; a NaN row gives NaN ranks
    ranks -= ranks.mean(axis=1, keepdims=True)
    pairs = slice(first + 1, first + len(block))
    both = finite[1:] & finite[:-1]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out["spectral"][pairs] = np.linalg.norm(spectra[1:] - spectra[:-1], axis=1)
        out["in_strength_w1"][pairs] = np.where(both, np.abs(s_in[1:] - s_in[:-1]).mean(axis=1), np.nan)
        out["out_strength_w1"][pairs] = np.where(both, np.abs(s_out[1:] - s_out[:-1]).mean(axis=1), np.nan)
        num = np.einsum("ij,ij->i", ranks[1:], ranks[:-1])
        sq = np.einsum("ij,ij->i", ranks, ranks)
        out["spearman"][pairs] = np.where(both, num / np.sqrt(sq[1:] * sq[:-1]), np.nan)
    if kendall:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input gives NaN, reported by the caller
            for i in np.flatnonzero(both) + 1:
                out["kendall"][first + i] = scipy.stats.kendalltau(weights[i], weights[i - 1]).statistic


def _graph_features(graph: nx.DiGraph, sizes: list[int]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """(per-layer descending singular values, in-strengths, out-strengths, edge weights in sorted edge order)."""
    layer = dict(graph.nodes(data="layer"))
    by_layer = [
        sorted((n for n, l in layer.items() if l == k), key=lambda n: graph.nodes[n]["index"]) for k in range(len(sizes))
    ]
    spectra = []
    for k in range(1, len(sizes)):
        # rows = sources: this is W_k transposed, with the same singular values
        dense = nx.bipartite.biadjacency_matrix(
            graph, row_order=by_layer[k - 1], column_order=by_layer[k], weight="weight"
        ).toarray()
        finite = np.isfinite(dense).all()
        spectra.append(np.linalg.svd(dense, compute_uv=False) if finite else np.full(min(dense.shape), np.nan))
    last = len(sizes) - 1
    s_in = np.array([d for n, d in graph.in_degree(weight="weight") if layer[n] > 0])
    s_out = np.array([d for n, d in graph.out_degree(weight="weight") if layer[n] < last])
    weights = np.array([w for _, _, w in sorted(graph.edges(data="weight"))])
    return spectra, s_in, s_out, weights


def _wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(scipy.stats.wasserstein_distance(a, b))


def _warn_non_finite(caller: str, out: dict[str, np.ndarray]) -> None:
    bad = {name: int((~np.isfinite(v[1:])).sum()) for name, v in out.items()}
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        warnings.warn(f"{caller}: non-finite values (diverged states or zero/constant vectors): {bad}", stacklevel=3)


def _dataset(out: dict[str, np.ndarray], steps: np.ndarray, sizes: list[int] | None) -> xr.Dataset:
    ds = xr.Dataset(
        {name: ("step", values, {"description": _DESCRIPTIONS[name]}) for name, values in out.items()},
        coords={"step": np.asarray(steps, dtype=np.int64)},
    )
    if sizes:
        ds.attrs["layer_sizes"] = list(sizes)
    return ds
