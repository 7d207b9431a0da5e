"""Reliability of an estimate, said in words.

The diagnostics attach reliability fields to their results (an exponent's
``unresolved``, Rosenstein's ``reliable``/``reason``, an orbit's
``confidence``/``conflict``, a trajectory's ``divergence_reason``).  These helpers
read them where present — as data variables, variable attributes, Dataset
attributes or dataclass attributes — and return sentences; absent fields give no
sentence, so the commands work with results that do not carry them yet.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def field(result: Any, name: str, default: Any = None) -> Any:
    """``result``'s field ``name``: a data variable's value, an attribute, or ``default``."""
    if hasattr(result, "data_vars"):
        if name in result.variables:
            value = np.asarray(result[name].values)
            return value.item() if value.size == 1 else value
        return result.attrs.get(name, default)
    return getattr(result, name, default)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return " ".join(str(value).split())


def divergence_words(ds: Any) -> str | None:
    """Why a trajectory diverged, or ``None`` when it did not (or says nothing)."""
    diverged = field(ds, "diverged", False)
    if not bool(np.any(diverged)):
        return None
    reason = field(ds, "divergence_reason")
    if reason is None and hasattr(ds, "variables") and "diverged" in ds.variables:
        reason = ds["diverged"].attrs.get("divergence_reason", ds["diverged"].attrs.get("reason"))
    return "training diverged" + (f": {_text(reason)}" if reason not in (None, "") else "")


def exponent_words(result: Any) -> list[str]:
    """Sentences on an exponent result: unresolved (an ``unresolved`` field, or ``lyapunov``
    = +inf on an orbit that did not diverge: the twin lost float resolution), diverged."""
    lines = []
    unresolved = field(result, "unresolved")
    value = field(result, "lyapunov")
    diverged = field(result, "diverged")
    if unresolved is None and value is not None and not bool(np.any(diverged)):
        unresolved = np.isposinf(np.asarray(value, dtype=float))  # +inf is how an unresolved exponent is written
    if unresolved is not None and bool(np.any(unresolved)):
        reason = field(result, "unresolved_reason") or field(result, "reason")
        lines.append("the exponent is NOT resolved: the twin separation outgrew what float precision can follow; "
                     "read it as 'very large', not as a measurement" + (f" ({_text(reason)})" if reason else ""))
    if diverged is not None and bool(np.any(diverged)):
        step = field(result, "diverged_step")
        lines.append("the orbit diverged" + (f" at step {int(np.max(step))}" if step is not None else "")
                     + "; the estimate covers the steps before it only")
    return lines


def rosenstein_words(result: Any) -> list[str]:
    """Sentences on a Rosenstein/analysis result: ``rosenstein_reliable``/``reliable`` and the reason."""
    for prefix in ("rosenstein_", ""):
        reliable = field(result, f"{prefix}reliable")
        if reliable is not None:
            if bool(np.all(reliable)):
                return []
            reason = field(result, f"{prefix}reason")
            return ["the Rosenstein exponent is NOT reliable" + (f": {_text(reason)}" if reason else "")]
    return []


def orbit_words(result: Any) -> list[str]:
    """Sentences on an orbital-stability result: low confidence, conflicting evidence."""
    lines = []
    confidence = field(result, "confidence")
    if isinstance(confidence, (int, float, np.number)) and not isinstance(confidence, bool):
        if float(confidence) < 1:
            lines.append(f"the orbital class has confidence {float(confidence):.2g} (1 = every test agrees)")
    elif confidence is not None and _text(confidence).lower() not in ("high", ""):
        lines.append(f"the orbital class has {_text(confidence)} confidence")
    conflict = field(result, "conflict")
    if conflict not in (None, "", False):
        lines.append(f"the evidence conflicts: {_text(conflict)}" if not isinstance(conflict, bool)
                     else "the evidence for the orbital class conflicts")
    return lines
