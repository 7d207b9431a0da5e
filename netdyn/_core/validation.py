"""Parameter checks shared by every public function.

Each check returns the value in its canonical type or raises
``ValueError("<caller>: expected <name> to be ..., got <value>")``, so that an
error names the function the user called and the parameter at fault.
"""
from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_float", "check_int"]


def _is_integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


def check_int(value: Any, name: str, caller: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]`` (bounds included; ``None``: unbounded).

    Parameters
    ----------
    value : Any
        The user's value: an int, a numpy integer or an integral float (``1e3``); never a bool.
    name, caller : str
        The parameter's and the public function's names, for the error message.
    minimum, maximum : int, optional
        Inclusive bounds.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        When ``value`` is not integral or lies outside the bounds.

    Examples
    --------
    >>> check_int(1e3, "steps", "run", minimum=1)
    1000
    >>> check_int(0, "steps", "run", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: run: expected steps to be an int >= 1, got 0
    """
    ok = _is_integral(value)
    if ok:
        value = int(value)
        ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        raise ValueError(f"{caller}: expected {name} to be an int{_bounds(minimum, maximum)}, got {value!r}")
    return value


def check_float(
    value: Any,
    name: str,
    caller: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a ``float`` within the bounds (inclusive, or exclusive when ``exclusive``).

    Parameters
    ----------
    value : Any
        A real number (bools are refused).
    name, caller : str
        The parameter's and the public function's names, for the error message.
    minimum, maximum : float, optional
        Bounds; ``None`` leaves that side open.
    exclusive : bool
        Whether the bounds themselves are excluded.
    finite : bool
        Whether NaN and infinities are refused (default).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When ``value`` is not a real number, not finite (if required) or out of bounds.

    Examples
    --------
    >>> check_float(0.5, "rate", "rqa", minimum=0, maximum=1, exclusive=True)
    0.5
    >>> check_float(0.0, "d0", "max_lyapunov", minimum=0, exclusive=True)
    Traceback (most recent call last):
    ...
    ValueError: max_lyapunov: expected d0 to be a finite float > 0, got 0.0
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if ok:
        value = float(value)
        ok = not finite or math.isfinite(value)
        if ok and not math.isnan(value):
            if minimum is not None:
                ok = value > minimum if exclusive else value >= minimum
            if ok and maximum is not None:
                ok = value < maximum if exclusive else value <= maximum
    if not ok:
        kind = "a finite float" if finite else "a float"
        raise ValueError(f"{caller}: expected {name} to be {kind}{_bounds(minimum, maximum, exclusive)}, got {value!r}")
    return value


def check_choice(value: Any, name: str, caller: str, choices: Collection[str]) -> str:
    """``value`` when it is one of ``choices``.

    Parameters
    ----------
    value : Any
        The user's value.
    name, caller : str
        The parameter's and the public function's names, for the error message.
    choices : collection of str
        The allowed values.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        When ``value`` is not one of ``choices``.

    Examples
    --------
    >>> check_choice("twin", "method", "max_lyapunov", ("tangent", "twin"))
    'twin'
    >>> check_choice("qr", "method", "max_lyapunov", ("tangent", "twin"))
    Traceback (most recent call last):
    ...
    ValueError: max_lyapunov: expected method to be one of 'tangent', 'twin', got 'qr'
    """
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{caller}: expected {name} to be one of {listed}, got {value!r}")
    return value


def _bounds(minimum: float | None, maximum: float | None, exclusive: bool = False) -> str:
    lo, hi = (">", "<") if exclusive else (">=", "<=")
    if minimum is not None and maximum is not None:
        return f" in {'(' if exclusive else '['}{minimum}, {maximum}{')' if exclusive else ']'}"
    if minimum is not None:
        return f" {lo} {minimum}"
    if maximum is not None:
        return f" {hi} {maximum}"
    return ""
