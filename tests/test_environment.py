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
