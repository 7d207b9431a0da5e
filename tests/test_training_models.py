"""TrainingMap on real user models: dropout, frozen parameters, BatchNorm, bad set-ups.

References are plain ``torch.optim`` loops on the same ``nn.Module``.  Tolerances:
float64 trajectories agree to 1e-10 relative (the functional optimisers follow
torch's formulas; only the order of a few additions differs); float32 to 1e-5
(~100 ulp after 20 steps of rounding in a different order).
"""
import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

import netdyn
from netdyn.maps.optim import functional_optimizer
from netdyn.maps.problems import make_task
from netdyn.testing import check_map
from netdyn.maps.training import TrainingMap, step_seed

DTYPES = [torch.float64, torch.float32]
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def iris(dtype=torch.float64, n_train=None):
    return make_task("iris", hidden=(16,), dtype=dtype, seed=0, n_train=n_train)


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with N(0, 0.5^2) parameters drawn from ``seed`` (global RNG untouched)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return model


def dropout_mlp(dtype=torch.float64, p=0.5):
    return seeded(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(p), nn.Linear(16, 3))).to(dtype)


def bn_mlp(dtype=torch.float64):
    return seeded(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))).to(dtype)


def torch_loop(model, loss_fn, data, cls, lr, kwargs, steps, seed=0, batch_map=None):
    """Reference: ``torch.optim`` on ``model.parameters()`` (frozen ones included), train mode,
    step ``t``'s forward under ``torch.manual_seed(step_seed(seed, t))``."""
    model = copy.deepcopy(model).train()
    opt = cls(model.parameters(), lr=lr, **kwargs)
    x, y = data
    for t in range(steps):
        idx = None if batch_map is None else batch_map.batch_indices(t)
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        opt.zero_grad()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(seed, t))
            loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    return model


def trainable_vector(model):
    return parameters_to_vector([p for p in model.parameters() if p.requires_grad]).detach()


def orbit(tmap, steps, x=None):
    x = tmap.initial_state() if x is None else x
    for t in range(steps):
        x = tmap.step(x, t)
    return x


def rel(a, b):
    return float((a - b).norm() / b.norm())


class TestDropoutIsAFunctionOfXAndT:
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_step_repeatable_and_masks_change_with_t(self, dtype):
        task = iris(dtype)
        tmap = TrainingMap(dropout_mlp(dtype), task.loss_fn, task.train, lr=0.1, seed=3)
        x = tmap.initial_state()
        assert torch.equal(tmap.step(x, 0), tmap.step(x.clone(), 0))
        theta = x[: tmap.param_dim]
        # full batch: only the dropout masks distinguish the steps' losses
        assert float(tmap.loss(theta, 0)) != float(tmap.loss(theta, 1))
        assert float(tmap.loss(theta, 4)) == float(tmap.loss(theta, 4))
        other_seed = TrainingMap(dropout_mlp(dtype), task.loss_fn, task.train, lr=0.1, seed=4)
        assert float(other_seed.loss(theta, 0)) != float(tmap.loss(theta, 0))

    def test_global_rng_untouched(self):
        task = iris()
        tmap = TrainingMap(dropout_mlp(), task.loss_fn, task.train, lr=0.1, optimizer=torch.optim.Adagrad)
        functional = TrainingMap(dropout_mlp(), task.loss_fn, task.train, lr=0.1, momentum=0.9)
        torch.manual_seed(123)
        expected = torch.rand(5)
        torch.manual_seed(123)
        x = tmap.step(tmap.initial_state(), 0)
        functional.step_jvp(functional.initial_state(), torch.ones(functional.dim, dtype=torch.float64), 0)
        assert torch.equal(torch.rand(5), expected) and torch.isfinite(x).all()

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("cls,kwargs", [(torch.optim.SGD, {"momentum": 0.9}), (torch.optim.Adam, {})])
    def test_both_paths_match_torch_optim_with_the_same_masks(self, dtype, cls, kwargs):
        task = iris(dtype)
        model, lr = dropout_mlp(dtype), 0.05
        ref = trainable_vector(torch_loop(model, task.loss_fn, task.train, cls, lr, kwargs, 20, seed=2))
        moved = float((ref - trainable_vector(model)).norm())
        assert moved > 1e-2, "the steps must move the parameters to mean anything"
        for functional in (True, False):
            tmap = TrainingMap(model, task.loss_fn, task.train, optimizer=cls, lr=lr, seed=2, functional=functional, **kwargs)
            assert (tmap.functional_optimizer is not None) == functional
            assert rel(orbit(tmap, 20)[: tmap.param_dim], ref) < RTOL[dtype]

    def test_tangent_sees_the_gradient_masks(self):
        task = iris(n_train=40)
        check_map(TrainingMap(dropout_mlp(), task.loss_fn, task.train, lr=0.1, momentum=0.9, batch_size=10))

    def test_twin_equals_tangent_and_exponent_is_sane(self):
        # Twin separations of d0 = 1e-9 follow the tangent up to O(d0) nonlinear corrections
        # and float64 rounding of the difference (eps |x| / d0 ~ 1e-6 per step, averaging down
        # over 150 steps): measured agreement 1e-9, tolerance 1e-6.  When the twin saw other
        # masks than the orbit (the old behaviour) its exponent was ~16 per step.
        task = iris()
        exponents = {}
        for p in (0.0, 0.5):
            tmap = TrainingMap(dropout_mlp(p=p), task.loss_fn, task.train, lr=0.1)
            x0 = tmap.initial_state()
            twin = netdyn.max_lyapunov(tmap, x0, 150, method="twin")
            tangent = netdyn.max_lyapunov(tmap, x0, 150, method="tangent")
            assert float(twin.lyapunov) == pytest.approx(float(tangent.lyapunov), abs=1e-6)
            exponents[p] = float(tangent.lyapunov)
        # GD at lr 0.1 on this MLP is near-neutral (|lambda| ~ 2e-3 measured); dropout changes the
        # loss landscape per step but cannot make it explode
        assert abs(exponents[0.5] - exponents[0.0]) < 0.02 and abs(exponents[0.0]) < 0.05


class TestFrozenParameters:
    @staticmethod
    def frozen_model(dtype):
        model = dropout_mlp(dtype, p=0.0)
        model[0].weight.requires_grad_(False)
        return model

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize(
        "cls,kwargs", [(torch.optim.SGD, {"momentum": 0.9, "weight_decay": 1e-2}), (torch.optim.Adam, {"weight_decay": 1e-2})]
    )
    def test_matches_torch_optim_and_frozen_stay_fixed(self, dtype, cls, kwargs):
        task = iris(dtype)
        model, lr = self.frozen_model(dtype), 0.1
        reference = torch_loop(model, task.loss_fn, task.train, cls, lr, kwargs, 20)
        assert torch.equal(reference[0].weight, model[0].weight)  # torch.optim leaves it fixed
        for functional in (True, False):
            tmap = TrainingMap(model, task.loss_fn, task.train, optimizer=cls, lr=lr, functional=functional, **kwargs)
            assert tmap.param_dim == sum(p.numel() for p in model.parameters()) - 16 * 4
            assert tmap.n_frozen == 64 and tmap.describe()["n_frozen"] == 64
            assert rel(orbit(tmap, 20)[: tmap.param_dim], trainable_vector(reference)) < RTOL[dtype]
            assert torch.equal(tmap.model[0].weight, model[0].weight)

    def test_state_labels_layout_and_tangents_exclude_frozen(self):
        task = iris(n_train=40)
        model = self.frozen_model(torch.float64)
        tmap = TrainingMap(model, task.loss_fn, task.train, optimizer="adam", lr=0.01)
        names, layers = tmap.param_labels()
        assert len(names) == tmap.param_dim and "0.weight" not in layers and layers[0] == "0.bias"
        assert tmap.state_layout() == [("params", 0, 67), ("exp_avg", 67, 134), ("exp_avg_sq", 134, 201)]
        assert tmap.dim == 201 and tmap.initial_state(5).shape == (201,)
        assert torch.equal(tmap.initial_state()[:16], model[0].bias.detach())
        black_box = TrainingMap(model, task.loss_fn, task.train, optimizer=torch.optim.Adam, lr=0.01, functional=False)
        assert black_box.dim == 201 and [b[0] for b in black_box.state_layout()][1] == "0.bias.exp_avg"
        check_map(TrainingMap(model, task.loss_fn, task.train, lr=0.1, momentum=0.9))


class TestBatchNorm:
    def test_steps_use_batch_statistics_and_never_touch_buffers(self):
        task = iris()
        model = bn_mlp()
        before = {n: b.clone() for n, b in model.named_buffers()}
        ref = torch_loop(model, task.loss_fn, task.train, torch.optim.SGD, 0.1, {"momentum": 0.9}, 20)
        tmap = TrainingMap(model, task.loss_fn, task.train, lr=0.1, momentum=0.9, test_data=task.test)
        x = tmap.initial_state()
        assert torch.equal(tmap.step(x, 0), tmap.step(x, 0))
        assert rel(orbit(tmap, 20)[: tmap.param_dim], trainable_vector(ref)) < 1e-10
        tmap.evaluate(x)
        check_map(tmap)
        for source in (model, tmap.model):
            for n, b in source.named_buffers():
                assert torch.equal(b, before[n]), n
        assert tmap.model.training  # evaluate restored train mode

    @pytest.mark.parametrize("batch_size", [None, 25])
    def test_evaluate_in_eval_mode_with_recomputed_statistics(self, batch_size):
        task = iris()
        tmap = TrainingMap(bn_mlp(), task.loss_fn, task.train, lr=0.1, batch_size=batch_size, test_data=task.test)
        x = orbit(tmap, 5)
        theta = tmap._unflatten(x[: tmap.param_dim])
        w1, b1, gamma, beta, w2, b2 = (theta[k] for k in ("0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"))
        # hand computation: means and unbiased variances of the hidden pre-activations over
        # the training set, in order, averaged over batches (cumulative average)
        hidden = task.train[0] @ w1.T + b1
        chunks = [hidden] if batch_size is None else hidden.split(batch_size)
        mean = torch.stack([c.mean(0) for c in chunks]).mean(0)
        var = torch.stack([c.var(0, unbiased=True) for c in chunks]).mean(0)
        h = (task.test[0] @ w1.T + b1 - mean) / torch.sqrt(var + 1e-5) * gamma + beta
        expected = float(task.loss_fn(torch.tanh(h) @ w2.T + b2, task.test[1]))
        got = tmap.evaluate(x)["test_loss"]
        assert got == pytest.approx(expected, rel=1e-12)
        with torch.no_grad():  # the train-mode forward on the test set normalises by the test batch
            train_mode = float(task.loss_fn(tmap._forward(tmap.model, theta, task.test[0], 0), task.test[1]))
        assert abs(train_mode - got) > 1e-4
        assert tmap.evaluate(x)["test_loss"] == got


class TestBadSetUps:
    def test_dtype_mismatch_between_model_and_data(self):
        task = iris(torch.float32)
        with pytest.raises(ValueError, match=r"TrainingMap: expected floating data inputs .*float64, got torch.float32"):
            TrainingMap(dropout_mlp(torch.float64), task.loss_fn, task.train, lr=0.1)
        good = iris()
        with pytest.raises(ValueError, match="test_data inputs"):
            TrainingMap(dropout_mlp(), good.loss_fn, good.train, lr=0.1, test_data=task.test)

    def test_shape_mismatch(self):
        task = iris()
        model = seeded(nn.Sequential(nn.Linear(5, 3))).double()
        with pytest.raises(ValueError, match="TrainingMap: expected a model and loss_fn that accept the data"):
            TrainingMap(model, task.loss_fn, task.train, lr=0.1)
        with pytest.raises(ValueError, match="test inputs of the training inputs' sample shape"):
            TrainingMap(dropout_mlp(), task.loss_fn, task.train, lr=0.1, test_data=(task.test[0][:, :3], task.test[1]))

    def test_no_parameters_or_all_frozen(self):
        task = iris()
        with pytest.raises(ValueError, match="TrainingMap: expected a model with parameters, got Tanh"):
            TrainingMap(nn.Tanh(), task.loss_fn, task.train, lr=0.1)
        model = dropout_mlp().requires_grad_(False)
        with pytest.raises(ValueError, match="got all 4 frozen"):
            TrainingMap(model, task.loss_fn, task.train, lr=0.1)

    def test_non_scalar_loss(self):
        task = iris()
        with pytest.raises(ValueError, match=r"expected loss_fn to return a floating scalar .* got \(2,\)"):
            TrainingMap(dropout_mlp(), nn.CrossEntropyLoss(reduction="none"), task.train, lr=0.1)

    def test_mixed_parameter_dtypes(self):
        task = iris()
        model = nn.Sequential(nn.Linear(4, 5).double(), nn.Linear(5, 3).float())
        with pytest.raises(ValueError, match=r"expected parameters of one dtype, got a mix of \['torch.float32', 'torch.float64'\]"):
            TrainingMap(model, task.loss_fn, task.train, lr=0.1)


BAD_HYPERPARAMETERS = [
    (torch.optim.SGD, {"lr": -0.1}),
    (torch.optim.SGD, {"momentum": -0.5}),
    (torch.optim.SGD, {"weight_decay": -1e-3}),
    (torch.optim.SGD, {"nesterov": True}),
    (torch.optim.SGD, {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    (torch.optim.Adam, {"lr": -1e-3}),
    (torch.optim.Adam, {"eps": -1e-8}),
    (torch.optim.Adam, {"betas": (1.0, 0.999)}),
    (torch.optim.Adam, {"betas": (-0.1, 0.999)}),
    (torch.optim.Adam, {"betas": (0.9, 1.0)}),
    (torch.optim.Adam, {"betas": (0.9, math.nan)}),
    (torch.optim.Adam, {"weight_decay": -1e-2}),
    (torch.optim.AdamW, {"betas": (0.9, 1.5)}),
    (torch.optim.AdamW, {"eps": -1.0}),
    (torch.optim.AdamW, {"weight_decay": -0.1}),
    (torch.optim.RMSprop, {"lr": -1e-3}),
    (torch.optim.RMSprop, {"alpha": -0.1}),
    (torch.optim.RMSprop, {"eps": -1e-8}),
    (torch.optim.RMSprop, {"momentum": -0.9}),
    (torch.optim.RMSprop, {"weight_decay": -1e-3}),
]


@pytest.mark.parametrize("cls,kwargs", BAD_HYPERPARAMETERS, ids=lambda c: str(c))
def test_hyperparameters_torch_rejects_are_rejected(cls, kwargs):
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr", 1e-2)
    with pytest.raises(ValueError):
        cls([nn.Parameter(torch.zeros(2))], lr=lr, **kwargs)
    with pytest.raises(ValueError, match=r"^(SGD|Adam|AdamW|RMSprop): expected .*, got "):
        functional_optimizer(cls, lr, **kwargs)
    if lr > 0:  # TrainingMap rejects lr <= 0 itself
        task = iris(n_train=10)
        with pytest.raises(ValueError, match="expected"):
            TrainingMap(task.model, task.loss_fn, task.train, optimizer=cls, lr=lr, **kwargs)
