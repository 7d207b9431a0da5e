"""The 0-1 test for chaos (Gottwald & Melbourne), on any series or trajectory observable.

A scalar observable ``phi(j)``, ``j = 1 .. N``, drives the planar translation

    p_c(n) = sum_{j<=n} phi(j) cos(j c),      q_c(n) = sum_{j<=n} phi(j) sin(j c),

which is bounded for regular (periodic, quasi-periodic) dynamics and diffuses,
``|p, q| ~ sqrt(n)``, for chaotic dynamics.  The mean-square displacement

    M_c(n) = 1/(N - n) sum_{j=1}^{N-n} [(p_c(j+n) - p_c(j))^2 + (q_c(j+n) - q_c(j))^2],   n = 1 .. n_cut,

grows linearly in ``n`` for chaos and stays bounded otherwise.  The *modified*
test (Gottwald & Melbourne 2009) removes the oscillating term that a non-zero
mean produces,

    D_c(n) = M_c(n) - (E phi)^2 (1 - cos(n c)) / (1 - cos c),

adds a bounded regularising term ``alpha Var(phi) sin(sqrt(2) n)`` (G&M's
``V_damp``; ``alpha = 0`` switches it off) so that the correlation below is well
conditioned when ``D_c`` is almost constant (regular dynamics), and measures
growth by the correlation coefficient

    K_c = corr(xi, D~_c),   xi = (1, 2, .., n_cut).

``K = median_c K_c`` over ``n_c`` frequencies drawn uniformly in
``(pi/5, 4 pi/5)`` (avoiding the resonances ``c`` near 0 and ``pi``; the median
discards the isolated resonant ``c`` where ``K_c`` is spuriously large).
``K ~ 0``: regular; ``K ~ 1``: chaotic.  G&M use ``n_cut = N / 10``.

Scale: G&M state ``V_damp`` with ``alpha = 2.5`` for observables of order one;
here it is multiplied by ``Var(phi)``, so ``K`` is unchanged when ``phi`` is
rescaled (``phi -> a phi``; a shift ``b`` is removed by the ``(E phi)^2`` term only as ``N -> infinity``), as a loss or a parameter series in a training
run can have any scale.

Sampling: the test assumes a map (or a flow sampled at about its
decorrelation time).  A finely sampled flow is *oversampled*: neighbouring
samples are nearly equal, ``K_c`` depends on ``c`` and ``K`` drops towards 0 for
a chaotic flow (Melosik & Marszalek 2016; G&M 2016).  Pass ``downsample=k`` to
keep every k-th sample; the result reports ``oversampled`` by Matthews'
heuristic ``(max - min) / mean|diff| > 10``.

References
----------
G. A. Gottwald, I. Melbourne, "A new test for chaos in deterministic systems",
Proc. R. Soc. A 460, 603 (2004).
G. A. Gottwald, I. Melbourne, "On the implementation of the 0-1 test for
chaos", SIAM J. Appl. Dyn. Syst. 8, 129 (2009).
G. A. Gottwald, I. Melbourne, "The 0-1 test for chaos: a review", in Chaos
Detection and Predictability, Lect. Notes Phys. 915, 221 (2016).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from netdyn._core.validation import check_float, check_int
from netdyn.series.observables import observable_series

__all__ = ["chaos01", "chaos01_k"]

_C_LOW, _C_HIGH = np.pi / 5, 4 * np.pi / 5


def _series(x: Any, observable: str | None, downsample: int, caller: str) -> np.ndarray:
    downsample = check_int(downsample, "downsample", caller, minimum=1)
    phi = observable_series(x, observable=observable)
    if phi.ndim != 1:
        raise ValueError(f"{caller}: expected a scalar observable, got shape {phi.shape} (pick observable='norm', 'param:<i>', ...)")
    phi = phi[::downsample]
    if phi.size < 100:
        raise ValueError(f"{caller}: expected at least 100 samples (G&M use thousands), got {phi.size}")
    if np.ptp(phi) == 0:
        raise ValueError(f"{caller}: expected a non-constant series, got a constant one")
    return phi


def _mean_square_displacement(phi: np.ndarray, c: np.ndarray, n_cut: int) -> np.ndarray:
    """``M_c(n)`` for every ``c`` (C,) and ``n = 1 .. n_cut``: array (C, n_cut).

    With ``z_j = p_c(j) + i q_c(j)``, ``sum_j |z_{j+n} - z_j|^2`` is
    ``S_n^tail + S_n^head - 2 Re sum_j z_{j+n} conj(z_j)``; the last sum, for
    all lags at once, is an FFT autocorrelation (zero-padded to ``2N``).
    """
    n = phi.size
    j = np.arange(1, n + 1)
    z = np.cumsum(phi * np.exp(1j * np.outer(c, j)), axis=1)
    power = np.abs(z) ** 2
    spec = np.fft.fft(z, 2 * n, axis=1)
    cross = np.fft.ifft(np.abs(spec) ** 2, axis=1)[:, 1 : n_cut + 1].real
    cum = np.cumsum(power, axis=1)
    lags = np.arange(1, n_cut + 1)
    head = cum[:, n - 1 - lags]  # sum_{j < N - n} |z_j|^2 (0-based)
    tail = cum[:, -1:] - cum[:, lags - 1]  # sum_{j >= n} |z_j|^2
    return (head + tail - 2 * cross) / (n - lags)


def chaos01(
    x: Any,
    *,
    observable: str | None = None,
    n_c: int = 100,
    n_cut: int | None = None,
    alpha: float = 2.5,
    downsample: int = 1,
    seed: int | np.random.Generator = 0,
) -> xr.Dataset:
    """The modified 0-1 test for chaos (module docstring).

    Parameters
    ----------
    x : array (N,), DataArray or trajectory Dataset
        The series, or a trajectory with ``observable`` naming the scalar series
        (:func:`netdyn.series.observables.observable_series`; default ``"loss"`` for a
        Dataset).  Non-finite tails are cut (with a warning).
    observable : str, optional
        Which series of a trajectory (``"loss"``, ``"norm"``, ``"param:3"``, ...).
    n_c : int, default 100
        Number of random frequencies ``c`` in ``(pi/5, 4 pi/5)``.
    n_cut : int, optional
        Largest lag ``n`` of ``D_c(n)`` (default ``N // 10``, G&M's choice).
    alpha : float, default 2.5
        Size of the regularising term ``alpha Var(phi) sin(sqrt(2) n)``; 0 gives
        the plain modified test.
    downsample : int, default 1
        Keep every ``downsample``-th sample first (for oversampled flows).
    seed : int or numpy.random.Generator, default 0
        Draws the frequencies.

    Returns
    -------
    xarray.Dataset
        ``K`` (scalar, the median), ``K_c`` over ``c`` (radians per sample),
        ``D`` over ``(c, n)`` (the regularised ``D~_c(n)``, units of ``phi^2``);
        attrs: ``n_points``, ``n_cut``, ``n_c``, ``alpha``, ``downsample``,
        ``oversampled`` (Matthews' heuristic), ``method``.

    Raises
    ------
    ValueError
        For a multivariate observable, fewer than 100 samples, a constant
        series or invalid settings.

    References
    ----------
    G. A. Gottwald, I. Melbourne, "On the implementation of the 0-1 test for
    chaos", SIAM J. Appl. Dyn. Syst. 8, 129 (2009).

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(1000); x[0] = 0.3
    >>> for i in range(999): x[i + 1] = 3.97 * x[i] * (1 - x[i])
    >>> round(float(nd.chaos01(x)["K"]), 1)
    1.0
    >>> abs(float(nd.chaos01(np.sin(0.5 * np.arange(1000)))["K"])) < 0.05
    True
    """
    caller = "chaos01"
    phi = _series(x, observable, downsample, caller)
    n = phi.size
    n_cut = n // 10 if n_cut is None else n_cut
    n_cut = check_int(n_cut, "n_cut", caller, minimum=3, maximum=n // 2)
    n_c = check_int(n_c, "n_c", caller, minimum=1)
    alpha = check_float(alpha, "alpha", caller, minimum=0)
    rng = np.random.default_rng(seed)
    c = np.sort(rng.uniform(_C_LOW, _C_HIGH, n_c))
    lags = np.arange(1, n_cut + 1)
    d = _mean_square_displacement(phi, c, n_cut)
    d -= phi.mean() ** 2 * (1 - np.cos(np.outer(c, lags))) / (1 - np.cos(c))[:, None]
    d += alpha * phi.var() * np.sin(np.sqrt(2) * lags)
    k_c = _correlation(lags, d)
    oversampled = bool(np.ptp(phi) / np.mean(np.abs(np.diff(phi))) > 10)
    return xr.Dataset(
        {"K": ((), float(np.median(k_c))), "K_c": ("c", k_c), "D": (("c", "n"), d)},
        coords={"c": c, "n": lags},
        attrs={
            "method": "modified 0-1 test (Gottwald & Melbourne 2009), median over c",
            "n_points": n,
            "n_cut": n_cut,
            "n_c": n_c,
            "alpha": alpha,
            "downsample": downsample,
            "c_range": [_C_LOW, _C_HIGH],
            "oversampled": int(oversampled),
        },
    )


def _correlation(xi: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``xi`` (n,) with each row of ``d`` (C, n)."""
    xc = xi - xi.mean()
    dc = d - d.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(xc) * np.linalg.norm(dc, axis=1)
    if np.any(norm == 0):
        raise ValueError("chaos01: expected D_c(n) to vary with n, got a constant (use alpha > 0)")
    return (dc @ xc) / norm


def chaos01_k(
    x: Any,
    *,
    observable: str | None = None,
    n_c: int = 100,
    n_cut: int | None = None,
    alpha: float = 2.5,
    downsample: int = 1,
    seed: int | np.random.Generator = 0,
) -> float:
    """Just ``K`` of :func:`chaos01`, e.g. as a surrogate-test statistic.

    Parameters
    ----------
    x, observable, n_c, n_cut, alpha, downsample, seed
        As :func:`chaos01`.

    Returns
    -------
    float
        The median ``K`` (about 0: regular, about 1: chaotic).

    Raises
    ------
    ValueError
        As :func:`chaos01`.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> abs(nd.chaos01_k(np.sin(0.5 * np.arange(1000)))) < 0.05
    True
    """
    return float(chaos01(x, observable=observable, n_c=n_c, n_cut=n_cut, alpha=alpha, downsample=downsample,
                         seed=seed)["K"])
