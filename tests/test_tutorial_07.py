"""Tutorial 07 (schedules, windowed exponents, Adam's edge of stability) runs top to bottom at reduced size."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "tutorials" / "07_schedules_and_adaptive_edge_of_stability.py"


def test_tutorial_07_runs_quick(tmp_path):
    env = {**os.environ, "NETDYN_TUTORIAL_QUICK": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(SCRIPT.parents[1])}
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{SCRIPT.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "chaotic" in done.stdout and "closest to the edge" in done.stdout


def test_tutorial_07_has_an_executed_notebook():
    notebook = SCRIPT.with_suffix(".ipynb")
    assert notebook.exists(), f"{notebook.name} missing: run `jupytext --to ipynb --execute {SCRIPT.name}`"
    assert '"image/png"' in notebook.read_text(), f"{notebook.name} holds no figure: execute it before committing"
