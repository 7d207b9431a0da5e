"""A multilayer perceptron as a weighted directed graph, and a trajectory of them.

Training moves a network through *network space*; this module gives the view in
which each recorded state is a weighted graph (Danovski, Soriano & Lacasa 2024).

The graph of an MLP with ``layer_sizes = [n_0, n_1, ..., n_L]``
----------------------------------------------------------------
* one node ``(l, i)`` per neuron ``i`` of layer ``l`` (``l = 0`` the inputs, ``l = L``
  the outputs) with attributes ``layer = l``, ``index = i`` and ``bias`` (the bias
  ``b_l[i]``; 0.0 for inputs);
* one edge ``(l - 1, j) -> (l, i)`` per weight, attribute ``weight = W_l[i, j]``;
* graph attributes ``layer_sizes`` (list of ints) and ``dtype`` (numpy dtype name of
  the flat state it was built from), so that :func:`from_graph` is exact.

The flat state follows torch's ``parameters_to_vector(model.parameters())`` order:
``W_1`` (shape ``(n_1, n_0)``, row-major), ``b_1``, ``W_2``, ``b_2``, ...
Every value is stored as a Python float (float64), which holds float32 and float64
values exactly, so ``from_graph(to_graph(x, sizes))`` returns ``x`` bit for bit.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch
import xarray as xr
from torch import nn

__all__ = [
    "layer_sizes_of",
    "n_parameters",
    "split_layers",
    "to_graph",
    "from_graph",
    "graph_trajectory",
    "trajectory_layer_sizes",
]


def layer_sizes_of(model: nn.Module) -> list[int]:
    """Layer widths ``[n_in, n_hidden..., n_out]`` of a stack of ``nn.Linear`` layers.

    Parameters
    ----------
    model
        an ``nn.Linear`` or a module (typically ``nn.Sequential``) whose only
        parameterised sub-modules are ``nn.Linear`` layers with bias, registered in
        forward order; parameter-free modules (any activation, dropout, flatten) may
        sit between them.

    Returns
    -------
    list[int]
        ``[in_features of the first layer, out_features of each layer...]``.

    Raises ``ValueError`` naming the offending layer for any other parameterised
    layer (Conv2d, BatchNorm, PReLU, ...), a Linear without bias, or consecutive
    Linear layers whose widths do not chain.

    Examples
    --------
    >>> from torch import nn
    >>> from netdyn.orbits.graphs import layer_sizes_of
    >>> layer_sizes_of(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)))
    [4, 5, 3]
    """
    linears: list[nn.Linear] = []
    for name, module in model.named_modules():
        if not list(module.parameters(recurse=False)):
            continue
        label = name or type(model).__name__
        if not isinstance(module, nn.Linear):
            raise ValueError(
                f"layer_sizes_of: expected only nn.Linear layers with parameters, got "
                f"{type(module).__name__} at '{label}'"
            )
        if module.bias is None:
            raise ValueError(f"layer_sizes_of: expected nn.Linear with bias, got bias=False at '{label}'")
        if linears and linears[-1].out_features != module.in_features:
            raise ValueError(
                f"layer_sizes_of: expected in_features={linears[-1].out_features} at '{label}' "
                f"(out_features of the previous Linear), got {module.in_features}"
            )
        linears.append(module)
    if not linears:
        raise ValueError(f"layer_sizes_of: expected at least one nn.Linear, got none in {type(model).__name__}")
    return [linears[0].in_features] + [m.out_features for m in linears]


def n_parameters(layer_sizes: Sequence[int]) -> int:
    """Number of weights and biases, ``sum_l n_l (n_{l-1} + 1)``.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_0, ..., n_L]``, every width >= 1, at least two layers.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        When ``layer_sizes`` is not a valid list of widths.

    Examples
    --------
    >>> from netdyn.orbits.graphs import n_parameters
    >>> n_parameters([4, 5, 3])  # 5 * (4 + 1) + 3 * (5 + 1)
    43
    """
    sizes = _check_sizes(layer_sizes, "n_parameters")
    return sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))


def split_layers(states: np.ndarray, *, layer_sizes: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views ``[(W_1, b_1), (W_2, b_2), ...]`` into flat states.

    Parameters
    ----------
    states
        shape ``(P,)`` or ``(T, P)`` with ``P = n_parameters(layer_sizes)``.
    layer_sizes
        ``[n_0, ..., n_L]``.

    Returns
    -------
    list of ``(W_l, b_l)`` with ``W_l`` of shape ``(..., n_l, n_{l-1})`` and ``b_l`` of
    shape ``(..., n_l)`` (leading ``T`` axis when ``states`` is 2-D); no copies.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.orbits.graphs import split_layers
    >>> [(w.shape, b.shape) for w, b in split_layers(np.arange(43.0), layer_sizes=[4, 5, 3])]
    [((5, 4), (5,)), ((3, 5), (3,))]
    """
    sizes = _check_sizes(layer_sizes, "split_layers")
    states = np.asarray(states)
    expected = n_parameters(sizes)
    if states.ndim not in (1, 2) or states.shape[-1] != expected:
        raise ValueError(
            f"split_layers: expected states of shape (P,) or (T, P) with P={expected} for layer_sizes "
            f"{sizes}, got {states.shape}"
        )
    lead = states.shape[:-1]
    out, offset = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        w = states[..., offset : offset + n_out * n_in].reshape(*lead, n_out, n_in)
        offset += n_out * n_in
        b = states[..., offset : offset + n_out]
        offset += n_out
        out.append((w, b))
    return out


def to_graph(
    model_or_state: nn.Module | np.ndarray | torch.Tensor, *, layer_sizes: Sequence[int] | None = None
) -> nx.DiGraph:
    """The weighted directed graph of an MLP (see the module docstring for its layout).

    Parameters
    ----------
    model_or_state
        an ``nn.Module`` accepted by :func:`layer_sizes_of` (its current parameters
        are read), or a flat state of shape ``(P,)`` (numpy array or tensor).
    layer_sizes
        ``[n_0, ..., n_L]``; required with a flat state, must match the model if given
        with one.

    Returns
    -------
    networkx.DiGraph
        ``sum_l n_l`` nodes, ``sum_l n_l n_{l-1}`` edges; ``G.graph["layer_sizes"]``
        and ``G.graph["dtype"]`` record how to invert it.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> g = nd.to_graph(np.arange(43.0), layer_sizes=[4, 5, 3])
    >>> g.number_of_nodes(), g.number_of_edges()  # 4 + 5 + 3 nodes, 4 * 5 + 5 * 3 edges
    (12, 35)
    """
    state, sizes = _state_and_sizes(model_or_state, layer_sizes, "to_graph")
    graph = nx.DiGraph(layer_sizes=list(sizes), dtype=state.dtype.name)
    graph.add_nodes_from(((0, i), {"layer": 0, "index": i, "bias": 0.0}) for i in range(sizes[0]))
    for layer, (w, b) in enumerate(split_layers(state, layer_sizes=sizes), start=1):
        graph.add_nodes_from(
            ((layer, i), {"layer": layer, "index": i, "bias": v}) for i, v in enumerate(b.tolist())
        )
        n_in = sizes[layer - 1]
        graph.add_weighted_edges_from(
            ((layer - 1, k % n_in), (layer, k // n_in), v) for k, v in enumerate(w.ravel().tolist())
        )
    return graph


def from_graph(graph: nx.DiGraph) -> tuple[np.ndarray, list[int]]:
    """Invert :func:`to_graph`: the flat state and the layer sizes.

    Parameters
    ----------
    graph
        a graph built by :func:`to_graph` (node/edge attributes may have been
        changed; the node set and ``graph.graph["layer_sizes"]`` must be intact).

    Returns
    -------
    (state, layer_sizes)
        ``state`` of shape ``(P,)`` in the dtype recorded in ``graph.graph["dtype"]``
        (float64 if absent) — bitwise equal to the state the graph was built from.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> state, sizes = nd.from_graph(nd.to_graph(np.arange(43.0), layer_sizes=[4, 5, 3]))
    >>> bool(np.array_equal(state, np.arange(43.0))), sizes
    (True, [4, 5, 3])
    """
    if "layer_sizes" not in graph.graph:
        raise ValueError("from_graph: expected a graph built by to_graph (graph attribute 'layer_sizes'), got none")
    sizes = _check_sizes(graph.graph["layer_sizes"], "from_graph")
    dtype = np.dtype(graph.graph.get("dtype", "float64"))
    expected_nodes = sum(sizes)
    if graph.number_of_nodes() != expected_nodes:
        raise ValueError(
            f"from_graph: expected {expected_nodes} nodes for layer_sizes {sizes}, got {graph.number_of_nodes()}"
        )
    parts = []
    for layer in range(1, len(sizes)):
        w = nx.to_numpy_array(
            graph,
            nodelist=[(layer - 1, j) for j in range(sizes[layer - 1])] + [(layer, i) for i in range(sizes[layer])],
            weight="weight",
        )[: sizes[layer - 1], sizes[layer - 1] :].T
        b = np.array([graph.nodes[(layer, i)]["bias"] for i in range(sizes[layer])], dtype=np.float64)
        parts += [w.ravel(), b]
    return np.concatenate(parts).astype(dtype), sizes


def trajectory_layer_sizes(
    ds: xr.Dataset, *, layer_sizes: Sequence[int] | None = None, caller: str = "graph_trajectory"
) -> list[int]:
    """Layer sizes of a recorded MLP trajectory, checked against its ``state``.

    ``layer_sizes`` wins over ``ds.attrs["layer_sizes"]``; a trajectory whose
    ``record`` attribute is present and not ``"all"`` holds a subset or a sketch of
    the parameters and is refused, as is one whose ``param`` length is not
    ``n_parameters(layer_sizes)``.

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory Dataset of an MLP with ``state(step, param)``.
    layer_sizes : sequence of int, optional
        The widths; default ``ds.attrs["layer_sizes"]``.
    caller : str
        The public function's name, for the error message.

    Returns
    -------
    list of int

    Raises
    ------
    ValueError
        When no sizes are known, the record is not ``"all"`` or the sizes do not match ``state``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from netdyn.orbits.graphs import trajectory_layer_sizes
    >>> ds = xr.Dataset({"state": (("step", "param"), np.zeros((3, 43)))}, attrs={"layer_sizes": [4, 5, 3]})
    >>> trajectory_layer_sizes(ds)
    [4, 5, 3]
    """
    record = ds.attrs.get("record", "all")
    if record != "all":
        raise ValueError(
            f"{caller}: expected a trajectory recorded with record='all' (every parameter), got record={record!r}"
        )
    if layer_sizes is None:
        if "layer_sizes" not in ds.attrs:
            raise ValueError(f"{caller}: expected layer_sizes as an argument or a Dataset attribute, got neither")
        layer_sizes = np.atleast_1d(ds.attrs["layer_sizes"]).tolist()
    sizes = _check_sizes(layer_sizes, caller)
    n_param = ds.sizes.get("param", -1)
    if n_param != n_parameters(sizes):
        raise ValueError(
            f"{caller}: expected {n_parameters(sizes)} parameters for layer_sizes {sizes}, got param={n_param}"
        )
    return sizes


def graph_trajectory(ds: xr.Dataset, *, layer_sizes: Sequence[int] | None = None) -> Iterator[nx.DiGraph]:
    """The graph at each recorded step of a trajectory, built lazily.

    Parameters
    ----------
    ds
        a trajectory Dataset (``state`` over ``(step, param)``) recorded with
        ``record="all"``.
    layer_sizes
        default ``None``: read from ``ds.attrs["layer_sizes"]``.

    Returns
    -------
    iterator of networkx.DiGraph
        one graph per step, in step order, each with ``G.graph["step"]``; the state
        is read one row at a time, so a file-backed Dataset is never loaded whole.
        Input errors are raised at the call, not at the first ``next``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import netdyn as nd
    >>> ds = xr.Dataset({"state": (("step", "param"), np.ones((3, 43)))}, coords={"step": [0, 1, 2]},
    ...                 attrs={"layer_sizes": [4, 5, 3]})
    >>> [g.graph["step"] for g in nd.graph_trajectory(ds)]
    [0, 1, 2]
    """
    sizes = trajectory_layer_sizes(ds, layer_sizes=layer_sizes, caller="graph_trajectory")
    return _graphs(ds, sizes)


def _graphs(ds: xr.Dataset, sizes: list[int]) -> Iterator[nx.DiGraph]:
    state = ds["state"]
    steps = ds["step"].values if "step" in ds.coords else np.arange(state.shape[0])
    for row, step in enumerate(steps):
        graph = to_graph(np.asarray(state[row].values), layer_sizes=sizes)
        graph.graph["step"] = int(step)
        yield graph


def _state_and_sizes(
    model_or_state: Any, layer_sizes: Sequence[int] | None, caller: str
) -> tuple[np.ndarray, list[int]]:
    if isinstance(model_or_state, nn.Module):
        sizes = layer_sizes_of(model_or_state)
        if layer_sizes is not None and list(layer_sizes) != sizes:
            raise ValueError(f"{caller}: expected layer_sizes {sizes} (from the model), got {list(layer_sizes)}")
        vec = nn.utils.parameters_to_vector(model_or_state.parameters()).detach().cpu().numpy()
        return vec, sizes
    if layer_sizes is None:
        raise ValueError(f"{caller}: expected layer_sizes with a flat state, got None")
    sizes = _check_sizes(layer_sizes, caller)
    if isinstance(model_or_state, torch.Tensor):
        model_or_state = model_or_state.detach().cpu().numpy()
    state = np.asarray(model_or_state)
    if state.ndim != 1 or state.shape[0] != n_parameters(sizes) or state.dtype.kind != "f":
        raise ValueError(
            f"{caller}: expected a float state of shape ({n_parameters(sizes)},) for layer_sizes {sizes}, "
            f"got {state.dtype} {state.shape}"
        )
    return state, sizes


def _check_sizes(layer_sizes: Sequence[int], caller: str) -> list[int]:
    sizes = [int(n) for n in layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1 or any(float(a) != b for a, b in zip(layer_sizes, sizes)):
        raise ValueError(f"{caller}: expected layer_sizes of >= 2 positive ints, got {list(layer_sizes)}")
    return sizes
