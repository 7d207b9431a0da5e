"""TrainingMap: equivalence with torch.optim, exact tangents, batch schedule, generic optimisers."""
import copy

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from netdyn.maps.problems import make_task, training_map
from netdyn.testing import check_map
from netdyn.maps.training import TrainingMap

STEPS = 200

CONFIGS = [
    ("sgd", torch.optim.SGD, {}),
    ("sgd", torch.optim.SGD, {"momentum": 0.9}),
    ("sgd", torch.optim.SGD, {"momentum": 0.8, "dampening": 0.3, "weight_decay": 1e-3}),
    ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adam", torch.optim.Adam, {}),
    ("adam", torch.optim.Adam, {"betas": (0.8, 0.99), "weight_decay": 1e-2, "amsgrad": True}),
    ("adamw", torch.optim.AdamW, {"weight_decay": 0.05}),
    ("rmsprop", torch.optim.RMSprop, {}),
    ("rmsprop", torch.optim.RMSprop, {"momentum": 0.5, "centered": True, "weight_decay": 1e-3}),
]
LRS = {"sgd": 0.5, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}


@pytest.fixture(scope="module")
def small_task():
    return make_task("iris", hidden=(6,), activation="tanh", seed=1)


def torch_optim_trajectory(task, optimizer_cls, lr, kwargs, steps, batch_map=None):
    """The reference: a plain torch.optim loop, same batches as ``batch_map``."""
    model = copy.deepcopy(task.model)
    opt = optimizer_cls(model.parameters(), lr=lr, **kwargs)
    x, y = task.train
    for t in range(steps):
        idx = None if batch_map is None else batch_map.batch_indices(t)
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        opt.zero_grad()
        task.loss_fn(model(xb), yb).backward()
        opt.step()
    return parameters_to_vector(model.parameters()).detach()


def map_trajectory(tmap, steps):
    x = tmap.initial_state()
    for t in range(steps):
        x = tmap.step(x, t)
    return x


class TestEquivalenceWithTorchOptim:
    @pytest.mark.parametrize("name,cls,kwargs", CONFIGS, ids=lambda c: str(c))
    def test_functional_matches_torch_optim(self, small_task, name, cls, kwargs):
        lr = LRS[name]
        tmap = training_map(small_task, lr=lr, optimizer=cls, **kwargs)
        assert tmap.functional_optimizer is not None
        ours = map_trajectory(tmap, STEPS)[: tmap.param_dim]
        ref = torch_optim_trajectory(small_task, cls, lr, kwargs, STEPS)
        moved = (ref - parameters_to_vector(small_task.model.parameters())).norm()
        assert moved > 1e-2, "the test must move the parameters to mean anything"
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-10

    def test_minibatch_matches_torch_optim_on_same_batches(self, small_task):
        tmap = training_map(small_task, lr=0.2, optimizer="sgd", batch_size=16, seed=7, momentum=0.9)
        ours = map_trajectory(tmap, STEPS)[: tmap.param_dim]
        ref = torch_optim_trajectory(small_task, torch.optim.SGD, 0.2, {"momentum": 0.9}, STEPS, batch_map=tmap)
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-10

    @pytest.mark.parametrize("cls,kwargs", [(torch.optim.Adagrad, {}), (torch.optim.SGD, {"momentum": 0.9}), (torch.optim.Adam, {})])
    def test_black_box_matches_torch_optim(self, small_task, cls, kwargs):
        lr = 0.05
        tmap = TrainingMap(small_task.model, small_task.loss_fn, small_task.train, optimizer=cls, lr=lr, functional=False, **kwargs)
        assert tmap.functional_optimizer is None
        ours = map_trajectory(tmap, 50)[: tmap.param_dim]
        ref = torch_optim_trajectory(small_task, cls, lr, kwargs, 50)
        assert ((ours - ref).norm() / ref.norm()).item() < 1e-12


class TestTangents:
    @pytest.mark.parametrize("name,cls,kwargs", CONFIGS, ids=lambda c: str(c))
    def test_step_jvp_against_finite_differences(self, small_task, name, cls, kwargs):
        tmap = training_map(small_task, lr=LRS[name], optimizer=cls, **kwargs)
        x = tmap.initial_state()
        for t in range(3):  # move off the fresh state so buffers are non-zero
            x = tmap.step(x, t)
        gen = torch.Generator().manual_seed(0)
        for t in (3, 4):
            # Buffers such as Adam's second moment are tiny and positive; a unit perturbation
            # would cross the kink of sqrt at 0, so buffer directions are scaled by |buffer|.
            scale = torch.ones(tmap.dim, dtype=torch.float64)
            scale[tmap.param_dim :] = x[tmap.param_dim :].abs()
            v = torch.randn(tmap.dim, generator=gen, dtype=torch.float64) * scale
            _, jv = tmap.step_jvp(x, v, t)
            h = 1e-6
            fd = (tmap.step(x + h * v, t) - tmap.step(x - h * v, t)) / (2 * h)
            # central differences: O(h^2) truncation + O(eps/h) round-off ~ 1e-9 relative here
            assert ((jv - fd).norm() / fd.norm()).item() < 1e-6

    def test_conformance_with_batched_tangents(self, small_task):
        check_map(training_map(small_task, lr=0.1, optimizer="sgd", momentum=0.9, batch_size=20))

    def test_black_box_refuses_jacobian_clearly(self, small_task):
        tmap = training_map(small_task, lr=0.1, optimizer=torch.optim.Adagrad)
        with pytest.raises(TypeError, match="Adagrad is driven as a black box"):
            tmap.step_jvp(tmap.initial_state(), torch.zeros(tmap.dim, dtype=torch.float64), 0)

    def test_dead_units_do_not_poison_adam_tangents(self):
        task = make_task("iris", hidden=(8,), activation="relu", seed=0, init="normal", init_scale=3.0)
        tmap = training_map(task, lr=0.01, optimizer="adam")
        x = tmap.initial_state()
        _, jv = tmap.step_jvp(x, torch.ones(tmap.dim, dtype=torch.float64), 0)
        assert torch.isfinite(jv).all()


class TestStateAndSchedule:
    def test_same_seed_is_bit_identical(self, small_task):
        a = map_trajectory(training_map(small_task, lr=0.1, batch_size=10, seed=3, optimizer="adam"), 30)
        b = map_trajectory(training_map(small_task, lr=0.1, batch_size=10, seed=3, optimizer="adam"), 30)
        assert torch.equal(a, b)

    def test_batch_schedule_depends_on_seed_and_covers_epoch(self, small_task):
        m1 = training_map(small_task, lr=0.1, batch_size=25, seed=1)
        m2 = training_map(small_task, lr=0.1, batch_size=25, seed=2)
        epoch = torch.cat([m1.batch_indices(t) for t in range(m1.n_batches)])
        assert sorted(epoch.tolist()) == list(range(len(small_task.train[1])))
        assert not torch.equal(m1.batch_indices(0), m2.batch_indices(0))
        assert torch.equal(m1.batch_indices(5), m1.batch_indices(5))

    def test_initial_state_seeded_and_global_rng_untouched(self, small_task):
        tmap = training_map(small_task, lr=0.1, optimizer="adam")
        torch.manual_seed(123)
        before = torch.rand(1)
        torch.manual_seed(123)
        a, b, c = tmap.initial_state(5), tmap.initial_state(5), tmap.initial_state(6)
        assert torch.equal(torch.rand(1), before)
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.shape == (3 * tmap.param_dim,) and torch.all(a[tmap.param_dim :] == 0)

    def test_state_layout_and_labels(self, small_task):
        tmap = training_map(small_task, lr=0.1, optimizer="sgd", momentum=0.9)
        assert [b[0] for b in tmap.state_layout()] == ["params", "momentum_buffer"]
        names, layers = tmap.param_labels()
        assert names[0] == "0.weight[0,0]" and names[1] == "0.weight[0,1]" and layers[-1] == "2.bias"
        assert len(names) == tmap.param_dim

    def test_loss_and_metrics_agree(self, small_task):
        tmap = training_map(small_task, lr=0.1)
        x = tmap.initial_state()
        _, metrics = tmap.step_with_metrics(x, 0)
        assert metrics["loss"] == pytest.approx(float(tmap.loss(x[: tmap.param_dim], 0)), rel=1e-14)
        evaluation = tmap.evaluate(x)
        assert 0.0 <= evaluation["test_accuracy"] <= 1.0 and evaluation["test_loss"] > 0

    def test_bad_inputs(self, small_task):
        with pytest.raises(ValueError, match="TrainingMap: expected a learning rate"):
            training_map(small_task, lr=0.0)
        with pytest.raises(ValueError, match="unknown optimizer 'lbfgsx'"):
            training_map(small_task, lr=0.1, optimizer="lbfgsx")
        with pytest.raises(ValueError, match="batch_size"):
            training_map(small_task, lr=0.1, batch_size=10_000)
        tmap = training_map(small_task, lr=0.1)
        with pytest.raises(ValueError, match=r"TrainingMap.step: expected state of shape"):
            tmap.step(torch.zeros(3, dtype=torch.float64), 0)


class TestClosedFormUpdateTangents:
    """Each optimiser's hand-written update_jvp equals forward-mode AD of its update (the base class)."""

    @pytest.mark.parametrize("name,cls,kwargs", CONFIGS, ids=lambda c: str(c))
    @pytest.mark.parametrize("t", [0, 5])
    def test_matches_forward_mode_ad(self, name, cls, kwargs, t):
        from netdyn.maps.optim import FunctionalOptimizer, functional_optimizer

        opt = functional_optimizer(cls, LRS[name], **kwargs)
        gen = torch.Generator().manual_seed(t)
        p = 50
        theta, grad = torch.randn(2, p, generator=gen, dtype=torch.float64)
        buffers = torch.rand(opt.n_buffers * p, generator=gen, dtype=torch.float64)
        buffers[::7] = 0.0  # fresh (zero) second moments must not give NaN tangents
        for shape in [(), (3,)]:
            d_theta = torch.randn(*shape, p, generator=gen, dtype=torch.float64)
            d_buffers = torch.randn(*shape, opt.n_buffers * p, generator=gen, dtype=torch.float64)
            d_grad = torch.randn(*shape, p, generator=gen, dtype=torch.float64)
            out, tangent = opt.update_jvp(theta, buffers, grad, t, d_theta, d_buffers, d_grad)
            ref_out, ref_tangent = FunctionalOptimizer.update_jvp(opt, theta, buffers, grad, t, d_theta, d_buffers, d_grad)
            assert torch.equal(out, ref_out)
            assert torch.isfinite(tangent).all()
            assert torch.allclose(tangent, ref_tangent, rtol=1e-12, atol=1e-12)
