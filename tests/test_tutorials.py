"""Every tutorial runs top to bottom at reduced size, so none can silently rot.

Each ``tutorials/NN_*.py`` is a jupytext percent-format script (paired with the
executed ``.ipynb`` beside it).  With ``NETDYN_TUTORIAL_QUICK=1`` it shrinks its
grids and step counts; here it runs in a fresh interpreter, in a temporary
working directory, with the Agg backend.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))

# findings a quick run must still print (a change that breaks one fails here)
FINDINGS = {
    "06_is_it_chaos": ["logistic r=4 (chaos)", "-> chaotic"],  # r = 4 passes the combined 0-1 / surrogate test
    "07_schedules_and_adaptive_edge_of_stability": ["chaotic", "closest to the edge"],
}


def test_there_are_tutorials():
    assert TUTORIALS, "no tutorials found"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_quick(script, tmp_path):
    env = {**os.environ, "NETDYN_TUTORIAL_QUICK": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(script.parents[1])}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    for finding in FINDINGS.get(script.stem, []):
        assert finding in done.stdout, f"{script.name}: the quick run no longer prints {finding!r}"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_has_an_executed_notebook(script):
    notebook = script.with_suffix(".ipynb")
    assert notebook.exists(), f"{notebook.name} missing: run `jupytext --to ipynb --execute {script.name}`"
    text = notebook.read_text()
    assert '"image/png"' in text, f"{notebook.name} holds no figure: execute it before committing"
