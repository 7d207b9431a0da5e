"""A conformance check that any :class:`~netdyn.maps.base.DiscreteMap` must pass.

Use it on your own maps exactly as netdyn's tests use it on the reference maps::

    from netdyn.testing import check_map
    check_map(MyMap())
"""
from __future__ import annotations

from typing import Any

import torch

from netdyn.maps.base import describe_map, has_jacobian, param_dim_of

__all__ = ["check_map", "finite_difference_jvp"]


def finite_difference_jvp(
    map_: Any, x: torch.Tensor, v: torch.Tensor, *, t: int = 0, h: float = 1e-6
) -> torch.Tensor:
    """Central difference ``(F(x + h v) - F(x - h v)) / 2h``, shape ``(dim,)``.

    Parameters
    ----------
    map_ : DiscreteMap
        Any map.
    x : Tensor ``(dim,)``
        State where the derivative is taken.
    v : Tensor ``(dim,)``
        Tangent direction.
    t : int, default 0
        Map time of ``x``.
    h : float, default 1e-6
        Step of the difference, in the units of the state.

    Returns
    -------
    Tensor ``(dim,)``
        The approximation of ``J(x) v``.

    Notes
    -----
    Truncation error is O(h^2 |F'''|), round-off O(eps |F| / h); ``h = 1e-6`` balances
    the two at about 1e-10 relative in float64 for smooth maps of O(1) scale.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> from netdyn.testing import finite_difference_jvp
    >>> x = torch.tensor([0.3], dtype=torch.float64)
    >>> fd = finite_difference_jvp(nd.LogisticMap(4.0), x, torch.ones(1, dtype=torch.float64))
    >>> round(float(fd[0]), 6)  # r (1 - 2x) = 1.6
    1.6
    """
    return (map_.step(x + h * v, t) - map_.step(x - h * v, t)) / (2 * h)


def check_map(map_: Any, *, seed: int = 0, steps: int = 3, rtol: float = 1e-6) -> None:
    """Assert the protocol: shapes, dtype, determinism, ``param_dim``, tangents.

    Parameters
    ----------
    map_ : DiscreteMap
        The map under test.
    seed : int, default 0
        Seed of its initial state and of the random tangents.
    steps : int, default 3
        Steps checked along the orbit.
    rtol : float, default 1e-6
        Tolerance of ``step_jvp`` against central finite differences (float64 maps),
        relative to the tangent's norm.

    Raises
    ------
    AssertionError
        With a message naming the broken rule.  When the map has ``step_jvp`` it is
        compared with finite differences for one tangent and for a batch of 3.

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.testing import check_map
    >>> check_map(nd.HenonMap()) is None
    True
    """
    name = type(map_).__name__
    assert isinstance(map_.dim, int) and map_.dim >= 1, f"{name}.dim must be a positive int"
    assert 1 <= param_dim_of(map_) <= map_.dim, f"{name}.param_dim must lie in [1, dim]"
    x = map_.initial_state(seed)
    assert x.shape == (map_.dim,), f"{name}.initial_state: expected ({map_.dim},), got {tuple(x.shape)}"
    assert torch.equal(x, map_.initial_state(seed)), f"{name}.initial_state is not a function of the seed"
    assert isinstance(describe_map(map_), dict), f"{name}.describe() must return a dict"
    for t in range(steps):
        y = map_.step(x, t)
        assert y.shape == x.shape and y.dtype == x.dtype, f"{name}.step changed shape or dtype at t={t}"
        assert torch.equal(y, map_.step(x.clone(), t)), f"{name}.step is not deterministic in (x, t) at t={t}"
        if has_jacobian(map_) and x.dtype == torch.float64:
            gen = torch.Generator().manual_seed(seed + t)
            vs = torch.randn(3, map_.dim, generator=gen, dtype=x.dtype)
            y1, jv = map_.step_jvp(x, vs[0], t)
            assert torch.allclose(y1, y, rtol=1e-12, atol=1e-12), f"{name}.step_jvp's state differs from step"
            yb, jvb = map_.step_jvp(x, vs, t)
            assert jvb.shape == (3, map_.dim), f"{name}.step_jvp: batch of tangents gave {tuple(jvb.shape)}"
            assert torch.allclose(jvb[0], jv, rtol=1e-10, atol=1e-12), f"{name}.step_jvp: batch and single disagree"
            for i in range(3):
                fd = finite_difference_jvp(map_, x, vs[i], t=t)
                err = float((jvb[i] - fd).norm() / max(float(fd.norm()), 1e-300))
                assert err < rtol, f"{name}.step_jvp differs from finite differences by {err:.2e} at t={t}"
        x = y
