"""The multi-core RQA kernel equals the single-threaded one, histogram for histogram."""
import numpy as np
import pytest

pytest.importorskip("numba")

import netdyn.series._rqa_kernels as kernels  # noqa: E402
import netdyn.series.recurrence as recurrence  # noqa: E402
from netdyn.series.recurrence import _diagonal_bands, rqa  # noqa: E402

from _series import logistic  # noqa: E402


def serial(pts, eps, metric, theiler):
    n = len(pts)
    diag, vert = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    work = [np.empty(n, np.int64) for _ in range(4)]
    count = kernels.line_histograms(
        np.ascontiguousarray(pts), eps, metric, theiler, diag, vert, work[0], work[1], np.empty(n + 1, bool), work[2], work[3]
    )
    return count, diag, vert


def banded(pts, eps, metric, theiler, n_bands):
    n = len(pts)
    bounds = _diagonal_bands(n, max(theiler, 1), n_bands)
    b = bounds.size - 1
    diag, vert = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    count = kernels.line_histograms_banded(
        np.ascontiguousarray(pts), eps, metric, theiler, bounds, diag, vert, np.empty((b, n + 1), np.int64),
        np.empty((b, n + 1), np.int64), np.empty(n, np.int64), *(np.empty((b, n), np.int64) for _ in range(4)),
        np.empty(b, np.int64), np.empty((b, n), bool), np.empty((b, 2, n), np.int64),
    )
    return count, diag, vert


def cases(seed: int, n_cases: int):
    """Random points, chaotic delay vectors and a periodic orbit (long lines), random settings."""
    rng = np.random.default_rng(seed)
    for case in range(n_cases):
        n, d = int(rng.integers(3, 80)), int(rng.integers(1, 4))
        if case % 3 == 0:
            pts = rng.random((n, d))
        elif case % 3 == 1:
            x = logistic(n + d, r=3.9, x0=float(rng.uniform(0.1, 0.9)))
            pts = np.stack([x[i : i + n] for i in range(d)], axis=1)
        else:
            pts = np.sin(0.3 * np.arange(n)[:, None] + np.arange(d))
        theiler = int(rng.choice([0, 1, 2, 5]))
        yield pts, float(rng.choice([0.05, 0.2, 0.5, 2.0])), int(rng.integers(0, 3)), theiler if theiler < n else 0


class TestBandedKernel:
    def test_equals_serial_kernel_on_random_cases(self):
        rng = np.random.default_rng(1)
        for pts, eps, metric, theiler in cases(0, 400):
            ref = serial(pts, eps, metric, theiler)
            got = banded(pts, eps, metric, theiler, int(rng.integers(1, 9)))
            assert got[0] == ref[0]
            np.testing.assert_array_equal(got[1], ref[1])
            np.testing.assert_array_equal(got[2], ref[2])

    def test_all_recurrent_and_none_recurrent(self):
        pts = np.zeros((50, 2))
        for eps in (1.0, 0.0):
            for theiler in (0, 3):
                ref = serial(pts, eps, 1, theiler)
                got = banded(pts, eps, 1, theiler, 4)
                assert got[0] == ref[0]
                np.testing.assert_array_equal(got[1], ref[1])
                np.testing.assert_array_equal(got[2], ref[2])

    def test_bands_cover_the_offsets_with_equal_work(self):
        n, k_min = 10_000, 3
        bounds = _diagonal_bands(n, k_min, 4)
        assert bounds[0] == k_min and bounds[-1] == n and np.all(np.diff(bounds) > 0)
        pairs = [sum(n - k for k in range(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
        assert max(pairs) / min(pairs) < 1.001
        assert list(_diagonal_bands(5, 1, 1)) == [1, 5]


class TestDispatch:
    def test_rqa_uses_bands_above_the_size_limit_and_gives_the_same_result(self, monkeypatch):
        import numba

        x = logistic(700, r=3.9)
        ref = rqa(x, threshold=0.05, emb_dim=2, theiler=2)  # serial: n < _BANDED_MIN
        calls = []
        original = kernels.line_histograms_banded
        monkeypatch.setattr(kernels, "line_histograms_banded", lambda *a: calls.append(1) or original(*a))
        monkeypatch.setattr(recurrence, "_BANDED_MIN", 100)
        monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
        got = rqa(x, threshold=0.05, emb_dim=2, theiler=2)
        assert calls, "the banded kernel was not used"
        assert got.to_dataset().identical(ref.to_dataset())
