import math

import pytest
import torch

from netdyn.maps import (
    CircleRotation,
    HenonMap,
    LinearMap,
    LogisticMap,
    LorenzRK4,
    PotentialGD,
    QuadraticGD,
    has_jacobian,
    require_jacobian,
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
