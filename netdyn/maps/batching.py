"""Stepping a batch of states of one map in one call (vectorised when the map allows it)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["BatchStepper"]

Pair = tuple[Tensor, Tensor]


class BatchStepper:
    """Step a batch of states ``(n, dim)`` of one map in one call.

    ``vectorize=None`` (default) tries ``torch.func.vmap`` over ``map.step`` /
    ``map.step_jvp`` on the first batched call, checks member 0 against an
    un-batched call, and keeps vmap if both succeed; otherwise (the map uses
    ``.item()``, in-place module updates, a ``torch.optim`` optimiser, random ops
    ...) it falls back to a Python loop over the members.  ``True`` forces vmap,
    ``False`` the loop.  ``mode`` says which is in use ("vmap", "loop", or
    "unknown" before the first batched call).

    Parameters
    ----------
    map_ : DiscreteMap
        The map whose ``step`` / ``step_jvp`` are batched.
    vectorize : bool or None, default None
        None: try ``vmap``, fall back to a loop; True: force ``vmap``; False: loop.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> from netdyn.maps.batching import BatchStepper
    >>> stepper = BatchStepper(nd.HenonMap())
    >>> xs = torch.zeros(3, 2, dtype=torch.float64)
    >>> stepper.step(xs, 0).tolist()[0], stepper.mode
    ([1.0, 0.0], 'vmap')
    """

    def __init__(self, map_: Any, vectorize: bool | None = None):
        self.map = map_
        self.mode = "unknown" if vectorize is None else ("vmap" if vectorize else "loop")

    def step(self, xs: Tensor, t: int) -> Tensor:
        return self._call(lambda x: self.map.step(x, t), (xs,))

    def step_jvp(self, xs: Tensor, vs: Tensor, t: int) -> Pair:
        """``xs (n, dim)``, ``vs (n, dim)`` or ``(n, k, dim)`` -> ``(x_next, J v)``."""
        return self._call(lambda x, v: self.map.step_jvp(x, v, t), (xs, vs))

    def _call(self, f: Callable, args: tuple[Tensor, ...]) -> Any:
        if args[0].shape[0] == 1:
            return _stack([f(*(a[0] for a in args))])
        if self.mode != "loop":
            try:
                out = torch.func.vmap(f)(*args)
            except Exception:  # any failure of vmap means "not vectorisable": use the loop
                if self.mode == "vmap":
                    raise
                self.mode = "loop"
            else:
                if self.mode == "unknown":
                    self.mode = "vmap" if _same(out, f(*(a[0] for a in args))) else "loop"
                if self.mode == "vmap":
                    return out
        return _stack([f(*(a[i] for a in args)) for i in range(args[0].shape[0])])


def _stack(outs: list[Any]) -> Any:
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*outs))
    return torch.stack(outs)


def _same(batched: Any, single: Any) -> bool:
    pairs = zip(batched, single) if isinstance(single, tuple) else [(batched, single)]
    return all(torch.allclose(b[0], s, rtol=1e-5, atol=1e-12, equal_nan=True) for b, s in pairs)
