"""Collection rules for the whole suite: ``python -m pytest`` runs tests/ and the doctests in netdyn/.

setup.cfg's ``[tool:pytest]`` adds ``--doctest-modules`` over ``testpaths = tests netdyn``; this file keeps that
collection from running what must not run on import.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

# netdyn/__main__.py calls the CLI (and sys.exit) when imported: never collect it.
collect_ignore = ["netdyn/__main__.py"]

# integrations import an optional dependency at module level; without it their doctests are skipped, said in
# the report header (the test extra installs both, so CI collects them)
OPTIONAL = {"netdyn/integrations/lightning.py": "lightning", "netdyn/integrations/huggingface.py": "transformers"}
MISSING = {path: package for path, package in OPTIONAL.items() if importlib.util.find_spec(package) is None}
collect_ignore += list(MISSING)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"doctests not collected: {path} ({package} is not installed; pip install -e '.[test]')"
            for path, package in MISSING.items()]


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """2 shared CPUs: torch's intra-op threads only add contention for the tests' (and doctests') small ops."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
