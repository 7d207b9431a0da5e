"""Learning-rate schedules: TrainingMap with a schedule reproduces torch.optim + lr_scheduler."""
import copy
import math
import pickle

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector
from torch.optim import lr_scheduler as S

import netdyn
from netdyn.maps.problems import make_task, map_from_attrs, training_map
from netdyn.maps.schedules import Schedule, schedule_from_attrs
from netdyn.testing import check_map, finite_difference_jvp
from netdyn.maps.training import TrainingMap

STEPS = 100


@pytest.fixture(scope="module")
def task():
    return make_task("iris", hidden=(6,), activation="tanh", seed=1)


def torch_loop(task, cls, lr, kwargs, factory, steps):
    """Reference: torch.optim + lr_scheduler, the usual loop (scheduler.step after opt.step)."""
    model = copy.deepcopy(task.model)
    opt = cls(model.parameters(), lr=lr, **kwargs)
    sched = factory(opt) if factory is not None else None
    rates = []
    x, y = task.train
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        task.loss_fn(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return parameters_to_vector(model.parameters()).detach(), rates


def map_orbit(tmap, steps, t0=0, x=None):
    x = tmap.initial_state() if x is None else x
    for t in range(t0, t0 + steps):
        x = tmap.step(x, t)
    return x


def warmup_cosine(opt):
    rise = S.LinearLR(opt, start_factor=0.1, total_iters=10)
    return S.SequentialLR(opt, [rise, S.CosineAnnealingLR(opt, T_max=90)], milestones=[10])


CASES = {
    "sgd_momentum_steplr": (torch.optim.SGD, 0.5, {"momentum": 0.9}, lambda opt: S.StepLR(opt, step_size=30, gamma=0.3)),
    "adam_warmup_cosine_sequential": (torch.optim.Adam, 1e-2, {}, warmup_cosine),
    "adam_warmup_cosine_lambda": (
        torch.optim.Adam, 1e-2, {},
        lambda opt: S.LambdaLR(opt, lambda t: (t + 1) / 10 if t < 10 else 0.5 * (1 + math.cos(math.pi * (t - 10) / 90))),
    ),
    "adamw_onecycle": (torch.optim.AdamW, 1e-2, {"weight_decay": 0.05},
                       lambda opt: S.OneCycleLR(opt, max_lr=2e-2, total_steps=STEPS, cycle_momentum=False)),
    "rmsprop_chained": (torch.optim.RMSprop, 1e-3, {},
                        lambda opt: S.ChainedScheduler([S.ExponentialLR(opt, 0.99), S.StepLR(opt, 20, 0.5)])),
}


class TestTorchEquivalence:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_factory_matches_torch_loop(self, task, case):
        cls, lr, kwargs, factory = CASES[case]
        tmap = training_map(task, lr=lr, optimizer=cls, schedule=factory, **kwargs)
        assert tmap.schedule is not None and tmap.schedule.kind == "torch"
        ref, rates = torch_loop(task, cls, lr, kwargs, factory, STEPS)
        assert tmap.schedule.rates(0, STEPS) == rates  # the very floats torch uses
        assert len(set(rates)) >= 3, "the schedule must actually move the rate"
        ours = map_orbit(tmap, STEPS)[: tmap.param_dim]
        const, _ = torch_loop(task, cls, lr, kwargs, None, STEPS)
        assert (ref - const).norm() / ref.norm() > 1e-4, "the schedule must change the orbit to mean anything"
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-10

    def test_function_of_t_is_a_multiplier_like_lambdalr(self, task):
        f = lambda t: 1.0 / (1.0 + 0.05 * t)  # noqa: E731
        tmap = training_map(task, lr=0.5, optimizer="sgd", schedule=f, momentum=0.5)
        assert tmap.schedule.kind == "function" and tmap.lr_at(20) == 0.5 * f(20)
        ref, _ = torch_loop(task, torch.optim.SGD, 0.5, {"momentum": 0.5}, lambda opt: S.LambdaLR(opt, f), STEPS)
        ours = map_orbit(tmap, STEPS)[: tmap.param_dim]
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-10

    @pytest.mark.parametrize("cls,kwargs", [(torch.optim.Adagrad, {}), (torch.optim.Adam, {})])
    def test_black_box_sets_the_group_rate(self, task, cls, kwargs):
        factory = lambda opt: S.StepLR(opt, step_size=15, gamma=0.5)  # noqa: E731
        tmap = TrainingMap(task.model, task.loss_fn, task.train, optimizer=cls, lr=0.05, functional=False,
                           schedule=factory, **kwargs)
        ref, _ = torch_loop(task, cls, 0.05, kwargs, factory, 50)
        ours = map_orbit(tmap, 50)[: tmap.param_dim]
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-12

    @pytest.mark.parametrize("spec,factory", [
        ({"name": "cosine", "total": 100, "warmup": 10},
         lambda opt: S.SequentialLR(opt, [S.LinearLR(opt, start_factor=0.1, total_iters=10),
                                          S.CosineAnnealingLR(opt, T_max=90)], milestones=[10])),
        ({"name": "onecycle", "total": 100},
         lambda opt: S.OneCycleLR(opt, max_lr=1e-2, total_steps=100, cycle_momentum=False)),
        ({"name": "step", "step_size": 30, "gamma": 0.5}, lambda opt: S.StepLR(opt, 30, 0.5)),
    ])
    def test_named_matches_torch_loop(self, task, spec, factory):
        tmap = training_map(task, lr=1e-2, optimizer="adam", schedule=spec)
        ref, rates = torch_loop(task, torch.optim.Adam, 1e-2, {}, factory, STEPS)
        assert tmap.schedule.rates(0, STEPS) == rates
        ours = map_orbit(tmap, STEPS)[: tmap.param_dim]
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-10


class TestNamedSchedules:
    def test_warmup_cosine_closed_form(self):
        lr, w, total = 0.3, 20, 200
        sched = Schedule({"name": "cosine", "warmup": w, "total": total}, lr)
        rates = np.array(sched.rates(0, total + 1))
        t = np.arange(total + 1)
        expected = np.where(t < w, lr * (1 / w + (1 - 1 / w) * t / w),
                            lr * 0.5 * (1 + np.cos(np.pi * (t - w) / (total - w))))
        np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=1e-15)
        assert rates.max() == pytest.approx(lr, rel=1e-15)  # lr is the peak

    def test_training_map_warmup_without_schedule_is_warmup_to_constant(self, task):
        tmap = training_map(task, lr=0.2, warmup=4)
        assert [tmap.lr_at(t) for t in range(6)] == pytest.approx([0.05, 0.0875, 0.125, 0.1625, 0.2, 0.2], rel=1e-12)

    def test_onecycle_cycling_momentum_is_refused(self, task):
        tmap = training_map(task, lr=0.1, schedule=lambda opt: S.OneCycleLR(opt, max_lr=0.1, total_steps=50))
        with pytest.raises(ValueError, match="cycle_momentum=False"):
            tmap.lr_at(0)

    def test_onecycle_past_its_end_is_a_clear_error(self):
        sched = Schedule({"name": "onecycle", "total": 10}, 0.1)
        assert sched(9) > 0
        with pytest.raises(ValueError, match="not defined at step"):
            sched(12)

    @pytest.mark.parametrize("spec,match", [
        ("cosine", "needs"), ({"name": "bogus"}, "schedule name"), ({"name": "step", "step_size": 0}, "step_size"),
        ({"name": "cosine", "total": 10, "warmup": 10}, "warmup < total"), ({"name": "step", "T_max": 3}, "options"),
        (3.0, "expected None"),
    ])
    def test_bad_specs(self, spec, match):
        with pytest.raises(ValueError, match=match):
            Schedule(spec, 0.1)

    def test_negative_rate_from_a_function_is_refused(self):
        with pytest.raises(ValueError, match="rate >= 0"):
            Schedule(lambda t: 1.0 - t, 0.1)(5)

    def test_pickle_replays(self):
        sched = Schedule({"name": "cosine", "warmup": 5, "total": 50}, 0.1)
        first = sched.rates(0, 30)
        clone = pickle.loads(pickle.dumps(sched))
        assert clone.rates(0, 50) == Schedule({"name": "cosine", "warmup": 5, "total": 50}, 0.1).rates(0, 50)
        assert clone.rates(0, 30) == first


class TestTangentsAndTime:
    def test_check_map_and_tangent_at_late_t(self, task):
        # rates 0.1 * (1/3, 5/9, 7/9) on the three steps check_map takes (finite differences, batch of tangents)
        check_map(training_map(task, lr=0.1, optimizer="sgd", momentum=0.9, warmup=3), steps=3)
        tmap = training_map(task, lr=5e-3, optimizer="adam", schedule={"name": "cosine", "warmup": 2, "total": 40})
        x = map_orbit(tmap, 30)
        v = torch.zeros(tmap.dim, dtype=torch.float64)  # along parameters: Adam's moments stay positive
        v[: tmap.param_dim] = torch.randn(tmap.param_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        _, jv = tmap.step_jvp(x, v, 30)
        fd = finite_difference_jvp(tmap, x, v, t=30)
        assert float((jv - fd).norm() / fd.norm()) < 1e-6
        # the tangent uses step 30's rate: a constant-rate map at lr_at(30) has the same tangent
        const = training_map(task, lr=tmap.lr_at(30), optimizer="adam")
        torch.testing.assert_close(const.step_jvp(x, v, 30)[1], jv, rtol=1e-12, atol=1e-14)

    def test_run_continues_with_t0(self, task):
        tmap = training_map(task, lr=0.5, optimizer="sgd", momentum=0.9, schedule="cosine", total=100, warmup=10)
        whole = netdyn.run(tmap, None, 100)
        first = netdyn.run(tmap, None, 50)
        second = netdyn.run(tmap, first["final_state"].values, 50, t0=50)
        np.testing.assert_allclose(second["final_state"].values, whole["final_state"].values, rtol=0, atol=1e-13)

    def test_max_lyapunov_t0_is_the_schedule_time(self, task):
        tmap = training_map(task, lr=0.5, optimizer="sgd", schedule="step", schedule_options={"step_size": 20})
        x30 = map_orbit(tmap, 30)

        class Shifted:  # the same map read 30 steps later: t0=30 must mean exactly this
            dim, param_dim = tmap.dim, tmap.param_dim
            step = staticmethod(lambda x, t: tmap.step(x, t + 30))
            step_jvp = staticmethod(lambda x, v, t: tmap.step_jvp(x, v, t + 30))

        tail = netdyn.max_lyapunov(tmap, x30, 30, t0=30)
        shifted = netdyn.max_lyapunov(Shifted(), x30, 30)
        np.testing.assert_array_equal(tail["local_rate"].values, shifted["local_rate"].values)
        unshifted = netdyn.max_lyapunov(tmap, x30, 30)  # t0 forgotten: other rates (0.5 vs 0.05)
        assert not np.allclose(unshifted["local_rate"].values, tail["local_rate"].values, rtol=1e-3)


class TestAttrs:
    def test_named_schedule_round_trips(self, task):
        tmap = training_map("iris", lr=1e-2, optimizer="adam", schedule="cosine", warmup=5, total=60)
        attrs = tmap.describe()
        assert attrs["schedule"] == "linear_warmup_cosine" and attrs["schedule_warmup"] == 5
        rebuilt = map_from_attrs(attrs)
        assert rebuilt.schedule.rates(0, 60) == tmap.schedule.rates(0, 60)
        assert torch.equal(map_orbit(rebuilt, 10), map_orbit(tmap, 10))

    def test_onecycle_attrs_survive_netcdf_types(self):
        attrs = Schedule({"name": "onecycle", "total": 40, "three_phase": True}, 0.1).describe()
        attrs = {k: (np.int64(v) if isinstance(v, int) else v) for k, v in attrs.items()}
        spec = schedule_from_attrs(attrs)
        assert spec["three_phase"] is True and spec["total"] == 40
        assert Schedule(spec, 0.1).rates(0, 40) == Schedule({"name": "onecycle", "total": 40, "three_phase": True},
                                                            0.1).rates(0, 40)

    def test_callable_schedule_cannot_be_rebuilt(self):
        tmap = training_map("iris", lr=0.1, schedule=lambda t: 0.99**t)
        attrs = tmap.describe()
        assert attrs["schedule"] == "function" and attrs["schedule_serialisable"] == 0
        with pytest.raises(ValueError, match="cannot be saved"):
            map_from_attrs(attrs)
        assert map_from_attrs(attrs, schedule=lambda t: 0.99**t).lr_at(3) == pytest.approx(0.1 * 0.99**3)

    def test_constant_map_records_no_schedule(self, task):
        attrs = training_map(task, lr=0.1).describe()
        assert attrs["schedule"] == "constant"
        assert map_from_attrs({**attrs, "task": "iris"}).schedule is None


class TestSweepCarriesTheSchedule:
    def test_optimizer_kwargs_schedule_reaches_the_point(self):
        """run_sweep(..., optimizer_kwargs={"schedule": ..., "warmup": ..., "total": ...}) scans the peak rate."""
        from netdyn.sweep.grid import point_specs, train_point

        kwargs = {"schedule": "cosine", "warmup": 5, "total": 40, "momentum": 0.9}
        _, points = point_specs(task={"dataset": "iris", "hidden": [4]}, lr=(0.05, 0.5), steps=40, optimizer_kwargs=kwargs)
        for _, spec in points:
            result = train_point(spec)
            assert result["status"] == "ok", result["error"]
            task = make_task("iris", hidden=(4,), seed=spec["seed"])
            tmap = training_map(task, lr=spec["lr"], seed=spec["seed"], **kwargs)
            assert tmap.lr_at(5) == spec["lr"]  # the scanned lr is the schedule's peak
            ref = netdyn.run(tmap, tmap.initial_state(), 40)
            np.testing.assert_allclose(result["loss"], ref["loss"].values, rtol=1e-12)
            const = netdyn.run(training_map(task, lr=spec["lr"], seed=spec["seed"], momentum=0.9), None, 40)
            assert not np.allclose(result["loss"], const["loss"].values, rtol=1e-6)


def test_netcdf_recording_rebuilds_and_continues_the_scheduled_map(tmp_path):
    tmap = training_map("iris", lr=1e-2, optimizer="adam", schedule="onecycle", total=60)
    whole = netdyn.run(tmap, None, 60)
    netdyn.run(tmap, None, 30, path=tmp_path / "first.nc")
    saved = netdyn.open_trajectory(tmp_path / "first.nc")
    rebuilt = map_from_attrs(saved.attrs)
    assert rebuilt.schedule.name == "onecycle" and rebuilt.schedule.rates(0, 60) == tmap.schedule.rates(0, 60)
    rest = netdyn.run(rebuilt, saved["final_state"].values, 30, t0=int(saved["final_step"]))
    np.testing.assert_allclose(rest["final_state"].values, whole["final_state"].values, rtol=0, atol=1e-13)
