"""Edge of stability for adaptive optimisers: preconditioners, thresholds, preconditioned sharpness."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from netdyn import QuadraticGD, TrainingMap, make_task, training_map
from netdyn.maps.optim import SGD
from netdyn.sharpness.hessian import sharpness_at, track_sharpness
from netdyn.sharpness.threshold import stability_threshold, step_preconditioner


def spectral_radius(matrix: np.ndarray) -> float:
    return float(np.abs(np.linalg.eigvals(matrix)).max())


def sgd_iteration(opt: SGD, a: float) -> np.ndarray:
    """The linear map (theta, buffer) -> (theta', buffer') of ``opt`` on the loss a theta^2 / 2, at t > 0."""
    cols = []
    for e in np.eye(2):
        theta, buf = torch.tensor([e[0]], dtype=torch.float64), torch.tensor([e[1]], dtype=torch.float64)
        buffers = buf if opt.n_buffers else buf[:0]
        new_theta, new_buf = opt.update(theta, buffers, a * theta, t=5)
        cols.append([float(new_theta), float(new_buf) if opt.n_buffers else 0.0])
    return np.array(cols).T


def ema_heavy_ball(a: float, eta: float, beta: float) -> np.ndarray:
    """Adam with its preconditioner held fixed, on an eigendirection of P^-1 H with eigenvalue a:
    m' = beta m + (1 - beta) a theta, theta' = theta - eta m' (bias correction -> 1)."""
    return np.array([[beta, (1 - beta) * a], [-eta * beta, 1 - eta * (1 - beta) * a]])


def heavy_ball(a: float, eta: float, mu: float) -> np.ndarray:
    """RMSprop with momentum, preconditioner fixed: b' = mu b + a theta, theta' = theta - eta b'."""
    return np.array([[mu, a], [-eta * mu, 1 - eta * a]])


class FakeMap:
    def __init__(self, opt):
        self.functional_optimizer, self.optimizer_spec = opt, "x"


class TestThresholds:
    @pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}, {"momentum": 0.5, "dampening": 0.3},
                                        {"momentum": 0.9, "nesterov": True}])
    def test_sgd_threshold_is_where_the_iteration_loses_stability(self, kwargs):
        opt = SGD(lr=0.1, **kwargs)
        threshold = stability_threshold(FakeMap(opt))
        assert spectral_radius(sgd_iteration(opt, 0.99 * threshold)) < 1
        assert spectral_radius(sgd_iteration(opt, 1.01 * threshold)) > 1

    def test_adam_threshold_38_over_eta(self):
        eta = 1e-3
        tmap = training_map(make_task("iris", hidden=(4,)), lr=eta, optimizer="adam")
        threshold = stability_threshold(tmap)
        assert threshold == pytest.approx(38 / eta)
        assert spectral_radius(ema_heavy_ball(0.99 * threshold, eta, 0.9)) < 1
        assert spectral_radius(ema_heavy_ball(1.01 * threshold, eta, 0.9)) > 1

    def test_rmsprop_threshold(self):
        tmap = training_map(make_task("iris", hidden=(4,)), lr=0.01, optimizer="rmsprop", momentum=0.5)
        threshold = stability_threshold(tmap)
        assert threshold == pytest.approx(3 / 0.01)
        assert spectral_radius(heavy_ball(0.99 * threshold, 0.01, 0.5)) < 1
        assert spectral_radius(heavy_ball(1.01 * threshold, 0.01, 0.5)) > 1

    def test_plain_gd_map(self):
        assert stability_threshold(QuadraticGD([1.0, 2.0], lr=0.25)) == 8.0


def linear_regression_map(optimizer: str, **kwargs) -> tuple[TrainingMap, np.ndarray]:
    """Least squares on fixed data: the loss is exactly quadratic, H = 2 X^T X / n."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(40, 5, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5, 2.0, 0.1],
                                                                                    dtype=torch.float64)
    targets = torch.randn(40, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    tmap = TrainingMap(model, nn.MSELoss(), (inputs, targets), optimizer=optimizer, lr=0.01, **kwargs)
    hessian = (2.0 * inputs.T @ inputs / 40).numpy()
    return tmap, hessian


class TestPreconditionedSharpness:
    def state_with_buffers(self, tmap: TrainingMap) -> torch.Tensor:
        gen = torch.Generator().manual_seed(3)
        x = tmap.initial_state()
        x[tmap.param_dim:] = torch.rand(tmap.dim - tmap.param_dim, generator=gen, dtype=torch.float64) * 0.1
        return x

    def test_adam_preconditioner_is_what_the_step_divides_by(self):
        tmap, _ = linear_regression_map("adam")
        x, t = self.state_with_buffers(tmap), 5
        p = tmap.param_dim
        x_next = tmap.step(x, t)
        bias1 = 1 - 0.9 ** (t + 1)
        implied = -(0.01 / bias1) * x_next[p: 2 * p] / (x_next[:p] - x[:p])
        torch.testing.assert_close(step_preconditioner(tmap, x, t=t), implied, rtol=1e-9, atol=0)

    def test_rmsprop_preconditioner_is_what_the_step_divides_by(self):
        tmap, _ = linear_regression_map("rmsprop")
        x, t = self.state_with_buffers(tmap), 3
        p = tmap.param_dim
        theta = x[:p].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(tmap.loss(theta, t), theta)
        implied = -0.01 * grad / (tmap.step(x, t)[:p] - x[:p])
        torch.testing.assert_close(step_preconditioner(tmap, x, t=t), implied, rtol=1e-9, atol=0)

    @pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
    def test_equals_exact_eigenvalues_of_p_inverse_h(self, optimizer):
        tmap, hessian = linear_regression_map(optimizer)
        x, t = self.state_with_buffers(tmap), 7
        scale = step_preconditioner(tmap, x, t=t).rsqrt().numpy()
        exact = np.sort(np.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :]))[::-1]
        result = sharpness_at(tmap, x, k=2, t=t, preconditioned=True, tol=1e-10)
        assert result.preconditioned and result.converged
        np.testing.assert_allclose(result.values, exact[:2], rtol=1e-8)
        assert result.threshold == pytest.approx(stability_threshold(tmap))

    def test_raw_hessian_of_an_adaptive_optimiser_has_no_threshold(self):
        tmap, hessian = linear_regression_map("adam")
        result = sharpness_at(tmap, tmap.initial_state(), k=1)
        assert math.isnan(result.threshold)
        assert result.values[0] == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-8)

    def test_needs_the_optimiser_buffers(self):
        tmap, _ = linear_regression_map("adam")
        with pytest.raises(ValueError, match="step_preconditioner: expected the full state"):
            sharpness_at(tmap, tmap.initial_state()[: tmap.param_dim], preconditioned=True)


class TestTracking:
    def test_adam_on_iris_against_38_over_eta(self):
        tmap = training_map(make_task("iris", hidden=(8,)), lr=0.01, optimizer="adam")
        warm = track_sharpness(tmap, tmap.initial_state(), 40, every=5)
        assert warm.attrs["preconditioned"] == 1 and warm.attrs["threshold"] == pytest.approx(3800.0)
        assert warm.sizes["step"] == 8 and bool(warm["converged"].all())
        np.testing.assert_allclose(warm["sharpness_over_threshold"], warm["sharpness"][:, 0] / 3800.0)
        # a cold start at every measurement finds the same eigenvalues with more products
        cold = [sharpness_at(tmap, x, t=int(t), preconditioned=True) for t, x in self._states(tmap, warm["step"].values)]
        np.testing.assert_allclose(warm["sharpness"][:, 0], [c.values[0] for c in cold], rtol=1e-5)
        assert int(warm["n_hvp"].sum()) < sum(c.n_hvp for c in cold)

    @staticmethod
    def _states(tmap, steps):
        x, out = tmap.initial_state(), []
        for t in range(int(steps[-1]) + 1):
            if t in steps:
                out.append((t, x))
            x = tmap.step(x, t)
        return out

    def test_plain_gd_is_not_preconditioned(self):
        q = QuadraticGD([1.0, 3.0], lr=0.5)
        result = track_sharpness(q, q.initial_state(0), 4, every=2)
        assert result.attrs["preconditioned"] == 0 and result.attrs["threshold"] == 4.0
        np.testing.assert_allclose(result["sharpness"][:, 0], 3.0, rtol=1e-10)
