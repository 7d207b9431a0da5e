import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

from netdyn.orbits.bifurcation import orbit_diagram
from netdyn.maps.classic import LogisticMap, QuadraticGD
from netdyn.plot.orbits import plot_orbit_diagram


@pytest.fixture(scope="module")
def logistic_diagram() -> xr.Dataset:
    return orbit_diagram(LogisticMap, [2.8, 3.2, 3.5, 3.83, 4.0], steps=1500, tail=500, name="r")


class TestOrbitDiagram:
    def test_layout(self, logistic_diagram):
        d = logistic_diagram
        assert d["orbit"].dims == ("value", "tail_step") and d["orbit"].shape == (5, 500)
        assert d["tail_step"].values[0] == 1000 and d["tail_step"].values[-1] == 1499
        assert d.attrs["control"] == "r" and d.attrs["map"] == "LogisticMap"

    def test_labels_and_periods(self, logistic_diagram):
        d = logistic_diagram
        assert list(d["label"].values) == ["fixed_point", "periodic", "periodic", "periodic", "chaotic"]
        assert list(d["period"].values) == [1, 2, 4, 3, 0]
        # exponent from 500 tangent steps.  At r = 4, ln|f'| = ln 2 + a coboundary (conjugacy to the tent map,
        # x = sin^2(pi theta / 2)), so the finite-time mean misses ln 2 only by (ln|sin pi theta_n| -
        # ln|sin pi theta_0|) / n ~ 1/n, not 1/sqrt(n): measured error +0.0003; 0.02 allows |that difference| up to 10
        assert d["exponent"].sel(value=4.0) == pytest.approx(math.log(2), abs=0.02)

    def test_tail_values_are_the_attractors(self, logistic_diagram):
        d = logistic_diagram
        np.testing.assert_allclose(d["orbit"].sel(value=2.8), 1 - 1 / 2.8, atol=1e-14)
        r = 3.2
        root = math.sqrt((r - 3) * (r + 1))
        two_cycle = np.unique(np.round(d["orbit"].sel(value=r).values, 12))
        np.testing.assert_allclose(two_cycle, [(r + 1 - root) / (2 * r), (r + 1 + root) / (2 * r)], atol=1e-12)
        assert len(np.unique(np.round(d["orbit"].sel(value=3.5).values, 12))) == 4
        chaos = d["orbit"].sel(value=4.0).values
        assert chaos.min() < 0.01 and chaos.max() > 0.99  # fills [0, 1]

    def test_gd_learning_rate_diagram_and_divergence(self):
        # h = (1, 4): stable for lr < 2/4 = 0.5; lr = 3: |1 - 12| = 11 per step overflows to inf
        with pytest.warns(UserWarning, match=r"orbit_diagram: orbits diverged at lr = \[3.0\]"):
            d = orbit_diagram(lambda lr: QuadraticGD([1.0, 4.0], lr=lr), [0.1, 0.45, 0.55, 3.0],
                              steps=400, tail=100, name="lr")
        assert list(d["label"].values) == ["fixed_point", "fixed_point", "divergent", "divergent"]
        assert np.isnan(d["orbit"].sel(value=3.0)).all()  # the orbit overflowed before the tail

    def test_callable_observable_and_shared_start(self):
        d = orbit_diagram(LogisticMap, [3.2], steps=200, tail=20, x0=[0.3],
                          observable=lambda s: 1.0 - s[:, 0])
        direct = orbit_diagram(LogisticMap, [3.2], steps=200, tail=20, x0=[0.3])
        np.testing.assert_array_equal(d["orbit"].values, 1.0 - direct["orbit"].values)

    def test_refuses_bad_arguments(self):
        with pytest.raises(ValueError, match="orbit_diagram: expected 16 <= tail <= steps"):
            orbit_diagram(LogisticMap, [3.0], steps=10, tail=20)
        with pytest.raises(ValueError, match="orbit_diagram: expected a non-empty 1-D"):
            orbit_diagram(LogisticMap, [], steps=100, tail=20)
        with pytest.raises(ValueError, match=r"observable index in \[0, 1\)"):
            orbit_diagram(LogisticMap, [3.0], steps=100, tail=20, observable=1)


class TestPlotOrbitDiagram:
    def test_one_series_per_label(self, logistic_diagram):
        import matplotlib.pyplot as plt

        fig = plot_orbit_diagram(logistic_diagram)
        ax = fig.axes[0]
        assert sorted(line.get_label() for line in ax.lines) == ["chaotic", "fixed point", "periodic"]
        assert ax.get_xlabel() == "r"
        assert sum(len(line.get_xdata()) for line in ax.lines) == 5 * 500
        plt.close(fig)

    def test_refuses_other_datasets(self):
        with pytest.raises(ValueError, match="plot_orbit_diagram"):
            plot_orbit_diagram(xr.Dataset({"x": ("step", np.zeros(3))}))
