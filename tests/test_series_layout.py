"""netdyn.series is layered: no import cycle among its modules and no private name crosses a module.

(issue 13: ``observable_series`` moved below ``datadriven`` and ``recurrence``, which used to import
each other, and ``_line_measures`` / ``_metric`` / ``_pairs_outside`` / ``_nearest_outside_window``
stopped being imported from other modules.)
"""
import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "netdyn"
FILES = sorted((ROOT / "series").glob("*.py")) + [ROOT / "plot" / "recurrence.py"]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``from netdyn... import names`` in the file, at any depth (lazy imports too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("netdyn"):
            out.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names if alias.name.startswith("netdyn")]
    return out


def test_no_import_cycle_in_series():
    graph = {_module(p): {m for m, _ in _imports(p) if m.startswith("netdyn.series")} for p in FILES}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_no_private_name_crosses_a_module():
    crossing = [
        (_module(p), module, name)
        for p in FILES
        for module, names in _imports(p)
        for name in names
        if name.startswith("_") and module != "netdyn._core" and not module.startswith("netdyn._core.")
    ]
    assert not crossing, crossing
