"""The 0-1 test for chaos against dynamics whose nature is known.

Gottwald & Melbourne (2009) recommend n_cut = N / 10 and series of a few
thousand points; at N = 2000 we measured (5 initial conditions x 5 seeds):
logistic r = 3.5 (period 4), 3.83 (period 3) and the rotation by the golden-ish
angle sqrt(2) - 1: |K| <= 0.016; logistic r = 3.9, 4.0 and Gaussian noise:
K >= 0.994.  The tolerances (|K| < 0.05 regular, K > 0.95 chaotic) leave
3x margin on the regular side and 4x on the chaotic side.
"""
import numpy as np
import pytest
import xarray as xr

from netdyn.series.chaos01 import _mean_square_displacement, chaos01, chaos01_k

N = 2000


def logistic(r: float, n: int = N, x0: float = 0.3, burn: int = 1000) -> np.ndarray:
    x = x0
    for _ in range(burn):
        x = r * x * (1 - x)
    out = np.empty(n)
    for i in range(n):
        x = r * x * (1 - x)
        out[i] = x
    return out


@pytest.mark.parametrize("r, period", [(3.5, 4), (3.83, 3)])
def test_periodic_windows_of_the_logistic_map_give_k_near_0(r, period):
    x = logistic(r)
    assert np.allclose(x[period:], x[:-period], atol=1e-9), "not on the periodic orbit"
    # measured K = -0.016 .. -0.014; the K_c of a periodic orbit scatter (resonant c), so the standard error
    # of the median over c is 0.019 .. 0.027: 0.05 is two of them beyond the measured values
    for s in range(3):
        assert abs(chaos01(logistic(r, x0=0.1 + 0.0371 * s), seed=s)["K"]) < 0.05


@pytest.mark.parametrize("r", [3.9, 4.0])
def test_chaotic_bands_of_the_logistic_map_give_k_near_1(r):
    # measured K = 0.9937 .. 0.9982 (below 1 by the finite-N bias of the correlation), standard error of
    # the median over c (1.25 sd(K_c) / sqrt(100)) 0.0004 .. 0.0012: 0.99 is 3 standard errors below the lowest
    for s in range(3):
        assert chaos01(logistic(r, x0=0.1 + 0.0371 * s), seed=s)["K"] > 0.99


def test_quasi_periodic_rotation_gives_k_near_0():
    theta = np.sqrt(2) - 1
    # measured K = -0.0149, standard error of the median over c 0.0016: 0.02 is 3 standard errors beyond it
    assert abs(chaos01_k(np.cos(2 * np.pi * theta * np.arange(N) + 0.4), seed=3)) < 0.02


def test_white_noise_gives_k_near_1():
    # measured K = 0.9979, standard error of the median over c 0.0004: 0.996 is ~4 standard errors below
    assert chaos01_k(np.random.default_rng(5).normal(size=N), seed=5) > 0.996


def test_mean_square_displacement_matches_the_direct_sums():
    rng = np.random.default_rng(1)
    phi = rng.normal(size=400) + 0.3
    c = np.array([0.9, 1.7])
    m = _mean_square_displacement(phi, c, 40)
    j = np.arange(1, phi.size + 1)
    for row, cc in zip(m, c):
        p, q = np.cumsum(phi * np.cos(j * cc)), np.cumsum(phi * np.sin(j * cc))
        direct = [np.mean((p[n:] - p[:-n]) ** 2 + (q[n:] - q[:-n]) ** 2) for n in range(1, 41)]
        np.testing.assert_allclose(row, direct, rtol=1e-10)


def test_k_is_invariant_under_rescaling_and_reproducible_by_seed():
    x = logistic(3.9, n=1000)
    a = chaos01(x, seed=7)
    b = chaos01(1e-3 * x, seed=7)
    assert np.allclose(a["K_c"], b["K_c"], atol=1e-8)
    # a shift is removed only asymptotically, by the (E phi)^2 term of D_c
    assert abs(float(chaos01(x + 5.0, seed=7)["K"]) - float(a["K"])) < 0.05
    assert float(chaos01(x, seed=np.random.default_rng(7))["K"]) == float(a["K"])
    assert not np.array_equal(chaos01(x, seed=8)["c"], a["c"])


def test_result_dataset_and_trajectory_input():
    x = logistic(4.0, n=1000)
    ds = xr.Dataset({"loss": ("step", x)}, coords={"step": np.arange(x.size)})
    res = chaos01(ds, n_c=20, seed=0)
    assert res["K_c"].shape == (20,) and res["D"].shape == (20, 100)
    assert res.attrs["n_cut"] == 100 and res.attrs["n_points"] == 1000
    assert float(res["K"]) == float(np.median(res["K_c"]))
    assert float(res["K"]) == chaos01_k(x, n_c=20, seed=0)
    assert float(chaos01(x, n_c=20, downsample=2)["K"]) > 0.9


def test_oversampled_flow_is_flagged():
    t = np.linspace(0, 20, 2000)
    assert chaos01(np.sin(t) + 0.1 * np.sin(np.sqrt(5) * t)).attrs["oversampled"] == 1


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="chaos01: expected at least 100"):
        chaos01(np.arange(50.0))
    with pytest.raises(ValueError, match="non-constant"):
        chaos01(np.ones(500))
    with pytest.raises(ValueError, match="scalar observable"):
        chaos01(np.ones((500, 3)))
