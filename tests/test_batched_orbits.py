"""Many orbits at once (issue 14): every fast path equals its per-member reference.

Equality is to the last bit where the batch computes exactly the per-member
operations (maps stepped batch-first, parameter batches, run, orbit tails, the
vmapped training step); the QR spectra's compiled Gram-Schmidt differs from LAPACK's
Householder QR by rounding only (1e-12 on exponents after 300 steps).
"""
import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from netdyn.lyapunov.small_qr import positive_qr
from netdyn.orbits.bifurcation import orbit_diagram
from netdyn.maps.divergence import DivergenceCheck, DivergenceRule, EnsembleDivergence
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.maps.classic import CircleRotation, HenonMap, LinearMap, LogisticMap, LorenzRK4, PotentialGD, QuadraticGD
from netdyn.lyapunov.spectrum import lyapunov_spectrum
from netdyn.orbits.trajectory import run
from netdyn.lyapunov.growth import perturbation_growth

F64 = torch.float64


def _batches():
    """(parameter batch, its members' maps) of every classic family."""
    yield LogisticMap(r=torch.tensor([3.2, 3.9, 4.0], dtype=F64)), [LogisticMap(r) for r in (3.2, 3.9, 4.0)]
    yield HenonMap(a=torch.tensor([1.2, 1.4], dtype=F64), b=0.3), [HenonMap(1.2, 0.3), HenonMap(1.4, 0.3)]
    yield QuadraticGD([1.0, 4.0], lr=torch.tensor([0.1, 0.45], dtype=F64)), [QuadraticGD([1.0, 4.0], lr) for lr in (0.1, 0.45)]
    yield CircleRotation(omega=torch.tensor([0.1, 0.3], dtype=F64)), [CircleRotation(0.1), CircleRotation(0.3)]
    yield LorenzRK4(rho=torch.tensor([20.0, 28.0], dtype=F64)), [LorenzRK4(rho=20.0), LorenzRK4(rho=28.0)]


def _concat(runs: list[xr.Dataset]) -> xr.Dataset:
    return xr.concat(runs, dim="member", data_vars="all", coords="minimal", compat="override", join="outer",
                     combine_attrs="override")


def _assert_same(batch: xr.Dataset, ref: xr.Dataset) -> None:
    assert set(batch.data_vars) == set(ref.data_vars)
    for name in ref.data_vars:
        a, b = batch[name].transpose(*ref[name].dims).values, ref[name].values
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert (a == b).all(), (name, a, b)
    np.testing.assert_array_equal(batch["step"].values, ref["step"].values)


class TestMapBatches:
    @pytest.mark.parametrize("pair", list(_batches()), ids=lambda p: type(p[0]).__name__)
    def test_parameter_batch_equals_members(self, pair):
        batch, members = pair
        gen = torch.Generator().manual_seed(1)
        x = 0.4 + 0.2 * torch.rand(batch.members, batch.dim, generator=gen, dtype=F64)
        v = torch.randn(batch.members, 3, batch.dim, generator=gen, dtype=F64)
        x_next, jv = batch.step_jvp(x, v, 0)
        for i, m in enumerate(members):
            assert torch.equal(batch.step(x, 0)[i], m.step(x[i], 0))
            assert torch.equal(batch.member(i).step(x[i], 0), m.step(x[i], 0))
            ref_next, ref_jv = m.step_jvp(x[i], v[i], 0)
            torch.testing.assert_close(x_next[i], ref_next, rtol=1e-15, atol=0)
            torch.testing.assert_close(jv[i], ref_jv, rtol=1e-14, atol=1e-15)
        assert batch.initial_state(3).shape == (batch.members, batch.dim)
        assert torch.equal(batch.initial_state(3)[1], members[1].initial_state(3))

    def test_scalar_maps_step_a_batch_of_states(self):
        for m in (HenonMap(), LinearMap([[1.0, 2.0], [0.0, 0.5]]), LogisticMap(3.7), LorenzRK4()):
            xs = torch.stack([m.initial_state(s) for s in range(4)])
            assert torch.equal(m.step(xs, 0), torch.stack([m.step(x, 0) for x in xs]))

    def test_refuses_mismatched_batches(self):
        with pytest.raises(ValueError, match=r"LogisticMap.step: expected states of shape \(3, 1\)"):
            LogisticMap(r=torch.tensor([3.0, 3.5, 4.0], dtype=F64)).step(torch.zeros(1, dtype=F64), 0)
        with pytest.raises(ValueError, match="HenonMap: expected parameter tensors of one length"):
            HenonMap(a=torch.ones(3, dtype=F64), b=torch.ones(2, dtype=F64))
        with pytest.raises(ValueError, match="LogisticMap: expected 0 <= r <= 4"):
            LogisticMap(r=torch.tensor([3.0, 4.5], dtype=F64))
        with pytest.raises(ValueError, match="member: expected a parameter batch"):
            HenonMap().member(0)


class TestEnsembleDivergence:
    def test_vectorised_verdicts_equal_per_member_checks(self):
        rng = np.random.default_rng(0)
        norms = np.abs(rng.standard_normal((30, 12))) * np.geomspace(1, 1e4, 30)[:, None]
        norms[7, 4], norms[12, 2] = np.nan, np.inf
        for rule in (DivergenceRule(), DivergenceRule(norm_factor=50.0), None):
            ens = EnsembleDivergence(12, rule)
            checks = [DivergenceCheck(rule) if rule else None for _ in range(12)]
            ref_step, ref_reason = np.full(12, -1), [""] * 12
            for t, row in enumerate(norms):
                ens.update(row, t)
                for i in range(12):
                    if ref_step[i] < 0:
                        reason = (checks[i].check(math.nan, float(row[i])) if rule else
                                  ("" if math.isfinite(row[i]) else "non-finite: the state has NaN/inf entries"))
                        if reason:
                            ref_step[i], ref_reason[i] = t, reason
            np.testing.assert_array_equal(ens.diverged_step, ref_step)
            assert list(ens.reason) == ref_reason
            assert ens.diverged.any()


class TestSmallQR:
    def test_equals_lapack_with_positive_diagonal(self):
        w = torch.randn(500, 3, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
        w[7] = 0.0  # a degenerate member goes to LAPACK
        w[9, :, 1] = 2 * w[9, :, 0]
        q, r = positive_qr(w)
        q_ref, r_ref = torch.linalg.qr(w)
        sign = torch.where(torch.diagonal(r_ref, dim1=1, dim2=2) < 0, -1.0, 1.0).to(F64)
        good = torch.ones(500, dtype=torch.bool)
        good[[7, 9]] = False
        torch.testing.assert_close(r[good], (r_ref * sign[:, :, None])[good], rtol=0, atol=1e-13)
        torch.testing.assert_close(q[good], (q_ref * sign[:, None, :])[good], rtol=0, atol=1e-13)
        torch.testing.assert_close(q @ r, w, rtol=0, atol=1e-13)

    def test_spectrum_agrees_with_the_lapack_route(self, monkeypatch):
        m = HenonMap()
        xs = torch.stack([m.initial_state(s) for s in range(6)])
        fast = lyapunov_spectrum(m, xs, 300)
        import netdyn.lyapunov.small_qr as small

        monkeypatch.setattr(small, "SMALL", 0)  # every batch through torch.linalg.qr
        slow = lyapunov_spectrum(m, xs, 300)
        np.testing.assert_allclose(fast.lyapunov.values, slow.lyapunov.values, rtol=0, atol=1e-12)
        one = lyapunov_spectrum(m, xs[2], 300)
        np.testing.assert_allclose(fast.lyapunov.values[2], one.lyapunov.values, rtol=0, atol=1e-12)
        assert abs(float(fast.lyapunov.values[:, 0].mean()) - 0.41922) < 0.03  # 300 steps, 6 orbits

    def test_spectrum_of_a_parameter_batch(self):
        r = torch.tensor([3.2, 3.83, 4.0], dtype=F64)
        batch = lyapunov_spectrum(LogisticMap(r=r), LogisticMap(r=r).initial_state(0), 400, transient=100)
        for i, value in enumerate(r.tolist()):
            one = lyapunov_spectrum(LogisticMap(value), LogisticMap(value).initial_state(0), 400, transient=100)
            np.testing.assert_allclose(batch.lyapunov.values[i], one.lyapunov.values, rtol=1e-12, atol=1e-12)
        assert abs(float(batch.lyapunov.values[2, 0]) - math.log(2)) < 0.05


class TestRunBatch:
    def _reference(self, map_, steps, xs, **kw):
        members = [map_.member(i) if map_.members else map_ for i in range(xs.shape[0])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return _concat([run(m, xs[i], steps, **kw) for i, m in enumerate(members)])

    def test_states_with_a_diverging_member(self):
        m = HenonMap()
        xs = torch.stack([m.initial_state(s) for s in range(5)])
        xs[3] = torch.tensor([3.0, 3.0], dtype=F64)  # escapes to infinity
        with pytest.warns(RuntimeWarning, match="1 of 5 member"):
            batch = run(m, xs, 60, record_every=3)
        assert batch["state"].dims == ("member", "step", "param") and batch.attrs["batching"] == "batch_first"
        assert bool(batch.diverged[3]) and not bool(batch.diverged[0])
        _assert_same(batch, self._reference(m, 60, xs, record_every=3))

    @pytest.mark.parametrize("divergence", [DivergenceRule(), None])
    def test_learning_rate_batch_with_losses(self, divergence):
        # h = (1, 4): stable for lr < 0.5; 0.55 blows the loss up, 3.0 overflows
        q = QuadraticGD([1.0, 4.0], lr=torch.tensor([0.1, 0.45, 0.55, 3.0], dtype=F64))
        with pytest.warns(RuntimeWarning, match="diverged"):
            batch = run(q, q.initial_state(2), 400, divergence=divergence)
        assert batch["loss"].dims == ("member", "step")
        # the rule stops the loss blow-up at lr = 0.55; without it only the overflow at lr = 3 counts
        assert list(batch.diverged.values) == [False, False, divergence is not None, True]
        _assert_same(batch, self._reference(q, 400, q.initial_state(2), divergence=divergence))

    def test_maps_with_per_state_metrics_run_member_by_member(self):
        p = PotentialGD(lambda x: (x**2 / 2 - x**4 / 4).sum(), dim=1, lr=2.1)
        xs = torch.tensor([[0.3], [0.5], [0.1]], dtype=F64)
        batch = run(p, xs, 40)
        assert batch.attrs["batching"] == "per member"
        _assert_same(batch, self._reference(p, 40, xs))

    def test_refuses_a_path(self, tmp_path):
        with pytest.raises(ValueError, match="run: expected path=None for a batch"):
            run(HenonMap(), torch.zeros(2, 2, dtype=F64), 5, path=tmp_path / "x.nc")


class TestPerturbationGrowthBatch:
    def test_batch_first_equals_the_loop(self):
        m = HenonMap()
        xs = torch.stack([m.initial_state(s) for s in range(4)])
        fast = perturbation_growth(m, xs, 40)
        loop = perturbation_growth(m, xs, 40, vectorize=False)
        np.testing.assert_array_equal(fast.distance.values, loop.distance.values)
        np.testing.assert_array_equal(fast.lyapunov.values, loop.lyapunov.values)

    def test_refuses_a_parameter_batch(self):
        batch = LogisticMap(r=torch.tensor([3.5, 4.0], dtype=F64))
        with pytest.raises(ValueError, match="perturbation_growth: expected a map with scalar parameters"):
            perturbation_growth(batch, batch.initial_state(0), 10)


class TestOrbitDiagramBatch:
    def test_parameter_batch_equals_one_map_per_value(self):
        values = [2.8, 3.2, 3.5, 3.83, 4.0]
        fast = orbit_diagram(LogisticMap, values, steps=600, tail=200, name="r")
        loop = orbit_diagram(LogisticMap, values, steps=600, tail=200, name="r", vectorize=False)
        assert fast.attrs["batching"] == "parameter batch" and loop.attrs["batching"] == "per value"
        for name in ("orbit", "label", "period", "exponent"):
            np.testing.assert_array_equal(fast[name].values, loop[name].values)
        assert list(fast.period.values) == [1, 2, 4, 3, 0]

    def test_divergent_values_and_factories(self):
        make = lambda lr: QuadraticGD([1.0, 4.0], lr=lr)  # noqa: E731  (accepts a tensor of rates)
        with pytest.warns(UserWarning, match=r"diverged at lr = \[3.0\]"):
            fast = orbit_diagram(make, [0.1, 0.55, 3.0], steps=300, tail=50, name="lr", vectorize=True)
        with pytest.warns(UserWarning):
            loop = orbit_diagram(make, [0.1, 0.55, 3.0], steps=300, tail=50, name="lr", vectorize=False)
        np.testing.assert_array_equal(fast.orbit.values, loop.orbit.values)
        assert list(fast.label.values) == list(loop.label.values)

    def test_scalar_factories_fall_back_and_classification_is_optional(self):
        make = lambda r: LogisticMap(float(r))  # noqa: E731  (scalars only)
        tails = orbit_diagram(make, [3.2, 4.0], steps=200, tail=20, classify=False, observable=lambda s: 1 - s[:, 0])
        assert tails.attrs["batching"] == "per value" and "label" not in tails and tails.attrs["classified"] == 0
        fast = orbit_diagram(LogisticMap, [3.2, 4.0], steps=200, tail=20, classify=False,
                             observable=lambda s: 1 - s[:, 0])
        np.testing.assert_array_equal(fast.orbit.values, tails.orbit.values)
        with pytest.raises(ValueError, match="orbit_diagram: expected make_map to accept a 1-D tensor"):
            orbit_diagram(make, [3.2, 4.0], steps=200, tail=20, vectorize=True)


class TestVmapTrainingMap:
    @pytest.fixture(scope="class")
    @classmethod
    def maps(cls):
        from netdyn.maps.problems import make_task, training_map
        from netdyn.maps.vmap_training import VmapTrainingMap

        tmap = training_map(make_task("iris", hidden=(6,), n_train=40), lr=0.3, optimizer="adam", batch_size=16)
        return tmap, VmapTrainingMap(tmap)

    def test_step_and_metrics_equal_the_training_map(self, maps):
        tmap, vm = maps
        xs = torch.stack([tmap.initial_state(s) for s in range(4)])
        for t in range(3):
            x_next, metrics = vm.step_with_metrics(xs, t)
            for i in range(4):
                ref, ref_metrics = tmap.step_with_metrics(xs[i], t)
                torch.testing.assert_close(x_next[i], ref, rtol=1e-13, atol=1e-15)
                assert float(metrics["loss"][i]) == pytest.approx(ref_metrics["loss"], rel=1e-13)
                assert float(metrics["grad_norm"][i]) == pytest.approx(ref_metrics["grad_norm"], rel=1e-12)
            xs = x_next

    def test_twin_ensemble_equals_the_loop(self):
        from netdyn.maps.problems import make_task, training_map
        from netdyn.maps.vmap_training import VmapTrainingMap

        # full batch: max_lyapunov's own vmap refuses the random mini-batch draw (see vmap_training)
        tmap = training_map(make_task("iris", hidden=(6,), n_train=40), lr=0.3, optimizer="adam")
        vm = VmapTrainingMap(tmap)
        xs = torch.stack([tmap.initial_state(s) for s in range(3)])
        fast = max_lyapunov(vm, xs, 12, method="twin")
        loop = max_lyapunov(tmap, xs, 12, method="twin")
        assert fast.attrs["batching"] == "batch" and loop.attrs["batching"] == "loop"
        np.testing.assert_allclose(fast.local_rate.values, loop.local_rate.values, rtol=1e-9, atol=1e-12)

    def test_batched_run(self, maps):
        tmap, vm = maps
        xs = torch.stack([tmap.initial_state(s) for s in range(3)])
        batch = run(vm, xs, 8)
        ref = _concat([run(tmap, x, 8) for x in xs])
        np.testing.assert_allclose(batch.state.values, ref.state.values, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(batch.loss.values, ref.loss.values, rtol=1e-12)

    def test_refuses_black_box_optimisers(self):
        from netdyn.maps.problems import make_task, training_map
        from netdyn.maps.vmap_training import VmapTrainingMap

        tmap = training_map(make_task("iris", hidden=(4,), n_train=20), lr=0.1, optimizer=torch.optim.Adagrad)
        with pytest.raises(ValueError, match="VmapTrainingMap: expected a TrainingMap with a functional optimizer"):
            VmapTrainingMap(tmap)
