import math

import numpy as np
import pytest
import torch

from netdyn.maps.base import describe_map, has_jacobian, param_dim_of, require_jacobian
from netdyn.maps.classic import (
    CircleRotation,
    HenonMap,
    LinearMap,
    LogisticMap,
    LorenzRK4,
    PotentialGD,
    QuadraticGD,
)
from netdyn.testing import check_map

REFERENCE_MAPS = [
    LogisticMap(3.7),
    HenonMap(),
    QuadraticGD([[2.0, 0.5], [0.5, 1.0]], lr=0.3),
    PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=3, lr=0.5),
    CircleRotation(),
    LorenzRK4(),
    LinearMap([[1.2, 0.3], [0.0, 0.5]]),
]


@pytest.mark.parametrize("map_", REFERENCE_MAPS, ids=lambda m: type(m).__name__)
def test_reference_maps_pass_conformance(map_):
    check_map(map_)


class TestLogisticMap:
    def test_fixed_point(self):
        m = LogisticMap(2.5)
        x = torch.tensor([1 - 1 / 2.5], dtype=torch.float64)
        assert torch.allclose(m.step(x, 0), x)

    def test_jacobian_is_r_times_one_minus_two_x(self):
        m = LogisticMap(3.3)
        x = torch.tensor([0.2], dtype=torch.float64)
        _, jv = m.step_jvp(x, torch.ones(1, dtype=torch.float64), 0)
        assert jv.item() == pytest.approx(3.3 * (1 - 0.4), rel=1e-14)

    def test_rejects_r_out_of_range(self):
        with pytest.raises(ValueError, match="LogisticMap"):
            LogisticMap(4.5)


class TestHenonMap:
    def test_determinant_is_minus_b(self):
        m = HenonMap(1.4, 0.3)
        x = torch.tensor([0.3, -0.2], dtype=torch.float64)
        _, j = m.step_jvp(x, torch.eye(2, dtype=torch.float64), 0)
        assert torch.linalg.det(j.T).item() == pytest.approx(-0.3, rel=1e-14)


class TestQuadraticGD:
    def test_exact_exponents(self):
        m = QuadraticGD([1.0, 3.0], lr=0.9)
        expected = sorted([math.log(abs(1 - 0.9)), math.log(abs(1 - 2.7))], reverse=True)
        assert m.exact_exponents().tolist() == pytest.approx(expected, rel=1e-14)

    def test_rejects_non_symmetric(self):
        with pytest.raises(ValueError, match="symmetric"):
            QuadraticGD([[1.0, 2.0], [0.0, 1.0]], lr=0.1)

    def test_metrics_are_loss_and_gradient(self):
        m = QuadraticGD([2.0], lr=0.1)
        _, metrics = m.step_with_metrics(torch.tensor([3.0], dtype=torch.float64), 0)
        assert metrics == {"loss": pytest.approx(9.0), "grad_norm": pytest.approx(6.0)}


def test_potential_gd_two_cycle():
    lr = 2.1
    m = PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=1, lr=lr)
    a = math.sqrt((lr - 2) / lr)
    x = torch.tensor([a], dtype=torch.float64)
    assert m.step(x, 0).item() == pytest.approx(-a, rel=1e-12)
    assert m.step(m.step(x, 0), 1).item() == pytest.approx(a, rel=1e-12)


def test_rotation_preserves_norm():
    m = CircleRotation()
    x = m.initial_state(3)
    for t in range(50):
        x = m.step(x, t)
    assert x.norm().item() == pytest.approx(1.0, abs=1e-12)


def test_lorenz_stays_on_attractor():
    m = LorenzRK4()
    x = m.initial_state(0)
    for t in range(3000):
        x = m.step(x, t)
    assert torch.isfinite(x).all() and x.abs().max() < 60


def test_require_jacobian_names_caller():
    class NoJacobian:
        dim = param_dim = 1

    with pytest.raises(TypeError, match="my_diagnostic: NoJacobian has no exact Jacobian"):
        require_jacobian(NoJacobian(), "my_diagnostic")
    assert has_jacobian(LogisticMap())


class ThreeMembers:
    """A user's own map with only the required members: the logistic map at r = 4 (lambda = ln 2)."""

    dim = 1

    def initial_state(self, seed=None):
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        return 0.1 + 0.8 * torch.rand(1, generator=gen, dtype=torch.float64)

    def step(self, x, t):
        return 4.0 * x * (1.0 - x)


class TestThreeMemberMap:
    def test_defaults(self):
        m = ThreeMembers()
        assert param_dim_of(m) == 1 and describe_map(m) == {"map": "ThreeMembers"}
        assert describe_map(HenonMap())["map"] == "HenonMap" and param_dim_of(HenonMap()) == 2
        check_map(m)

    def test_run_and_exponents(self):
        import netdyn
        from netdyn.lyapunov.growth import perturbation_growth

        m = ThreeMembers()
        ds = netdyn.run(m, None, 40)
        assert ds.sizes["param"] == 1 and ds.attrs["map"] == "ThreeMembers"
        xs = torch.stack([m.initial_state(s) for s in range(4)])
        twin = netdyn.max_lyapunov(m, xs, 800, method="twin")
        err = float(np.sqrt((twin.lyapunov_stderr**2).sum()) / 4)  # stderr of the mean of 4 runs
        assert err < 0.01 and abs(float(twin.lyapunov.mean()) - math.log(2)) < 4 * err
        assert twin.attrs["map"] == "ThreeMembers"
        with pytest.raises(TypeError, match="lyapunov_spectrum: ThreeMembers has no exact Jacobian"):
            netdyn.lyapunov_spectrum(m, m.initial_state(0), 10)
        growth = perturbation_growth(m, m.initial_state(0), 20)
        assert growth.attrs["map"] == "ThreeMembers" and np.isfinite(float(growth.lyapunov))

    def test_orbital_stability_with_the_map(self):
        from netdyn.orbits.stability import orbital_stability

        m = ThreeMembers()
        x = m.initial_state(0)
        states = []
        for t in range(2000):
            states.append(x)
            x = m.step(x, t)
        # twin steps over the tail; at r = 4 ln|f'| is ln 2 plus a coboundary, so the finite-time error is O(1/n):
        # measured +0.00015 (reported block stderr 0.008); 0.02 is 2.5 reported standard errors
        res = orbital_stability(torch.stack(states), map_=m)
        assert res.label == "chaotic" and res.exponent == pytest.approx(math.log(2), abs=0.02)
