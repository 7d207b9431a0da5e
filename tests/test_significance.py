"""Surrogate tests: deterministic chaos rejects the linear null, a linear process does not.

Measured (n = 39 IAAFT surrogates, seed 0): logistic r = 4 (N = 500) has
DET = 0.70 against surrogate DET 0.09-0.11 (5-95 %) and Rosenstein 0.68 per
step against 0.34-0.37, so p = 1/(n+1) for both; AR(1) (phi = 0.8, emb_dim 3)
gives p = 1.0 (DET) and 0.78 (Rosenstein); over 20 AR(1) realisations (N = 300,
n = 19) the DET p-values have mean 0.65, one of them <= 0.05.  The 0-1 test's K
is ~0.99 on the logistic series and on its surrogates alike (p = 0.8): K does
not tell chaos from noise.
"""
import numpy as np
import pytest
import xarray as xr

from netdyn.series.significance import rank_p_value, significance

from _series import ar1, logistic

CHAOS = logistic(500, x0=0.31)


def test_rank_p_value_counts_ties_against_rejection():
    null = np.array([0.0, 1.0, 2.0, 3.0])
    assert rank_p_value(5.0, null) == 1 / 5
    assert rank_p_value(2.0, null) == 3 / 5
    assert rank_p_value(-1.0, null, alternative="less") == 1 / 5
    assert rank_p_value(2.0, null, alternative="less") == 4 / 5
    assert rank_p_value(5.0, null, alternative="two-sided") == 2 / 5
    assert rank_p_value(1.5, null, alternative="two-sided") == 1.0
    with pytest.raises(ValueError, match="rank_p_value: expected alternative"):
        rank_p_value(1.0, null, alternative="both")


@pytest.mark.parametrize("statistic", ["det", "rosenstein"])
def test_logistic_chaos_rejects_the_iaaft_null(statistic):
    res = significance(CHAOS, statistic=statistic, kind="iaaft", n=39, seed=0)
    assert float(res["p_value"]) <= 0.05
    assert float(res["p_value"]) == 1 / 40  # the data beats every surrogate
    assert float(res["statistic"]) > float(res["surrogate_statistic"].max())
    assert res.attrs["statistic"] == statistic and res.attrs["kind"] == "iaaft" and res.attrs["emb_dim"] == 1


@pytest.mark.parametrize("statistic", ["det", "rosenstein"])
def test_linear_gaussian_ar1_does_not_reject_the_iaaft_null(statistic):
    res = significance(ar1(500), statistic=statistic, kind="iaaft", n=39, seed=0, emb_dim=3, lag=1)
    assert float(res["p_value"]) > 0.05


def test_ar1_p_values_are_spread_over_realisations():
    # under the null p is uniform on {1/20, ..., 1}: E p = 0.525, sd of a mean of 20 is 0.066;
    # P(#{p <= 0.05} >= 5) = 0.003 for Binomial(20, 0.05)
    p = np.array([float(significance(ar1(300, seed=s), statistic="det", n=19, seed=s, emb_dim=2, lag=1)["p_value"]) for s in range(20)])
    assert 0.3 < p.mean() < 0.75
    assert np.sum(p <= 0.05) <= 4
    assert np.unique(p).size >= 6


def test_k01_does_not_separate_chaos_from_its_surrogates():
    res = significance(CHAOS, statistic="k01", n=19, seed=0, n_c=20)
    assert float(res["statistic"]) > 0.95 and float(res["surrogate_statistic"].min()) > 0.9
    assert float(res["p_value"]) > 0.05


def test_null_hypotheses_differ_as_documented():
    def lag1(x):
        return float(np.corrcoef(x[:-1], x[1:])[0, 1])

    x = ar1(500)
    assert float(significance(x, statistic=lag1, kind="shuffle", n=19, seed=0)["p_value"]) == 1 / 20
    assert float(significance(x, statistic=lag1, kind="ft", n=19, seed=0, alternative="two-sided")["p_value"]) > 0.05


def test_reproducible_by_seed_and_trajectory_input():
    ds = xr.Dataset({"loss": ("step", CHAOS)})
    a = significance(ds, statistic="det", n=9, seed=3, emb_dim=2, lag=1)
    b = significance(CHAOS, statistic="det", n=9, seed=3, emb_dim=2, lag=1)
    c = significance(CHAOS, statistic="det", n=9, seed=4, emb_dim=2, lag=1)
    assert np.array_equal(a["surrogate_statistic"], b["surrogate_statistic"])
    assert not np.array_equal(a["surrogate_statistic"], c["surrogate_statistic"])
    assert a.attrs["recurrence_rate"] == 0.05 and a.attrs["seed"] == 3


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="significance: expected statistic"):
        significance(CHAOS, statistic="lyapunov")
    with pytest.raises(ValueError, match="significance: expected kind"):
        significance(CHAOS, statistic="det", kind="aaft")
    with pytest.raises(ValueError, match="only apply to a named statistic"):
        significance(CHAOS, statistic=np.std, emb_dim=2)
    with pytest.raises(ValueError, match="expected a finite"):
        significance(CHAOS, statistic=lambda x: float("nan"), n=3)


@pytest.mark.parametrize("series, expected", [
    (logistic(600, x0=0.31), "chaotic"),
    (np.tile([0.2, 0.5, 0.9], 200) + 1e-6 * np.random.default_rng(0).normal(size=600), "regular"),
    (ar1(600), "irregular, not distinguishable from linear noise"),
])
def test_chaos_test_verdicts(series, expected):
    from netdyn.series.significance import chaos_test

    res = chaos_test(series, n=19, seed=0)
    assert res.attrs["verdict"] == expected, (float(res["K"]), float(res["p_DET"]))
    assert res.attrs["n"] == 19 and set(res.data_vars) == {"K", "DET", "p_DET", "rosenstein", "p_rosenstein"}
