"""Every tutorial runs top to bottom, and the findings it prints -- the numbers the README quotes -- still hold.

Each ``tutorials/NN_*.py`` is a jupytext percent-format script (paired with the executed ``.ipynb`` beside it).
With ``NETDYN_TUTORIAL_QUICK=1`` it shrinks its grids and step counts; here it runs in a fresh interpreter, in a
temporary working directory, with the Agg backend.

The findings are read from the printed output (regular expressions on its lines, not on the code, so they
survive changes of call sites) and compared with

* ``quick``: the reduced-size run's values, asserted by the default suite on every tutorial run;
* ``full``: the full-size values the README quotes, asserted on the executed notebook's saved output (cheap, in
  the default suite: the committed notebook must back the README) and by the ``slow`` suite, which runs each
  tutorial at full size (``python -m pytest -m slow tests/test_tutorials.py``, about 20 min on 2 CPUs).

The runs use fixed seeds, so they are deterministic on one machine; the tolerances only absorb floating-point
differences between platforms and library versions.  Smooth quantities (losses, accuracies, exponents of regular
runs, correlations over many points) get a few units of their last printed digit; exponents of chaotic orbits,
where round-off is amplified until only the statistics survive, get about 10 %; discrete outcomes (orbit
classes, verdicts, grid points) must match exactly.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def grab(pattern: str, convert: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An extractor: the first capture group of ``pattern`` (multiline) in the output, converted."""

    def extract(text: str) -> Any:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise AssertionError(f"no line matches {pattern!r}")
        return convert(match.group(1))

    return extract


def chaotic_lrs_of(text: str) -> str:
    """06: the learning rates whose combined (0-1 test + surrogate) verdict is chaos, from the summary table."""
    rows = re.findall(r"^\s*(\d+\.\d)\s+-?[\d.]+\s+-?[\d.]+\s+-?[\d.]+\s+[\d.]+\s+\S+\s+->\s+(\S+)\s*$", text, re.M)
    assert rows, "06: no summary table rows"
    return " ".join(lr for lr, tested in rows if tested == "chaos")


def chaotic_lambda_range_of(text: str) -> tuple[float, float]:
    """06: (min, max) map exponent over the learning rates the combined test calls chaotic."""
    rows = re.findall(r"^\s*\d+\.\d\s+(-?[\d.]+)\s+-?[\d.]+\s+-?[\d.]+\s+[\d.]+\s+\S+\s+->\s+(\S+)\s*$", text, re.M)
    lambdas = [float(lam) for lam, tested in rows if tested == "chaos"]
    assert lambdas, "06: no learning rate tested chaotic"
    return min(lambdas), max(lambdas)


@dataclass(frozen=True)
class Finding:
    """One printed finding; ``quick`` / ``full`` is the expected value at that size (None: not checked there).

    An expected value is ``(value, tolerance)`` for a number, ``("<", bound)`` for an upper bound, or anything
    else (a string, an exact number) for equality.  ``readme`` is the text the README quotes for it.
    """

    label: str
    extract: Callable[[str], Any]
    quick: Any = None
    full: Any = None
    readme: str | None = None


def _check(finding: Finding, value: Any, expected: Any) -> str | None:
    if isinstance(expected, tuple) and expected[0] == "<":
        ok, want = value < expected[1], f"< {expected[1]}"
    elif isinstance(expected, tuple):
        ok, want = abs(value - expected[0]) <= expected[1], f"{expected[0]} ± {expected[1]}"
    else:
        ok, want = value == expected, repr(expected)
    return None if ok else f"{finding.label}: printed {value!r}, expected {want}"


FINDINGS: dict[str, list[Finding]] = {
    "01_training_as_a_dynamical_system": [
        Finding("orbit classes over the sweep", grab(r"^classes over the sweep: (\{.*\})$", str),
                quick="{'chaotic': 2, 'fixed_point': 3}",
                full="{'chaotic': 14, 'fixed_point': 24, 'periodic': 1, 'quasi_periodic': 3}"),
        Finding("first lr with a chaotic orbit", grab(r"^first lr with a chaotic orbit: ([\d.]+);"),
                quick=20.0, full=14.7),
        Finding("first lr with a positive early exponent",
                grab(r"^first lr with a positive early exponent \(> 0\.01\): ([\d.]+)"), quick=0.3,
                full=3.85),
        # largest tail exponent of a chaotic orbit (per step): ~10 %
        Finding("largest chaotic tail exponent", grab(r"^chaotic tails: exponent [\d.]+ \.\. ([\d.]+) per step"),
                quick=(0.211, 0.02), full=(0.418, 0.04)),
        Finding("diverged runs", grab(r"^diverged runs: (\d+)", int), quick=0, full=0),
    ],
    "02_leveraging_chaos": [
        # the edge is interpolated where lambda crosses 0.01 between grid points; the fastest lr is a grid point
        Finding("tanh edge of chaos (lr)", grab(r"^edge of chaos: lr = ([\d.]+)"), quick=(1.070, 0.01),
                full=(1.189, 0.01)),
        Finding("fastest lr / edge lr (tanh)", grab(r"^fastest lr / edge lr = ([\d.]+)"), quick=(2.34, 0.02),
                full=(1.68, 0.02), readme="fastest / edge = 1.68"),
        Finding("relu edge of chaos (lr)", grab(r"^relu: edge lr = ([\d.]+)"), quick=(0.541, 0.01),
                full=(1.022, 0.01)),
        # at reduced size no relu learning rate reaches 90 %, so the ratio is only defined at full size
        Finding("relu fastest / edge", grab(r"ratio fastest/edge = (\S+)$"), full=(0.49, 0.01),
                readme="(ratio 0.49)"),
        Finding("tangent = twin (max relative difference, %)",
                grab(r"^tangent vs twin \(whole run\):\s+median relative difference [\d.]+%, max ([\d.]+)%"),
                quick=(0.0, 0.05), full=(0.0, 0.05)),
        Finding("estimates agree in sign", grab(r"^sign agreement of all estimates: (\w+)", str), quick="True",
                full="True"),
    ],
    "03_ftle_clv_predict_loss": [
        Finding("exact tangent: max |J v - (v - lr H v)|", grab(r"^max \|J v - \(v - lr H v\)\| = (\S+)$"),
                quick=("<", 1e-12), full=("<", 1e-12)),
        Finding("largest exponent at init, ln|1 - lr h|", grab(r"ln\|1 - lr h\| = ([+-][\d.]+) per step"),
                quick=(0.0942, 0.0002), full=(0.0942, 0.0002)),
        # Spearman rho over 12 (quick) / 60 (full) initialisations: 2 units of the 2nd decimal
        Finding("Spearman rho(ftle_max, final loss)", grab(r"^ftle_max\s+(-?[\d.]+)\s"), quick=(0.818, 0.02),
                full=(-0.267, 0.02), readme="ρ = −0.27"),
        Finding("R2 of the early-loss baseline", grab(r"^early loss\s+(-?[\d.]+)\s"), quick=(-1.070, 0.05),
                full=(-0.159, 0.005)),
        Finding("R2 of the FTLE predictor (below the baseline)", grab(r"^FTLE\s+(-?[\d.]+)\s"),
                quick=(-6.869, 0.3), full=(-0.176, 0.005)),
    ],
    "04_lyapunov_design_choices": [
        Finding("rho(exponent, final loss) at lr 8, all runs", grab(r"^rho\(exp, loss\) all runs\s+\S+\s+(\S+)"),
                quick=(0.47, 0.02), full=(0.40, 0.02), readme="ρ = 0.40 at lr 8"),
        Finding("relu lr 8: percentile picked by the smallest early exponent",
                grab(r"^smallest early exponent\s+(\S+)"), quick=(3.0, 1.0), full=(18.0, 1.0),
                readme="18th percentile"),
        Finding("relu lr 8: percentile picked by the smallest early loss", grab(r"^smallest early loss\s+(\S+)"),
                quick=(0.0, 1.0), full=(11.1, 1.0), readme="(11th)"),
    ],
    "05_any_optimizer_offline": [
        Finding("SGD: twin = tangent (relative difference)",
                grab(r"^SGD \+ momentum\s+twin .*relative difference (\S+)\)"), quick=("<", 1e-6),
                full=("<", 4.5e-7), readme="twin = tangent to 4e-7"),
        Finding("Adam: twin = tangent (relative difference)", grab(r"^Adam\s+twin .*relative difference (\S+)\)"),
                quick=("<", 1e-6), full=("<", 4.5e-7)),
        Finding("Rosenstein: netdyn - nolds.lyap_r (fit over all k)",
                grab(r"^fit over all k:.*difference (\S+)$"), quick=0.0, full=0.0),
        Finding("orbital class of the reference run", grab(r"^orbital_stability: (\w+ period \d+)", str),
                quick="periodic period 2", full="periodic period 2"),
        Finding("DET of the loss", grab(r"^ds\.netdyn\.rqa\(\): DET ([\d.]+)"), quick=(0.850, 0.005),
                full=(0.888, 0.005)),
        Finding("twin exponent, first 600 steps", grab(r"^twin exponent, first 600 steps: \+([\d.]+)"),
                quick=(0.5211, 0.05), full=(0.5211, 0.05)),
    ],
    "06_is_it_chaos": [
        Finding("logistic r=4 verdict", grab(r"^logistic r=4 \(chaos\).*-> (.*)$", str), quick="chaotic",
                full="chaotic"),
        Finding("logistic r=3.83 verdict", grab(r"^logistic r=3\.83 \(period 3\).*-> (.*)$", str), quick="regular",
                full="regular"),
        Finding("AR(1) verdict", grab(r"^AR\(1\), phi=0\.8 \(noise\).*-> (.*)$", str),
                quick="irregular, not distinguishable from linear noise",
                full="irregular, not distinguishable from linear noise"),
        Finding("learning rates the combined test calls chaotic", chaotic_lrs_of, quick="20.0",
                full="14.0 20.0 26.0 32.0", readme="lr 14–32"),
        # map exponents (per step) of chaotic orbits: ~10 %
        Finding("smallest map exponent the combined test calls chaotic",
                lambda text: chaotic_lambda_range_of(text)[0], quick=(0.182, 0.02), full=(0.083, 0.008),
                readme="0.08–0.45 per step"),
        Finding("largest map exponent the combined test calls chaotic",
                lambda text: chaotic_lambda_range_of(text)[1], quick=(0.182, 0.02), full=(0.453, 0.045)),
    ],
    "07_schedules_and_adaptive_edge_of_stability": [
        Finding("cosine schedule: exponent in the first window (warm-up)",
                grab(r"^cosine schedule:.*\n\s+steps\s+0-\s*\d+: lr \S+\s+lambda \+([\d.]+)"),
                quick=(0.0414, 0.004), full=(0.0209, 0.002), readme="+0.021 ± 0.006 per step"),
        Finding("preconditioned sharpness / (38/lr) at its closest to the edge",
                grab(r"^closest to the edge: window \d+ \(ratio ([\d.]+)\)"), quick=(0.133, 0.005),
                full=(0.152, 0.005)),
        Finding("final test accuracy", grab(r"^final test accuracy ([\d.]+)"), quick=(0.951, 0.01),
                full=(0.969, 0.01)),
    ],
}


def check_findings(stem: str, text: str, size: str) -> list[str]:
    problems = []
    for finding in FINDINGS[stem]:
        expected = getattr(finding, size)
        if expected is None:
            continue
        try:
            value = finding.extract(text)
        except AssertionError as error:
            problems.append(f"{finding.label}: {error}")
            continue
        problem = _check(finding, value, expected)
        if problem:
            problems.append(problem)
    return problems


def _run(script: Path, tmp_path: Path, quick: bool, timeout: int) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    if quick:
        env["NETDYN_TUTORIAL_QUICK"] = "1"
    else:
        env.pop("NETDYN_TUTORIAL_QUICK", None)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def _notebook_stdout(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join("".join(out["text"]) for cell in cells for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream" and out.get("name") == "stdout")


def test_there_are_tutorials():
    assert TUTORIALS, "no tutorials found"
    assert set(FINDINGS) == {s.stem for s in TUTORIALS}, "every tutorial has its findings listed here"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_quick(script, tmp_path):
    problems = check_findings(script.stem, _run(script, tmp_path, quick=True, timeout=600), "quick")
    assert not problems, f"{script.name} (quick) no longer prints its findings:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_full_size_reproduces_the_readme(script, tmp_path):
    # a full-size run writes its figures beside the script: run a copy, so tutorials/figures/ stays as committed
    (tmp_path / "tutorials" / "figures").mkdir(parents=True)
    (tmp_path / "data").symlink_to(ROOT / "data")  # the saved reference trajectory (05, 06)
    copy = tmp_path / "tutorials" / script.name
    copy.write_text(script.read_text())
    problems = check_findings(script.stem, _run(copy, tmp_path, quick=False, timeout=3600), "full")
    assert not problems, f"{script.name} (full size) no longer prints its findings:\n" + "\n".join(problems)


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_executed_notebook_backs_the_readme(script):
    """The committed notebook's output holds the full-size findings, and the README quotes them."""
    notebook = script.with_suffix(".ipynb")
    assert notebook.exists(), f"{notebook.name} missing: run `jupytext --to ipynb --execute {script.name}`"
    text = notebook.read_text()
    assert '"image/png"' in text, f"{notebook.name} holds no figure: execute it before committing"
    problems = check_findings(script.stem, _notebook_stdout(notebook), "full")
    readme = (ROOT / "README.md").read_text()
    problems += [f"README no longer quotes {f.readme!r} ({f.label})" for f in FINDINGS[script.stem]
                 if f.readme and f.readme not in readme]
    assert not problems, f"{notebook.name} vs README:\n" + "\n".join(problems)
