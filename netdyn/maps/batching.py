"""Stepping a batch of states of one map in one call (vectorised when the map allows it)."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from netdyn.maps.base import is_batch_first

__all__ = ["BatchStepper"]

Pair = tuple[Tensor, Tensor]


class BatchStepper:
    """Step a batch of states ``(n, dim)`` of one map in one call.

    ``vectorize=None`` (default) tries ``torch.func.vmap`` over ``map.step`` /
    ``map.step_jvp`` on the first batched call, checks member 0 against an
    un-batched call, and keeps vmap if both succeed; otherwise (the map uses
    ``.item()``, in-place module updates, a ``torch.optim`` optimiser, random ops
    ...) it falls back to a Python loop over the members.  ``True`` forces vmap,
    ``False`` the loop.  A ``batch_first`` map steps the batch itself (mode
    "batch"; unless ``vectorize=False``), so parameter batches work too.  ``mode``
    says which is in use ("batch", "vmap", "loop", or "unknown" before the first
    batched call).

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
    >>> stepper = BatchStepper(nd.PotentialGD(lambda x: (x**2).sum(), dim=2, lr=0.25))
    >>> xs = torch.ones(3, 2, dtype=torch.float64)
    >>> stepper.step(xs, 0).tolist()[0], stepper.mode
    ([0.5, 0.5], 'vmap')
    """

    def __init__(self, map_: Any, vectorize: bool | None = None):
        self.map = map_
        if vectorize is False:
            self.mode = "loop"
        elif is_batch_first(map_):
            self.mode = "batch"
        else:
            self.mode = "unknown" if vectorize is None else "vmap"

    def step(self, xs: Tensor, t: int, *, out: Tensor | None = None) -> Tensor:
        """``xs (n, dim)`` -> the next states ``(n, dim)``, written into ``out`` when given
        (a preallocated ``(n, dim)`` tensor that does not overlap ``xs``)."""
        return self._call(lambda x: self.map.step(x, t), (xs,), out)

    def step_jvp(self, xs: Tensor, vs: Tensor, t: int) -> Pair:
        """``xs (n, dim)``, ``vs (n, dim)`` or ``(n, k, dim)`` -> ``(x_next, J v)``."""
        return self._call(lambda x, v: self.map.step_jvp(x, v, t), (xs, vs))

    def _call(self, f: Callable, args: tuple[Tensor, ...], out: Tensor | None = None) -> Any:
        if self.mode == "batch":  # the map steps a batch itself (parameter batches too)
            result = f(*args)
            return result if out is None else out.copy_(result)
        if args[0].shape[0] == 1:
            return _stack([f(*(a[0] for a in args))], out)
        if self.mode != "loop":
            try:
                result = torch.func.vmap(f)(*args)
            except Exception:  # any failure of vmap means "not vectorisable": use the loop
                if self.mode == "vmap":
                    raise
                self.mode = "loop"
            else:
                if self.mode == "unknown":
                    self.mode = "vmap" if _same(result, f(*(a[0] for a in args))) else "loop"
                if self.mode == "vmap":
                    return result if out is None else out.copy_(result)
        return _stack([f(*members) for members in zip(*(a.unbind(0) for a in args))], out)


def _stack(outs: list[Any], out: Tensor | None = None) -> Any:
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*outs))
    return torch.stack(outs) if out is None else torch.stack(outs, out=out)


def _same(batched: Any, single: Any) -> bool:
    pairs = zip(batched, single) if isinstance(single, tuple) else [(batched, single)]
    return all(torch.allclose(b[0], s, rtol=1e-5, atol=1e-12, equal_nan=True) for b, s in pairs)
