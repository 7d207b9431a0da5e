"""Reference series with known dynamics, shared by the series-analysis tests."""
import numpy as np


def logistic(n: int, x0: float = 0.3, r: float = 4.0) -> np.ndarray:
    """``n`` points of the logistic map ``x -> r x (1 - x)`` from ``x0`` (r = 4: lambda = ln 2)."""
    x = np.empty(n)
    x[0] = x0
    for i in range(n - 1):
        x[i + 1] = r * x[i] * (1 - x[i])
    return x


def _rk4_x(field, s0: np.ndarray, n: int, dt: float, transient: int) -> np.ndarray:
    """First coordinate of ``n`` RK4 samples (step ``dt``) of the flow ``field``, after ``transient`` steps."""
    s = np.asarray(s0, dtype=np.float64)
    out = np.empty(n)
    for i in range(n + transient):
        k1 = field(s)
        k2 = field(s + dt / 2 * k1)
        k3 = field(s + dt / 2 * k2)
        k4 = field(s + dt * k3)
        s = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i >= transient:
            out[i - transient] = s[0]
    return out


def lorenz_x(n: int, dt: float = 0.02, transient: int = 1000) -> np.ndarray:
    """x of the Lorenz flow (sigma=10, rho=28, beta=8/3; lambda_1 = 0.9056 per time unit), sampled every ``dt``.

    The same RK4 step as :class:`netdyn.maps.classic.LorenzRK4`, in numpy (20 000 samples in ~0.3 s).
    """
    def field(s: np.ndarray) -> np.ndarray:
        return np.array([10 * (s[1] - s[0]), s[0] * (28 - s[2]) - s[1], s[0] * s[1] - 8 / 3 * s[2]])

    return _rk4_x(field, np.array([1.0, 1.0, 20.0]), n, dt, transient)


def rossler_x(n: int, dt: float = 0.1, transient: int = 1000) -> np.ndarray:
    """x of the Rössler flow (a=b=0.2, c=5.7; lambda_1 = 0.0714 per time unit), RK4 with step ``dt``."""
    def field(s: np.ndarray) -> np.ndarray:
        return np.array([-s[1] - s[2], s[0] + 0.2 * s[1], 0.2 + s[2] * (s[0] - 5.7)])

    return _rk4_x(field, np.array([1.0, 1.0, 0.0]), n, dt, transient)


def henon(n: int, a: float = 1.4, b: float = 0.3) -> np.ndarray:
    """``n`` points ``(x, y)`` of the Hénon map after 200 transient steps (lambda_1 ~ 0.419)."""
    x, y = 0.1, 0.1
    for _ in range(200):
        x, y = 1 - a * x * x + y, b * x
    out = np.empty((n, 2))
    for i in range(n):
        x, y = 1 - a * x * x + y, b * x
        out[i] = x, y
    return out


def ar1(n: int, phi: float = 0.8, seed: int = 0) -> np.ndarray:
    """A Gaussian AR(1) process ``x_t = phi x_{t-1} + e_t``: linear, stochastic, no chaos."""
    e = np.random.default_rng(seed).normal(size=n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x
