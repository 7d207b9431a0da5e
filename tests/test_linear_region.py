"""The shared linear-region rule (longest stretch of constant slope)."""
import numpy as np
from _results import assert_same_result
import pytest
import xarray as xr

from netdyn.series.linear_region import LinearRegion, flat_linear_flat, line_fit, linear_region, local_slopes


def test_local_slopes_of_a_line_and_a_kink():
    assert np.allclose(local_slopes(3.0 * np.arange(20.0), window=5), 3.0)
    y = np.minimum(np.arange(20.0), 10.0)
    s = local_slopes(y, window=3)  # window c .. c+2: slope 1 while c + 2 <= 10, 0 once c >= 10
    assert np.allclose(s[:9], 1.0) and np.allclose(s[10:], 0.0) and s[9] == pytest.approx(0.5)


def test_straight_line_is_whole_range():
    r = linear_region(0.4 * np.arange(50.0) - 3)
    assert (r.start, r.stop) == (0, 50)
    assert r.slope == pytest.approx(0.4) and r.intercept == pytest.approx(-3) and r.r2 == pytest.approx(1.0)
    assert r.rise == pytest.approx(0.4 * 49)


def test_burst_line_saturation_picks_the_line():
    # a sampled flow's divergence curve: steep burst (slope 2) for 20 steps, the exponential regime
    # (slope 0.8) for 60, then saturation.  Windows (13 points) that straddle a kink but whose slope is
    # still within 15 % of 0.8 join the region, so it reaches a few points past each kink: measured
    # slope 0.809 (+1.1 %); a rule that took the burst or the saturated tail would be off by > 100 %.
    k = np.arange(120.0)
    y = np.where(k < 20, 2 * k, 40 + 0.8 * (k - 20))
    y = np.where(k < 80, y, 40 + 0.8 * 60)
    r = linear_region(y)
    assert r.slope == pytest.approx(0.8, rel=0.02)
    assert 14 <= r.start <= 20 and 80 <= r.stop <= 87


def test_noise_does_not_break_the_line():
    rng = np.random.default_rng(0)
    k = np.arange(200.0)
    y = np.minimum(0.05 * k, 7.5) + 0.02 * rng.standard_normal(200)  # kink at k = 150
    r = linear_region(y)
    # noise 0.02 on a 20-point window moves a local slope by ~0.02 / sqrt(sum offsets^2) ~ 5e-4 = 1 %
    assert r.slope == pytest.approx(0.05, rel=0.02)
    assert r.start <= 10 and 140 <= r.stop <= 160


def test_non_finite_ends_the_curve():
    y = 0.3 * np.arange(30.0)
    y[20:] = np.nan
    r = linear_region(y)
    assert r.stop <= 20 and r.slope == pytest.approx(0.3)


def test_too_short_curves():
    assert linear_region(np.array([1.0, 2.0])).n_points == 2
    assert np.isnan(line_fit(np.array([1.0]), start=0, stop=1).slope)


def test_flat_linear_flat_fits_twin_curves_and_reports_the_line():
    t = np.arange(100.0)
    r = flat_linear_flat(-20 + 0.5 * np.clip(t, 10, 60))
    assert (r.start, r.stop) == (10, 61) and r.slope == pytest.approx(0.5) and r.r2 == pytest.approx(1.0)


def test_why_two_rules():
    # a burst transient (Rosenstein on a sampled flow) is not flat: the flat-linear-flat model folds the
    # burst into its line, the slope band does not
    k = np.arange(120.0)
    y = np.where(k < 20, 2 * k, 40 + 0.8 * (k - 20))
    y = np.where(k < 80, y, 88.0)
    assert flat_linear_flat(y).slope > 1.0
    assert linear_region(y).slope == pytest.approx(0.8, rel=0.02)


def test_region_netcdf_round_trip_is_lossless(tmp_path):
    region = linear_region(np.minimum(0.5 * np.arange(20.0), 8.0) + 1e-3 * np.sin(np.arange(20.0)))
    region.to_dataset().to_netcdf(tmp_path / "region.nc")
    with xr.open_dataset(tmp_path / "region.nc") as ds:
        back = LinearRegion.from_dataset(ds)
    assert_same_result(back, region)
    assert back.n_points == region.n_points and back.rise == region.rise
