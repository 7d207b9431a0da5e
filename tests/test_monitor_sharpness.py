"""The loop monitor's sharpness tracker: exact on least squares, preconditioned for Adam, training untouched."""
import numpy as np
import pytest
import torch
from torch import nn

from netdyn.monitor import LyapunovMonitor

N, D, LR = 40, 5, 0.01


def problem():
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(N, D, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5, 2.0, 0.1],
                                                                                  dtype=torch.float64)
    targets = torch.randn(N, 1, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    model = nn.Linear(D, 1, bias=False).double()
    hessian = (2.0 * inputs.T @ inputs / N).numpy()  # of nn.MSELoss (mean) in the weights
    return model, (inputs, targets), hessian


def loop(model, optimizer, batch, steps, monitor=None):
    for _ in range(steps):
        optimizer.zero_grad()
        nn.MSELoss()(model(batch[0]), batch[1]).backward()
        optimizer.step()
        if monitor is not None:
            monitor.step(batch)


class TestMonitorSharpness:
    def test_sgd_least_squares_is_the_exact_top_eigenvalue_against_2_over_lr(self):
        model, batch, hessian = problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        monitor = LyapunovMonitor(model, optimizer, nn.MSELoss(), sharpness_every=2)
        loop(model, optimizer, batch, 6, monitor)
        exact = np.linalg.eigvalsh(hessian)[-1]
        steps, values, thresholds = zip(*monitor.sharpness_history)
        assert list(steps) == [1, 3, 5]
        np.testing.assert_allclose(values, exact, rtol=1e-8)
        np.testing.assert_allclose(thresholds, 2 / LR)
        ds = monitor.result()
        np.testing.assert_allclose(ds["sharpness"].values, values)
        assert list(ds["sharpness_step"].values) == [1, 3, 5]

    def test_adam_is_preconditioned_by_its_own_second_moments(self):
        model, batch, hessian = problem()
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        monitor = LyapunovMonitor(model, optimizer, nn.MSELoss(), sharpness_every=1)
        for t in range(1, 5):
            loop(model, optimizer, batch, 1, monitor)
            state = optimizer.state[model.weight]
            v_hat = state["exp_avg_sq"].reshape(-1).numpy() / (1 - 0.999 ** t)
            scale = 1 / np.sqrt(np.sqrt(v_hat) + 1e-8)
            exact = np.linalg.eigvalsh(scale[:, None] * hessian * scale[None, :])[-1]
            assert monitor.sharpness_history[-1][1] == pytest.approx(exact, rel=1e-8)
        assert monitor.sharpness_history[-1][2] == pytest.approx(38 / LR)

    def test_training_and_the_users_random_stream_are_untouched(self):
        runs = []
        for with_monitor in (False, True):
            model, batch, _ = problem()
            optimizer = torch.optim.Adam(model.parameters(), lr=LR)
            monitor = LyapunovMonitor(model, optimizer, nn.MSELoss(), sharpness_every=1) if with_monitor else None
            torch.manual_seed(3)
            loop(model, optimizer, batch, 5, monitor)
            runs.append(([p.detach().clone() for p in model.parameters()], torch.get_rng_state()))
        (plain, plain_rng), (monitored, monitored_rng) = runs
        assert all(torch.equal(p, q) for p, q in zip(plain, monitored))
        assert torch.equal(plain_rng, monitored_rng)

    def test_bad_setting(self):
        model, _, _ = problem()
        with pytest.raises(ValueError, match="sharpness_every to be an int >= 1"):
            LyapunovMonitor(model, torch.optim.SGD(model.parameters(), lr=LR), nn.MSELoss(), sharpness_every=0)


def test_several_parameter_tensors_match_the_dense_hessian():
    # a two-layer net: the Hessian-vector products must cover every tensor in the flat order
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    inputs, targets = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    monitor = LyapunovMonitor(model, optimizer, nn.MSELoss(), sharpness_every=1)
    loop(model, optimizer, (inputs, targets), 1, monitor)
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    sizes = [p.numel() for p in params.values()]

    def loss(flat):
        parts = dict(zip(names, (c.view_as(params[n]) for n, c in zip(names, flat.split(sizes)))))
        return nn.MSELoss()(torch.func.functional_call(model, parts, (inputs,)), targets)

    flat = torch.cat([p.reshape(-1) for p in params.values()])
    dense = torch.autograd.functional.hessian(loss, flat).numpy()
    assert monitor.sharpness_history[-1][1] == pytest.approx(np.linalg.eigvalsh(dense)[-1], rel=1e-7)
