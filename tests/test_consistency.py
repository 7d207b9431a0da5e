"""Consistency corpus: every diagnostic's verdict checked against the others, and the truth where known.

For each case (maps and training runs across regimes):

* ``netdyn.run`` gives the trajectory Dataset and its ``diverged`` flag;
* ``orbital_stability(ds, map_=...)`` gives the orbit class, its exponent over the tail window
  (``max_lyapunov``, tangent where the map has one), ``confidence`` and ``conflict``;
* ``max_lyapunov`` by the *twin* method over the same window (the steps before it as transient)
  gives an independent exponent.

Agreement: ``divergent`` <=> the run's flag; ``chaotic`` <=> exponent > 0.01 for both estimates;
``fixed_point`` / ``periodic`` / ``quasi_periodic`` <=> exponent <= 0.01.  A case may disagree only
explicitly: ``confidence == "low"`` and a non-empty ``conflict``.  Where the truth is known (analytic
maps) the class and the exponent must also match it.  A silent contradiction fails CI.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import netdyn
from netdyn.orbits.bifurcation import orbit_diagram
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.classic import CircleRotation, HenonMap, LogisticMap, QuadraticGD
from netdyn.orbits.stability import OrbitalStability, orbital_stability
from netdyn.maps.training import TrainingMap

TOL = 0.01  # orbital_stability's exponent_tol, the chaos threshold of the package


def disagreements(res: OrbitalStability, twin: float, run_diverged: bool) -> list[str]:
    """Pairs of verdicts that contradict each other (empty when all agree)."""
    found = []
    if (res.label == "divergent") != run_diverged:
        found.append(f"class {res.label} vs run diverged={run_diverged}")
    if res.label != "divergent":
        for name, lam in (("class exponent", res.exponent), ("twin max_lyapunov", twin)):
            if (res.label == "chaotic") != (lam > TOL):
                found.append(f"class {res.label} vs {name} {lam:.3g}")
    return found


def assert_consistent(res: OrbitalStability, twin: float, run_diverged: bool) -> None:
    found = disagreements(res, twin, run_diverged)
    if found:
        assert res.confidence == "low" and res.conflict, f"silent contradiction {found}: {res}"
    elif res.label == "quasi_periodic" and res.conflict:
        # no two verdicts contradict each other, but the tail's own evidence for quasi-periodic motion is
        # weak: it still travels, or mini-batch noise drives it; said, with low confidence
        assert res.confidence == "low" and ("still travels" in res.conflict or "mini-batches" in res.conflict), res
    else:
        assert res.conflict == "", res


def examine(map_, steps: int, x0=None) -> tuple[xr.Dataset, OrbitalStability, float]:
    """run, orbital_stability with the map, and the twin exponent over the same tail window."""
    x0 = map_.initial_state(0) if x0 is None else torch.as_tensor(x0, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # run / max_lyapunov warn on divergence
        ds = netdyn.run(map_, x0, steps)
        res = orbital_stability(ds, map_=map_)
        half = steps // 2
        twin = max_lyapunov(map_, x0, steps - half, method="twin", transient=half)
    return ds, res, float(twin["lyapunov"])  # +inf when the twin could not be resolved


# ------------------------------------------------------------------ maps with known answers
# (map, steps, x0, label, period, exponent, tolerance of the exponent)
#  r = 2.8: lambda = ln|2 - r|; r = 3.2: 2-cycle, lambda = ln|4 + 2r - r^2| / 2, window of odd length biases
#  the mean by at most |ln|f'(x1)| - ln|f'(x2)|| / (2 * 299) < 0.01; r = 4: ln 2, std of the mean over 299
#  steps (0.91 / sqrt(299) = 0.05), 0.15 = 3 sigma; Henon: 0.41922, 0.05 = 3 block stderr (0.015 at 1000
#  steps); GD on h = (1, 4) at lr = 0.45: lambda = ln max|1 - lr h| = ln 0.8 (a linear map: exact after
#  alignment, the slower mode dominates within a few steps); a rotation is an isometry: lambda = 0.
MAPS = {
    "logistic r=2.8": (LogisticMap(2.8), 600, None, "fixed_point", 1, math.log(0.8), 1e-6),
    "logistic r=3.2": (LogisticMap(3.2), 600, None, "periodic", 2, math.log(abs(4 + 6.4 - 3.2**2)) / 2, 0.01),
    "logistic r=4": (LogisticMap(4.0), 600, None, "chaotic", None, math.log(2), 0.15),
    "henon": (HenonMap(), 2000, None, "chaotic", None, 0.41922, 0.05),
    "gd below 2/h": (QuadraticGD([1.0, 4.0], lr=0.45), 400, None, "fixed_point", 1, math.log(0.8), 5e-3),
    "rotation": (CircleRotation(), 600, None, "quasi_periodic", None, 0.0, 1e-9),
}


@pytest.mark.parametrize("case", MAPS)
def test_map_verdicts_agree_with_each_other_and_the_truth(case):
    map_, steps, x0, label, period, lam, tol = MAPS[case]
    ds, res, twin = examine(map_, steps, x0)
    assert_consistent(res, twin, bool(ds["diverged"]))
    assert (res.label, res.period, res.confidence) == (label, period, "high")
    assert res.exponent == pytest.approx(lam, abs=tol)
    assert twin == pytest.approx(lam, abs=max(tol, 1e-4))  # the twin's rounding at d0 = 1e-9: ~1e-5 here


def test_unstable_fixed_point_disagrees_explicitly():
    # x = 3/4 is an exact, unstable fixed point of 4x(1-x): the orbit repeats, the exponent is ln 2
    ds, res, twin = examine(LogisticMap(4.0), 200, [0.75])
    assert res.label == "fixed_point" and twin == pytest.approx(math.log(2), abs=1e-6)
    assert disagreements(res, twin, bool(ds["diverged"]))
    assert_consistent(res, twin, bool(ds["diverged"]))


def test_gd_above_two_over_h_overflows_and_is_divergent():
    # |1 - 3 * 4| = 11 per step: inf after ~300 steps; run stops and flags it
    ds, res, twin = examine(QuadraticGD([1.0, 4.0], lr=3.0), 400)
    # the rule sees the loss blow up (x 121 per step) long before the state overflows
    assert bool(ds["diverged"]) and res.label == "divergent" and res.reason.startswith("loss blow-up")
    assert_consistent(res, twin, True)
    assert twin == math.inf  # max_lyapunov's orbit overflows too


def test_gd_just_above_two_over_h_is_divergent_by_the_rule():
    # |1 - 0.55 * 4| = 1.2 per step: finite after 400 steps (1.2^400 ~ 1e32) but unbounded; the loss
    # grows by 1.44 per step and passes 1e3 x its start after ~19 steps
    map_ = QuadraticGD([1.0, 4.0], lr=0.55)
    ds, res, twin = examine(map_, 400)
    assert res.label == "divergent" and res.reason.startswith("loss blow-up")  # loss x 1.44 per step
    # the twin loses float resolution once |x| ~ 1e7 (+inf); the tangent is exact
    tangent = max_lyapunov(map_, map_.initial_state(0), 200, transient=200)
    assert twin == math.inf and float(tangent["lyapunov"]) == pytest.approx(math.log(1.2), abs=1e-9)
    # agreement with the run's flag, or (a run that only stops at non-finite values) an explicit conflict
    assert_consistent(res, twin, bool(ds["diverged"]))


def test_orbit_diagram_classes_agree_with_its_exponents():
    d = orbit_diagram(LogisticMap, [2.8, 3.2, 3.5, 3.83, 4.0], steps=800, tail=300, name="r")
    for label, lam, confidence, conflict in zip(*(d[v].values for v in ("label", "exponent", "confidence",
                                                                            "conflict"))):
        assert (label == "chaotic") == (lam > TOL) and (confidence, conflict) == ("high", "")
    assert list(d["label"].values) == ["fixed_point", "periodic", "periodic", "periodic", "chaotic"]


# ------------------------------------------------------------------ training runs
@pytest.fixture(scope="module")
def iris():
    return netdyn.make_task("iris", hidden=(16,), seed=0)


IRIS = {
    "sgd": dict(lr=0.5),
    "sgd minibatch": dict(lr=0.1, batch_size=16),
    "sgd momentum": dict(lr=0.05, momentum=0.9),
    "adam": dict(lr=0.05, optimizer="adam"),
    "sgd lr=20": dict(lr=20.0),
}


@pytest.mark.parametrize("case", IRIS)
def test_iris_training_verdicts_agree(iris, case):
    ds, res, twin = examine(netdyn.training_map(iris, **IRIS[case]), 200)
    assert_consistent(res, twin, bool(ds["diverged"]))
    assert res.label != "divergent"


def test_iris_training_blow_up_is_divergent(iris):
    # lr = 1e5: the loss jumps from 1.08 to ~1e4 at the first step (measured): the rule's loss blow-up
    ds, res, twin = examine(netdyn.training_map(iris, lr=1e5), 40)
    assert res.label == "divergent" and res.reason.split(":")[0] in ("loss blow-up", "unbounded growth")
    assert_consistent(res, twin, bool(ds["diverged"]))


def test_iris_dropout_verdicts_agree(iris):
    # dropout masks derive from (seed, t): the twin sees the orbit's masks (before that fix the twin
    # measured +15.9 per step against the tangent's -1.5e-4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16, dtype=torch.float64), nn.Tanh(), nn.Dropout(0.2),
                          nn.Linear(16, 3, dtype=torch.float64))
    tmap = TrainingMap(model, iris.loss_fn, iris.train, lr=0.5, seed=0, init=iris.init)
    ds, res, twin = examine(tmap, 200)
    assert_consistent(res, twin, bool(ds["diverged"]))
    assert not disagreements(res, twin, bool(ds["diverged"]))


# The README's sweep (netdyn demo): digits, 64-32-10 ReLU MLP, N(0, 1) init, full-batch GD, 200 steps.
# Measured with seed 0: lr = 2.03 chaotic throughout (+0.54 over the tail); lr = 3.84 chaotic until
# step ~112, then every ReLU dies (loss ln 10) and the orbit sits on a fixed point - a transient inside
# the tail; lr = 5.29 dies before the tail: the exponent over the whole run is +0.11, over the tail ~0.
DIGITS_LR = {"chaotic": 2.0313389, "transient in the tail": 3.8429916, "dead before the tail": 5.2858271}


@pytest.fixture(scope="module")
def digits_runs():
    out = {}
    for name, lr in DIGITS_LR.items():
        task = netdyn.make_task("digits", hidden=[32], activation="relu", init="normal", init_scale=1.0, seed=0)
        tmap = netdyn.training_map(task, lr=lr, optimizer="sgd", seed=0)
        x0 = tmap.initial_state()
        ds = netdyn.run(tmap, x0, 200)
        whole = max_lyapunov(tmap, x0, 200, method="twin")  # what the sweep measures
        out[name] = (tmap, ds, whole)
    return out


@pytest.mark.parametrize("case", DIGITS_LR)
def test_readme_relu_sweep_points(digits_runs, case):
    tmap, ds, whole = digits_runs[case]
    res = orbital_stability(ds, map_=tmap)
    rates = whole["local_rate"].squeeze()
    twin = float(rates.sel(step=slice(101, 199)).mean())  # the twin over the tail window (100, 199]
    assert_consistent(res, twin, bool(ds["diverged"]))
    # the sweep's way, handing over its max_lyapunov Dataset: the class reads the same window
    windowed = orbital_stability(ds, exponent=whole)
    assert windowed.exponent == pytest.approx(twin, rel=1e-12)
    assert_consistent(windowed, twin, bool(ds["diverged"]))
    if case == "chaotic":
        assert res.label == "chaotic" and res.confidence == "high"
    elif case == "transient in the tail":
        assert res.label == "fixed_point" and "chaotic transient inside the tail" in res.conflict
    else:
        assert (res.label, res.confidence) == ("fixed_point", "high")
        # the whole-run exponent as a bare number contradicts the class: said, never silent
        lam = float(whole["lyapunov"])
        assert lam > TOL
        bare = orbital_stability(ds, exponent=lam)
        assert bare.label == "fixed_point" and bare.confidence == "low" and bare.conflict
