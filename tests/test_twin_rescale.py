"""The twin's compiled measure-and-rescale against the same arithmetic in numpy float64."""
import numpy as np
import pytest
import torch

from netdyn._core.twin_rescale import TwinRescale

SIZES = (1, 3, 17, 2048, 10)  # lengths that are and are not multiples of a vector register


def states(dtype: torch.dtype, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    refs = [torch.randn(n, generator=g, dtype=torch.float64).to(dtype) for n in SIZES]
    twins = [(r.double() + 1e-3 * torch.randn(r.shape, generator=g, dtype=torch.float64)).to(dtype) for r in refs]
    return refs, twins


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_measured", [2, 4, None])
def test_equals_numpy_float64(dtype, n_measured):
    # Sums of squares in float64 over differences taken in the dtype; the compiled pass sums in
    # vector lanes, numpy pairwise: both within a few ulps of the exact sum (rtol 1e-14 is ~50 ulps).
    refs, twins = states(dtype)
    x = [r.numpy().astype(np.float64) for r in refs]
    diffs = [(r.numpy() - t.numpy()).astype(np.float64) for r, t in zip(refs, twins)]
    measured = len(SIZES) if n_measured is None else n_measured
    g = np.sqrt(sum(np.sum(d * d) for d in diffs[:measured]))
    theta = np.sqrt(sum(np.sum(v * v) for v in x[:2]))
    factor = -0.25 / g
    expected = [(v + d * factor).astype(refs[0].numpy().dtype) for v, d in zip(x, diffs)]
    after = np.sqrt(sum(np.sum((e - r.numpy()).astype(np.float64) ** 2) for e, r in zip(expected[:measured], refs)))

    result = TwinRescale(n_param=2, n_measured=n_measured, d0=0.25)(refs, twins)
    assert result is not None
    np.testing.assert_allclose(result, (g, after, theta), rtol=1e-14)
    for twin, e in zip(twins, expected):
        np.testing.assert_array_equal(twin.numpy(), e)  # y' = x + (x - y) (-d0 / g): elementwise, exact


def test_zero_or_non_finite_distance_moves_by_d0():
    refs, twins = [torch.zeros(5)], [torch.zeros(5)]
    g, after, _ = TwinRescale(1, None, 0.5)(refs, twins)
    assert g == 0 and after == 0  # nothing to rescale along: the twin stays on the reference
    twins = [torch.tensor([0.0, np.inf, 0.0, 0.0, 0.0])]
    g, _, _ = TwinRescale(1, None, 0.5)(refs, twins)
    assert g == np.inf


def test_measured_must_cover_the_parameters():
    with pytest.raises(ValueError, match="TwinRescale: expected n_measured >= n_param=3, got 2"):
        TwinRescale(3, 2, 1.0)
