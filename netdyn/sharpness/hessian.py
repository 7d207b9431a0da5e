"""Sharpness: the top eigenvalues of the loss Hessian, and the edge of stability.

Gradient descent with rate ``lr`` on a quadratic is stable iff every Hessian
eigenvalue lies below ``2 / lr``; training at large ``lr`` tends to drive the top
eigenvalue ("sharpness") up to that line and hover there (edge of stability,
Cohen et al. 2021).  :func:`sharpness_at` computes the top eigenvalue(s) of
``map.loss(theta, t)`` from Hessian-vector products only; :func:`sharpness_along`
tracks them along a recorded trajectory, each Lanczos run started from the previous
top eigenvector.  ``preconditioned=True`` gives the eigenvalues of ``P^-1 H`` for
the preconditioner ``P`` of an adaptive optimiser's step (Adam, RMSprop), compared
with that optimiser's own threshold (:mod:`netdyn.sharpness.threshold`).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from netdyn._core.devices import map_device
from netdyn._core.progress import progress_bar
from netdyn._core.results import DatasetResult
from netdyn._core.validation import check_choice, check_int
from netdyn.maps.base import map_attrs, param_dim_of
from netdyn.sharpness.threshold import stability_threshold, step_preconditioner

__all__ = ["Sharpness", "sharpness_at", "sharpness_along", "track_sharpness", "hessian_vector_product",
           "top_eigenvalues"]


@dataclass(frozen=True, eq=False, repr=False)
class Sharpness(DatasetResult):
    """Top Hessian eigenpairs (a :class:`~netdyn._core.results.DatasetResult`).

    Attributes
    ----------
    values : ndarray ``(k,)``
        eigenvalues, descending (units of the loss Hessian).
    vectors : ndarray ``(k, param_dim)``
        unit eigenvectors (of the symmetrised ``P^-1/2 H P^-1/2`` when ``preconditioned``).
    residuals : ndarray ``(k,)``
        ``||H v - lambda v||``.
    n_hvp : int
        Hessian-vector products used.
    converged : bool
        all residuals within tolerance.
    method : str
        "lanczos" or "power".
    preconditioned : bool
        eigenvalues of ``P^-1 H`` rather than ``H``.
    threshold : float
        the optimiser's stability line for these eigenvalues (NaN when unknown).

    Examples
    --------
    >>> import netdyn as nd
    >>> from netdyn.sharpness.hessian import Sharpness
    >>> m = nd.QuadraticGD([1.0, 4.0], lr=0.1)
    >>> res = nd.sharpness_at(m, m.initial_state())
    >>> round(float(res.values[0]), 6), res.threshold
    (4.0, 20.0)
    >>> Sharpness.from_dataset(res.to_dataset()).n_hvp == res.n_hvp
    True
    """

    values: np.ndarray = field(metadata={"dims": ("eig",)})
    vectors: np.ndarray = field(metadata={"dims": ("eig", "param")})
    residuals: np.ndarray = field(metadata={"dims": ("eig",)})
    n_hvp: int
    converged: bool
    method: str
    preconditioned: bool = False
    threshold: float = float("nan")


def hessian_vector_product(map_: Any, theta: Tensor, *, t: int = 0) -> Callable[[Tensor], Tensor]:
    """``v -> H(theta) v`` for ``map.loss(., t)``, exact.

    Parameters
    ----------
    map_ : map with ``loss(theta, t)``.
    theta : tensor ``(param_dim,)`` — the parameters where ``H`` is evaluated.
    t : int, default 0 — step index (selects the mini-batch of a stochastic map).

    Returns
    -------
    callable
        ``hvp(v)``: tensor ``(param_dim,)`` -> ``H v`` of the same shape.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> from netdyn.sharpness.hessian import hessian_vector_product
    >>> m = nd.QuadraticGD([1.0, 4.0], lr=0.1)
    >>> hvp = hessian_vector_product(m, m.initial_state())
    >>> hvp(torch.tensor([1.0, 1.0], dtype=torch.float64)).tolist()
    [1.0, 4.0]

    Notes
    -----
    Reverse-over-reverse: the gradient's graph is built once per ``theta`` and every
    product is one more backward pass through it (on CPU cheaper than
    forward-over-reverse, and it works for every loss autograd differentiates twice,
    where ``torch.func.jvp`` of ``torch.func.grad`` fails on some, e.g. ``MSELoss``).
    A loss linear in ``theta`` has ``H = 0``.
    """
    leaf = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(map_.loss(leaf, t), leaf, create_graph=True)

    def hvp(v: Tensor) -> Tensor:
        if not grad.requires_grad:
            return torch.zeros_like(v)
        (product,) = torch.autograd.grad(grad, leaf, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if product is None else product.detach()

    return hvp


def sharpness_at(
    map_: Any,
    x: Tensor,
    *,
    t: int = 0,
    k: int = 1,
    method: str = "lanczos",
    max_iter: int | None = None,
    tol: float = 1e-6,
    seed: int = 0,
    preconditioned: bool = False,
    v0: Tensor | None = None,
) -> Sharpness:
    """Top-``k`` eigenvalues of the Hessian of ``map.loss(theta, t)``, or of ``P^-1 H``.

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
    preconditioned : bool, default False — eigenvalues of ``P^-1 H`` with ``P`` the
        diagonal preconditioner of the optimiser's step from ``x`` at ``t``
        (:func:`netdyn.sharpness.threshold.step_preconditioner`; needs the full state
        ``(dim,)`` with the optimiser buffers).  Computed as the symmetric
        ``P^-1/2 H P^-1/2``, which has the same eigenvalues.
    v0 : tensor ``(param_dim,)``, optional — Lanczos start vector (a warm start, e.g.
        the previous top eigenvector along training); default a seeded random vector.

    Returns
    -------
    :class:`Sharpness`, with ``threshold`` = :func:`~netdyn.sharpness.threshold.stability_threshold`
    of the map (``2 / lr`` for plain GD; for ``preconditioned=False`` and an adaptive
    optimiser NaN, as the raw Hessian has no threshold there).  A non-finite ``theta`` or Hessian gives NaN values with a
    warning; non-convergence gives ``converged=False`` with a warning.

    Raises
    ------
    TypeError
        for a map without ``loss``.
    ValueError
        on a bad ``x`` shape, ``k`` outside ``[1, param_dim]``, an unknown ``method``
        or a bad ``v0``.

    Notes
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

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.QuadraticGD([[2.0, 1.0], [1.0, 2.0]], lr=0.5)  # eigenvalues 1 and 3
    >>> res = nd.sharpness_at(m, m.initial_state(), k=2)
    >>> [round(float(v), 6) for v in res.values], res.threshold  # 2 / lr = 4
    ([3.0, 1.0], 4.0)
    """
    caller = "sharpness_at"
    if not callable(getattr(map_, "loss", None)):
        raise TypeError(f"{caller}: {type(map_).__name__} has no loss(theta, t) method")
    p = param_dim_of(map_)
    x = torch.as_tensor(x, device=map_device(map_))
    if x.ndim != 1 or x.shape[0] not in (p, map_.dim):
        raise ValueError(f"{caller}: expected x of shape ({map_.dim},) or ({p},), got {tuple(x.shape)}")
    k = check_int(k, "k", caller, minimum=1, maximum=p)
    method = check_choice(method, "method", caller, ("lanczos", "power"))
    theta = x[:p].detach()
    nan = Sharpness(np.full(k, np.nan), np.full((k, p), np.nan), np.full(k, np.nan), 0, False, method)
    if not torch.isfinite(theta).all():
        warnings.warn(f"{caller}: non-finite parameters; sharpness is NaN", RuntimeWarning, stacklevel=2)
        return nan
    hvp = hessian_vector_product(map_, theta, t=t)
    threshold = _threshold(map_, preconditioned, t)
    if preconditioned:
        scale = step_preconditioner(map_, x, t=t).rsqrt()
        raw_hvp = hvp
        hvp = lambda v: scale * raw_hvp(scale * v)  # noqa: E731  (P^-1/2 H P^-1/2)
    gen = torch.Generator().manual_seed(int(seed))
    if v0 is not None and (tuple(v0.shape) != (p,) or not bool(torch.isfinite(v0).all()) or float(v0.norm()) == 0):
        raise ValueError(f"{caller}: expected a finite non-zero start vector v0 of shape ({p},), got {tuple(v0.shape)}")
    if method == "lanczos":
        result = _lanczos(hvp, p, k, min(p, max(60, 4 * k)) if max_iter is None else max_iter, tol, gen, theta.dtype, v0,
                          device=theta.device)
    else:
        result = _power(hvp, p, k, 1000 if max_iter is None else max_iter, tol, gen, theta.dtype, device=theta.device)
    result = dataclasses.replace(result, preconditioned=bool(preconditioned), threshold=threshold)
    if not np.isfinite(result.values).all():
        warnings.warn(f"{caller}: the Hessian-vector product is non-finite; sharpness is NaN", RuntimeWarning, 2)
        return nan
    if not result.converged:
        warnings.warn(f"{caller}: {method} did not reach tol={tol} in {result.n_hvp} products "
                      f"(residuals {result.residuals})", RuntimeWarning, stacklevel=2)
    return result


def _threshold(map_: Any, preconditioned: bool, t: int) -> float:
    """The stability line that eigenvalues of this kind are compared with at step ``t``
    (the rate of that step under a schedule; NaN when no line applies)."""
    opt = getattr(map_, "functional_optimizer", None)
    adaptive = opt is not None and getattr(opt, "name", "sgd") != "sgd"
    if adaptive and not preconditioned:
        return float("nan")
    if opt is None and getattr(map_, "optimizer_spec", None) is not None:  # a black-box optimiser
        return float("nan")
    return stability_threshold(map_, t=t)


def top_eigenvalues(
    hvp: Callable[[Tensor], Tensor], dim: int, *, k: int = 1, max_iter: int | None = None, tol: float = 1e-6,
    seed: int = 0, dtype: torch.dtype = torch.float64, v0: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Sharpness:
    """Top-``k`` eigenpairs of a symmetric operator given by its products, by Lanczos.

    The engine behind :func:`sharpness_at`, for operators that are not a map's loss (e.g. a
    user's model on one batch, :class:`netdyn.monitor.LyapunovMonitor`).

    Parameters
    ----------
    hvp : callable
        ``v -> H v`` for tensors of shape ``(dim,)``; ``H`` symmetric.
    dim : int
        Size of the operator.
    k : int, default 1
        Number of eigenpairs.
    max_iter : int or None, default None
        Lanczos steps; None: ``min(dim, max(60, 4k))``.
    tol : float, default 1e-6
        Relative residual ``||Hv - lambda v|| / |lambda|``.
    seed : int, default 0
        Seed of the random start vector.
    dtype : torch.dtype, default torch.float64
        Type of the Lanczos vectors.
    v0 : tensor ``(dim,)``, optional
        Start vector instead of a random one.
    device : torch.device, optional
        Device of the vectors ``hvp`` takes (default: ``v0``'s, else the CPU).  The random
        start is drawn on the CPU and moved, so every device starts from the same vector;
        Lanczos reads ``alpha_j`` and ``beta_j`` back at every iteration (a host sync per
        Hessian-vector product, which costs far more).

    Returns
    -------
    Sharpness
        ``method="lanczos"``, ``threshold`` NaN.

    Examples
    --------
    >>> import torch
    >>> from netdyn.sharpness.hessian import top_eigenvalues
    >>> h = torch.diag(torch.tensor([5.0, 2.0, -1.0], dtype=torch.float64))
    >>> res = top_eigenvalues(lambda v: h @ v, 3, k=2)
    >>> [round(float(v), 6) for v in res.values]
    [5.0, 2.0]
    """
    gen = torch.Generator().manual_seed(int(seed))
    m = min(dim, max(60, 4 * k)) if max_iter is None else max_iter
    return _lanczos(hvp, dim, k, m, tol, gen, dtype, v0, device=device)


def _lanczos(
    hvp: Callable, p: int, k: int, m: int, tol: float, gen: torch.Generator, dtype, v0: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Sharpness:
    device = torch.device(device) if device is not None else (v0.device if v0 is not None else torch.device("cpu"))
    q = torch.randn(p, generator=gen, dtype=torch.float64) if v0 is None else v0.detach()
    q = q.to(device=device, dtype=dtype)  # a CPU draw (or the given start), moved once
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
        vecs = (torch.from_numpy(s[:, order].copy()).to(device=device, dtype=dtype).T @ qmat)
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
    vectors = vecs.double().cpu().numpy()
    return Sharpness(values, vectors, res, len(alphas), converged, "lanczos")


def _power(hvp: Callable, p: int, k: int, iters: int, tol: float, gen: torch.Generator, dtype,
           device: torch.device | str = "cpu") -> Sharpness:
    v = torch.linalg.qr(torch.randn(p, k, generator=gen, dtype=torch.float64).to(dtype))[0].to(device)
    batched = lambda vs: torch.stack([hvp(v) for v in vs])  # noqa: E731  (k products on one graph)
    values = res = np.full(k, np.nan)
    n = 0
    for n in range(1, iters + 1):
        hv = batched(v.T.contiguous()).T  # (p, k)
        small = (v.T @ hv).double()
        theta, s = torch.linalg.eigh((small + small.T) / 2)
        order = torch.argsort(theta.abs(), descending=True)
        theta, s = theta[order], s[:, order].to(dtype)
        v, hv = v @ s, hv @ s
        values = theta.cpu().numpy()
        res = (hv - v * theta.to(dtype)).norm(dim=0).double().cpu().numpy()
        if not np.isfinite(res).all() or (res <= tol * np.maximum(np.abs(values), 1e-30)).all():
            break
        v = torch.linalg.qr(hv)[0]
    order = np.argsort(values)[::-1]
    converged = bool(np.isfinite(res).all() and (res <= tol * np.maximum(np.abs(values), 1e-30)).all())
    return Sharpness(values[order].copy(), v.T.double().cpu().numpy()[order], res[order], n * k, converged, "power")


def sharpness_along(
    map_: Any,
    x: xr.Dataset | xr.DataArray | Tensor | np.ndarray,
    *,
    k: int = 1,
    method: str = "lanczos",
    every: int = 1,
    warm_start: bool = True,
    **options: Any,
) -> xr.Dataset:
    """Top Hessian eigenvalue(s) along a trajectory, compared with ``2 / lr``.

    Parameters
    ----------
    map_ : map with ``loss(theta, t)`` (and ``lr`` for the stability line).
    x : a trajectory Dataset (its ``state (step, param)``), a
        DataArray ``(step, param)`` or an array ``(n, param_dim or dim)``; the
        recorded parameters must be *all* ``param_dim`` of them (not a subset or
        sketch).  The ``step`` coordinate (else ``0 .. n-1``) is passed as ``t``.
    k : int, default 1 — eigenvalues per state.
    method : {"lanczos", "power"}, default "lanczos".
    every : int, default 1 — use every ``every``-th recorded state.
    warm_start : bool, default True — start each Lanczos run from the previous top
        eigenvector (sharpness moves slowly along training, so this saves products).
    **options : passed to :func:`sharpness_at` (``max_iter``, ``tol``, ``seed``,
        ``preconditioned`` — which needs states with the optimiser buffers, ``(n, dim)``).

    Returns
    -------
    xarray.Dataset: ``sharpness (step, eig)`` descending, ``residual (step, eig)``,
    ``converged (step)``, ``lr_times_sharpness (step)`` (``lr * lambda_max``: 2 is the
    edge of stability for plain GD); attrs ``two_over_lr`` (NaN without ``lr``),
    ``method``, the map's ``describe()``.

    Raises
    ------
    ValueError
        on states of the wrong shape, ``every < 1``, or ``preconditioned`` without
        the optimiser buffers.

    Notes
    -----
    Plain GD on the local quadratic model is stable iff ``lambda_max < 2 / lr``
    (``(2 + 2 beta) / lr`` with heavy-ball momentum ``beta``; adaptive optimisers
    have a preconditioned threshold instead), so ``two_over_lr`` is the reference
    line for GD only.

    References
    ----------
    Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 4.0], lr=0.4)
    >>> states = torch.stack([m.initial_state(seed) for seed in range(3)])
    >>> res = nd.sharpness_along(m, states)
    >>> [round(float(v), 6) for v in res["lr_times_sharpness"]]  # 0.4 * 4
    [1.6, 1.6, 1.6]
    """
    caller = "sharpness_along"
    if isinstance(x, xr.Dataset):
        if "state" not in x:
            raise ValueError(f"{caller}: expected a trajectory Dataset with a 'state' variable, got "
                             f"{list(x.data_vars)}")
        x = x["state"]
    if isinstance(x, xr.DataArray):
        steps = (x["step"].values if "step" in x.coords
                 else np.arange(x.shape[0]))
        states = torch.as_tensor(x.values)
    else:
        states = torch.as_tensor(x)
        steps = np.arange(states.shape[0])
    if states.ndim != 2 or states.shape[1] not in (param_dim_of(map_), map_.dim):
        raise ValueError(f"{caller}: expected states of shape (n, {param_dim_of(map_)}) or (n, {map_.dim}) "
                         f"(all parameters recorded), got {tuple(states.shape)}")
    every = check_int(every, "every", caller, minimum=1)
    pick = np.arange(0, states.shape[0], every)
    if options.get("preconditioned") and states.shape[1] != map_.dim:
        raise ValueError(f"{caller}: preconditioned sharpness needs the optimiser buffers: expected states of "
                         f"shape (n, {map_.dim}), got {tuple(states.shape)}")
    results: list[Sharpness] = []
    for i in pick:
        v0 = _warm_start(results, method) if warm_start else None
        results.append(sharpness_at(map_, states[i], k=k, method=method, t=int(steps[i]), v0=v0, **options))
    return _sharpness_dataset(map_, results, np.asarray(steps)[pick], k, method)


def track_sharpness(
    map_: Any,
    x0: Tensor,
    steps: int,
    *,
    every: int = 10,
    t0: int = 0,
    k: int = 1,
    preconditioned: bool | None = None,
    progress: bool | None = None,
    **options: Any,
) -> xr.Dataset:
    """Sharpness every ``every`` steps while the map runs, against the optimiser's own threshold.

    Parameters
    ----------
    map_ : a map with ``loss(theta, t)`` and ``step`` (e.g. a :class:`~netdyn.maps.training.TrainingMap`).
    x0 : tensor ``(dim,)`` — the start state (parameters and optimiser buffers).
    steps : int — map steps to run; sharpness is taken at ``t0, t0 + every, ...`` (before each step).
    every : int, default 10.
    t0 : int, default 0 — map time of ``x0``.
    k : int, default 1 — eigenvalues per measurement.
    preconditioned : bool or None — default None: True for an adaptive optimiser (Adam,
        AdamW, RMSprop), whose edge of stability is that of ``P^-1 H``, False otherwise.
    progress : bool or None, default None — a tqdm bar over the steps (None: only on
        a terminal).
    **options : passed to :func:`sharpness_at` (``method``, ``max_iter``, ``tol``, ``seed``).

    Returns
    -------
    xarray.Dataset as :func:`sharpness_along`, with ``threshold`` in the attributes and
    ``sharpness_over_threshold (step)``: 1 is the edge of stability.  Every Lanczos run
    after the first starts from the previous top eigenvector.

    Raises
    ------
    ValueError
        on a bad ``x0`` shape or counts out of range.

    Examples
    --------
    >>> import netdyn as nd
    >>> m = nd.QuadraticGD([1.0, 4.0], lr=0.4)
    >>> res = nd.track_sharpness(m, m.initial_state(), 20, every=10)
    >>> res["step"].values.tolist(), [round(float(v), 6) for v in res["sharpness_over_threshold"]]
    ([0, 10], [0.8, 0.8])
    """
    caller = "track_sharpness"
    x = torch.as_tensor(x0, device=map_device(map_))
    if x.shape != (map_.dim,):
        raise ValueError(f"{caller}: expected x0 of shape ({map_.dim},), got {tuple(x.shape)}")
    steps = check_int(steps, "steps", caller, minimum=1)
    every = check_int(every, "every", caller, minimum=1)
    t0 = check_int(t0, "t0", caller, minimum=0)
    if preconditioned is None:
        opt = getattr(map_, "functional_optimizer", None)
        preconditioned = opt is not None and getattr(opt, "name", "sgd") != "sgd"
    method = options.pop("method", "lanczos")
    results: list[Sharpness] = []
    measured: list[int] = []
    lost = torch.full((), -1, dtype=torch.int64, device=x.device)  # first non-finite step, read at measurements only
    with progress_bar(steps, progress=progress, desc=caller) as bar:
        for t in range(t0, t0 + steps):
            if (t - t0) % every == 0:
                if t > t0 and int(lost) >= 0:  # one host sync per measurement (Lanczos syncs anyway)
                    break
                results.append(sharpness_at(map_, x, k=k, method=method, t=t, preconditioned=preconditioned,
                                            v0=_warm_start(results, method), **options))
                measured.append(t)
            x = map_.step(x, t)
            bar.update(1)
            lost = torch.where((lost < 0) & ~torch.isfinite(x).all(), t + 1, lost)
    if int(lost) >= 0:
        warnings.warn(f"{caller}: the state became non-finite at step {int(lost)}; tracking stopped", RuntimeWarning, 2)
    return _sharpness_dataset(map_, results, np.array(measured), k, method)


def _warm_start(previous: list[Sharpness], method: str) -> Tensor | None:
    """The last finite top eigenvector, as a Lanczos start (the power method keeps its random block)."""
    if method != "lanczos" or not previous or not np.isfinite(previous[-1].vectors[0]).all():
        return None
    return torch.from_numpy(previous[-1].vectors[0].copy())


def _sharpness_dataset(map_: Any, results: list[Sharpness], steps: np.ndarray, k: int, method: str) -> xr.Dataset:
    values = np.stack([r.values for r in results])
    lr = float(getattr(map_, "lr", np.nan))
    thresholds = np.array([r.threshold for r in results], dtype=np.float64)
    return xr.Dataset(
        {
            "sharpness": (("step", "eig"), values),
            "residual": (("step", "eig"), np.stack([r.residuals for r in results])),
            "converged": (("step",), np.array([r.converged for r in results])),
            "lr_times_sharpness": (("step",), lr * values[:, 0]),
            "threshold": (("step",), thresholds),
            "sharpness_over_threshold": (("step",), values[:, 0] / thresholds),
            "n_hvp": (("step",), np.array([r.n_hvp for r in results])),
        },
        coords={"step": steps.astype(np.int64), "eig": np.arange(k)},
        attrs={**map_attrs(map_), "two_over_lr": 2.0 / lr if lr else np.nan, "method": method,
               "threshold": float(thresholds[0]), "preconditioned": int(bool(results and results[0].preconditioned))},
    )
