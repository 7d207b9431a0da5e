"""Spectra, FTLEs and CLVs of many orbits at once equal those of each orbit alone."""
import math

import numpy as np
import pytest
import torch

from netdyn import HenonMap, LinearMap, LogisticMap, QuadraticGD, clv, ftle, lyapunov_spectrum
from netdyn.lyapunov.spectrum import qr_tangent_steps


def henon_starts(n: int) -> torch.Tensor:
    return torch.stack([HenonMap().initial_state(seed) for seed in range(n)])


class TestBatchedSpectrum:
    def test_each_member_equals_its_own_run(self):
        henon, x0 = HenonMap(), henon_starts(6)
        batch = lyapunov_spectrum(henon, x0, 400, transient=50)
        assert batch["lyapunov"].dims == ("init", "exponent") and batch.sizes["init"] == 6
        for i in range(6):
            alone = lyapunov_spectrum(henon, x0[i], 400, transient=50)
            np.testing.assert_allclose(batch["lyapunov"][i], alone["lyapunov"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(batch["local_rate"][i], alone["local_rate"], rtol=0, atol=1e-12)
        # det J = -b: the exponents sum to ln 0.3 at every step, for every member
        np.testing.assert_allclose(batch["lyapunov"].sum("exponent"), math.log(0.3), atol=1e-12)

    def test_quadratic_gd_exact_exponents_for_every_member(self):
        h = np.array([0.5, 2.0, 6.0])  # a diagonal Hessian; lr = 0.4 > 2 / 6: one unstable direction
        gd = QuadraticGD(h.tolist(), lr=0.4)
        x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        result = lyapunov_spectrum(gd, x0, 100, transient=100)  # (0.8 / 1.4)^100: the basis has aligned
        exact = np.sort(np.log(np.abs(1 - 0.4 * h)))[::-1]
        np.testing.assert_allclose(result["lyapunov"], np.broadcast_to(exact, (5, 3)), atol=1e-10)

    def test_a_diverging_member_stops_alone(self):
        logistic = LogisticMap(4.0)
        x0 = torch.tensor([[0.3], [1.5], [0.7]], dtype=torch.float64)  # 1.5 escapes to -inf
        with pytest.warns(RuntimeWarning, match="1 of 3 orbit"):
            result = lyapunov_spectrum(logistic, x0, 3000)
        assert result["diverged"].values.tolist() == [False, True, False]
        assert result["diverged_step"].values[1] > 0
        for i in (0, 2):
            # 3000 steps, error O(1/n) at r = 4 (coboundary): measured -0.0003 and -0.0004
            assert float(result["lyapunov"][i, 0]) == pytest.approx(math.log(2), abs=0.005)
        assert np.isnan(result["local_rate"][1, -1, 0])

    def test_the_block_bookkeeping_gives_the_step_by_step_values(self):
        # a member lost at step 11 sends its blocks down the step-by-step path, a quiet batch takes
        # the one-copy path; the transient (70) ends inside the second block of 64 steps
        henon = HenonMap(a=torch.tensor([1.4, 2.5, 1.4], dtype=torch.float64))
        x0 = henon_starts(3)
        with pytest.warns(RuntimeWarning):
            mixed = lyapunov_spectrum(henon, x0, 300, transient=70)
        assert mixed["unresolved"].values.tolist() == [False, True, False]
        sound = lyapunov_spectrum(HenonMap(a=torch.tensor([1.4, 1.4], dtype=torch.float64)), x0[[0, 2]], 300, transient=70)
        for name in ("lyapunov", "lyapunov_stderr", "lyapunov_running", "local_rate"):
            np.testing.assert_array_equal(mixed[name].values[[0, 2]], sound[name].values)
        # the running means are the sequential sums of the local rates, bit for bit, across blocks
        rates = mixed["local_rate"].values[[0, 2]]
        np.testing.assert_array_equal(sound["lyapunov_running"].values, np.cumsum(rates, axis=1) / np.arange(1, 301)[:, None])
        lost_at = int(mixed["unresolved_step"][1]) - 70  # NaN from the counted step where it was lost
        assert np.isnan(mixed["local_rate"].values[1]).all() and lost_at <= 0

    def test_qr_factors_have_batch_shapes(self):
        steps = list(qr_tangent_steps(HenonMap(), henon_starts(3), 2, k=2))
        t, x, q, r = steps[-1]
        assert (t, x.shape, q.shape, r.shape) == (1, (3, 2), (3, 2, 2), (3, 2, 2))
        eye = torch.eye(2, dtype=q.dtype).expand(3, 2, 2)
        torch.testing.assert_close(q.transpose(1, 2) @ q, eye)
        assert bool((torch.diagonal(r, dim1=1, dim2=2) > 0).all())


class TestBatchedFTLEAndCLV:
    def test_ftle_members_equal_single_runs(self):
        henon, x0 = HenonMap(), henon_starts(4)
        batch = ftle(henon, x0, 200, k=2, window=20)
        assert batch["ftle"].dims == ("init", "step", "exponent")
        for i in range(4):
            np.testing.assert_allclose(batch["ftle"][i], ftle(henon, x0[i], 200, k=2, window=20)["ftle"], atol=1e-12)

    def test_clv_of_a_linear_map_are_its_eigenvectors_for_every_member(self):
        a = torch.tensor([[2.0, 1.0], [0.0, 0.5]], dtype=torch.float64)
        x0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        result = clv(LinearMap(a), x0, 80, k=2, transient=30)
        eig = np.array([[1.0, 0.0], [1.0, -1.5] / np.linalg.norm([1.0, -1.5])])  # eigenvectors of 2 and 0.5
        for i in range(3):
            vectors = result["clv"].values[i]  # (step, exponent, param)
            for j in range(2):
                np.testing.assert_allclose(np.abs(vectors[:, j] @ eig[j]), 1.0, atol=1e-10)

    def test_clv_members_equal_single_runs(self):
        henon, x0 = HenonMap(), henon_starts(3)
        batch = clv(henon, x0, 150, k=2, transient=50)
        for i in range(3):
            alone = clv(henon, x0[i], 150, k=2, transient=50)
            np.testing.assert_allclose(batch["clv"][i], alone["clv"], atol=1e-10)
            np.testing.assert_allclose(batch["angle"][i], alone["angle"], atol=1e-10)
