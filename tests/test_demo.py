"""``netdyn demo --quick`` end to end: a real (tiny) sweep on the digits MLP."""
from __future__ import annotations

import argparse

import xarray as xr

from netdyn.commands import demo


class TestDemo:
    def test_quick_demo_writes_result_figure_and_findings(self, tmp_path, capsys):
        parser = argparse.ArgumentParser()
        demo.register(parser.add_subparsers())
        args = parser.parse_args(["demo", "--quick", "--workers", "2", "--no-progress", "-o", str(tmp_path)])
        assert args.threshold == 0.01  # the demo's edge is the orbital classifier's chaos threshold
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert "edge of chaos (lambda_max crosses 0.01)" in out and "fastest training: " in out
        # 40 steps reach no lr's 90 % target: said in words, not as "lr = nan"
        findings = [line for line in out.splitlines() if line.startswith("[tanh, sgd]")]
        assert len(findings) == 2 and not any("nan" in line for line in findings)
        with xr.open_dataset(tmp_path / "result.nc") as ds:
            assert dict(ds.sizes) == {"lr": 2, "seed": 1, "activation": 1, "optimizer": 1, "step": 40}
            assert (ds["status"] != "error").all() and ds.attrs["backend"] == "LocalCluster(2)"
            # small lr learns stably, large lr is chaotic: the two ends of the demo's picture
            lam = ds["lyapunov"].squeeze()
            assert float(lam.sel(lr=0.5)) < 0.01 < float(lam.sel(lr=8.0))
        assert (tmp_path / "sweep.png").stat().st_size > 10_000
