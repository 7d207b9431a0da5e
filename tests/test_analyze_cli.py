import argparse
import math

import numpy as np
from _series import logistic
import pytest
import xarray as xr

from netdyn.commands import analyze
from netdyn.series.datadriven import analyze_dataset


def write_run(path, n: int = 1500, diverge_at: int | None = None) -> None:
    """A trajectory file of the netdyn schema: logistic orbit as the state, a noisy decaying loss."""
    x = logistic(n)
    state = np.stack([x, 1 - x], axis=1)
    loss = np.exp(-np.arange(n) / 300) + 0.01 * np.random.default_rng(0).standard_normal(n)
    if diverge_at is not None:
        state[diverge_at:] = np.nan
        loss[diverge_at:] = np.nan
    xr.Dataset(
        {
            "state": (("step", "param"), state),
            "loss": ("step", loss),
            "grad_norm": ("step", np.abs(loss)),
            "diverged": ((), int(diverge_at is not None)),
        },
        coords={
            "step": np.arange(n, dtype=np.int64),
            "param": np.arange(2),
            "param_name": ("param", ["x", "y"]),
            "layer": ("param", ["map", "map"]),
        },
        attrs={"map": "LogisticMap", "seed": 0, "record": "all", "record_every": 1, "complete": 1},
    ).to_netcdf(path)


def parse(argv):
    parser = argparse.ArgumentParser()
    analyze.register(parser.add_subparsers())
    return parser.parse_args(argv)


class TestAnalyzeDataset:
    def test_logistic_state_parameter(self, tmp_path):
        write_run(tmp_path / "run.nc")
        res = analyze_dataset(xr.open_dataset(tmp_path / "run.nc"), observable="param:0")
        # same tolerance argument as tests/test_datadriven.py (Rosenstein bias < 3 % here)
        assert abs(float(res["lyap_rosenstein"]) - math.log(2)) < 0.05 * math.log(2)
        assert float(res["rqa_RR"]) == pytest.approx(0.05, abs=2e-3)
        assert res["eckmann_exponents"].size == 4


class TestAnalyzeCLI:
    def test_report_figures_and_netcdf(self, tmp_path, capsys):
        write_run(tmp_path / "run.nc")
        out = tmp_path / "out"
        args = parse(["analyze", str(tmp_path / "run.nc"), "--observable", "param:0", "-o", str(out)])
        assert args.func(args) == 0
        report = capsys.readouterr().out
        assert "lambda_1 = +0.6" in report and "fitted on k in [0," in report and "DET" in report
        assert {p.name for p in out.iterdir()} == {"analysis.nc", "divergence.png", "recurrence.png", "netdyn.json"}
        saved = xr.open_dataset(out / "analysis.nc")
        assert "rqa_LAM" in saved and "log_divergence" in saved

    def test_chaos_verdict_with_p_values(self, tmp_path, capsys):
        # the logistic map at r = 4 (param:0) is chaos: K ~ 1 and DET beats every IAAFT surrogate (p = 1/20)
        write_run(tmp_path / "run.nc", n=1000)
        out = tmp_path / "out"
        args = parse(["analyze", str(tmp_path / "run.nc"), "--observable", "param:0", "-o", str(out),
                      "--no-figures", "--surrogates", "19"])
        assert args.func(args) == 0
        report = capsys.readouterr().out
        assert "is it chaos? (0-1 test, then 19 IAAFT surrogates" in report
        assert "p = 0.050" in report and "verdict: chaotic" in report
        saved = xr.open_dataset(out / "analysis.nc")
        assert float(saved["chaos_test_K"]) > 0.9 and saved.attrs["chaos_test_verdict"] == "chaotic"

    def test_surrogates_0_skips_the_test(self, tmp_path, capsys):
        write_run(tmp_path / "run.nc", n=600)
        args = parse(["analyze", str(tmp_path / "run.nc"), "-o", str(tmp_path / "o"), "--no-figures",
                      "--surrogates", "0"])
        assert args.func(args) == 0
        assert "is it chaos?" not in capsys.readouterr().out

    def test_diverged_run_is_analysed_on_finite_part(self, tmp_path, capsys):
        write_run(tmp_path / "run.nc", diverge_at=1200)
        args = parse(["analyze", str(tmp_path / "run.nc"), "-o", str(tmp_path / "o"), "--no-figures"])
        with pytest.warns(RuntimeWarning, match="finite leading part of length 1200"):
            assert args.func(args) == 0
        assert "points: 1200" in capsys.readouterr().out

    def test_unknown_observable(self, tmp_path):
        write_run(tmp_path / "run.nc", n=300)
        args = parse(["analyze", str(tmp_path / "run.nc"), "--observable", "acc", "--no-figures"])
        with pytest.raises(ValueError, match="expected an observable in"):
            args.func(args)

    def test_missing_file(self, tmp_path):
        args = parse(["analyze", str(tmp_path / "nope.nc")])
        with pytest.raises(FileNotFoundError, match="no such file"):
            args.func(args)
