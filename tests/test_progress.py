"""progress: bool | None = None on the long-running functions (tqdm's rule: None = only on a terminal)."""
import inspect

import pytest
import torch

import netdyn as nd

LONG_RUNNING = [nd.max_lyapunov, nd.lyapunov_spectrum, nd.ftle, nd.clv, nd.perturbation_growth,
                nd.windowed_lyapunov, nd.track_sharpness, nd.early_features]


@pytest.mark.parametrize("function", LONG_RUNNING, ids=lambda f: f.__name__)
def test_progress_is_keyword_only_and_auto_by_default(function):
    parameter = inspect.signature(function).parameters["progress"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


@pytest.mark.parametrize("progress", [True, False])
def test_bar_shown_only_when_asked(progress, capsys):
    m = nd.LogisticMap(4.0)
    nd.max_lyapunov(m, torch.tensor([0.3], dtype=torch.float64), 10, progress=progress)
    err = capsys.readouterr().err
    assert ("max_lyapunov" in err and "10/10" in err) is progress


def test_bar_is_hidden_off_a_terminal_by_default(capsys):
    m = nd.QuadraticGD([1.0, 3.0], lr=0.5)
    nd.lyapunov_spectrum(m, m.initial_state(), 10)  # captured stderr is not a terminal
    assert "lyapunov_spectrum" not in capsys.readouterr().err
