"""Training divergence: one rule, used by ``run``, ``orbital_stability``, ``sweep`` and the CLI.

What users and the papers call a *diverged* training run is any of

* ``"non-finite"`` — a NaN or infinity in the loss or the state;
* ``"loss blow-up"`` — the loss rose to more than ``loss_factor`` (default 1e3) times
  its reference ``max(|L_0|, loss_floor)``, three orders of magnitude: softmax
  cross-entropy keeps the loss finite even at absurd learning rates, so
  "finite" alone never catches those runs;
* ``"unbounded growth"`` — the state's Euclidean norm rose to more than
  ``norm_factor`` (default 1e3) times ``max(||x_0||, norm_floor)``.

The floors (1.0 by default) keep the rule meaningful for losses and states that
start near zero: a logistic-map orbit from ``x_0 = 1e-4`` that settles at 0.6
has not diverged.  ``L_0`` and ``x_0`` are the first finite values the check sees.

A separate fact, never mixed with this one: an exponent estimate whose twin orbit
lost floating-point resolution is reported by the exponent result
(:func:`netdyn.max_lyapunov`'s ``unresolved``), not as divergence of training.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from netdyn._core.validation import check_float

__all__ = ["DivergenceRule", "DivergenceCheck", "EnsembleDivergence", "divergence_reason", "parameter_norms",
           "parameter_norms_on_device", "REASONS"]

REASONS = ("non-finite", "loss blow-up", "unbounded growth")


@dataclass(frozen=True)
class DivergenceRule:
    """Thresholds of the divergence rule (see the module docstring).

    Parameters
    ----------
    loss_factor
        default 1e3: a loss above ``loss_factor * max(|L_0|, loss_floor)`` is a blow-up.
    norm_factor
        default 1e3: a state norm above ``norm_factor * max(||x_0||, norm_floor)`` is
        unbounded growth.
    loss_floor, norm_floor
        default 1.0: lower bounds of the references, in the units of the loss and
        of the state.

    Raises
    ------
    ValueError
        For a factor <= 1 or a floor <= 0 (or a non-finite one).

    Examples
    --------
    >>> import netdyn as nd
    >>> nd.DivergenceRule(norm_factor=100.0).norm_factor
    100.0
    """

    loss_factor: float = 1e3
    norm_factor: float = 1e3
    loss_floor: float = 1.0
    norm_floor: float = 1.0

    def __post_init__(self) -> None:
        for name in ("loss_factor", "norm_factor"):
            check_float(getattr(self, name), name, "DivergenceRule", minimum=1.0, exclusive=True)
        for name in ("loss_floor", "norm_floor"):
            check_float(getattr(self, name), name, "DivergenceRule", minimum=0.0, exclusive=True)


@dataclass
class DivergenceCheck:
    """The divergence rule applied step by step.

    ``check(loss, norm)`` returns ``""`` while the run is sound and the reason
    (a sentence starting with one of :data:`REASONS`) at the first step that breaks
    the rule.  ``loss`` may be NaN for maps without a loss (then only the norm
    is checked).

    Parameters
    ----------
    rule : DivergenceRule, default DivergenceRule()
        The thresholds.
    loss_ref, norm_ref : float, default NaN
        References (set from the first finite values checked).

    Examples
    --------
    >>> from netdyn.maps.divergence import DivergenceCheck
    >>> check = DivergenceCheck()
    >>> check.check(1.0, 1.0), check.check(2.0, 5e3)[:16]
    ('', 'unbounded growth')
    """

    rule: DivergenceRule = field(default_factory=DivergenceRule)
    loss_ref: float = math.nan
    norm_ref: float = math.nan

    def check(self, loss: float, norm: float) -> str:
        """Reason for divergence at this step, ``""`` if none (units of the loss and state)."""
        if math.isinf(loss) or not math.isfinite(norm):
            return "non-finite: the loss or the state has NaN/inf entries"
        if math.isnan(loss) and not math.isnan(self.loss_ref):
            return "non-finite: the loss became NaN"
        if math.isfinite(loss) and math.isnan(self.loss_ref):
            self.loss_ref = max(abs(loss), self.rule.loss_floor)
        if math.isfinite(loss) and abs(loss) > self.rule.loss_factor * self.loss_ref:
            return (
                f"loss blow-up: the loss reached {loss:.3g}, more than {self.rule.loss_factor:g} x its "
                f"reference {self.loss_ref:.3g}"
            )
        return self.check_norm(norm)

    @property
    def norm_limit(self) -> float:
        """The largest norm that passes the rule (units of the state): finite norms at or
        below it give ``""`` from :meth:`check_norm`; NaN until the reference is set."""
        return self.rule.norm_factor * self.norm_ref

    def check_norm(self, norm: float) -> str:
        """The norm part of the rule alone, for a state whose loss is not known (e.g.
        the last state of a run); ``""`` if sound."""
        if not math.isfinite(norm):
            return "non-finite: the state has NaN/inf entries"
        if math.isnan(self.norm_ref):
            self.norm_ref = max(norm, self.rule.norm_floor)
        if norm > self.rule.norm_factor * self.norm_ref:
            return (
                f"unbounded growth: the state norm reached {norm:.3g}, more than {self.rule.norm_factor:g} x "
                f"its reference {self.norm_ref:.3g}"
            )
        return ""


def divergence_reason(
    loss: np.ndarray | None = None,
    *,
    norm: np.ndarray | None = None,
    rule: DivergenceRule | None = None,
) -> tuple[str, int]:
    """Apply the divergence rule to recorded series.

    Parameters
    ----------
    loss
        loss per recorded step ``(T,)``, or None (only the norm is checked).
    norm
        state norm per recorded step ``(T,)``, or None (only the loss is checked).
    rule
        thresholds; default :class:`DivergenceRule()`.

    Returns
    -------
    (reason, index)
        ``("", -1)`` when the series never break the rule, else the reason and the
        index of the first offending entry.

    Raises
    ------
    ValueError
        When neither series is given or their lengths differ.

    Examples
    --------
    >>> import netdyn as nd
    >>> reason, index = nd.divergence_reason(loss=[1.0, 0.5, float("nan")])
    >>> reason[:10], index
    ('non-finite', 2)
    """
    if loss is None and norm is None:
        raise ValueError("divergence_reason: expected a loss or a norm series, got neither")
    loss = None if loss is None else np.asarray(loss, dtype=np.float64).ravel()
    norm = None if norm is None else np.asarray(norm, dtype=np.float64).ravel()
    n = len(loss) if loss is not None else len(norm)
    if loss is not None and norm is not None and len(norm) != n:
        raise ValueError(f"divergence_reason: expected loss and norm of one length, got {n} and {len(norm)}")
    check = DivergenceCheck(rule or DivergenceRule())
    for i in range(n):
        reason = check.check(
            math.nan if loss is None else float(loss[i]),
            0.0 if norm is None else float(norm[i]),
        )
        if reason:
            return reason, i
    return "", -1


def parameter_norms(states: "torch.Tensor", param_dim: int) -> np.ndarray:
    """``||x[:param_dim]||`` of each state ``(n, dim)`` -> ``(n,)``, in float64 (no float32 overflow):
    the norm the rule judges (parameters, not optimiser buffers, whose units differ).

    Parameters
    ----------
    states : Tensor ``(n, dim)``
        Batch of states.
    param_dim : int
        Number of leading parameter entries.

    Returns
    -------
    ndarray ``(n,)``
        float64 norms.

    Examples
    --------
    >>> import torch
    >>> from netdyn.maps.divergence import parameter_norms
    >>> parameter_norms(torch.tensor([[3.0, 4.0, 100.0]]), 2).tolist()
    [5.0]
    """
    return parameter_norms_on_device(states, param_dim).cpu().numpy()


def parameter_norms_on_device(
    states: "torch.Tensor", param_dim: int, *, out: "torch.Tensor | None" = None
) -> "torch.Tensor":
    """:func:`parameter_norms` as a float64 tensor ``(n,)`` on the states' device (no host read:
    the step loops copy a block of them at once), written into ``out`` when given."""
    return torch.linalg.vector_norm(states[:, :param_dim].to(torch.float64), dim=1, out=out)


class EnsembleDivergence:
    """The divergence rule applied to ``n`` orbits advanced together (exponent engines).

    ``update(norms, step, alive)`` checks the state norms ``(n,)`` of the members in
    ``alive`` that have not diverged yet; a member breaking the rule is flagged at
    ``step`` with its reason.  Flags never stop anything: the exponent engines keep
    estimating a diverging orbit while its numbers stay finite.

    Attributes
    ----------
    diverged : bool array ``(n,)``; diverged_step : int array ``(n,)`` (-1 if none);
    reason : str array ``(n,)`` (``""`` if none).

    Parameters
    ----------
    n : int
        Number of orbits.
    rule : DivergenceRule or None
        The thresholds; None checks finiteness only.

    Examples
    --------
    >>> import numpy as np
    >>> from netdyn.maps.divergence import DivergenceRule, EnsembleDivergence
    >>> verdict = EnsembleDivergence(2, DivergenceRule())
    >>> verdict.update(np.array([1.0, 1.0]), 0)
    >>> verdict.settles(np.array([[2.0, 3.0], [1.0, 1.5]])), verdict.settles(np.array([[2.0, 5e3]]))
    (True, False)
    >>> verdict.update(np.array([2.0, 5e3]), 1)
    >>> verdict.diverged.tolist(), verdict.diverged_step.tolist()
    ([False, True], [-1, 1])
    """

    def __init__(self, n: int, rule: DivergenceRule | None = None):
        self.rule = rule
        self.norm_ref = np.full(n, np.nan)  # max(first finite norm, floor), as DivergenceCheck.norm_ref
        self.diverged = np.zeros(n, dtype=bool)
        self.diverged_step = np.full(n, -1, dtype=np.int64)
        self.reason = np.full(n, "", dtype=object)

    def update(self, norms: np.ndarray, step: int, alive: np.ndarray | None = None) -> None:
        """Check the members' norms at ``step``; ``rule=None`` checks finiteness only.

        Vectorised over the members (the ensemble engines call it every step): the
        same verdicts as one :meth:`DivergenceCheck.check_norm` per member; only the
        members flagged at this step are visited to write their reason."""
        norms = np.asarray(norms, dtype=np.float64)
        live = ~self.diverged if alive is None else alive & ~self.diverged
        finite = np.isfinite(norms)
        bad = live & ~finite
        if self.rule is not None:
            fresh = live & finite & np.isnan(self.norm_ref)
            self.norm_ref[fresh] = np.maximum(norms[fresh], self.rule.norm_floor)
            with np.errstate(invalid="ignore"):
                grown = live & finite & (norms > self.rule.norm_factor * self.norm_ref)
        else:
            grown = np.zeros_like(bad)
        for i in np.flatnonzero(bad | grown):
            if bad[i]:  # the sentences of DivergenceCheck.check(nan, norm), or of the bare finiteness test
                reason = "non-finite: the " + ("loss or the " if self.rule is not None else "") + "state has NaN/inf entries"
            else:
                reason = (
                    f"unbounded growth: the state norm reached {norms[i]:.3g}, more than {self.rule.norm_factor:g} x "
                    f"its reference {self.norm_ref[i]:.3g}"
                )
            self.diverged[i], self.diverged_step[i], self.reason[i] = True, step, reason

    def settles(self, norms: np.ndarray) -> bool:
        """Whether :meth:`update` with each row of ``norms (steps, n)`` in turn (every member
        alive) would change nothing: every member not yet diverged has a reference norm and
        finite norms within the rule.  Lets a step loop skip a quiet block in one test
        (example in the class docstring)."""
        norms = np.asarray(norms, dtype=np.float64)[:, ~self.diverged]
        if not np.isfinite(norms).all():
            return False
        if self.rule is None:
            return True
        ref = self.norm_ref[~self.diverged]
        return not np.isnan(ref).any() and bool((norms <= self.rule.norm_factor * ref).all())

    def warn(self, caller: str) -> None:
        """One RuntimeWarning naming the first divergence, if any."""
        if self.diverged.any():
            first = int(np.argmin(np.where(self.diverged, self.diverged_step, np.iinfo(np.int64).max)))
            warnings.warn(
                f"{caller}: {int(self.diverged.sum())} of {len(self.diverged)} orbit(s) diverged (first at step "
                f"{int(self.diverged_step[first])}: {self.reason[first]})",
                RuntimeWarning,
                stacklevel=3,
            )

    def variables(self) -> dict[str, tuple[tuple[str], np.ndarray]]:
        """``diverged``, ``diverged_step``, ``divergence_reason`` over ``init``, for a result Dataset."""
        return {
            "diverged": (("init",), self.diverged.copy()),
            "diverged_step": (("init",), self.diverged_step.copy()),
            "divergence_reason": (("init",), self.reason.astype(str)),
        }
