"""The installed environment: nolds must import (see setup.cfg's environment markers)."""
import sys

import pytest


def test_nolds_imports_and_has_estimators():
    import nolds

    assert callable(nolds.lyap_r) and callable(nolds.lyap_e)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the pkg_resources pin only matters below Python 3.12")
def test_setuptools_still_ships_pkg_resources_for_nolds_062():
    import importlib.metadata

    major = int(importlib.metadata.version("setuptools").split(".")[0])
    assert major < 81, "nolds 0.6.2 imports pkg_resources, removed in setuptools 81"


def test_console_script_entry_point_is_declared():
    import importlib.metadata

    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("netdyn") == "netdyn.cli:main"


def _extras() -> dict[str, list[str]]:
    import configparser
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / "setup.cfg")
    return {name: [line.strip() for line in value.splitlines() if line.strip()]
            for name, value in config["options.extras_require"].items()}


def test_test_extra_composes_the_other_extras_instead_of_relisting_them():
    import re

    extras = _extras()
    composed = [r for r in extras["test"] if r.startswith("netdyn[")]
    assert composed, "the test extra should pull the others in as netdyn[...]"
    included = set(re.match(r"netdyn\[(.*)\]", composed[0]).group(1).split(","))
    assert included == set(extras) - {"test"}, f"test extra composes {included}, extras are {set(extras)}"

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()

    own = {name(r) for r in extras["test"] if not r.startswith("netdyn[")}
    for extra in included:
        relisted = own & {name(r) for r in extras[extra]}
        assert not relisted, f"test extra re-lists {relisted} from [{extra}]"


def test_no_dead_extras_and_torch_pinned_only_in_ci():
    from pathlib import Path

    extras = _extras()
    assert "dask" not in extras, "dask[distributed] is a core dependency (sweeps import distributed)"
    assert not any("bokeh" in r for reqs in extras.values() for r in reqs)
    setup_cfg = (Path(__file__).parents[1] / "setup.cfg").read_text()
    assert "torch==" not in setup_cfg, "pin torch in the CI command (README), not in the package metadata"
