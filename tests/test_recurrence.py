import math
import sys
import tracemalloc

import numpy as np
from _results import assert_same_result
from _series import logistic
import pytest
import xarray as xr
from pyunicorn.timeseries import RecurrencePlot

import netdyn.series.recurrence as recurrence
from netdyn.series.recurrence import (
    RQAResult,
    recurrence_image,
    recurrence_matrix,
    recurrence_threshold,
    rqa,
    windowed_rqa,
)


def f32(x: np.ndarray) -> np.ndarray:
    """pyunicorn stores series as float32; feed both codes float32-exact values."""
    return x.astype(np.float32).astype(np.float64)


def dense_reference(x: np.ndarray, eps: float, theiler: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute force: dense R, diagonal-line and vertical-line histograms, straight from the definitions."""
    pts = x.reshape(len(x), -1)
    n = len(pts)
    dist = np.max(np.abs(pts[:, None, :] - pts[None, :, :]), axis=2)
    i, j = np.indices((n, n))
    rec = (dist < eps) & (np.abs(i - j) >= theiler)
    diag = np.zeros(n + 1, dtype=np.int64)
    vert = np.zeros(n + 1, dtype=np.int64)

    def runs(line):
        padded = np.r_[0, line.astype(np.int8), 0]
        d = np.diff(padded)
        return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)

    for k in range(1, n):
        for length in runs(np.diagonal(rec, k)):
            diag[length] += 2
    for col in range(n):
        for length in runs(rec[:, col]):
            vert[length] += 1
    return rec, diag, vert


def series(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """The three regimes the engines are compared on."""
    if kind == "random":
        return np.random.default_rng(seed).random(n)
    if kind == "periodic":
        return np.tile([0.1, 0.5, 0.8, 0.3, 0.65, 0.45, 0.9], n // 7 + 1)[:n]
    return logistic(n, x0=0.1 + 0.05 * seed)


def assert_same_rqa(a, b) -> None:
    """Every field equal, bit for bit (NaN == NaN): the engines count the same lines from the same distances."""
    np.testing.assert_array_equal(a.diag_hist, b.diag_hist)
    np.testing.assert_array_equal(a.vert_hist, b.vert_hist)
    for name in ("RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax", "threshold"):
        x, y = getattr(a, name), getattr(b, name)
        assert x == y or (math.isnan(x) and math.isnan(y)), (name, x, y)


class TestRQA:
    @pytest.mark.parametrize("metric", ["supremum", "euclidean", "manhattan"])
    @pytest.mark.parametrize("emb_dim", [1, 3])
    def test_matches_pyunicorn(self, metric, emb_dim):
        x = f32(logistic(1200))
        kw = {"dim": emb_dim, "tau": 1} if emb_dim > 1 else {}
        ref = RecurrencePlot(x, threshold=0.05, metric=metric, silence_level=2, **kw)
        # theiler=0 is pyunicorn's convention (LOI in RR and vertical lines, never a diagonal line);
        # a small block size makes the diagonal runs cross many row blocks.
        ours = rqa(x, threshold=0.05, metric=metric, theiler=0, emb_dim=emb_dim, block_size=30_000)
        assert abs(ours.RR - ref.recurrence_rate()) < 1e-12
        np.testing.assert_array_equal(ours.diag_hist[1:], ref.diagline_dist())
        np.testing.assert_array_equal(ours.vert_hist[1:], ref.vertline_dist())
        # pyunicorn adds 1e-8 to its denominators (>= 1 line or point here) -> agreement to 1e-7 relative
        for mine, theirs in [
            (ours.DET, ref.determinism(2)),
            (ours.L, ref.average_diaglength(2)),
            (ours.ENTR, ref.diag_entropy(2)),
            (ours.LAM, ref.laminarity(2)),
            (ours.TT, ref.trapping_time(2)),
        ]:
            assert mine == pytest.approx(theirs, rel=1e-7)
        assert ours.Lmax == ref.max_diaglength() and ours.Vmax == ref.max_vertlength()
        assert ours.DIV == pytest.approx(1 / ref.max_diaglength())

    def test_l_min_v_min(self):
        x = f32(logistic(800))
        ref = RecurrencePlot(x, threshold=0.08, metric="supremum", silence_level=2)
        ours = rqa(x, threshold=0.08, theiler=0, l_min=4, v_min=3)
        assert ours.DET == pytest.approx(ref.determinism(4), rel=1e-7)
        assert ours.LAM == pytest.approx(ref.laminarity(3), rel=1e-7)

    @pytest.mark.parametrize("theiler", [1, 3, 7])
    @pytest.mark.parametrize("block_size", [2_000, 50_000, 10**7])
    def test_theiler_window_and_blocks_match_brute_force(self, theiler, block_size):
        x = logistic(300, x0=0.21)
        rec, diag, vert = dense_reference(x, 0.1, theiler)
        res = rqa(x, threshold=0.1, theiler=theiler, block_size=block_size)
        n_outside = (np.abs(np.subtract.outer(np.arange(300), np.arange(300))) >= theiler).sum()
        assert res.RR == rec.sum() / n_outside
        np.testing.assert_array_equal(res.diag_hist, diag)
        np.testing.assert_array_equal(res.vert_hist, vert)

    def test_multivariate_state(self):
        x = logistic(400)
        state = np.stack([x[:-1], x[1:]], axis=1)
        np.testing.assert_array_equal(
            rqa(state, threshold=0.05).diag_hist, rqa(x, threshold=0.05, emb_dim=2).diag_hist
        )

    def test_periodic_has_det_one(self):
        n, p = 1000, 5
        x = np.tile([0.1, 0.5, 0.8, 0.3, 0.65], n // p)
        res = rqa(x, threshold=0.05)
        assert res.DET == 1.0
        assert res.Lmax == n - p  # the first off-LOI diagonal with recurrences, k = p, is one full line
        assert res.RR == pytest.approx(2 * sum(n - k for k in range(p, n, p)) / (n * n - n))

    def test_iid_noise_det_matches_theory(self):
        # For i.i.d. data R_ij and R_{i+1,j+1} are independent when |i - j| >= 2, each with probability
        # p = RR, so along a diagonal the run containing a recurrent point is geometric and
        # DET(l_min=2) = 1 - P(run of length 1 | recurrent) = 1 - (1 - p)^2.  theiler=2 keeps k = 1 out
        # (R_{i,i+1}, R_{i+1,i+2} share x_{i+1}).  ~4e5 recurrent points: sampling error ~1e-3; tol 5e-3.
        u = np.random.default_rng(1).random(3000)
        res = rqa(u, threshold=0.05, theiler=2)
        assert res.DET == pytest.approx(1 - (1 - res.RR) ** 2, abs=5e-3)

    def test_tells_periodic_quasiperiodic_chaotic_apart(self):
        n = 2000
        periodic = np.tile([0.1, 0.5, 0.8, 0.3, 0.65], n // 5)
        rotation = (0.1 + (np.sqrt(5) - 1) / 2 * np.arange(n)) % 1.0  # circle rotation, golden angle
        chaotic = logistic(n)
        per, qp, ch = (rqa(s, threshold=0.05) for s in (periodic, rotation, chaotic))
        # periodic: all recurrences on full-length diagonals -> DET = 1 and Lmax = N - period;
        # rotation: an isometry, lines only broken at the 0/1 wrap -> DET ~ 1, Lmax long but < N - 5;
        # chaotic: neighbours separate at rate ln 2 -> short lines, DET well below 1, some laminar points.
        assert per.DET == 1.0 and per.Lmax == n - 5 and per.LAM == 0.0
        assert qp.DET > 0.99 and 100 < qp.Lmax < n - 5
        assert ch.DET < 0.9 and ch.Lmax < 40 and ch.LAM > 0.05

    def test_fixed_rate(self):
        x = f32(logistic(900))
        ref = RecurrencePlot(x, recurrence_rate=0.07, metric="supremum", silence_level=2)
        assert rqa(x, recurrence_rate=0.07, theiler=0).RR == pytest.approx(ref.recurrence_rate(), abs=1e-12)
        eps = recurrence_threshold(x, recurrence_rate=0.07, theiler=0, block_size=20_000)
        assert eps == recurrence_threshold(x, recurrence_rate=0.07, theiler=0)
        res = rqa(x, recurrence_rate=0.05, theiler=1)
        assert 0.049 < res.RR <= 0.05

    def test_fixed_rate_on_coinciding_points_warns(self):
        x = np.tile([0.1, 0.5, 0.8, 0.3, 0.65], 100)
        with pytest.warns(RuntimeWarning, match="coincide exactly"):
            res = rqa(x, recurrence_rate=0.05)
        assert res.DET == 1.0

    def test_memory_is_far_below_n_squared(self):
        # N = 20 000: a dense float matrix would be 3.2 GB, a bool one 400 MB; we allow N^2 / 8 bytes.
        n = 20_000
        x = logistic(n)
        tracemalloc.start()
        res = rqa(x, threshold=0.02)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < n * n / 8
        assert 0.0 < res.RR < 0.1 and res.n_points == n

    def test_result_dataset(self):
        ds = rqa(logistic(300), threshold=0.05).to_dataset()
        assert {"RR", "DET", "L", "Lmax", "DIV", "ENTR", "LAM", "TT", "Vmax"} <= set(ds.data_vars)
        assert ds.attrs["metric"] == "supremum" and int(ds["theiler"]) == 1
        assert ds["diag_hist"].dims == ("length",)

    @pytest.mark.parametrize("kw", [dict(threshold=0.05), dict(recurrence_rate=0.1, theiler=0, metric="euclidean", emb_dim=2)])
    def test_result_netcdf_round_trip_is_lossless(self, tmp_path, kw):
        res = rqa(logistic(300), **kw)
        res.to_dataset().to_netcdf(tmp_path / "rqa.nc")
        with xr.open_dataset(tmp_path / "rqa.nc") as ds:
            back = RQAResult.from_dataset(ds)
        assert_same_result(back, res)

    def test_one_window_of_windowed_rqa_is_an_rqa_result(self, tmp_path):
        x = logistic(400)
        out = windowed_rqa(x, window=100, step=100, threshold=0.05, theiler=2, progress=False)
        one = rqa(x[100:200], threshold=0.05, theiler=2)
        assert set(out.data_vars) == set(one.to_dataset().data_vars)
        assert_same_result(RQAResult.from_dataset(out.isel(window_center=1)), one)
        out.to_netcdf(tmp_path / "windows.nc")
        with xr.open_dataset(tmp_path / "windows.nc") as back:
            assert_same_result(RQAResult.from_dataset(back.isel(window_center=1)), one)

    def test_bad_input(self):
        x = logistic(100)
        with pytest.raises(ValueError, match="rqa: expected a non-constant"):
            rqa(np.ones(50), threshold=0.1)
        with pytest.raises(ValueError, match="rqa: expected metric to be one of 'supremum', 'euclidean', 'manhattan'"):
            rqa(x, threshold=0.1, metric="cosine")
        with pytest.raises(ValueError, match="rqa: expected at most one of threshold / recurrence_rate"):
            rqa(x, threshold=0.1, recurrence_rate=0.05)
        # neither: the documented default recurrence rate
        assert rqa(x).to_dataset().identical(rqa(x, recurrence_rate=0.05).to_dataset())
        with pytest.raises(ValueError, match="recurrence_points: expected finite values"):
            rqa(np.r_[x, np.nan], threshold=0.1)

    def test_too_short_input_is_refused(self):
        # issue: rqa on 5 points returned RR = 0 and DET = NaN silently
        x = logistic(100)
        short = r"rqa: expected a series \(after embedding\) of at least 10 points.*got 5"
        with pytest.raises(ValueError, match=short):
            rqa(x[:5], recurrence_rate=0.05)
        with pytest.raises(ValueError, match="at least 13 points"):  # theiler 5 + l_min 8
            rqa(x[:12], threshold=0.1, theiler=5, l_min=8)
        with pytest.raises(ValueError, match="got 8"):  # 12 points, emb_dim 3, lag 2 -> 8 vectors
            rqa(x[:12], threshold=0.1, emb_dim=3, lag=2)
        with pytest.raises(ValueError, match="recurrence_matrix: expected a series .* at least 10 points"):
            recurrence_matrix(x[:6], threshold=0.1)
        with pytest.raises(ValueError, match="windowed_rqa: expected a window of at least 10 points"):
            windowed_rqa(x, window=6, threshold=0.1)
        res = rqa(x[:10], threshold=0.3)  # the minimum itself works
        assert res.n_points == 10 and res.RR > 0


    @pytest.mark.parametrize("kind", ["random", "periodic", "logistic"])
    @pytest.mark.parametrize("metric", ["supremum", "euclidean", "manhattan"])
    @pytest.mark.parametrize("theiler", [0, 1, 5])
    @pytest.mark.parametrize("emb_dim", [1, 3])
    def test_numba_engine_equals_numpy(self, kind, metric, theiler, emb_dim):
        # periodic: a fixed rate would give eps = 0 (coinciding points), so a threshold between the levels
        kw = {"threshold": 0.07} if kind == "periodic" else {"recurrence_rate": 0.1}
        x = series(kind, 350)
        common = dict(metric=metric, theiler=theiler, emb_dim=emb_dim, **kw)
        ref = rqa(x, engine="numpy", block_size=20_000, **common)
        assert ref.RR > 0
        assert_same_rqa(rqa(x, engine="numba", **common), ref)

    def test_numba_engine_equals_numpy_on_random_cases(self):
        # sizes down to N = 2, thresholds from almost empty to almost full matrices, d = 1..3, Theiler windows
        # up to N - 1, lines crossing the numpy path's row blocks: histograms must agree exactly every time.
        rng = np.random.default_rng(7)
        for case in range(40):
            n = int(rng.integers(2, 160))
            pts = rng.random((n, int(rng.integers(1, 4)))) if case % 2 else logistic(n, x0=rng.uniform(0.05, 0.95))
            kw = dict(
                threshold=float(rng.uniform(0.01, 0.9)),
                metric=["supremum", "euclidean", "manhattan"][case % 3],
                theiler=int(rng.integers(0, n)),
                l_min=int(rng.integers(1, 4)),
                v_min=int(rng.integers(1, 4)),
            )
            if np.ptp(pts, axis=0).max() == 0:
                continue
            if n < max(10, max(kw["theiler"], 1) + max(kw["l_min"], kw["v_min"])):  # too short: both refuse
                for engine in ("numba", "numpy"):
                    with pytest.raises(ValueError, match="rqa: expected a series .* of at least"):
                        rqa(pts, engine=engine, **kw)
                continue
            assert_same_rqa(rqa(pts, engine="numba", **kw), rqa(pts, engine="numpy", block_size=600, **kw))

    def test_numpy_engine_without_numba(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
        monkeypatch.delitem(sys.modules, "netdyn.series._rqa_kernels", raising=False)
        x = logistic(300)
        ref = rqa(x, threshold=0.05, engine="numpy")
        assert_same_rqa(rqa(x, threshold=0.05, engine="auto"), ref)
        with pytest.raises(ImportError, match=r"rqa: engine='numba' needs numba \(pip install numba\)"):
            rqa(x, threshold=0.05, engine="numba")
        assert "netdyn.series._rqa_kernels" not in sys.modules

    def test_bad_engine_and_theiler(self):
        x = logistic(100)
        with pytest.raises(ValueError, match=r"rqa: expected engine to be one of 'auto', 'numba', 'grid', 'numpy', got 'cuda'"):
            rqa(x, threshold=0.1, engine="cuda")
        # theiler = N leaves no pair; the length check (a line of l_min = 2 outside the window) says so first
        with pytest.raises(ValueError, match=r"rqa: expected a series \(after embedding\) of at least 102 points"):
            rqa(x, threshold=0.1, theiler=100)


class TestRecurrenceThreshold:
    @pytest.mark.parametrize("metric", ["supremum", "euclidean", "manhattan"])
    @pytest.mark.parametrize("theiler", [0, 1, 5])
    def test_engines_return_the_same_distance(self, metric, theiler):
        x = logistic(500)
        for rate in (0.0, 0.003, 0.05, 0.1, 0.5, 0.999, 1.0):
            ref = recurrence_threshold(x, recurrence_rate=rate, metric=metric, theiler=theiler, emb_dim=2, engine="numpy")
            assert recurrence_threshold(x, recurrence_rate=rate, metric=metric, theiler=theiler, emb_dim=2, engine="numba") == ref

    def test_is_the_order_statistic(self):
        # brute force: all T pair distances outside the Theiler window, sorted, at rank int(rate (T - 1))
        x = logistic(240, x0=0.37)
        dist = np.abs(np.subtract.outer(x, x))
        far = np.abs(np.subtract.outer(np.arange(240), np.arange(240))) >= 3
        values = np.sort(dist[far])
        for rate in (0.01, 0.2, 0.75):
            assert recurrence_threshold(x, recurrence_rate=rate, theiler=3, engine="numba") == values[int(rate * (values.size - 1))]

    def test_refinement_and_coinciding_distances(self, monkeypatch):
        # shrink the histogram and the buffer so the numba selection must refine (and, on a periodic orbit,
        # stop on a bin holding one repeated distance); the numpy path is the reference.
        monkeypatch.setattr(recurrence, "_BINS", 4)
        monkeypatch.setattr(recurrence, "_SELECT", 16)
        for x in (logistic(300), series("periodic", 300), np.random.default_rng(3).random(300) * 1e-306):
            for rate in (0.05, 0.3, 0.9):
                for theiler in (0, 2):
                    ref = recurrence_threshold(x, recurrence_rate=rate, theiler=theiler, engine="numpy")
                    assert recurrence_threshold(x, recurrence_rate=rate, theiler=theiler, engine="numba") == ref

    def test_bad_input(self):
        with pytest.raises(ValueError, match="recurrence_threshold: expected theiler < N = 10"):
            recurrence_threshold(logistic(10), recurrence_rate=0.1, theiler=10)
        with pytest.raises(ValueError, match=r"recurrence_threshold: expected recurrence_rate to be a finite float in \[0, 1\]"):
            recurrence_threshold(logistic(10), recurrence_rate=1.5)


class TestWindowedRQA:
    def test_engines_agree(self):
        x = np.concatenate([np.tile([0.2, 0.7], 200), logistic(400)])
        kw = dict(window=150, step=50, threshold=0.05)
        a, b = windowed_rqa(x, engine="numba", **kw), windowed_rqa(x, engine="numpy", **kw)
        xr.testing.assert_identical(a, b)

    def test_detects_regime_change(self):
        x = np.concatenate([np.tile([0.2, 0.7], 500), logistic(1000)])
        ds = windowed_rqa(x, window=200, step=100, threshold=0.05)
        assert ds.sizes["window_center"] == 19
        early, late = ds.sel(window_center=slice(0, 800)), ds.sel(window_center=slice(1100, None))
        assert float(early["DET"].min()) == 1.0
        assert float(late["DET"].max()) < 0.95

    def test_trajectory_dataset_uses_step_coordinate(self):
        n = 400
        ds = xr.Dataset(
            {"loss": ("step", logistic(n))}, coords={"step": np.arange(n, dtype=np.int64) * 10}
        )
        out = windowed_rqa(ds, window=100, recurrence_rate=0.05)
        assert out["window_center"].values[0] == 490
        assert float(out["threshold"]) == recurrence_threshold(ds["loss"].values, recurrence_rate=0.05)


class TestRecurrenceMatrix:
    def test_dense_and_packed(self):
        x = logistic(203)
        rec, _, _ = dense_reference(x, 0.07, 1)
        np.testing.assert_array_equal(recurrence_matrix(x, threshold=0.07), rec)
        np.testing.assert_array_equal(recurrence_matrix(x, threshold=0.07, packed=True), np.packbits(rec, axis=1))

    def test_image_is_block_or(self):
        x = logistic(203)
        rec, _, _ = dense_reference(x, 0.07, 1)
        image, factor = recurrence_image(x, threshold=0.07, size=50, block_size=3000)
        assert factor == 5 and image.shape == (41, 41)
        padded = np.pad(rec, ((0, 2), (0, 2)))
        np.testing.assert_array_equal(image, padded.reshape(41, 5, 41, 5).any(axis=(1, 3)))
