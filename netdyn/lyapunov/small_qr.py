"""QR factorisation with a positive diagonal of many small matrices at once.

The QR spectra (:mod:`netdyn.lyapunov.spectrum`) re-orthonormalise ``n`` tangent bases of
shape ``(dim, k)`` every step.  ``torch.linalg.qr`` on a batch of tiny matrices
pays a LAPACK call per matrix (about 0.15 us for 2x2, seven times a compiled
Hénon step); this module does the same factorisation in one numba-compiled loop
for small CPU float64 batches (classical Gram-Schmidt applied twice, "twice is
enough", Giraud et al. 2005: orthogonal to working precision for full-rank
columns) and leaves everything else to ``torch.linalg.qr``.

The factorisation with ``diag R > 0`` is unique, so both routes give the same
factors to rounding; a member whose column is (numerically) dependent or
non-finite is re-done by ``torch.linalg.qr`` so that degenerate tangents (a
zero Jacobian column, e.g. the logistic map at ``x = 1/2``) behave as before.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = ["positive_qr"]

#: largest ``dim * k`` of a matrix factorised by the compiled loop
SMALL = 64


@numba.njit(cache=True)
def _cgs2(w: np.ndarray, q: np.ndarray, r: np.ndarray, bad: np.ndarray) -> None:
    """``w (n, d, k) = q r`` column by column; ``bad[m]`` when a column norm is 0,
    not finite, or lost more than half its digits to the projections."""
    n, d, k = w.shape
    v = np.empty(d)
    for m in range(n):
        for j in range(k):
            for i in range(d):
                v[i] = w[m, i, j]
            before = 0.0
            for i in range(d):
                before += v[i] * v[i]
            for i in range(k):
                r[m, i, j] = 0.0
            for _ in range(2):
                for p in range(j):
                    c = 0.0
                    for i in range(d):
                        c += q[m, i, p] * v[i]
                    for i in range(d):
                        v[i] -= c * q[m, i, p]
                    r[m, p, j] += c
            norm2 = 0.0
            for i in range(d):
                norm2 += v[i] * v[i]
            norm = math.sqrt(norm2)
            if not (norm > 0.0 and math.isfinite(norm) and norm2 > 1e-16 * before):
                bad[m] = True
                norm = 1.0
            r[m, j, j] = norm
            for i in range(d):
                q[m, i, j] = v[i] / norm


def _torch_positive_qr(w: Tensor) -> tuple[Tensor, Tensor]:
    q, r = torch.linalg.qr(w)
    sign = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(r.dtype)
    return q * sign[..., None, :], r * sign[..., :, None]


def positive_qr(w: Tensor) -> tuple[Tensor, Tensor]:
    """``w (n, d, k) = Q R`` with ``Q (n, d, k)`` orthonormal columns and ``R (n, k, k)``
    upper triangular with a non-negative diagonal (``k <= d``).

    CPU float64 batches with ``d * k <= 64`` go through the compiled loop (members it
    cannot factorise safely are re-done by LAPACK); everything else is
    ``torch.linalg.qr`` with the signs fixed.
    """
    n, d, k = w.shape
    if w.device.type != "cpu" or w.dtype != torch.float64 or d * k > SMALL or w.requires_grad:
        return _torch_positive_qr(w)
    q, r, bad = np.empty((n, d, k)), np.empty((n, k, k)), np.zeros(n, dtype=np.bool_)
    _cgs2(w.detach().numpy(), q, r, bad)  # any strides: numba reads the view
    q_t, r_t = torch.from_numpy(q), torch.from_numpy(r)
    if bad.any():
        redo = torch.from_numpy(np.flatnonzero(bad))
        q_t[redo], r_t[redo] = _torch_positive_qr(w[redo])
    return q_t, r_t
