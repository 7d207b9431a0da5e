"""Reference series with known dynamics, shared by the series-analysis tests."""
import numpy as np


def logistic(n: int, x0: float = 0.3, r: float = 4.0) -> np.ndarray:
    """``n`` points of the logistic map ``x -> r x (1 - x)`` from ``x0`` (r = 4: lambda = ln 2)."""
    x = np.empty(n)
    x[0] = x0
    for i in range(n - 1):
        x[i + 1] = r * x[i] * (1 - x[i])
    return x
