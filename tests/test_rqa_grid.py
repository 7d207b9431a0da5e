"""The neighbour-grid RQA engine counts exactly the lines of the exhaustive kernel; its threshold search finds the
same order statistic."""
import numpy as np
import pytest

pytest.importorskip("numba")

import netdyn.series._rqa_kernels as kernels  # noqa: E402
import netdyn.series.recurrence as recurrence  # noqa: E402
from netdyn.series.recurrence import recurrence_threshold, rqa  # noqa: E402

from _series import henon, logistic, rossler_x  # noqa: E402

METRICS = ("supremum", "euclidean", "manhattan")
KINDS = ["logistic", "henon", "rossler", "periodic", "period2", "constant", "random"]


def exhaustive(pts, eps, metric, theiler):
    n = len(pts)
    diag, vert = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    work = [np.empty(n, np.int64) for _ in range(4)]
    count = kernels.line_histograms(
        np.ascontiguousarray(pts), eps, kernels.METRIC_CODES[metric], theiler, diag, vert, work[0], work[1],
        np.empty(n + 1, bool), work[2], work[3],
    )
    return count, diag, vert


def on_grid(pts, eps, metric, theiler, subdivisions, blocks, tasks):
    """The grid kernel with the given row blocks and tasks, merged as ``recurrence._line_histograms_grid`` does."""
    pts = np.ascontiguousarray(pts)
    n, code = len(pts), kernels.METRIC_CODES[metric]
    g = kernels.build_grid(pts, eps, code, subdivisions)
    s_max = kernels.square_root_bound(eps) if code == 1 else eps
    diag_t, vert_t, upper = np.empty((tasks, n + 1), np.int64), np.empty((tasks, n + 1), np.int64), np.empty(tasks, np.int64)
    kernels.grid_line_histograms(
        pts, eps, s_max, -1.0, code, theiler, g.spts, g.sidx, g.cell, g.start, g.offsets, blocks, diag_t, vert_t,
        np.empty((tasks, n, 2), np.int32), np.empty((tasks, n, 2), np.int32), np.empty((tasks, n), np.int64),
        np.empty((tasks, g.start.size - 1), np.int64), upper, *kernels.without_near_pairs(tasks),
    )
    diag, vert = diag_t.sum(axis=0), vert_t.sum(axis=0)
    diag[0] = vert[0] = 0
    return 2 * int(upper.sum()) + (n if theiler == 0 else 0), diag, vert


def embed(x, dim, lag=1):
    n = len(x) - (dim - 1) * lag
    return np.stack([x[i * lag : i * lag + n] for i in range(dim)], axis=1)


def series(kind, n, rng):
    if kind == "logistic":
        return logistic(n, x0=float(rng.uniform(0.1, 0.9)), r=3.9)
    if kind == "henon":
        return henon(n)[:, 0]
    if kind == "rossler":
        return rossler_x(n, dt=0.25, transient=200)
    if kind == "periodic":
        return np.tile([0.1, 0.5, 0.8, 0.3, 0.65, 0.45, 0.9], n // 7 + 1)[:n]
    if kind == "period2":
        return np.tile([0.2, 0.7], n // 2 + 1)[:n]
    if kind == "constant":
        return np.full(n, 0.4)
    return rng.random(n)


def assert_same(got, ref):
    assert got[0] == ref[0]
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[2], ref[2])


class TestGridKernel:
    @pytest.mark.parametrize("kind", KINDS)
    def test_equals_exhaustive_kernel(self, kind):
        # every metric, Theiler windows 0 / 1 / 4, embeddings 1..5 (above 3 the grid sees 3 coordinates and the
        # full distance filters), subdivisions 1..3, random row blocks down to single rows, 1..3 tasks
        rng = np.random.default_rng(KINDS.index(kind))
        for case in range(30):
            dim = 1 + case % 5
            pts = embed(series(kind, int(rng.integers(20, 160)) + 4 * dim, rng), dim, lag=int(rng.integers(1, 3)))
            n = len(pts)
            metric = METRICS[case % 3]
            theiler = (0, 1, 4)[(case // 3) % 3]
            scale = np.ptp(pts) if np.ptp(pts) > 0 else 1.0
            eps = float(rng.choice([0.02, 0.1, 0.3, 1.5])) * scale
            cuts = rng.integers(1, n, int(rng.integers(0, n)))
            blocks = np.unique(np.concatenate(([0], cuts, [n]))).astype(np.int64)
            got = on_grid(pts, eps, metric, theiler, int(rng.integers(1, 4)), blocks, int(rng.integers(1, 4)))
            assert_same(got, exhaustive(pts, eps, metric, theiler))

    def test_pairs_at_the_threshold(self):
        # points one ulp inside and exactly at eps apart, across cell boundaries: the grid must neither miss
        # a recurrence nor invent one
        eps = 0.3
        below = np.nextafter(eps, 0.0)
        x = np.cumsum(np.tile([below, eps, below / 3, 0.0], 30))
        for dim in (1, 3):
            pts = embed(x, dim)
            for metric in METRICS:
                for s in (1, 2, 3):
                    blocks = np.array([0, len(pts) // 3, len(pts)], dtype=np.int64)
                    assert_same(on_grid(pts, eps, metric, 0, s, blocks, 2), exhaustive(pts, eps, metric, 0))

    def test_square_root_bound(self):
        rng = np.random.default_rng(0)
        for eps in np.concatenate((rng.uniform(1e-3, 1e3, 200), [1.2, 1e-150, 1e150, 5e-324])):
            b = kernels.square_root_bound(float(eps))
            assert np.sqrt(b) < eps <= np.sqrt(np.nextafter(b, np.inf))

    def test_grid_layout(self):
        # cells of at least eps / s with the margin; candidates bound the recurrent pairs from above; the sorted
        # points are a permutation of the originals, in time order within each cell
        rng = np.random.default_rng(1)
        pts = rng.random((400, 3))
        for metric, code in kernels.METRIC_CODES.items():
            count, _, _ = exhaustive(pts, 0.1, metric, 1)
            for s in (1, 2, 3):
                g = kernels.build_grid(pts, 0.1, code, s)
                assert g.side * s >= 0.1 * (1 + 2.0**-21)  # the margin (2^-20, rounded) that absorbs rounded cell indices
                assert count <= g.candidates < 400 * 399
                np.testing.assert_array_equal(np.sort(g.sidx), np.arange(400))
                np.testing.assert_array_equal(g.spts, pts[g.sidx])
                for c in np.flatnonzero(np.diff(g.start)):
                    assert np.all(g.cell[g.sidx[g.start[c] : g.start[c + 1]]] == c)
                    assert np.all(np.diff(g.sidx[g.start[c] : g.start[c + 1]]) > 0)


class TestEngines:
    def test_front_door_engines_agree(self):
        x = rossler_x(900, dt=0.25, transient=200)
        for metric in METRICS:
            for theiler in (0, 3):
                kw = dict(threshold=1.5, metric=metric, theiler=theiler, emb_dim=3, lag=2)
                ref = rqa(x, engine="numpy", **kw).to_dataset()
                assert rqa(x, engine="grid", **kw).to_dataset().identical(ref)
                assert rqa(x, engine="numba", **kw).to_dataset().identical(ref)

    def test_auto_takes_the_grid_only_when_it_pays(self, monkeypatch):
        calls = []
        original = recurrence._line_histograms_grid
        monkeypatch.setattr(recurrence, "_line_histograms_grid", lambda *a: calls.append(1) or original(*a))
        monkeypatch.setattr(recurrence, "_GRID_MIN", 100)
        x = rossler_x(700, dt=0.25, transient=200)
        sparse = rqa(x, threshold=0.5, emb_dim=3, lag=2, metric="euclidean")
        assert calls == [1]
        assert sparse.to_dataset().identical(rqa(x, threshold=0.5, emb_dim=3, lag=2, metric="euclidean", engine="numba").to_dataset())
        dense = rqa(x, threshold=100.0, emb_dim=3, lag=2, metric="euclidean")  # every pair recurs: nothing to skip
        assert calls == [1] and dense.RR == 1.0

    def test_engine_choice_is_checked(self):
        with pytest.raises(ValueError, match=r"rqa: expected engine to be one of 'auto', 'numba', 'grid', 'numpy', got 'gpu'"):
            rqa(logistic(100), threshold=0.1, engine="gpu")


class TestGridThreshold:
    @pytest.mark.parametrize("metric", METRICS)
    @pytest.mark.parametrize("theiler", [0, 1, 5])
    def test_equals_the_numpy_order_statistic(self, metric, theiler):
        for x, dim in ((logistic(600), 2), (henon(500)[:, 0], 3),
                       (rossler_x(500, dt=0.25, transient=200), 4)):
            for rate in (0.0, 0.002, 0.03, 0.1, 0.5, 1.0):
                ref = recurrence_threshold(x, recurrence_rate=rate, metric=metric, theiler=theiler, emb_dim=dim, engine="numpy")
                assert recurrence_threshold(x, recurrence_rate=rate, metric=metric, theiler=theiler, emb_dim=dim, engine="grid") == ref

    def test_narrowing_and_missed_brackets(self, monkeypatch):
        # a tiny buffer and histogram force the narrowing passes; a zero-width sampled bracket (z = 0) misses
        # the rank on either side and must be moved; coinciding distances (periodic) end on one repeated value
        monkeypatch.setattr(recurrence, "_GRID_VALUES", 16)
        monkeypatch.setattr(recurrence, "_BINS", 4)
        for z in (5.0, 0.0):
            monkeypatch.setattr(recurrence, "_SAMPLE_Z", z)
            for sample in (64, 1 << 18):
                monkeypatch.setattr(recurrence, "_SAMPLE", sample)
                for x in (logistic(300), np.tile([0.1, 0.5, 0.8], 100)):
                    for rate in (0.02, 0.3, 0.7):
                        for theiler in (0, 2):
                            ref = recurrence_threshold(x, recurrence_rate=rate, metric="euclidean", theiler=theiler, emb_dim=2, engine="numpy")
                            assert recurrence_threshold(x, recurrence_rate=rate, metric="euclidean", theiler=theiler, emb_dim=2, engine="grid") == ref

    def test_fixed_rate_rqa_on_the_grid(self, monkeypatch):
        monkeypatch.setattr(recurrence, "_GRID_MIN", 100)
        x = rossler_x(800, dt=0.25, transient=200)
        kw = dict(recurrence_rate=0.04, metric="euclidean", theiler=1, emb_dim=3, lag=2)
        got, ref = rqa(x, **kw), rqa(x, engine="numpy", **kw)
        assert got.to_dataset().identical(ref.to_dataset())
        assert 0.039 < got.RR <= 0.04


class TestFixedRateGridRQA:
    """``rqa(recurrence_rate=...)`` on the grid counts the bracket once and, when the bracket's distances do not
    fit the buffer, runs the RQA pass at the lower edge of the rank's histogram bin and adds that bin's pairs below
    the exact threshold afterwards (``_rqa_rate_grid``); the result must be the RQA at the exact rank threshold."""

    @staticmethod
    def reference(x, rate, metric, theiler, dim):
        eps = recurrence_threshold(x, recurrence_rate=rate, metric=metric, theiler=theiler, emb_dim=dim, engine="numpy")
        return rqa(x, threshold=eps, metric=metric, theiler=theiler, emb_dim=dim, engine="numba")

    @pytest.mark.parametrize("metric", METRICS)
    @pytest.mark.parametrize("theiler", [0, 1, 4])
    @pytest.mark.parametrize("bins, words", [(64, 8), (256, 1)])
    def test_adding_a_bins_pairs_gives_the_exact_threshold_rqa(self, monkeypatch, metric, theiler, bins, words):
        # a 16-value buffer forces the added pairs on every series; 64 bins keep the rank's bin a few dozen pairs
        # wide, so that lines gain several pairs at once; 256 bins on a 64-bit row filter share bits (rows that
        # hold another bin's pairs collect nothing more); the periodic series ties many pairs at the threshold
        monkeypatch.setattr(recurrence, "_GRID_MIN", 100)
        monkeypatch.setattr(recurrence, "_GRID_VALUES", 16)
        monkeypatch.setattr(recurrence, "_BINS", bins)
        monkeypatch.setattr(recurrence, "_MASK_WORDS", words)
        added = []
        original = kernels.add_recurrences
        monkeypatch.setattr(kernels, "add_recurrences", lambda *a: added.append(a[7].shape[0]) or original(*a))
        rng = np.random.default_rng(7)
        for x, dim, rates in ((rossler_x(700, dt=0.25, transient=200), 3, (0.01, 0.05, 0.2)),
                              (logistic(600, r=3.9), 2, (0.01, 0.05, 0.2)), (rng.random(400), 1, (0.01, 0.05, 0.2)),
                              (series("periodic", 500, rng), 2, (0.2, 0.5))):  # exact ties (1/7 of pairs: zero)
            for rate in rates:
                got = rqa(x, recurrence_rate=rate, metric=metric, theiler=theiler, emb_dim=dim)
                assert got.to_dataset().identical(self.reference(x, rate, metric, theiler, dim).to_dataset())
        assert len(added) >= 4 and max(added) >= 3  # the path ran, with bins of several pairs

    def test_exact_bracket_and_fallbacks(self, monkeypatch):
        # default buffer (the bracket fits: one count, the RQA pass at the selected threshold on the same grid);
        # a zero-width sampled bracket (z = 0) misses the rank, and a 0-pair cap on a bin: both leave it to the
        # threshold search, with the same result; exact coincidences at the rank (period 2) too, with the warning
        monkeypatch.setattr(recurrence, "_GRID_MIN", 100)
        taken = []
        original = recurrence._rqa_rate_grid
        monkeypatch.setattr(recurrence, "_rqa_rate_grid", lambda *a: taken.append(original(*a)) or taken[-1])
        x = rossler_x(800, dt=0.25, transient=200)
        for z, near, road in ((5.0, 1 << 18, True), (0.0, 1 << 18, False), (5.0, 0, False)):
            monkeypatch.setattr(recurrence, "_SAMPLE_Z", z)
            monkeypatch.setattr(recurrence, "_NEAR_VALUES", near)
            monkeypatch.setattr(recurrence, "_GRID_VALUES", 1 << 20 if near else 16)
            for theiler in (0, 2):
                got = rqa(x, recurrence_rate=0.04, metric="euclidean", theiler=theiler, emb_dim=3, lag=2, engine="grid")
                assert (taken[-1] is not None) == road
                ref = rqa(x, recurrence_rate=0.04, metric="euclidean", theiler=theiler, emb_dim=3, lag=2, engine="numpy")
                assert got.to_dataset().identical(ref.to_dataset())
        x = series("period2", 400, None)
        with pytest.warns(RuntimeWarning, match="coincide exactly"):
            got = rqa(x, recurrence_rate=0.3, engine="grid")
        assert taken[-1] is None
        with pytest.warns(RuntimeWarning, match="coincide exactly"):
            assert got.to_dataset().identical(rqa(x, recurrence_rate=0.3, engine="numpy").to_dataset())

    def test_bin_start_is_the_kernels_bin_edge(self):
        # the least double the counting kernel puts in bin b or above (int((d - lo) scale) >= b), and the double
        # before it below b: the bin's pairs are then exactly those in [start(b), start(b + 1))
        rng = np.random.default_rng(3)
        for _ in range(200):
            lo = float(rng.uniform(0, 2))
            hi = lo + float(10.0 ** rng.uniform(-12, 1))
            bins = int(rng.choice([4, 64, 8192]))
            scale = bins / (hi - lo)
            b = int(rng.integers(1, bins))
            start = recurrence._bin_start(lo, hi, scale, b)
            assert lo < start <= hi
            assert int((start - lo) * scale) >= b > int((float(np.nextafter(start, -np.inf)) - lo) * scale)
        assert recurrence._bin_start(0.5, 1.0, 8.0, 0) == 0.5
