"""The package's module graph: no import cycle, no private name crossing a module, no function shadowing a module.

The graph is read from the source with :mod:`ast` (nothing is imported to build it), so an import hidden inside a
function -- the usual way a cycle is papered over -- counts like one at the top of a module.  Edges come from
``import a.b``, ``from a.b import c`` (to ``a.b.c`` when that is a module, else to ``a.b``), relative imports, and
``importlib.import_module("a.b")`` with a string literal.  Importing ``a.b`` also executes ``a/__init__.py``; that
implicit edge is left out, since every module would otherwise sit on a cycle through ``netdyn/__init__.py``, which
re-exports the public namespace by design.
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import types
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "netdyn"
# private modules meant for sharing across the whole package
SHARED_PRIVATE = ("netdyn._core", "netdyn._version")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve_relative(importer: str, module: str | None, level: int) -> str:
    base = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(name: str) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import in module ``name``."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve_relative(name, node.module, node.level) if node.level else node.module
            found += [(module, alias.name, node.lineno) for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
            found.append((node.args[0].value, "", node.lineno))
    return [(m, n, line) for m, n, line in found if m == "netdyn" or m.startswith("netdyn.")]


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for importer in MODULES:
        for module, name, line in _imports(importer):
            target = f"{module}.{name}" if f"{module}.{name}" in MODULES else module
            if target in MODULES and target != importer:
                graph.add_edge(importer, target, line=line)
    return graph


def test_the_graph_sees_the_known_edges():
    """Guards the parser itself: a top-level, a function-level and an import_module edge are all found."""
    graph = import_graph()
    assert graph.has_edge("netdyn", "netdyn.orbits.trajectory")
    assert graph.has_edge("netdyn.series.recurrence", "netdyn.series._rqa_kernels")  # importlib.import_module
    assert len(MODULES) > 50 and graph.number_of_edges() > 100


def test_module_graph_has_no_cycle():
    graph = import_graph()
    cycles = [c for c in nx.simple_cycles(graph)]
    lines = []
    for cycle in sorted(cycles, key=len)[:20]:
        hops = [f"{a} (line {graph.edges[a, b]['line']})" for a, b in zip(cycle, cycle[1:] + cycle[:1])]
        lines.append(" -> ".join(hops) + f" -> {cycle[0]}")
    assert not cycles, f"{len(cycles)} import cycle(s), shortest first:\n" + "\n".join(lines)


def _private_violation(importer: str, module: str, name: str) -> str | None:
    """Why importing ``name`` from ``module`` in ``importer`` crosses a privacy line, or None."""
    target = f"{module}.{name}" if name else module
    if any(target == p or target.startswith(p + ".") for p in SHARED_PRIVATE):
        return None
    parts = target.split(".")
    for depth, part in enumerate(parts):
        if not part.startswith("_") or part.startswith("__"):
            continue
        owner, private = ".".join(parts[:depth]), ".".join(parts[: depth + 1])
        if private not in MODULES:
            return f"private name {part!r} of {owner}"
        if not (importer == owner or importer.startswith(owner + ".")):
            return f"private module {private} used outside {owner}"
    return None


def test_no_private_name_crosses_a_module():
    violations = []
    for importer in MODULES:
        for module, name, line in _imports(importer):
            why = _private_violation(importer, module, name)
            if why and module != importer:
                violations.append(f"{MODULES[importer].relative_to(ROOT)}:{line}: {why}")
    assert not violations, f"{len(violations)} private import(s) across modules:\n" + "\n".join(violations)


def _import_or_skip_optional(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("netdyn"):
            return None  # an optional dependency (lightning, transformers) that is not installed
        raise


def test_every_submodule_attribute_is_the_module():
    """``netdyn.<a>.<b>`` is the module a.b wherever a.b exists -- no re-exported function shadows it."""
    shadowed = []
    for name in MODULES:
        if name == "netdyn" or name.endswith("__main__"):
            continue
        module = _import_or_skip_optional(name)
        if module is None:
            continue
        parent, _, leaf = name.rpartition(".")
        attribute = getattr(sys.modules[parent], leaf, None)
        if attribute is not module:
            shadowed.append(f"{parent}.{leaf} is {attribute!r}, not the module")
    assert not shadowed, "\n".join(shadowed)


def test_import_sweep_and_sharpness_gives_modules():
    """The issue's own check, in a fresh interpreter (no earlier import can mask a shadowing)."""
    code = ("import types, netdyn.sweep, netdyn.sharpness; "
            "assert isinstance(netdyn.sweep, types.ModuleType), netdyn.sweep; "
            "assert isinstance(netdyn.sharpness, types.ModuleType), netdyn.sharpness")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
