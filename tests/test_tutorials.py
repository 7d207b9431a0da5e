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


def test_there_are_tutorials():
    assert TUTORIALS, "no tutorials found"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_quick(script, tmp_path):
    env = {**os.environ, "NETDYN_TUTORIAL_QUICK": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(script.parents[1])}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_has_an_executed_notebook(script):
    notebook = script.with_suffix(".ipynb")
    assert notebook.exists(), f"{notebook.name} missing: run `jupytext --to ipynb --execute {script.name}`"
    text = notebook.read_text()
    assert '"image/png"' in text, f"{notebook.name} holds no figure: execute it before committing"
