"""End to end through the command line: train -> info -> analyze -> orbit on real files."""
import json

import pytest

import xarray as xr

from netdyn.cli import main
from netdyn.orbits.stability import LABELS, OrbitalStability
from netdyn.io.storage import open_trajectory


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


def test_analyze_orbital_stability_and_distances_run_on_the_file(trained, tmp_path, capsys):
    assert main(["analyze", str(trained), "-o", str(tmp_path / "a"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "orbital stability:" in out and "Rosenstein" in out
    assert (tmp_path / "a" / "analysis.nc").exists() and (tmp_path / "a" / "distances.nc").exists()
    assert main(["orbital-stability", str(trained), "-o", str(tmp_path / "o")]) == 0
    with xr.open_dataset(tmp_path / "o" / f"{trained.stem}_orbital_stability.nc") as saved:
        assert OrbitalStability.from_dataset(saved.load()).label in LABELS
    assert main(["distances", str(trained), "-o", str(tmp_path / "d"), "--no-kendall"]) == 0


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.nc")]) == 2
    assert "no such file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"not a netcdf file at all")
    assert main(["analyze", str(garbage)]) == 2
    assert "not a readable netCDF file" in capsys.readouterr().err


def test_lyapunov_of_a_file_restarts_from_its_full_state_at_t0(tmp_path, capsys):
    """Issue 11: a continued Adam run must be measured from the file's initial_state (parameters AND
    Adam's moment buffers) at its t0, not from the first recorded row with zeroed buffers at t = 0."""
    import torch
    import xarray as xr

    from netdyn.lyapunov.maximal import max_lyapunov
    from netdyn.maps.problems import make_task, map_from_attrs, training_map
    from netdyn.orbits.trajectory import run

    tmap = training_map(make_task("iris", hidden=(5,)), lr=0.05, optimizer="adam")
    first = run(tmap, None, 200)
    run(tmap, first.final_state.values, 30, t0=int(first.final_step), path=tmp_path / "cont.nc").close()
    assert main(["lyapunov", str(tmp_path / "cont.nc"), "--steps", "100", "--plot", "", "-o", str(tmp_path / "l")]) == 0
    assert "from t0=200" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "l" / "lyapunov.nc") as saved:
        cli = float(saved["lyapunov"])
    with open_trajectory(tmp_path / "cont.nc") as ds:
        rebuilt = map_from_attrs(ds.attrs)
        x0 = torch.as_tensor(ds["initial_state"].values)
        row0 = torch.as_tensor(ds["state"].isel(step=0).values)
        t0 = int(ds.attrs["t0"])
    api = float(max_lyapunov(rebuilt, x0, 100, t0=t0)["lyapunov"])
    assert cli == pytest.approx(api, rel=1e-10, abs=1e-12)  # the same computation, so equal to rounding
    # the old start (first row, zero buffers, t = 0) measures something else: +0.033 against -0.0025 here
    old = float(max_lyapunov(rebuilt, torch.cat((row0, row0.new_zeros(rebuilt.dim - rebuilt.param_dim))), 100)["lyapunov"])
    assert abs(old - cli) > 0.01


def test_train_with_a_schedule_records_it_and_the_file_rebuilds_it(tmp_path, capsys):
    from netdyn.maps.problems import map_from_attrs

    path = tmp_path / "s.nc"
    argv = ["train", "--task", "iris", "--optimizer", "adam", "--lr", "0.01", "--schedule", "cosine", "--warmup", "10",
            "--steps", "40", "--eval-every", "10", "-o", str(path)]
    assert main(argv) == 0
    assert "training sound (did not diverge)" in capsys.readouterr().out
    with open_trajectory(path) as ds:
        attrs = dict(ds.attrs)
    assert attrs["schedule"] == "linear_warmup_cosine" and attrs["schedule_total"] == 40
    rebuilt = map_from_attrs(attrs)
    # linear warm-up from peak / warmup over 10 steps, cosine to 0 at step 40 (lr is the peak)
    assert rebuilt.lr_at(10) == pytest.approx(0.01) and rebuilt.lr_at(0) == pytest.approx(0.001)
    assert rebuilt.lr_at(25) == pytest.approx(0.005, rel=1e-9)


def test_bad_schedule_options_are_one_line(capsys):
    assert main(["train", "--schedule", "cosine", "--schedule-options", "[1, 2]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a JSON object" in err[0]


def test_command_names_say_what_they_compute():
    """Each command is named after the function it runs; the old 'orbit' (class + distances) is split in two."""
    from netdyn.cli import COMMANDS, build_parser

    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert names == set(COMMANDS)
    assert {"orbital-stability", "distances", "demo", "train", "analyze", "lyapunov", "sweep", "info"} == names
    assert "orbit" not in names


def test_every_option_says_what_it_does():
    """`netdyn COMMAND --help` documents every option (several had a bare name and no default)."""
    import argparse

    from netdyn.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    silent = {name: [a.dest for a in sub._actions if not a.help and not isinstance(a, argparse._HelpAction)]
              for name, sub in commands.items()}
    assert all(not options for options in silent.values()), silent


def test_float32_twin_works_with_the_default_d0(tmp_path, capsys):
    """The CLI used a fixed d0 = 1e-9, below float32's resolution: `--dtype float32 --method twin`
    failed with its own defaults.  The default is now the library's, sqrt(eps) |theta_0| for the dtype."""
    from netdyn.cli import main

    status = main(["lyapunov", "--task", "iris", "--hidden", "4", "--dtype", "float32", "--method", "twin",
                   "--steps", "20", "--plot", "", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert status == 0 and "lambda_max = " in out
    import xarray as xr

    with xr.open_dataset(tmp_path / "out" / "lyapunov.nc") as ds:
        assert 1e-6 < float(ds.attrs["d0"]) < 1e-1  # 3.5e-4 |theta_0| in float32
