"""Predict the outcome of training from early stability indicators.

Sharafi, Martin & Hallerberg (2025) report that finite-time Lyapunov exponents
(FTLE) and covariant Lyapunov vectors (CLV) measured early in training predict
the final training loss.  Two pure functions test such a claim on any map:

* :func:`early_features` - per initial condition, the FTLEs over the first
  windows of training, summaries of them, the loss at the end of each window
  (the natural baseline) and, optionally, angles between CLVs;
* :func:`compare_predictors` - held-out scores (repeated K-fold
  cross-validation, the same folds for every feature set) of a linear predictor
  of a target from several sets of features, and the paired gain of each set
  over a baseline set.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from sklearn.metrics import r2_score
from torch import Tensor

from netdyn._core.progress import progress_bar
from netdyn._core.validation import check_choice, check_int
from netdyn.lyapunov.spectrum import clv, ftle
from netdyn.maps.base import as_states, map_attrs

__all__ = ["early_features", "compare_predictors", "feature_matrix"]

KINDS = ("regression", "classification")


def _window_metrics(map_: Any, x0: Tensor, window: int, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Loss and gradient norm at the states ``x_{jw}``, ``j = 1..n_windows`` (NaN when the
    map reports none or the orbit diverged before)."""
    loss = np.full(n_windows, np.nan)
    grad_norm = np.full(n_windows, np.nan)
    if not hasattr(map_, "step_with_metrics"):
        return loss, grad_norm
    x = x0
    for t in range(window * n_windows + 1):
        x_next, metrics = map_.step_with_metrics(x, t)
        if t and t % window == 0:
            loss[t // window - 1] = metrics.get("loss", np.nan)
            grad_norm[t // window - 1] = metrics.get("grad_norm", np.nan)
        if not bool(torch.isfinite(x_next).all()):
            break
        x = x_next
    return loss, grad_norm


def early_features(
    map_: Any,
    x0: Tensor | np.ndarray,
    *,
    window: int,
    n_windows: int = 1,
    k: int | None = None,
    clv_transient: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> xr.Dataset:
    """Early-training stability indicators of each initial condition.

    Parameters
    ----------
    map_ : map with ``step_jvp`` (e.g. a functional :class:`~netdyn.maps.training.TrainingMap`);
        ``step_with_metrics`` gives the loss features (NaN without it).
    x0 : tensor ``(n, dim)`` (or ``(dim,)`` for one) — the initial conditions (was ``x0s``).
    window : int — steps per FTLE window.
    n_windows : int, default 1 — windows from step 0; features use steps ``0 .. n_windows * window``.
    k : int or None, default None (= ``min(dim, 10)``) — number of FTLEs.
    clv_transient : int or None, default None — with an integer ``T``, also the angles
        between the ``k`` leading CLVs at the steps ``T .. n_windows * window - T - 1``
        (Ginelli's forward and backward passes both take ``T`` steps and stay inside
        the early period); needs ``n_windows * window > 2 T`` and ``k >= 2``.
    seed : int, default 0 — seed of the random tangent bases (the same for every
        initial condition, so differences come from the orbits).
    progress : bool or None, default None — a tqdm bar over the initial conditions
        (None: only on a terminal).

    Returns
    -------
    xarray.Dataset with coords ``init`` (0..n-1), ``step`` (global step at the end of
    each window) and ``exponent`` (0..k-1):

    ``ftle (init, step, exponent)``
        the QR finite-time exponents of each window (per step, :func:`netdyn.lyapunov.spectrum.ftle`);
    ``ftle_max (init, step)``
        the largest of the ``k`` FTLEs of the window;
    ``ftle_mean (init, step)``
        their mean: ``1/k`` times the growth rate of ``k``-dimensional volumes;
    ``positive_fraction (init, step)``
        the fraction of the ``k`` FTLEs above 0 (expanding directions);
    ``loss (init, step)``, ``grad_norm (init, step)``
        training loss and gradient norm at the state at the end of the window;
    ``clv_angle_min (init)``, ``clv_angle_median (init)`` (with ``clv_transient``)
        over the CLV steps, the minimum and the median of the smallest angle between
        neighbouring CLVs (radians, in ``[0, pi/2]``); near 0: near-tangent
        expanding and contracting directions;
    ``diverged (init)``
        the orbit or its tangents became non-finite in the early period; its
        features are NaN from there on (with a warning).

    attrs: the map's ``describe()``, ``window``, ``n_windows``, ``k``,
    ``clv_transient`` (-1: none), ``horizon`` (the last step any feature uses).

    Raises
    ------
    ValueError
        on a bad ``x0``, counts out of range, ``k`` outside ``[1, dim]`` or a
        ``clv_transient`` that does not fit the early period.
    TypeError
        for a map without ``step_jvp``.

    Notes
    -----
    ``lambda_i^w(t) = (1/w) sum_{s=t-w+1}^{t} ln R_ii(s)`` from the QR factors of the
    tangent dynamics (:func:`netdyn.lyapunov.spectrum.qr_tangent_steps`); for gradient descent
    ``J = I - lr H`` (plus optimiser terms), so a positive FTLE in the first windows
    means directions of negative curvature (saddles) or curvature above ``2/lr``
    (edge of stability).  The sum ``k * ftle_mean`` is basis independent once the
    ``k``-dimensional subspace has aligned; the individual ``ln R_ii`` of the first
    window still carry the random initial basis, hence ``ftle_max`` rather than
    exponent 0.

    Defaults: ``k = min(dim, 10)`` — each tangent costs about one Hessian-vector
    product per step, and the leading exponents carry the instability; the loss at
    the end of the same windows is returned so that a predictor can be compared
    with the early-loss baseline at equal information.

    References
    ----------
    Sharafi, Martin & Hallerberg, Phys. Rev. E 111, 054208 (2025), arXiv 2405.00743.

    Examples
    --------
    >>> import torch, netdyn as nd
    >>> m = nd.QuadraticGD([0.5, 3.0], lr=0.5)  # ln|1 - 0.5 h|: ln 0.75, ln 0.5
    >>> x0 = torch.stack([m.initial_state(seed) for seed in range(3)])
    >>> res = nd.early_features(m, x0, window=40, n_windows=2, k=1)
    >>> [round(float(v), 3) for v in res["ftle_max"].isel(step=1)]
    [-0.288, -0.288, -0.288]
    """
    caller = "early_features"
    xs, _ = as_states(map_, x0, caller)
    window = check_int(window, "window", caller, minimum=1)
    n_windows = check_int(n_windows, "n_windows", caller, minimum=1)
    k = min(map_.dim, 10) if k is None else check_int(k, "k", caller, minimum=1, maximum=map_.dim)
    steps = window * n_windows
    if clv_transient is not None:
        clv_transient = check_int(clv_transient, "clv_transient", caller, minimum=1)
        if steps <= 2 * clv_transient or k < 2:
            raise ValueError(
                f"{caller}: expected n_windows * window > 2 * clv_transient and k >= 2 for CLV angles, "
                f"got n_windows * window = {steps}, clv_transient = {clv_transient}, k = {k}"
            )
    n = xs.shape[0]
    values = np.full((n, n_windows, k), np.nan)
    loss = np.full((n, n_windows), np.nan)
    grad_norm = np.full((n, n_windows), np.nan)
    angle_min = np.full(n, np.nan)
    angle_median = np.full(n, np.nan)
    diverged = np.zeros(n, dtype=bool)
    with progress_bar(n, progress=progress, desc=caller, unit="init") as bar:
        for i in range(n):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # one summary warning below, not one per orbit
                f = ftle(map_, xs[i], steps, k=k, window=window, seed=seed)
                values[i] = f["ftle"].values
                diverged[i] = bool(f["diverged"]) or bool(f["unresolved"])
                if clv_transient is not None and not bool(f["unresolved"]):
                    c = clv(map_, xs[i], steps - clv_transient, k=k, transient=clv_transient, seed=seed)
                    smallest = c["angle"].min("pair").values
                    angle_min[i], angle_median[i] = np.min(smallest), np.median(smallest)
            loss[i], grad_norm[i] = _window_metrics(map_, xs[i], window, n_windows)
            bar.update(1)
    if diverged.any():
        warnings.warn(
            f"{caller}: {int(diverged.sum())} of {n} orbit(s) diverged within the first {steps} steps; "
            "features of an orbit whose numbers overflowed are NaN from there on",
            RuntimeWarning,
            stacklevel=2,
        )
    finite = np.isfinite(values).all(axis=2)
    data = {
        "ftle": (("init", "step", "exponent"), values),
        "ftle_max": (("init", "step"), values.max(axis=2)),
        "ftle_mean": (("init", "step"), values.mean(axis=2)),
        "positive_fraction": (("init", "step"), np.where(finite, (values > 0).mean(axis=2), np.nan)),
        "loss": (("init", "step"), loss),
        "grad_norm": (("init", "step"), grad_norm),
        "diverged": (("init",), diverged),
    }
    if clv_transient is not None:
        data["clv_angle_min"] = (("init",), angle_min)
        data["clv_angle_median"] = (("init",), angle_median)
    return xr.Dataset(
        data,
        coords={"init": np.arange(n), "step": window * np.arange(1, n_windows + 1, dtype=np.int64),
                "exponent": np.arange(k)},
        attrs={**map_attrs(map_), "window": window, "n_windows": n_windows, "k": k,
               "clv_transient": -1 if clv_transient is None else clv_transient, "horizon": steps,
               "units": "ftle per step; angles in radians"},
    )


def feature_matrix(features: xr.Dataset, *, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The named variables of ``features`` as a design matrix ``(n_init, n_columns)``.

    Parameters
    ----------
    features : Dataset with a dimension ``init``.
    names : variable names; a variable with dims besides ``init`` (e.g. ``step``)
        contributes one column per entry, labelled ``name[dim=value,...]``.

    Returns
    -------
    ``(matrix, column_labels)``; float64, NaN kept.

    Raises
    ------
    ValueError
        when ``features`` has no ``init`` dimension or a name is missing or has none.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from netdyn.lyapunov.predict import feature_matrix
    >>> ds = xr.Dataset({"a": ("init", [1.0, 2.0]), "b": (("init", "step"), np.ones((2, 2)))},
    ...                 coords={"step": [10, 20]})
    >>> matrix, labels = feature_matrix(ds, names=["a", "b"])
    >>> matrix.shape, labels
    ((2, 3), ['a', 'b[step=10]', 'b[step=20]'])
    """
    caller = "feature_matrix"
    if "init" not in features.dims:
        raise ValueError(f"{caller}: expected a Dataset with an 'init' dimension, got dims {tuple(features.dims)}")
    if isinstance(names, str) or not len(names):
        raise ValueError(f"{caller}: expected a non-empty sequence of variable names, got {names!r}")
    missing = [name for name in names if name not in features.data_vars]
    if missing:
        raise ValueError(f"{caller}: expected variables of the Dataset {sorted(features.data_vars)}, got {missing}")
    columns, labels = [], []
    for name in names:
        var = features[name]
        if "init" not in var.dims:
            raise ValueError(f"{caller}: expected {name!r} to have an 'init' dimension, got dims {var.dims}")
        other = [d for d in var.dims if d != "init"]
        if not other:
            columns.append(var.values.astype(np.float64)[:, None])
            labels.append(name)
            continue
        stacked = var.stack(column=other).transpose("init", "column")
        columns.append(stacked.values.astype(np.float64))
        for index in np.ndindex(*(var.sizes[d] for d in other)):
            where = ",".join(f"{d}={var[d].values[j]}" for d, j in zip(other, index))
            labels.append(f"{name}[{where}]")
    return np.concatenate(columns, axis=1), labels


def _model(kind: str, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "regression":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, random_state=seed))


def compare_predictors(
    features: xr.Dataset,
    *,
    target: xr.DataArray | np.ndarray | Sequence[float],
    feature_sets: Mapping[str, Sequence[str]],
    kind: str = "regression",
    baseline: str | None = None,
    n_splits: int = 5,
    n_repeats: int = 20,
    seed: int = 0,
) -> xr.Dataset:
    """Held-out scores of linear predictors of ``target`` from sets of features.

    Parameters
    ----------
    features : Dataset over ``init`` (e.g. from :func:`early_features`), other dims
        flattened into columns (:func:`feature_matrix`).
    target : ``(n_init,)`` — a number per initial condition (``kind="regression"``,
        e.g. ``log10`` of the final loss) or a 0/1 label (``"classification"``,
        e.g. final loss below its median).
    feature_sets : ``{set name: [variable names]}``.
    kind : {"regression", "classification"}, default "regression".
    baseline : str or None, default None (= the first set) — the set every other is
        compared with, fold by fold.
    n_splits : int, default 5 — folds of the (stratified for classification) K-fold
        cross-validation.
    n_repeats : int, default 20 — repetitions of the K-fold split.
    seed : int, default 0 — seed of the fold assignment.

    Returns
    -------
    xarray.Dataset, coords ``feature_set``, ``fold`` (``n_splits * n_repeats``),
    ``repeat``, ``init``:

    ``score (feature_set, fold)``
        held-out R² (regression) or accuracy (classification) on each test fold;
    ``score_mean``, ``score_std (feature_set)``
        their mean and spread over folds;
    ``gain (feature_set, fold)``, ``gain_mean (feature_set)``
        ``score - score[baseline]`` on the same fold (paired);
    ``win_fraction (feature_set)``
        fraction of folds where the set scores above the baseline (ties count half);
    ``prediction (feature_set, repeat, init)``
        out-of-fold predictions (regression) or probabilities of class 1
        (classification) of every repeat; NaN for dropped initial conditions.

    attrs: ``kind``, ``metric``, ``baseline``, ``n_used``, ``n_dropped``, ``chance``
    (score of always predicting the training folds' majority class / mean: the
    majority-class rate, or 0 for R²), ``columns_<set>`` (the column labels).

    Raises
    ------
    ValueError
        on an unknown ``kind`` or ``baseline``, no feature set, counts out of range,
        a ``target`` of the wrong shape, a non-0/1 classification target or too few
        usable initial conditions for the folds.

    Notes
    -----
    Regression: standardised features, ridge regression with the penalty chosen by
    efficient leave-one-out inside each training fold (``RidgeCV``, penalties
    ``10^-3 .. 10^3``); classification: standardised features, L2 logistic
    regression (``C = 1``).  ``R² = 1 - SS_res / SS_tot`` on the test fold, so it
    is negative for a predictor worse than the test fold's mean.  Every set sees
    the same folds and the same initial conditions — those where the target and
    *all* sets' features are finite (others dropped, with a warning) — so gains are
    paired differences; their spread over folds is not an independent-sample error
    (repeated folds overlap), hence ``win_fraction`` rather than a p-value.

    Defaults: 5 folds keep 80 % of a small ensemble for fitting; 20 repeats average
    out the arbitrariness of one split.

    Examples
    --------
    >>> import numpy as np, xarray as xr, netdyn as nd
    >>> rng = np.random.default_rng(0)
    >>> signal, noise = rng.normal(size=40), rng.normal(size=40)
    >>> ds = xr.Dataset({"signal": ("init", signal), "noise": ("init", noise)})
    >>> y = 2.0 * signal + 0.1 * rng.normal(size=40)
    >>> out = nd.compare_predictors(ds, target=y, feature_sets={"noise": ["noise"], "signal": ["signal"]}, n_repeats=2)
    >>> round(float(out["score_mean"].sel(feature_set="signal")), 2)  # R² ~ 1 - 0.01 / 4
    0.99
    """
    caller = "compare_predictors"
    kind = check_choice(kind, "kind", caller, KINDS)
    if not feature_sets:
        raise ValueError(f"{caller}: expected at least one feature set, got {feature_sets!r}")
    names = list(feature_sets)
    baseline = names[0] if baseline is None else baseline
    if baseline not in feature_sets:
        raise ValueError(f"{caller}: expected baseline among {names}, got {baseline!r}")
    n_splits = check_int(n_splits, "n_splits", caller, minimum=2)
    n_repeats = check_int(n_repeats, "n_repeats", caller, minimum=1)
    y = np.asarray(target.values if isinstance(target, xr.DataArray) else target, dtype=np.float64)
    n = features.sizes.get("init", 0)
    if y.shape != (n,):
        raise ValueError(f"{caller}: expected target of shape ({n},) (one per init), got {y.shape}")
    matrices, labels = {}, {}
    for name in names:
        matrices[name], labels[name] = feature_matrix(features, names=feature_sets[name])
    keep = np.isfinite(y) & np.all([np.isfinite(m).all(axis=1) for m in matrices.values()], axis=0)
    if (~keep).any():
        warnings.warn(f"{caller}: dropped {int((~keep).sum())} of {n} initial conditions with a non-finite "
                      "target or feature", RuntimeWarning, stacklevel=2)
    y_used = y[keep]
    if kind == "classification":
        if not np.isin(y_used, (0.0, 1.0)).all():
            raise ValueError(f"{caller}: expected a 0/1 target for classification, got values {np.unique(y_used)[:5]}")
        smallest = int(min((y_used == 0).sum(), (y_used == 1).sum()))
        if smallest < n_splits:
            raise ValueError(f"{caller}: expected at least n_splits={n_splits} members of each class, got {smallest}")
    elif keep.sum() < 2 * n_splits:
        raise ValueError(f"{caller}: expected at least {2 * n_splits} usable initial conditions, got {int(keep.sum())}")
    folds = _folds(kind, y_used, n_splits, n_repeats, seed)
    score = np.full((len(names), len(folds)), np.nan)
    prediction = np.full((len(names), n_repeats, n), np.nan)
    used_index = np.flatnonzero(keep)
    for s, name in enumerate(names):
        x = matrices[name][keep]
        for f, (train, test) in enumerate(folds):
            model = _model(kind, seed).fit(x[train], y_used[train])
            if kind == "regression":
                guess = model.predict(x[test])
                truth = y_used[test]  # R² is undefined (NaN) on a constant test fold
                score[s, f] = float(r2_score(truth, guess)) if np.ptp(truth) > 0 else np.nan
            else:
                guess = model.predict_proba(x[test])[:, 1]
                score[s, f] = float(np.mean((guess > 0.5) == (y_used[test] == 1)))
            prediction[s, f // n_splits, used_index[test]] = guess
    gain = score - score[names.index(baseline)]
    if kind == "regression":
        chance = 0.0
    else:
        chance = float(max(y_used.mean(), 1 - y_used.mean()))
    return xr.Dataset(
        {
            "score": (("feature_set", "fold"), score),
            "score_mean": (("feature_set",), score.mean(axis=1)),
            "score_std": (("feature_set",), score.std(axis=1, ddof=1) if len(folds) > 1 else np.full(len(names), np.nan)),
            "gain": (("feature_set", "fold"), gain),
            "gain_mean": (("feature_set",), gain.mean(axis=1)),
            "win_fraction": (("feature_set",), ((gain > 0) + 0.5 * (gain == 0)).mean(axis=1)),
            "prediction": (("feature_set", "repeat", "init"), prediction),
        },
        coords={"feature_set": names, "fold": np.arange(len(folds)), "repeat": np.arange(n_repeats),
                "init": features["init"].values},
        attrs={"kind": kind, "metric": "r2" if kind == "regression" else "accuracy", "baseline": baseline,
               "n_used": int(keep.sum()), "n_dropped": int((~keep).sum()), "chance": chance,
               "n_splits": n_splits, "n_repeats": n_repeats, "seed": int(seed),
               **{f"columns_{name}": ", ".join(labels[name]) for name in names}},
    )


def _folds(kind: str, y: np.ndarray, n_splits: int, n_repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    if kind == "classification":
        splitter = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    else:
        splitter = RepeatedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))

