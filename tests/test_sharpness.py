"""sharpness / sharpness_along against exact Hessian spectra.

Tolerances: Lanczos with full re-orthogonalisation and power iteration are run to a
relative residual 1e-6, which bounds the eigenvalue error by ~residual^2/gap
(<1e-10 here); we assert 1e-8.
"""
import numpy as np
import pytest
import torch

from netdyn.maps.classic import QuadraticGD
from netdyn.maps.problems import make_task, training_map
from netdyn.sharpness.hessian import Sharpness, sharpness_at, sharpness_along, top_eigenvalues


class TinyMLP:
    """4-3-2 tanh network on 20 random points with a loss(theta, t)."""

    dim = param_dim = 4 * 3 + 3 + 3 * 2 + 2
    lr = 0.5

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.inputs = torch.randn(20, 4, generator=g, dtype=torch.float64)
        self.targets = torch.randint(0, 2, (20,), generator=g)

    def loss(self, theta, t):
        w1, b1 = theta[:12].reshape(3, 4), theta[12:15]
        w2, b2 = theta[15:21].reshape(2, 3), theta[21:]
        out = torch.tanh(self.inputs @ w1.T + b1) @ w2.T + b2
        return torch.nn.functional.cross_entropy(out, self.targets)

    def describe(self):
        return {"map": "TinyMLP"}


@pytest.fixture(scope="module")
def quadratic():
    a = torch.randn(30, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return QuadraticGD(a @ a.T / 30, lr=0.1)


class TestSharpness:
    @pytest.mark.parametrize("method", ["lanczos", "power"])
    def test_quadratic_exact(self, quadratic, method):
        r = sharpness_at(quadratic, quadratic.initial_state(0), k=3, method=method)
        exact = torch.linalg.eigvalsh(quadratic.hessian).flip(0)[:3].numpy()
        assert r.converged and np.allclose(r.values, exact, atol=1e-8)
        h = quadratic.hessian.numpy()
        assert np.allclose(r.vectors @ h, r.values[:, None] * r.vectors, atol=1e-5)

    def test_mlp_matches_autograd_hessian(self):
        m = TinyMLP()
        theta = torch.randn(m.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(lambda z: m.loss(z, 0), theta))
        r = sharpness_at(m, theta, k=2)
        assert np.allclose(r.values, exact.flip(0)[:2].numpy(), atol=1e-8)
        # power iteration finds the largest |lambda|, here a negative eigenvalue
        p = sharpness_at(m, theta, k=1, method="power")
        top_abs = exact[exact.abs().argmax()].item()
        assert p.values[0] == pytest.approx(top_abs, abs=1e-8)

    def test_non_finite_is_nan_with_warning(self, quadratic):
        with pytest.warns(RuntimeWarning, match="non-finite"):
            r = sharpness_at(quadratic, torch.full((30,), np.nan, dtype=torch.float64))
        assert np.isnan(r.values).all() and not r.converged

    def test_bad_input(self, quadratic):
        with pytest.raises(ValueError, match="sharpness_at: expected method"):
            sharpness_at(quadratic, quadratic.initial_state(0), method="arnoldi")
        with pytest.raises(ValueError, match="sharpness_at: expected k to be an int"):
            sharpness_at(quadratic, quadratic.initial_state(0), k=31)


class TestSharpnessAlong:
    def test_quadratic_constant_and_threshold(self, quadratic):
        states = torch.stack([quadratic.initial_state(s) for s in range(3)])
        ds = sharpness_along(quadratic, states)
        exact = float(torch.linalg.eigvalsh(quadratic.hessian)[-1])
        assert np.allclose(ds.sharpness, exact, atol=1e-8)
        assert ds.attrs["two_over_lr"] == pytest.approx(20.0)
        assert np.allclose(ds.lr_times_sharpness, 0.1 * exact)

    def test_training_map_dataset_input(self):
        import xarray as xr

        tmap = training_map(make_task("iris", hidden=(4,), n_train=30), lr=0.5, optimizer="sgd", momentum=0.9)
        x = tmap.initial_state(0)
        states = []
        for t in range(3):
            states.append(x[: tmap.param_dim])
            x = tmap.step(x, t)
        traj = xr.Dataset({"state": (("step", "param"), torch.stack(states).numpy())}, coords={"step": [0, 1, 2]})
        ds = sharpness_along(tmap, traj, k=2)
        exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(lambda z: tmap.loss(z, 2), states[2]))
        assert np.allclose(ds.sharpness.sel(step=2), exact.flip(0)[:2].numpy(), atol=1e-8)
        assert ds.attrs["two_over_lr"] == pytest.approx(4.0)


class TestLanczosAgainstScipy:
    """The Lanczos engine (top_eigenvalues runs sharpness_at's _lanczos) against ARPACK.

    A random symmetric 80 x 80 matrix has a top-3 gap of O(1); both methods are
    converged far below 1e-8 (ours to a relative residual 1e-12, which bounds the
    eigenvalue error by ~residual^2 / gap), so 1e-8 absolute is a wide, honest margin.
    """

    def test_top_k_match_eigsh_on_a_linear_operator(self):
        from scipy.sparse.linalg import LinearOperator, eigsh

        rng = np.random.default_rng(3)
        a = rng.normal(size=(80, 80))
        h = (a + a.T) / 2
        operator = LinearOperator((80, 80), matvec=lambda v: h @ v, dtype=np.float64)
        reference = np.sort(eigsh(operator, k=3, which="LA", tol=1e-14)[0])[::-1]
        ht = torch.from_numpy(h)
        ours = top_eigenvalues(lambda v: ht @ v, 80, k=3, max_iter=80, tol=1e-12)
        assert ours.converged
        np.testing.assert_allclose(ours.values, reference, rtol=0, atol=1e-8)
        np.testing.assert_allclose(ours.values, np.sort(np.linalg.eigvalsh(h))[::-1][:3], rtol=0, atol=1e-8)


def test_sharpness_round_trips_through_netcdf(tmp_path):
    import xarray as xr

    m = QuadraticGD(np.diag([1.0, 4.0, 9.0]).tolist(), lr=0.1)
    result = sharpness_at(m, m.initial_state(0), k=2)
    path = tmp_path / "sharpness.nc"
    result.to_dataset().to_netcdf(path)
    with xr.open_dataset(path) as ds:
        back = Sharpness.from_dataset(ds.load())
    for name in ("values", "vectors", "residuals"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert (back.n_hvp, back.converged, back.method, back.preconditioned, back.threshold) == (
        result.n_hvp, result.converged, result.method, result.preconditioned, result.threshold)
    assert type(back.n_hvp) is int and type(back.converged) is bool and back.threshold == 20.0

