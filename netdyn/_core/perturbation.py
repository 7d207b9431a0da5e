"""The default twin distance ``d0`` of a state, from its floating-point type and size.

A twin (Benettin) estimate measures ``ln(|y' - x'| / |y - x|)`` for a separation
``|y - x| = d0``.  Two errors bound ``d0``:

* rounding: every step rounds ``x`` and ``y`` to the state's precision, an error of
  about ``eps |x|`` in norm (``eps`` = machine epsilon of the dtype), so the measured
  growth factor carries a relative error ``~ eps |x| / d0``;
* nonlinearity: the twin follows the linearised dynamics only while ``d0`` is small
  against the scale on which the map's Jacobian changes, a relative error
  ``~ d0 / L``.  For a network the natural ``L`` is the size of the parameter vector
  itself (a relative change ``delta`` of the weights changes activations, gradients and
  the Jacobian by a relative ``O(delta)``), so ``L ~ |x|``.

The sum ``eps |x| / d0 + d0 / |x|`` is smallest at ``d0 = sqrt(eps) |x|``, where both
errors are ``sqrt(eps)``: 1.5e-8 in float64, 3.5e-4 in float32, 3.1e-2 in float16
and 8.8e-2 in bfloat16 (relative, per step; they average down over the steps).  The
scale is floored at 1 so that a state near the origin (zero initialisation, a map's
fixed point at 0) still gets a separation above the rounding of O(1) arithmetic.

The monitor (:class:`netdyn.monitor.LyapunovMonitor`) uses this rule with
``|x|`` = the Euclidean norm of the trained parameters; ``max_lyapunov(method="twin")``
can use the same rule with the norm of its initial state.
"""
from __future__ import annotations

import math

import torch

__all__ = ["default_d0", "resolution_tolerance"]


def default_d0(dtype: torch.dtype, scale: float = 1.0) -> float:
    """Twin distance ``sqrt(eps(dtype)) * max(scale, 1)``.

    Parameters
    ----------
    dtype : torch.dtype
        floating-point type of the state (the least precise one if they are mixed).
    scale : float, default 1.0
        size of the state, e.g. the Euclidean norm ``|x_0|`` of the parameters
        (same units as the state); must be finite and >= 0.

    Returns
    -------
    float
        ``d0`` in the units of the state.  E.g. ``default_d0(torch.float32, 12.0)``
        is ``12 * 3.45e-4 = 4.1e-3``; ``default_d0(torch.float64)`` is ``1.49e-8``.

    Raises
    ------
    ValueError
        for a non-floating dtype or a negative or non-finite ``scale``.

    Examples
    --------
    >>> import torch
    >>> from netdyn._core.perturbation import default_d0
    >>> f"{default_d0(torch.float64):.3g}", f"{default_d0(torch.float32, 12.0):.2g}"
    ('1.49e-08', '0.0041')
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"default_d0: expected a floating-point torch.dtype, got {dtype!r}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"default_d0: expected a finite scale >= 0, got {scale}")
    return math.sqrt(torch.finfo(dtype).eps) * max(float(scale), 1.0)


def resolution_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance for checking that a separation of ``d0`` survives rounding.

    ``max(1e-3, sqrt(eps(dtype)))``: at the default ``d0`` the rounding of the twin
    changes its measured distance by about ``eps |x| / d0 = sqrt(eps)`` relative
    (a few 1e-4 in float32, under 1e-3 in float64 where ``1e-3`` is the historical
    check of ``max_lyapunov``), so a measured distance further from ``d0`` than this
    means ``d0`` is below the resolution of the state.

    Parameters
    ----------
    dtype : torch.dtype
        Floating-point type of the state.

    Returns
    -------
    float
        The relative tolerance.

    Raises
    ------
    ValueError
        For a non-floating dtype.

    Examples
    --------
    >>> import torch
    >>> from netdyn._core.perturbation import resolution_tolerance
    >>> resolution_tolerance(torch.float64), round(resolution_tolerance(torch.float16), 4)
    (0.001, 0.0312)
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"resolution_tolerance: expected a floating-point torch.dtype, got {dtype!r}")
    return max(1e-3, math.sqrt(torch.finfo(dtype).eps))
