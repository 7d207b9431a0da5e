"""rosenstein(fit_range="auto") against known exponents: within 10 %, or it says it cannot tell.

Measured (this estimator, these series): logistic -1 %, Hénon x -4 %, Lorenz x -4 .. -6 % at the
settings below (N = 10 000 .. 20 000 samples); the issue-11 short-window setting (dt 0.02, m 5,
lag 4, Theiler 50, trajectory_len 30) sees only the initial burst of the flow (slope ~2 per time
unit, +100 %) and must be refused, as must a 3000-sample Lorenz series with a 4-time-unit window.
"""
import math
import warnings
from pathlib import Path

import numpy as np
from _series import logistic, lorenz_x, rossler_x
import pytest
import xarray as xr

from netdyn.series.datadriven import rosenstein

LORENZ_L1 = 0.9056  # per time unit
ROSSLER_L1 = 0.0714
HENON_L1 = 0.41922


def henon_x(n: int) -> np.ndarray:
    a, b = 0.1, 0.1
    out = np.empty(n)
    for i in range(n + 1000):
        if i >= 1000:
            out[i - 1000] = a
        a, b = 1 - 1.4 * a * a + b, 0.3 * a
    return out


@pytest.fixture(scope="module")
def lorenz_01():
    return lorenz_x(20000, dt=0.01)


@pytest.fixture(scope="module")
def lorenz_02():
    return lorenz_x(10000, dt=0.02)


def assert_reliable_within(res, truth, rel=0.10):
    assert res.reliable, res.reason
    assert res.reason == "" and res.fit_points >= 5 and res.fit_r2 > 0.99
    assert abs(res.exponent - truth) < rel * truth, (res.exponent, truth)
    assert res.exponent_stderr < 0.05 * truth  # what the blocks say agrees with the rule


def assert_refused(res, match):
    assert not res.reliable and math.isnan(res.exponent)
    assert match in res.reason


class TestKnownExponents:
    def test_logistic(self):
        res = rosenstein(logistic(3000), emb_dim=1, lag=1, theiler=10, trajectory_len=15)
        assert_reliable_within(res, math.log(2))

    def test_henon_x(self):
        assert_reliable_within(rosenstein(henon_x(3000), emb_dim=2, lag=1, theiler=10, trajectory_len=15), HENON_L1)

    @pytest.mark.parametrize("emb_dim, lag, theiler, trajectory_len", [(3, 10, 100, 400), (5, 10, 200, 300)],
                             ids=["issue11-m3-lag10", "m5-lag10"])
    def test_lorenz_dt001(self, lorenz_01, emb_dim, lag, theiler, trajectory_len):
        res = rosenstein(lorenz_01, emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len,
                         tau=0.01)
        assert_reliable_within(res, LORENZ_L1)
        assert res.fit_range[0] >= 30  # the burst of the first ~0.5 time units is left out

    @pytest.mark.parametrize("emb_dim, lag, theiler, trajectory_len", [(3, 10, 100, 200), (5, 5, 100, 150)],
                             ids=["m3-lag10", "m5-lag5"])
    def test_lorenz_dt002(self, lorenz_02, emb_dim, lag, theiler, trajectory_len):
        res = rosenstein(lorenz_02, emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len,
                         tau=0.02)
        assert_reliable_within(res, LORENZ_L1)

    def test_rossler_x_within_10_percent_with_an_unfolding_embedding(self):
        # The reference is checked: Benettin on the RK4 map that generates the series gives 0.0713 +- 0.003 per
        # time unit (20 000 steps, twin), the literature's 0.0714.  Rosenstein is biased low on Rossler, a flat
        # attractor whose neighbours partly separate along the flow (measured on N = 30 000 at dt 0.1:
        # -10.5 % with m = 3, lag 15; -9.5 % with m = 4, lag 8, Theiler 200).  The 10 % target holds with the
        # 4-d embedding; the 3-d one is pinned as a bias, so a change of the estimator shows here.
        x = rossler_x(30000)
        unfolded = rosenstein(x, emb_dim=4, lag=8, theiler=200, trajectory_len=600, tau=0.1)
        assert unfolded.reliable
        assert abs(unfolded.exponent - ROSSLER_L1) < 0.10 * ROSSLER_L1
        flat = rosenstein(x, emb_dim=3, lag=15, theiler=60, trajectory_len=500, tau=0.1)
        assert flat.reliable and -0.12 * ROSSLER_L1 < flat.exponent - ROSSLER_L1 < 0


class TestRefusals:
    def test_issue11_short_window_sees_only_the_burst(self, lorenz_02):
        with pytest.warns(RuntimeWarning, match="no reliable exponent"):
            res = rosenstein(lorenz_02, emb_dim=5, lag=4, theiler=50, trajectory_len=30, tau=0.02)
        assert_refused(res, "initial transient")

    def test_short_lorenz_series(self):
        with pytest.warns(RuntimeWarning, match="no reliable exponent"):
            res = rosenstein(lorenz_x(3000, dt=0.01), emb_dim=3, lag=10, theiler=100, trajectory_len=400, tau=0.01)
        assert_refused(res, "no linear region")

    def test_white_noise(self):
        x = np.random.default_rng(0).standard_normal(3000)
        with pytest.warns(RuntimeWarning, match="no reliable exponent"):
            res = rosenstein(x, emb_dim=3, lag=1, theiler=10)
        assert_refused(res, "points of constant slope")

    def test_periodic_orbit(self):
        # a period-7 orbit plus tiny noise: neighbours stay neighbours, the curve is flat
        x = np.tile(np.sin(2 * np.pi * np.arange(7) / 7), 300) + 1e-6 * np.random.default_rng(1).standard_normal(2100)
        with pytest.warns(RuntimeWarning, match="no reliable exponent"):
            res = rosenstein(x, emb_dim=2, lag=1, theiler=10)
        assert not res.reliable and math.isnan(res.exponent)

    def test_iris_reference_run(self):
        # issue 11: +0.11 fitted on two points of a falling curve next to a "periodic, contracting" verdict
        ds = xr.open_dataset(Path(__file__).parents[1] / "data" / "iris_sgd_reference.nc")
        with pytest.warns(RuntimeWarning, match="no reliable exponent"):
            res = rosenstein(ds, observable="loss", emb_dim=10, lag=4, theiler=10)
        assert not res.reliable and math.isnan(res.exponent) and res.reason
        ds_out = res.to_dataset()
        assert not bool(ds_out["reliable"]) and ds_out.attrs["reason"] == res.reason  # the flags travel with the Dataset

    def test_given_range_is_not_judged(self, lorenz_02):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = rosenstein(lorenz_02, emb_dim=5, lag=4, theiler=50, trajectory_len=30, tau=0.02, fit_range=None)
        assert res.reliable and res.exponent > 0 and res.fit_points == 30
