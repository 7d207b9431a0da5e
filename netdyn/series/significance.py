"""Surrogate-data significance of any statistic of a series: is the verdict more than noise, drift or shortness?

A statistic ``T`` (a Rosenstein exponent, DET, the 0-1 test's K, or any
function of a series) is computed on the data and on ``n`` surrogates drawn
from a null hypothesis (:mod:`netdyn.series.surrogates`: ``"shuffle"`` i.i.d. noise,
``"ft"`` linear Gaussian, ``"iaaft"`` linear Gaussian seen through a monotone
function).  The rank p-value (Theiler et al. 1992; Schreiber & Schmitz 2000)
is, with ``t`` the data's value and ``s_i`` the surrogates',

* ``alternative="greater"``: ``p = (1 + #{i: s_i >= t}) / (n + 1)``
  (the data's statistic is larger than under the null, e.g. DET of a
  deterministic series, a positive exponent);
* ``alternative="less"``: ``p = (1 + #{i: s_i <= t}) / (n + 1)``;
* ``alternative="two-sided"``: ``min(1, 2 min(p_greater, p_less))``.

Ties count against rejection.  The smallest attainable p is ``1 / (n + 1)``
(0.01 for the default ``n = 99``); under the null ``p`` is uniform on
``{1/(n+1), ..., 1}``, so ``P(p <= alpha) <= alpha``.

Every estimator setting that could be chosen from the data (embedding
dimension, lag, Theiler window, Rosenstein fit range, the 0-1 test's
frequencies) is chosen once, on the data, and frozen for the surrogates: the
statistic is one fixed function, so only the series differs between data and
surrogates.  The settings used are recorded in the result's attrs.

Built-in statistics (``statistic=`` a string):

============  =====================================================================
"rosenstein"  :func:`netdyn.rosenstein` exponent (per step), default "greater"
"det", "lam", ``netdyn.rqa`` measure at a fixed recurrence rate (default 0.05) of the
"l", "tt",    delay embedding (default: the data's FNN dimension and lag), default
"entr"        "greater"
"k01"         K of the 0-1 test (:func:`netdyn.series.chaos01.chaos01`), default "greater";
              note that K ~ 1 for noise as for chaos, so K alone does not separate
              chaos from an IAAFT null (see the tests)
============  =====================================================================

References
----------
J. Theiler et al., Physica D 58, 77 (1992).  T. Schreiber, A. Schmitz,
Physica D 142, 346 (2000).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import xarray as xr

from tqdm.auto import tqdm

from netdyn._core.validation import check_choice, check_float, check_int
from netdyn.series.chaos01 import chaos01_k
from netdyn.series.datadriven import embedding_parameters, rosenstein
from netdyn.series.observables import observable_series
from netdyn.series.recurrence import rqa
from netdyn.series.surrogates import KINDS, surrogates

__all__ = ["ALTERNATIVES", "STATISTICS", "VERDICTS", "rank_p_value", "significance", "chaos_test"]

ALTERNATIVES = ("greater", "less", "two-sided")
_RQA = {"det": "DET", "lam": "LAM", "l": "L", "tt": "TT", "entr": "ENTR"}
STATISTICS = ("rosenstein", "k01", *_RQA)


def rank_p_value(value: float, null: np.ndarray, *, alternative: str = "greater") -> float:
    """The rank p-value of ``value`` against the null sample ``null`` (n,) (module docstring).

    Parameters
    ----------
    value : float
        The statistic on the data.
    null : numpy.ndarray, shape (n,)
        The statistic on ``n`` surrogates.
    alternative : {"greater", "less", "two-sided"}, default "greater"
        Direction of the departure from the null.

    Returns
    -------
    float
        ``(1 + #{null >= value}) / (n + 1)`` for "greater" (``<=`` for "less";
        twice the smaller, capped at 1, for "two-sided").

    Raises
    ------
    ValueError
        For an unknown ``alternative``.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> nd.rank_p_value(5.0, np.arange(19.0))
    0.75
    >>> nd.rank_p_value(20.0, np.arange(19.0))
    0.05
    """
    check_choice(alternative, "alternative", "rank_p_value", ALTERNATIVES)
    null = np.asarray(null, dtype=np.float64)
    n = null.size
    greater = (1 + np.count_nonzero(null >= value)) / (n + 1)
    less = (1 + np.count_nonzero(null <= value)) / (n + 1)
    if alternative == "greater":
        return float(greater)
    if alternative == "less":
        return float(less)
    return float(min(1.0, 2 * min(greater, less)))


def _rosenstein_statistic(data: np.ndarray, options: dict[str, Any]) -> tuple[Callable[[np.ndarray], float], dict[str, Any]]:
    emb_dim, lag, theiler = embedding_parameters(
        data, emb_dim=options.pop("emb_dim", None), lag=options.pop("lag", None), theiler=options.pop("theiler", None)
    )
    trajectory_len = int(options.pop("trajectory_len", 20))
    fit_range = options.pop("fit_range", "auto")
    settings = dict(emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len)
    first = rosenstein(data, fit_range=fit_range, **settings, **options)
    settings["fit_start"], settings["fit_stop"] = (int(v) for v in first.fit_range)
    settings["data_reliable"] = int(bool(getattr(first, "reliable", True)))  # judged estimators (when available)
    settings["data_reason"] = str(getattr(first, "reason", ""))
    fixed = (settings["fit_start"], settings["fit_stop"])

    def statistic(series: np.ndarray) -> float:
        return float(rosenstein(series, emb_dim=emb_dim, lag=lag, theiler=theiler, trajectory_len=trajectory_len, fit_range=fixed, **options).exponent)

    return statistic, settings


def _rqa_statistic(name: str, data: np.ndarray, options: dict[str, Any]) -> tuple[Callable[[np.ndarray], float], dict[str, Any]]:
    emb_dim, lag = options.pop("emb_dim", None), options.pop("lag", None)
    if emb_dim is None or lag is None:
        emb_dim, lag, _ = embedding_parameters(data, emb_dim=emb_dim, lag=lag, theiler=1)
    if "threshold" not in options:
        options.setdefault("recurrence_rate", 0.05)
    measure = _RQA[name]
    settings = {"emb_dim": int(emb_dim), "lag": int(lag), "measure": measure, **{k: v for k, v in options.items() if np.isscalar(v)}}

    def statistic(series: np.ndarray) -> float:
        return float(getattr(rqa(series, emb_dim=emb_dim, lag=lag, **options), measure))

    return statistic, settings


def _k01_statistic(options: dict[str, Any], seed: Any) -> tuple[Callable[[np.ndarray], float], dict[str, Any]]:
    c_seed = options.pop("c_seed", seed if isinstance(seed, (int, np.integer)) else 0)
    settings = {"c_seed": int(c_seed), **{k: v for k, v in options.items() if np.isscalar(v)}}

    def statistic(series: np.ndarray) -> float:
        return chaos01_k(series, seed=int(c_seed), **options)

    return statistic, settings


def _resolve(statistic: str | Callable[[np.ndarray], float], data: np.ndarray, options: dict[str, Any], seed: Any) -> tuple[Callable[[np.ndarray], float], str, dict[str, Any]]:
    if callable(statistic):
        if options:
            raise ValueError(f"significance: options {sorted(options)} only apply to a named statistic; bind them in the callable")
        return statistic, getattr(statistic, "__name__", "callable"), {}
    if statistic not in STATISTICS:
        raise ValueError(f"significance: expected statistic in {list(STATISTICS)} or a callable, got {statistic!r}")
    if statistic == "rosenstein":
        fn, settings = _rosenstein_statistic(data, options)
    elif statistic == "k01":
        fn, settings = _k01_statistic(options, seed)
    else:
        fn, settings = _rqa_statistic(statistic, data, options)
    return fn, statistic, settings


def significance(
    x: Any,
    *,
    statistic: str | Callable[[np.ndarray], float],
    kind: str = "iaaft",
    n: int = 99,
    seed: int = 0,
    alternative: str = "greater",
    observable: str | None = None,
    max_iter: int = 1000,
    progress: bool | None = None,
    **options: Any,
) -> xr.Dataset:
    """Surrogate test of a statistic of a series (module docstring).

    Parameters
    ----------
    x : numpy.ndarray (N,), xarray.DataArray or trajectory xarray.Dataset
        The data (:func:`netdyn.series.observables.observable_series`; ``observable``
        picks a trajectory's series, default ``"loss"``).
    statistic : str or callable
        One of :data:`STATISTICS` or a function ``(N,) array -> float``.
    kind : {"shuffle", "ft", "iaaft"}, default "iaaft"
        The null hypothesis (:mod:`netdyn.series.surrogates`).
    n : int, default 99
        Number of surrogates.
    seed : int, default 0
        Seeds the surrogates (and, for ``"k01"``, the frequencies ``c``).
    alternative : {"greater", "less", "two-sided"}, default "greater"
        Direction of the departure from the null (module docstring).
    observable : str, optional
        As :func:`netdyn.series.observables.observable_series`.
    max_iter : int, default 1000
        IAAFT iteration cap.
    progress : bool, optional
        tqdm progress bar over the surrogates (None: shown only on a terminal).
    **options
        Passed to the named statistic: ``emb_dim``, ``lag``, ``theiler``,
        ``trajectory_len``, ``fit_range`` (rosenstein); ``recurrence_rate`` or
        ``threshold``, ``emb_dim``, ``lag``, ``theiler``, ``metric``, ``l_min``,
        ``v_min`` (RQA); ``n_c``, ``alpha``, ``c_seed`` (k01).

    Returns
    -------
    xarray.Dataset
        ``statistic`` (scalar, on the data), ``surrogate_statistic`` over
        ``surrogate``, ``p_value`` (scalar); attrs: ``statistic``, ``kind``,
        ``n``, ``seed``, ``alternative``, ``p_value_rule``, the frozen
        settings, ``n_nan_dropped`` (surrogates whose statistic was not finite,
        left out of the rank with a warning).

    Raises
    ------
    ValueError
        For an unknown statistic, kind or alternative, a multivariate
        observable, a non-finite statistic on the data or on every surrogate.

    References
    ----------
    J. Theiler, S. Eubank, A. Longtin, B. Galdrikian, J. D. Farmer, "Testing
    for nonlinearity in time series: the method of surrogate data", Physica D
    58, 77 (1992).

    Examples
    --------
    The determinism of a chaotic map against shuffled surrogates:

    >>> import numpy as np
    >>> import netdyn as nd
    >>> x = np.empty(300); x[0] = 0.3
    >>> for i in range(299): x[i + 1] = 4 * x[i] * (1 - x[i])
    >>> out = nd.significance(x, statistic="det", kind="shuffle", n=19, emb_dim=2, lag=1, progress=False)
    >>> float(out["p_value"])
    0.05
    """
    caller = "significance"
    kind = check_choice(kind, "kind", caller, KINDS)
    alternative = check_choice(alternative, "alternative", caller, ALTERNATIVES)
    n = check_int(n, "n", caller, minimum=1)
    data = observable_series(x, observable=observable)
    if data.ndim != 1:
        raise ValueError(f"{caller}: expected a scalar observable, got shape {data.shape}")
    fn, name, settings = _resolve(statistic, data, dict(options), seed)
    value = float(fn(data))
    if not np.isfinite(value):
        raise ValueError(f"{caller}: expected a finite {name} on the data, got {value}")
    sur = surrogates(data, kind=kind, n=n, seed=seed, max_iter=max_iter)
    bar = tqdm(sur["surrogates"].values, desc=f"{caller} {name}", unit="surrogate",
               disable=None if progress is None else not progress)
    null = np.array([fn(s) for s in bar], dtype=np.float64)
    finite = np.isfinite(null)
    if not finite.all():
        warnings.warn(f"{caller}: {np.sum(~finite)} of {n} surrogate values of {name} are not finite; left out of the rank", RuntimeWarning, stacklevel=2)
    if not finite.any():
        raise ValueError(f"{caller}: expected some finite surrogate values of {name}, got none")
    rule = {
        "greater": "(1 + #{s >= t}) / (n + 1)",
        "less": "(1 + #{s <= t}) / (n + 1)",
        "two-sided": "min(1, 2 min(p_greater, p_less))",
    }[alternative]
    attrs = {
        "statistic": name,
        "kind": kind,
        "n": n,
        "seed": seed,
        "alternative": alternative,
        "p_value_rule": rule,
        "n_points": int(data.size),
        "n_nan_dropped": int(np.sum(~finite)),
        **{k: v for k, v in settings.items() if v is not None},
    }
    if kind == "iaaft":
        attrs["iaaft_unconverged"] = sur.attrs["n_unconverged"]
    return xr.Dataset(
        {
            "statistic": ((), value),
            "surrogate_statistic": ("surrogate", null),
            "p_value": ((), rank_p_value(value, null[finite], alternative=alternative)),
        },
        coords={"surrogate": np.arange(n)},
        attrs=attrs,
    )


VERDICTS = ("regular", "chaotic", "irregular, not distinguishable from linear noise")


def chaos_test(
    x: Any,
    *,
    observable: str | None = None,
    kind: str = "iaaft",
    n: int = 99,
    seed: int = 0,
    emb_dim: int | None = 3,
    lag: int | None = 1,
    recurrence_rate: float = 0.05,
    k_regular: float = 0.5,
    level: float = 0.05,
    progress: bool | None = None,
) -> xr.Dataset:
    """One verdict: the 0-1 test for regularity, then a surrogate test of DET for nonlinear determinism.

    ``K < k_regular`` (:func:`netdyn.series.chaos01.chaos01`): ``"regular"``.  Otherwise
    DET (at ``recurrence_rate``, in the delay embedding ``emb_dim``, ``lag``;
    ``None`` chooses them from the data) is tested against ``n`` surrogates of
    ``kind``: ``p <= level`` gives ``"chaotic"`` (irregular and nonlinear-
    deterministic), else ``"irregular, not distinguishable from linear
    noise"``.  K alone cannot tell chaos from noise (K ~ 1 for both) and DET
    alone cannot tell chaos from a converging, drifting or periodic series (all
    deterministic), hence both.  Rosenstein's exponent and its surrogate
    p-value are reported alongside for its size, not used for the verdict: on
    noise its slope is as large or larger (see tutorial 06); when it cannot be
    computed they are NaN and ``rosenstein_note`` says why.

    Parameters
    ----------
    x : numpy.ndarray (N,), xarray.DataArray or trajectory xarray.Dataset
        The data (:func:`netdyn.series.observables.observable_series`).
    observable : str, optional
        As :func:`netdyn.series.observables.observable_series`.
    kind, n, seed
        Surrogates, as :func:`significance`.
    emb_dim, lag : int or None, default 3, 1
        Delay embedding of the DET test (None: from the data).
    recurrence_rate : float, default 0.05
        Recurrence rate of the DET test.
    k_regular : float, default 0.5
        ``K`` below this is "regular".
    level : float, default 0.05
        Significance level of the DET test.
    progress : bool, optional
        tqdm progress bars over the surrogates (None: shown only on a terminal).

    Returns
    -------
    xarray.Dataset
        Scalars ``K``, ``DET``, ``p_DET``, ``rosenstein``, ``p_rosenstein``;
        attrs ``verdict`` (one of :data:`VERDICTS`), ``kind``, ``n``, ``seed``,
        ``k_regular``, ``level``, ``emb_dim``, ``lag``, ``recurrence_rate``,
        ``n_points``, ``rosenstein_note`` ("" when the exponent is sound).

    Raises
    ------
    ValueError
        For a multivariate observable or as :func:`significance`.

    Examples
    --------
    >>> import numpy as np
    >>> import netdyn as nd
    >>> out = nd.chaos_test(np.sin(0.5 * np.arange(500)), n=9, progress=False)
    >>> out.attrs["verdict"]
    'regular'
    """
    k_regular = check_float(k_regular, "k_regular", "chaos_test")
    level = check_float(level, "level", "chaos_test", minimum=0, maximum=1)
    data = observable_series(x, observable=observable)
    if data.ndim != 1:
        raise ValueError(f"chaos_test: expected a scalar observable, got shape {data.shape}")
    k = chaos01_k(data, seed=seed)
    det = significance(data, statistic="det", kind=kind, n=n, seed=seed, emb_dim=emb_dim, lag=lag,
                       recurrence_rate=recurrence_rate, progress=progress)
    try:
        ros = significance(data, statistic="rosenstein", kind=kind, n=n, seed=seed, progress=progress)
        ros_value, ros_p = float(ros["statistic"]), float(ros["p_value"])
        ros_note = "" if ros.attrs.get("data_reliable", 1) else f"auto fit on the data judged unreliable: {ros.attrs.get('data_reason', '')}"
    except ValueError as err:  # no finite exponent on the data: reported, not part of the verdict
        ros_value, ros_p, ros_note = float("nan"), float("nan"), str(err)
    p_det = float(det["p_value"])
    verdict = VERDICTS[0] if k < k_regular else (VERDICTS[1] if p_det <= level else VERDICTS[2])
    return xr.Dataset(
        {
            "K": ((), k),
            "DET": det["statistic"],
            "p_DET": ((), p_det),
            "rosenstein": ((), ros_value),
            "p_rosenstein": ((), ros_p),
        },
        attrs={
            "verdict": verdict,
            "kind": kind,
            "n": n,
            "seed": seed,
            "k_regular": k_regular,
            "level": level,
            "emb_dim": det.attrs["emb_dim"],
            "lag": det.attrs["lag"],
            "recurrence_rate": recurrence_rate,
            "n_points": int(data.size),
            "rosenstein_note": ros_note,
        },
    )
