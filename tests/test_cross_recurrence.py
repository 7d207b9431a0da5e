"""Cross- and joint-recurrence plots and RQA against pyunicorn, netdyn.rqa and brute-force line counts.

pyunicorn adds 1e-8 to its RQA denominators (and stores float32): with
float32-exact inputs its matrices equal ours exactly and its measures differ by
at most 2e-8 relative (measured: TT 2 - 2e-8), hence rtol = 1e-7.
"""
from _series import henon as henon_points
import numpy as np
import pytest
import xarray as xr

from netdyn.series.cross_recurrence import crqa, cross_recurrence_matrix, joint_recurrence_matrix, jrqa, line_histograms
from netdyn.series.recurrence import rqa

pyunicorn = pytest.importorskip("pyunicorn.timeseries")


def henon(n: int, a: float = 1.4) -> np.ndarray:
    """Hénon points rounded to float32 values (exact ties in the supremum distances, as pyunicorn's float32)."""
    return henon_points(n, a=a).astype(np.float32).astype(np.float64)


X, Y = henon(400), henon(450, a=1.38)
MEASURES = {"RR": "recurrence_rate", "DET": "determinism", "L": "average_diaglength", "Lmax": "max_diaglength",
            "ENTR": "diag_entropy", "LAM": "laminarity", "TT": "trapping_time", "Vmax": "max_vertlength"}


def brute_lines(m: np.ndarray, skip_main: bool) -> tuple[np.ndarray, np.ndarray]:
    n, k = m.shape
    diag, vert = np.zeros(max(n, k) + 1, dtype=int), np.zeros(max(n, k) + 1, dtype=int)

    def runs(seq, hist):
        r = 0
        for v in list(seq) + [False]:
            if v:
                r += 1
            elif r:
                hist[r] += 1
                r = 0

    for off in range(-(n - 1), k):
        if not (skip_main and off == 0):
            runs(np.diagonal(m, off), diag)
    for j in range(k):
        runs(m[:, j], vert)
    return diag, vert


@pytest.mark.parametrize("shape, skip", [((7, 7), True), ((9, 13), False), ((13, 5), False), ((1, 6), False)])
def test_line_histograms_match_brute_force(shape, skip):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        m = rng.random(shape) < 0.5
        diag, vert = line_histograms(m, skip_main=skip)
        ref_d, ref_v = brute_lines(m, skip)
        assert np.array_equal(diag, ref_d) and np.array_equal(vert, ref_v)


@pytest.mark.parametrize("theiler", [0, 1, 3])
def test_joint_recurrence_of_a_run_with_itself_is_its_rqa(theiler):
    j = jrqa(X, X, threshold=0.1, theiler=theiler)
    r = rqa(X, threshold=0.1, theiler=theiler, engine="numpy")
    for m in ("RR", "DET", "L", "Lmax", "ENTR", "LAM", "TT", "Vmax"):
        assert float(j[m]) == getattr(r, m), m
    assert np.array_equal(j["diag_hist"].values[: r.diag_hist.size], r.diag_hist)


def test_cross_recurrence_matches_pyunicorn():
    ref = pyunicorn.CrossRecurrencePlot(X, Y, threshold=0.1, silence_level=3)
    cr, eps = cross_recurrence_matrix(X, Y, threshold=0.1)
    assert cr.shape == (400, 450) and np.array_equal(cr, ref.recurrence_matrix())
    assert float(crqa(X, Y, threshold=0.1)["RR"]) == ref.cross_recurrence_rate()
    # embedding and a fixed rate: same threshold rule
    ref = pyunicorn.CrossRecurrencePlot(X[:, 0], Y[:, 0], dim=3, tau=2, recurrence_rate=0.05, silence_level=3)
    res = crqa(X[:, 0], Y[:, 0], emb_dim=3, lag=2, recurrence_rate=0.05)
    assert float(res["RR"]) == ref.cross_recurrence_rate()
    assert np.array_equal(cross_recurrence_matrix(X[:, 0], Y[:, 0], emb_dim=3, lag=2, recurrence_rate=0.05)[0], ref.recurrence_matrix())


@pytest.mark.parametrize("kwargs, ref_kwargs", [
    (dict(threshold=(0.1, 0.2)), dict(threshold=(0.1, 0.2))),
    (dict(emb_dim=(2, 3), lag=(1, 2), recurrence_rate=(0.05, 0.08), rate_theiler=0), dict(dim=(2, 3), tau=(1, 2), recurrence_rate=(0.05, 0.08))),
])
def test_joint_recurrence_matches_pyunicorn(kwargs, ref_kwargs):
    x, y = (X, Y[:400]) if "threshold" in kwargs else (X[:, 0], Y[:400, 0])
    ref = pyunicorn.JointRecurrencePlot(x, y, silence_level=3, **ref_kwargs)
    jr, _ = joint_recurrence_matrix(x, y, theiler=0, **kwargs)
    assert np.array_equal(jr, ref.recurrence_matrix())
    res = jrqa(x, y, theiler=0, **kwargs)
    for ours, theirs in MEASURES.items():
        if np.isnan(res[ours]):  # no line long enough: netdyn says NaN, pyunicorn 0 / (0 + 1e-8) = 0
            assert getattr(ref, theirs)() == 0, ours
        else:
            assert float(res[ours]) == pytest.approx(getattr(ref, theirs)(), rel=1e-7, abs=0), ours


def test_cross_recurrence_of_twins_shows_synchronisation():
    # a trajectory and a copy shifted by 5 steps: the cross plot holds a long line on diagonal j - i = -5
    x = henon(300)
    res = crqa(x[5:], x, threshold=0.05)
    assert int(res["Lmax"]) == 295
    cr, _ = cross_recurrence_matrix(x[5:], x, threshold=0.05)
    assert np.all(np.diagonal(cr, 5))
    unrelated = crqa(x, henon(300, a=1.3), threshold=0.05)
    assert float(unrelated["DET"]) < float(res["DET"])


def test_trajectory_datasets_and_errors():
    a = xr.Dataset({"loss": ("step", X[:, 0])})
    b = xr.Dataset({"loss": ("step", Y[:, 0])})
    res = crqa(a, b, threshold=0.1, emb_dim=2)
    assert res.attrs["kind"] == "cross" and res.attrs["n_x"] == 399 and res.attrs["n_y"] == 449
    with pytest.raises(ValueError, match="cross_recurrence_matrix: expected x and y in the same space"):
        crqa(X, Y[:, 0], threshold=0.1)
    with pytest.raises(ValueError, match="joint_recurrence_matrix: expected at most one of threshold"):
        jrqa(X, Y, threshold=0.1, recurrence_rate=0.1)
    # neither: the documented default rate, as rqa
    assert jrqa(X, Y).identical(jrqa(X, Y, recurrence_rate=0.05))
    assert crqa(X, Y).identical(crqa(X, Y, recurrence_rate=0.05))
    with pytest.raises(ValueError, match="expected threshold as one value or a pair"):
        jrqa(X, Y, threshold=(0.1, 0.2, 0.3))
