"""Sharpness: the top eigenvalues of the loss Hessian, and the edge of stability.

Gradient descent with rate ``lr`` on a quadratic is stable iff every Hessian
eigenvalue lies below ``2 / lr``; training at large ``lr`` tends to drive the top
eigenvalue ("sharpness") up to that line and hover there (edge of stability,
Cohen et al. 2021).  :func:`sharpness` computes the top eigenvalue(s) of
``map.loss(theta, t)`` from Hessian-vector products only; :func:`sharpness_along`
tracks them along a recorded trajectory.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from .lyapunov import map_attrs
from .maps import param_dim_of

__all__ = ["Sharpness", "sharpness", "sharpness_along", "hessian_vector_product"]


@dataclass(frozen=True)
class Sharpness:
    """Top Hessian eigenpairs.

    ``values (k,)`` descending; ``vectors (k, param_dim)`` unit eigenvectors;
    ``residuals (k,)`` ``||H v - lambda v||``; ``n_hvp`` Hessian-vector products used;
    ``converged`` all residuals within tolerance; ``method``.
    """

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    n_hvp: int
    converged: bool
    method: str


def hessian_vector_product(map_: Any, theta: Tensor, t: int = 0) -> Callable[[Tensor], Tensor]:
    """``v -> H(theta) v`` for ``map.loss(., t)``: forward-mode over reverse-mode AD
    (``torch.func.jvp`` of ``torch.func.grad``), exact, about the cost of two gradients."""
    grad = torch.func.grad(lambda th: map_.loss(th, t))
    return lambda v: torch.func.jvp(grad, (theta,), (v,))[1]


def sharpness(
    map_: Any,
    x: Tensor,
    k: int = 1,
    method: str = "lanczos",
    t: int = 0,
    max_iter: int | None = None,
    tol: float = 1e-6,
    seed: int = 0,
) -> Sharpness:
    """Top-``k`` eigenvalues of the Hessian of ``map.loss(theta, t)``.

    Parameters
    ----------
    map_ : map with ``loss(theta, t)`` (differentiable scalar) and ``param_dim``.
    x : tensor ``(dim,)`` or ``(param_dim,)`` — ``theta = x[:param_dim]``.
    k : int, default 1 — number of eigenvalues.
    method : {"lanczos", "power"}, default "lanczos".
    t : int, default 0 — step index (selects the mini-batch of a stochastic map).
    max_iter : int or None — Lanczos steps (default ``min(param_dim, max(60, 4k))``)
        or power iterations (default 1000).
    tol : float, default 1e-6 — relative residual ``||Hv - lambda v|| / |lambda|``.
    seed : int, default 0 — seed of the start vector(s).

    Returns
    -------
    :class:`Sharpness`.  A non-finite ``theta`` or Hessian gives NaN values with a
    warning; non-convergence gives ``converged=False`` with a warning.

    Maths
    -----
    Lanczos with full re-orthogonalisation builds an orthonormal Krylov basis ``Q``
    with ``Q^T H Q = T`` tridiagonal; the largest Ritz values of ``T`` converge to the
    largest (algebraic) eigenvalues, the residual of a Ritz pair is ``beta_m |s_m|``.
    Power ("subspace") iteration repeats ``V <- orth(H V)`` with a Rayleigh-Ritz step;
    it converges to the eigenvalues largest in *magnitude*, which equal the
    largest algebraic ones when the most negative eigenvalue is smaller in
    magnitude (the usual case for sharpness near the edge of stability).

    Defaults: 60 Lanczos steps resolve a well separated top eigenvalue of networks
    with thousands of parameters to ~1e-8 (Ghorbani et al. 2019 use 90 for ImageNet
    models); ``tol`` is well below the variation of sharpness along training.

    References
    ----------
    Lanczos (1950); Golub & Van Loan, *Matrix Computations* ch. 10; Cohen et al.,
    "Gradient descent on neural networks typically occurs at the edge of
    stability", ICLR 2021.
    """
    caller = "sharpness"
    if not callable(getattr(map_, "loss", None)):
        raise TypeError(f"{caller}: {type(map_).__name__} has no loss(theta, t) method")
    p = param_dim_of(map_)
    x = torch.as_tensor(x)
    if x.ndim != 1 or x.shape[0] not in (p, map_.dim):
        raise ValueError(f"{caller}: expected x of shape ({map_.dim},) or ({p},), got {tuple(x.shape)}")
    if int(k) != k or not 1 <= k <= p:
        raise ValueError(f"{caller}: expected integer k in [1, {p}], got {k}")
    if method not in ("lanczos", "power"):
        raise ValueError(f"{caller}: expected method 'lanczos' or 'power', got {method!r}")
    theta = x[:p].detach()
    nan = Sharpness(np.full(k, np.nan), np.full((k, p), np.nan), np.full(k, np.nan), 0, False, method)
    if not torch.isfinite(theta).all():
        warnings.warn(f"{caller}: non-finite parameters; sharpness is NaN", RuntimeWarning, stacklevel=2)
        return nan
    hvp = hessian_vector_product(map_, theta, t)
    gen = torch.Generator().manual_seed(int(seed))
    if method == "lanczos":
        result = _lanczos(hvp, p, k, min(p, max(60, 4 * k)) if max_iter is None else max_iter, tol, gen, theta.dtype)
    else:
        result = _power(hvp, p, k, 1000 if max_iter is None else max_iter, tol, gen, theta.dtype)
    if not np.isfinite(result.values).all():
        warnings.warn(f"{caller}: the Hessian-vector product is non-finite; sharpness is NaN", RuntimeWarning, 2)
        return nan
    if not result.converged:
        warnings.warn(f"{caller}: {method} did not reach tol={tol} in {result.n_hvp} products "
                      f"(residuals {result.residuals})", RuntimeWarning, stacklevel=2)
    return result


def _lanczos(hvp: Callable, p: int, k: int, m: int, tol: float, gen: torch.Generator, dtype) -> Sharpness:
    q = torch.randn(p, generator=gen, dtype=torch.float64).to(dtype)
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    values = vecs = res = None
    for j in range(min(m, p)):
        w = hvp(basis[j])
        alphas.append(float(w @ basis[j]))
        qmat = torch.stack(basis)
        for _ in range(2):  # full re-orthogonalisation, twice is enough (Kahan)
            w = w - qmat.T @ (qmat @ w)
        beta = float(w.norm())
        tri = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta_all, s = np.linalg.eigh(tri)
        order = np.argsort(theta_all)[::-1][: min(k, j + 1)]
        values, res = theta_all[order], beta * np.abs(s[-1, order])
        vecs = (torch.from_numpy(s[:, order].copy()).to(dtype).T @ qmat)
        if not math.isfinite(beta):
            break
        done = len(values) == k and bool((res <= tol * np.maximum(np.abs(values), 1e-30)).all())
        if done or beta <= 1e-14 * max(abs(values[0]), 1e-30):
            break
        betas.append(beta)
        basis.append(w / beta)
    if len(values) < k:  # the Krylov space closed before reaching k vectors
        values = np.concatenate((values, np.full(k - len(values), np.nan)))
    converged = bool(np.isfinite(values).all() and (res <= tol * np.maximum(np.abs(values[: len(res)]), 1e-30)).all())
    vectors = vecs.double().numpy()
    return Sharpness(values, vectors, res, len(alphas), converged, "lanczos")


def _power(hvp: Callable, p: int, k: int, iters: int, tol: float, gen: torch.Generator, dtype) -> Sharpness:
    v = torch.linalg.qr(torch.randn(p, k, generator=gen, dtype=torch.float64).to(dtype))[0]
    batched = torch.func.vmap(hvp)
    values = res = np.full(k, np.nan)
    n = 0
    for n in range(1, iters + 1):
        hv = batched(v.T.contiguous()).T  # (p, k)
        small = (v.T @ hv).double()
        theta, s = torch.linalg.eigh((small + small.T) / 2)
        order = torch.argsort(theta.abs(), descending=True)
        theta, s = theta[order], s[:, order].to(dtype)
        v, hv = v @ s, hv @ s
        values = theta.numpy()
        res = (hv - v * theta.to(dtype)).norm(dim=0).double().numpy()
        if not np.isfinite(res).all() or (res <= tol * np.maximum(np.abs(values), 1e-30)).all():
            break
        v = torch.linalg.qr(hv)[0]
    order = np.argsort(values)[::-1]
    converged = bool(np.isfinite(res).all() and (res <= tol * np.maximum(np.abs(values), 1e-30)).all())
    return Sharpness(values[order].copy(), v.T.double().numpy()[order], res[order], n * k, converged, "power")


def sharpness_along(
    map_: Any,
    trajectory_states: xr.Dataset | xr.DataArray | Tensor | np.ndarray,
    k: int = 1,
    method: str = "lanczos",
    every: int = 1,
    **options: Any,
) -> xr.Dataset:
    """Top Hessian eigenvalue(s) along a trajectory, compared with ``2 / lr``.

    Parameters
    ----------
    map_ : map with ``loss(theta, t)`` (and ``lr`` for the stability line).
    trajectory_states : a trajectory Dataset (its ``state (step, param)``), a
        DataArray ``(step, param)`` or an array ``(n, param_dim or dim)``; the
        recorded parameters must be *all* ``param_dim`` of them (not a subset or
        sketch).  The ``step`` coordinate (else ``0 .. n-1``) is passed as ``t``.
    k : int, default 1; method : {"lanczos", "power"}.
    every : int, default 1 — use every ``every``-th recorded state.
    **options : passed to :func:`sharpness` (``max_iter``, ``tol``, ``seed``).

    Returns
    -------
    xarray.Dataset: ``sharpness (step, eig)`` descending, ``residual (step, eig)``,
    ``converged (step)``, ``lr_times_sharpness (step)`` (``lr * lambda_max``: 2 is the
    edge of stability for plain GD); attrs ``two_over_lr`` (NaN without ``lr``),
    ``method``, the map's ``describe()``.

    Maths
    -----
    Plain GD on the local quadratic model is stable iff ``lambda_max < 2 / lr``
    (``(2 + 2 beta) / lr`` with heavy-ball momentum ``beta``; adaptive optimisers
    have a preconditioned threshold instead), so ``two_over_lr`` is the reference
    line for GD only.

    References
    ----------
    Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021.
    """
    caller = "sharpness_along"
    if isinstance(trajectory_states, xr.Dataset):
        if "state" not in trajectory_states:
            raise ValueError(f"{caller}: expected a trajectory Dataset with a 'state' variable, got "
                             f"{list(trajectory_states.data_vars)}")
        trajectory_states = trajectory_states["state"]
    if isinstance(trajectory_states, xr.DataArray):
        steps = (trajectory_states["step"].values if "step" in trajectory_states.coords
                 else np.arange(trajectory_states.shape[0]))
        states = torch.as_tensor(trajectory_states.values)
    else:
        states = torch.as_tensor(trajectory_states)
        steps = np.arange(states.shape[0])
    if states.ndim != 2 or states.shape[1] not in (param_dim_of(map_), map_.dim):
        raise ValueError(f"{caller}: expected states of shape (n, {param_dim_of(map_)}) or (n, {map_.dim}) "
                         f"(all parameters recorded), got {tuple(states.shape)}")
    if int(every) != every or every < 1:
        raise ValueError(f"{caller}: expected integer every >= 1, got {every}")
    pick = np.arange(0, states.shape[0], every)
    results = [sharpness(map_, states[i], k=k, method=method, t=int(steps[i]), **options) for i in pick]
    values = np.stack([r.values for r in results])
    lr = float(getattr(map_, "lr", np.nan))
    return xr.Dataset(
        {
            "sharpness": (("step", "eig"), values),
            "residual": (("step", "eig"), np.stack([r.residuals for r in results])),
            "converged": (("step",), np.array([r.converged for r in results])),
            "lr_times_sharpness": (("step",), lr * values[:, 0]),
        },
        coords={"step": np.asarray(steps)[pick].astype(np.int64), "eig": np.arange(k)},
        attrs={**map_attrs(map_), "two_over_lr": 2.0 / lr if lr else np.nan, "method": method},
    )
