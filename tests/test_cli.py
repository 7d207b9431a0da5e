"""End to end through the command line: train -> info -> analyze -> orbit on real files."""
import json

import pytest

from netdyn.cli import main
from netdyn.storage import open_trajectory


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "run.nc"
    code = main(["train", "--task", "iris", "--hidden", "5", "--lr", "0.5", "--steps", "400",
                 "--eval-every", "20", "-o", str(path)])
    assert code == 0
    return path


def test_train_writes_a_complete_trajectory(trained):
    with open_trajectory(trained) as ds:
        assert ds.sizes["step"] == 400 and int(ds.attrs["complete"]) == 1
        assert ds.attrs["optimizer"] == "sgd" and float(ds.attrs["lr"]) == 0.5
        assert ds.test_accuracy.notnull().sum() == 20  # steps 0, 20, ..., 380
        assert float(ds.loss[-1]) < float(ds.loss[0])


def test_info_prints_summary_as_json(trained, capsys):
    assert main(["info", str(trained), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 400 and summary["complete"] is True and summary["diverged"] is False


def test_analyze_and_orbit_run_on_the_file(trained, tmp_path, capsys):
    assert main(["analyze", str(trained), "-o", str(tmp_path / "a"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "orbital stability:" in out and "Rosenstein" in out
    assert (tmp_path / "a" / "analysis.nc").exists() and (tmp_path / "a" / "distances.nc").exists()
    assert main(["orbit", str(trained), "-o", str(tmp_path / "o")]) == 0


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.nc")]) == 2
    assert "no such file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not a netcdf file at all")
    assert main(["analyze", str(garbage)]) == 2
    assert "not a readable netCDF file" in capsys.readouterr().err
