"""The public namespace follows one set of conventions (issue 13, "One API").

Every name in ``netdyn.__all__`` is checked for

(a) keyword-only parameters after the data: a map-driven function is ``f(map_, x0, steps, *, ...)`` (a point
    evaluation ``f(map_, x, *, t=0)``), any other function ``f(x, *, ...)`` -- see :func:`data_parameters`;
(b) one name per concept: never ``map``/``make_map`` (``map_``), ``x0s`` (``x0``), ``eps`` (``d0``), ``min_tsep``
    (``theiler``), ``t`` or ``x`` beside ``steps`` (``t0``, ``x0``); ``seed`` never defaults to None, ``progress``
    defaults to None, and every function that iterates a map for ``steps`` (and ``run_sweep``) has ``progress``;
(c) a Dataset-convertible result: the return annotation is ``xr.Dataset`` or a class with ``to_dataset`` and
    ``from_dataset`` (:class:`netdyn._core.results.DatasetResult`);
(d) a numpydoc docstring (parsed by ``numpydoc.docscrape``) with Parameters (every parameter; a dataclass may
    document its fields under Attributes), Returns (functions) and Examples sections and at least one ``>>>``
    line; public methods need a docstring.

All violations are collected and shown in one assertion message, so one run lists everything left to do.
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any

import pytest
import xarray as xr

import netdyn

numpydoc_docscrape = pytest.importorskip("numpydoc.docscrape", reason="numpydoc is in the test extra")

PUBLIC = {name: getattr(netdyn, name) for name in netdyn.__all__ if callable(getattr(netdyn, name))}
FUNCTIONS = {name: obj for name, obj in PUBLIC.items() if inspect.isfunction(obj)}
# Classes are checked for names (b) and docstrings (d) only: a constructor's parameters configure an object
# (LogisticMap(r=4), DivergenceRule(loss_factor=...)), there is no data argument to put first, and the
# instance itself is what it returns.
CLASSES = {name: obj for name, obj in PUBLIC.items() if inspect.isclass(obj)}

MAP_NAMES = ("map_",)  # the first parameter of a map-driven function
# (b): forbidden parameter name -> the project's name for the concept
FORBIDDEN = {"map": "map_", "make_map": "map_", "x0s": "x0", "eps": "d0", "min_tsep": "theiler"}

# (c): public functions whose purpose is an object that is not an analysis result, so a Dataset would be the
# wrong answer.  Each is listed with its reason; anything else returning a non-Dataset is a violation.
NOT_A_RESULT = {
    "has_jacobian": "a predicate on a map (bool)",
    "make_task": "builds a task (data + model factory) to drive, not a result",
    "training_map": "builds a map to drive, not a result",
    "map_from_attrs": "rebuilds a map from saved attributes",
    "save_trajectory": "writes a file (returns None)",
    "consolidate": "rewrites a file in place (returns the number of steps)",
    "to_graph": "converts weights to a networkx graph, the representation asked for",
    "from_graph": "converts a networkx graph back to weights",
    "graph_trajectory": "yields networkx graphs lazily, one per step",
    "recurrence_network": "returns the networkx graph itself; network_measures is its Dataset front door",
    # the quantity itself, a single number or array, is the answer (wrapping it would add nothing)
    "stability_threshold": "one number: the optimiser's edge-of-stability threshold at step t",
    "step_preconditioner": "one vector: the optimiser's preconditioner, to multiply a Hessian by",
    "observable_series": "the series itself, the input of every series diagnostic",
    "recurrence_matrix": "the matrix itself (rqa is its Dataset front door)",
    "chaos01_k": "one number: K of the 0-1 test (chaos01 is its Dataset front door)",
    "ft_surrogates": "the surrogate series themselves (surrogates is the Dataset front door)",
    "shuffle_surrogates": "the surrogate series themselves (surrogates is the Dataset front door)",
    "iaaft_surrogates": "the surrogate series and their iteration counts (surrogates is the Dataset front door)",
    "rank_p_value": "one number: the p-value",
    "cross_recurrence_matrix": "the matrix and the threshold that made it (crqa is its Dataset front door)",
    "joint_recurrence_matrix": "the matrix and the thresholds that made it (jrqa is its Dataset front door)",
    "feature_matrix": "a design matrix and its column names, the (X, names) scikit-learn takes",
    "divergence_reason": "the divergence rule's verdict: its sentence and the step (used by every verdict)",
}

#: functions whose second (and third) parameter is data too, beyond the general rule below
SECOND_DATA = {
    "save_trajectory": ["ds", "path"],  # the Dataset and the file it goes to, as Dataset.to_netcdf(path)
    "rank_p_value": ["value", "null"],  # a statistic and its null sample, as scipy.stats.percentileofscore
    "orbit_diagram": ["map_", "values", "steps"],  # the family, its control values and the orbit length
}


def data_parameters(name: str, params: list[inspect.Parameter]) -> list[str]:
    """The leading parameters allowed to be positional.

    * map-driven (first parameter ``map_``): ``map_`` then, in this order and only if present, ``x0`` (a start)
      or ``x`` (a point evaluation), then ``steps``;
    * cross-/joint-recurrence and other two-series functions: ``x`` followed by ``y`` (the second series is data
      too, as in ``scipy.stats.pearsonr(x, y)``);
    * everything else: the first parameter (``x``, ``ds``, ``result`` or the object being converted).
    """
    names = [p.name for p in params]
    if not names:
        return []
    if name in SECOND_DATA:
        return SECOND_DATA[name]
    if names[0] in MAP_NAMES:
        allowed = ["map_"]
        for follower in (("x0", "x"), ("steps",)):
            if len(names) > len(allowed) and names[len(allowed)] in follower:
                allowed.append(names[len(allowed)])
        return allowed
    if names[:2] == ["x", "y"]:
        return ["x", "y"]
    return names[:1]


def _signature(obj) -> inspect.Signature:
    return inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)


def _params(obj) -> list[inspect.Parameter]:
    params = list(_signature(obj).parameters.values())
    return params[1:] if inspect.isclass(obj) else params  # drop self


def keyword_only_violations() -> list[str]:
    found = []
    for name, func in FUNCTIONS.items():
        params = _params(func)
        data = data_parameters(name, params)
        for p in params:
            if p.kind == p.VAR_POSITIONAL:
                found.append(f"(a) {name}: *{p.name} takes positional arguments after the data")
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in data:
                found.append(f"(a) {name}: {p.name!r} is positional; only {data} may be, the rest keyword-only")
    return found


def naming_violations() -> list[str]:
    found = []
    for name, obj in PUBLIC.items():
        params = {p.name: p for p in _params(obj)}
        for bad, good in FORBIDDEN.items():
            if bad in params:
                found.append(f"(b) {name}: parameter {bad!r} should be {good!r}")
        if "t" in params and "steps" in params:
            found.append(f"(b) {name}: iterates from a start, so the start time is 't0', not 't'")
        if "x" in params and "steps" in params:
            found.append(f"(b) {name}: iterates from a start, so the start state is 'x0', not 'x'")
        iterates_a_map = next(iter(params), None) in MAP_NAMES + ("map", "make_map") and "steps" in params
        if (iterates_a_map or name == "run_sweep") and "progress" not in params:
            found.append(f"(b) {name}: long-running (iterates a map for `steps`) but has no progress parameter")
        if "seed" in params and params["seed"].default is None:
            found.append(f"(b) {name}: seed defaults to None (use seed: int = 0)")
        if "progress" in params and params["progress"].default is not None:
            found.append(f"(b) {name}: progress defaults to {params['progress'].default!r} (use None: tqdm's auto)")
    return found


def _return_type(func):
    """The return annotation, resolved in the function's module (annotations are strings there)."""
    annotation = inspect.signature(func).return_annotation
    if not isinstance(annotation, str):
        return annotation
    namespace = {**vars(inspect.getmodule(func)), "xr": xr}
    try:
        return eval(annotation, namespace)  # noqa: S307  (the package's own annotation text)
    except Exception:  # a name imported only under TYPE_CHECKING: keep the text
        return annotation


def _is_dataset_convertible(kind) -> bool:
    if kind is xr.Dataset:
        return True
    return inspect.isclass(kind) and callable(getattr(kind, "to_dataset", None)) and \
        callable(getattr(kind, "from_dataset", None))


def result_violations() -> list[str]:
    found = []
    for name, func in FUNCTIONS.items():
        if name in NOT_A_RESULT:
            continue
        kind = _return_type(func)
        if kind is inspect.Signature.empty:
            found.append(f"(c) {name}: no return annotation")
        elif not _is_dataset_convertible(kind):
            shown = kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))
            found.append(f"(c) {name}: returns {shown}, not an xr.Dataset or a DatasetResult")
    for name, cls in CLASSES.items():
        # a result class (not a map, rule or monitor) must convert both ways
        if callable(getattr(cls, "to_dataset", None)) and not callable(getattr(cls, "from_dataset", None)):
            found.append(f"(c) {name}: has to_dataset but no from_dataset")
    return found


def docstring_violations() -> list[str]:
    found = []
    for name, obj in PUBLIC.items():
        doc = inspect.getdoc(obj)
        if not doc:
            found.append(f"(d) {name}: no docstring")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parsed = numpydoc_docscrape.NumpyDocString(doc)
            except Exception as error:  # numpydoc raises on malformed sections
                found.append(f"(d) {name}: docstring is not numpydoc ({error})")
                continue
        sections = ["Parameters", "Examples"] + ([] if inspect.isclass(obj) else ["Returns"])
        named = [p for p in _params(obj) if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        # a dataclass's constructor parameters are its fields: numpydoc's Attributes section documents them
        entries = list(parsed["Parameters"]) + (list(parsed["Attributes"]) if dataclasses.is_dataclass(obj) else [])
        if inspect.isclass(obj) and not named:
            sections.remove("Parameters")  # nothing to document
        missing = [s for s in sections if not (entries if s == "Parameters" else parsed[s])]
        if missing:
            found.append(f"(d) {name}: missing numpydoc section(s) {', '.join(missing)}")
        if entries:
            documented = {n.strip() for p in entries for n in p.name.split(",")}
            undocumented = [p.name for p in named if p.name not in documented]
            if undocumented:
                found.append(f"(d) {name}: parameters not documented: {', '.join(undocumented)}")
        if parsed["Examples"] and ">>>" not in "\n".join(parsed["Examples"]):
            found.append(f"(d) {name}: Examples has no >>> doctest")
    return found


def _public_methods() -> dict[str, tuple[type, str, Any]]:
    """``Class.method`` -> function, for the methods each public class defines itself (inherited ones are checked
    where they are defined; torch/object members are not the package's)."""
    found = {}
    for cls_name, cls in CLASSES.items():
        for klass in cls.__mro__:
            if not klass.__module__.startswith("netdyn"):
                continue
            for name, member in vars(klass).items():
                if name.startswith("_") or f"{klass.__name__}.{name}" in found:
                    continue
                func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                if inspect.isfunction(func):
                    found[f"{klass.__name__}.{name}"] = (klass, name, func)
    return found


def method_docstring_violations() -> list[str]:
    """Public methods need a docstring (an override may inherit its base's).

    Full numpydoc sections are required of the namespace's functions and classes above; a method such as
    ``step(x, t)`` implements the map protocol documented once on the protocol and the class, so repeating its
    sections on every map would add text, not information.
    """
    return [f"(d) {name}: no docstring" for name, (klass, attribute, _) in sorted(_public_methods().items())
            if not inspect.getdoc(getattr(klass, attribute))]


def test_the_checks_see_the_namespace():
    """Guards the walk itself: it finds functions and classes, and the data rule reads signatures right."""
    assert len(FUNCTIONS) > 40 and len(CLASSES) > 5

    def params(text):
        return list(inspect.signature(eval(f"lambda {text}: None")).parameters.values())

    assert data_parameters("f", params("map_, x0, steps, *, seed=0")) == ["map_", "x0", "steps"]
    assert data_parameters("f", params("map_, x, *, t=0")) == ["map_", "x"]
    # the old run(map_, steps, x0=None): x0 after steps is not data, so it is reported as positional
    assert data_parameters("f", params("map_, steps, x0=None")) == ["map_", "steps"]
    assert data_parameters("f", params("x, y, *, lag=1")) == ["x", "y"]
    assert data_parameters("f", params("ds, threshold=0.01")) == ["ds"]


def test_public_namespace_follows_the_conventions():
    violations = (keyword_only_violations() + naming_violations() + result_violations() + docstring_violations()
                  + method_docstring_violations())
    assert not violations, f"{len(violations)} violation(s) of the issue-13 conventions:\n" + "\n".join(violations)
