"""What a recorder stores of each state: all parameters, named layers, or a sketch.

:func:`resolve_record` turns the ``record=`` argument of :func:`netdyn.orbits.trajectory.run`
into a :class:`Selection`: a function from the flat parameter vector
``theta = x[:map.param_dim]`` to the recorded row, plus its labels and the string
stored in the trajectory's ``record`` attribute.  That string is itself a valid
``record=`` value, so a run can be repeated from its attributes alone.

Accepted values
---------------
``"all"``
    every parameter, in the map's flat order;
``["W1", "b1"]`` or ``"layers:W1,b1"``
    the parameters whose layer label (``map.param_labels()[1]``) is listed, in flat order;
``k`` (int), ``"sketch:k"`` or ``"sketch:k:s"``
    a random projection to ``k`` dimensions with projection seed ``s`` (default 0);
    see :class:`SketchProjection`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from netdyn._core.validation import check_int
from netdyn.maps.base import param_dim_of

__all__ = ["Selection", "SketchProjection", "resolve_record"]

SKETCH_CHUNK_ROWS = 16384


@dataclass(frozen=True)
class Selection:
    """How to turn ``theta`` (shape ``(param_dim,)``) into one recorded row.

    ``project(theta)`` returns a tensor of shape ``(n,)``; ``names`` and ``layers``
    label its ``n`` entries; ``record`` is the ``record`` attribute; ``attrs``
    holds extra attributes (the sketch's ``sketch_seed``).

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.io.recording import resolve_record
    >>> sel = resolve_record(nd.HenonMap())
    >>> sel.names, sel.size, sel.record
    (['x0', 'x1'], 2, 'all')
    """

    project: Callable[[Tensor], Tensor]
    names: list[str]
    layers: list[str]
    record: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.names)


class SketchProjection:
    """A fixed Gaussian random projection ``theta -> theta @ P``, ``P`` of shape ``(param_dim, k)``.

    Parameters
    ----------
    param_dim : int
        length of ``theta``.
    k : int
        sketch dimension.
    seed : int, default 0
        projection seed.  The matrix depends only on ``(param_dim, k, seed)``, so
        trajectories recorded with the same seed (different training seeds, learning
        rates, ...) live in the same sketch space and can be compared.
    cache_bytes : int, default 256 MiB
        blocks of ``P`` are kept in memory up to this size; the rest are regenerated
        from their seeds at every call, so any ``param_dim`` works in bounded memory.

    Notes
    -----
    ``P_ij ~ N(0, 1) / sqrt(k)`` i.i.d., so ``E |P^T u|^2 = |u|^2`` for every ``u``.
    By the Johnson–Lindenstrauss lemma, for ``n`` points and ``0 < eps < 1`` all
    pairwise squared distances are kept within a factor ``1 ± eps`` with
    probability at least ``1 - n^2 exp(-k (eps^2/2 - eps^3/3) / 2)``; a single
    squared distance ratio is ``chi^2_k / k`` (relative spread ``sqrt(2/k)``,
    10 % for ``k = 200``).  The projection is linear, so differences of sketched
    states (twin distances, recurrence distances) are sketches of differences.

    ``P`` is generated in blocks of ``SKETCH_CHUNK_ROWS`` rows, block ``c`` from
    ``numpy.random.default_rng([seed, c])``, so the matrix never has to exist whole.

    References
    ----------
    W. B. Johnson, J. Lindenstrauss (1984), Contemp. Math. 26, 189-206;
    S. Dasgupta, A. Gupta (2003), Random Struct. Algorithms 22, 60-65.

    Examples
    --------
    >>> import torch
    >>> from netdyn.io.recording import SketchProjection
    >>> sketch = SketchProjection(1000, 16, seed=0)
    >>> tuple(sketch(torch.ones(1000, dtype=torch.float64)).shape)
    (16,)
    """

    def __init__(self, param_dim: int, k: int, *, seed: int = 0, cache_bytes: int = 256 * 2**20):
        param_dim = check_int(param_dim, "param_dim", "SketchProjection", minimum=1)
        k = check_int(k, "k", "SketchProjection", minimum=1)
        self.param_dim, self.k, self.seed = param_dim, k, int(seed)
        self._blocks: dict[int, Tensor] = {}
        self._moved: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}  # cached blocks on other devices
        n_blocks = -(-self.param_dim // SKETCH_CHUNK_ROWS)
        block_bytes = SKETCH_CHUNK_ROWS * self.k * 8
        self._cached = min(n_blocks, cache_bytes // block_bytes) if block_bytes else n_blocks
        self._n_blocks = n_blocks

    def block(self, c: int) -> Tensor:
        """Rows ``c * SKETCH_CHUNK_ROWS ...`` of ``P`` as a float64 tensor."""
        if c in self._blocks:
            return self._blocks[c]
        rows = min(SKETCH_CHUNK_ROWS, self.param_dim - c * SKETCH_CHUNK_ROWS)
        rng = np.random.default_rng([self.seed, c])
        b = torch.from_numpy(rng.standard_normal((rows, self.k)) / np.sqrt(self.k))
        if c < self._cached:
            self._blocks[c] = b
        return b

    def __call__(self, theta: Tensor) -> Tensor:
        if theta.shape != (self.param_dim,):
            raise ValueError(f"SketchProjection: expected theta of shape ({self.param_dim},), got {tuple(theta.shape)}")
        out = torch.zeros(self.k, dtype=theta.dtype, device=theta.device)
        for c in range(self._n_blocks):
            lo = c * SKETCH_CHUNK_ROWS
            key = (c, theta.dtype, theta.device)
            b = self._moved.get(key)
            if b is None:  # a host-to-device copy, kept for the cached blocks (not one per recorded step)
                b = self.block(c).to(dtype=theta.dtype, device=theta.device)
                if c < self._cached and theta.device.type != "cpu":
                    self._moved[key] = b
            out += theta[lo : lo + b.shape[0]] @ b
        return out


def _labels(map_: Any, param_dim: int) -> tuple[list[str], list[str]] | None:
    if not callable(getattr(map_, "param_labels", None)):
        return None
    names, layers = map_.param_labels()
    if len(names) != param_dim or len(layers) != param_dim:
        raise ValueError(
            f"run: {type(map_).__name__}.param_labels() must give {param_dim} names and layers, "
            f"got {len(names)} and {len(layers)}"
        )
    return [str(n) for n in names], [str(l) for l in layers]


def _parse(record: Any) -> tuple[str, Any]:
    if isinstance(record, (bool, np.bool_)):
        raise ValueError(f"run: expected record='all', a list of layer names or an int k, got {record!r}")
    if isinstance(record, (int, np.integer)):
        return "sketch", (int(record), 0)
    if isinstance(record, str):
        if record == "all":
            return "all", None
        if record.startswith("layers:"):
            return "layers", [s for s in record[len("layers:") :].split(",") if s]
        if record.startswith("sketch:"):
            parts = record.split(":")[1:]
            try:
                values = [int(p) for p in parts]
            except ValueError:
                values = []
            if len(values) in (1, 2):
                return "sketch", (values[0], values[1] if len(values) == 2 else 0)
        raise ValueError(
            f"run: expected record='all', 'layers:a,b', 'sketch:k[:seed]', a list of layer names "
            f"or an int, got {record!r}"
        )
    if isinstance(record, Sequence) and all(isinstance(s, str) for s in record):
        return "layers", list(record)
    raise ValueError(f"run: expected record='all', a list of layer names or an int k, got {record!r}")


def resolve_record(map_: Any, *, record: Any = "all") -> Selection:
    """The :class:`Selection` for ``record`` on ``map_`` (values: see the module docstring).

    Raises ``ValueError`` for an unknown form, for layer names the map does not
    have (listing the known ones), for layer selection on a map without
    ``param_labels()``, and for ``k < 1``.  Maps without ``param_labels()`` get
    names ``x0, x1, ...`` and layer ``"x"``; sketch coordinates are ``sketch0, ...``
    with layer ``"sketch"``.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.io.recording import resolve_record
    >>> resolve_record(nd.HenonMap(), record=1).names  # a 1-d sketch of the 2-d state
    ['sketch0']
    """
    param_dim = param_dim_of(map_)
    kind, arg = _parse(record)
    labels = _labels(map_, param_dim)
    if kind == "all":
        names, layers = labels or ([f"x{i}" for i in range(param_dim)], ["x"] * param_dim)
        return Selection(lambda theta: theta, names, layers, "all")
    if kind == "layers":
        if labels is None:
            raise ValueError(f"run: record={record!r} needs {type(map_).__name__}.param_labels(), which it lacks")
        known = list(dict.fromkeys(labels[1]))
        unknown = [name for name in arg if name not in known]
        if unknown or not arg:
            raise ValueError(f"run: unknown layer name(s) {unknown or arg}; known layers: {known}")
        wanted = set(arg)
        idx = [i for i, layer in enumerate(labels[1]) if layer in wanted]
        index = torch.tensor(idx, dtype=torch.long)
        on_device: dict[torch.device, Tensor] = {}  # the index moved once per device, not per recorded step
        chosen = [layer for layer in known if layer in wanted]
        return Selection(
            lambda theta: theta[on_device.setdefault(theta.device, index.to(theta.device))],
            [labels[0][i] for i in idx],
            [labels[1][i] for i in idx],
            "layers:" + ",".join(chosen),
        )
    k, seed = arg
    k = check_int(k, "the sketch dimension k", "run", minimum=1)
    proj = SketchProjection(param_dim, k, seed=seed)
    return Selection(
        proj, [f"sketch{j}" for j in range(k)], ["sketch"] * k, f"sketch:{k}:{seed}", {"sketch_seed": seed}
    )
