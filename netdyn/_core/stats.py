"""Statistics shared by the estimators: block-averaged standard errors."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["block_stderr"]


def block_stderr(rates: np.ndarray, n_blocks: int = 10) -> np.ndarray:
    """Standard error of the mean of correlated local rates by block averaging.

    Parameters
    ----------
    rates : array ``(..., n)``
        local rates along the last axis (time order).
    n_blocks : int, default 10
        number of contiguous blocks; fewer when ``n < n_blocks``.

    Returns
    -------
    array ``(...)``: ``std(block means, ddof=1) / sqrt(B)``; NaN when fewer than two
    blocks fit or a rate is non-finite.

    Notes
    -----
    Blocks much longer than the correlation time of the rates have nearly
    independent means, so their spread gives an honest error bar where the naive
    ``std / sqrt(n)`` would be too small.  The ``n mod B`` earliest rates (the
    least converged) are dropped so that blocks are equal.  Ten blocks trade the
    bias of short blocks against the noise of the error estimate itself.

    References
    ----------
    Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989).

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn._core.stats import block_stderr
    >>> rates = np.random.default_rng(0).normal(size=10_000)
    >>> round(float(block_stderr(rates)), 2)  # about 1 / sqrt(10 000)
    0.01
    """
    rates = np.asarray(rates, dtype=np.float64)
    n = rates.shape[-1]
    b = min(int(n_blocks), n)
    if b < 2:
        return np.full(rates.shape[:-1], np.nan)
    size = n // b
    blocks = rates[..., n - b * size :].reshape(*rates.shape[:-1], b, size).mean(-1)
    return blocks.std(-1, ddof=1) / math.sqrt(b)
