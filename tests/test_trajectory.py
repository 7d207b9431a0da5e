import argparse
import math

import numpy as np
import pytest
import torch
import xarray as xr

import netdyn.accessor  # noqa: F401  (registers ds.netdyn)
from netdyn.commands import info
from netdyn.maps.divergence import DivergenceRule
from netdyn.maps.classic import HenonMap, LogisticMap, PotentialGD, QuadraticGD
from netdyn.io.recording import SKETCH_CHUNK_ROWS, SketchProjection, resolve_record
from netdyn.orbits.trajectory import SUMMARY_FIELDS, run, state_matrix, summarize, summary_dict


class FakeNet:
    """A training-like map: 5 parameters in layers W1 (3) and b1 (2) plus 2 buffer
    entries; heavy-ball GD on f(theta) = sum(h_i theta_i^2) / 2 with h = 1..5,
    buffer = the last gradient of the first two coordinates."""

    dim, param_dim, dtype = 7, 5, torch.float64

    def __init__(self, lr: float = 0.1):
        self.lr = lr
        self.h = torch.arange(1.0, 6.0, dtype=torch.float64)

    def initial_state(self, seed=None):
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        return torch.cat([torch.randn(5, generator=g, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)])

    def step_with_metrics(self, x, t):
        theta = x[:5]
        g = self.h * theta
        nxt = torch.cat([theta - self.lr * g, g[:2]])
        return nxt, {"loss": float(0.5 * (self.h * theta**2).sum()), "grad_norm": float(g.norm())}

    def step(self, x, t):
        return self.step_with_metrics(x, t)[0]

    def evaluate(self, x):
        loss = float(0.5 * (self.h * x[:5] ** 2).sum())
        return {"test_loss": 2 * loss, "test_accuracy": 1.0 / (1.0 + loss)}

    def param_labels(self):
        return ["W1[0]", "W1[1]", "W1[2]", "b1[0]", "b1[1]"], ["W1", "W1", "W1", "b1", "b1"]

    def describe(self):
        return {"map": "FakeNet", "lr": self.lr, "optimizer": "heavyball", "layer_sizes": [3, 2],
                "nesterov": False, "scheduler": None, "extra": {"a": 1}}


def _quad():
    return QuadraticGD([0.5, 1.0, 2.0], lr=0.3)


class TestRun:
    @pytest.mark.parametrize("map_", [_quad(), LogisticMap(3.9), HenonMap(), FakeNet()], ids=lambda m: type(m).__name__)
    def test_same_seed_is_bit_identical(self, map_):
        a, b = run(map_, map_.initial_state(4), 50), run(map_, map_.initial_state(4), 50)
        assert a["state"].values.tobytes() == b["state"].values.tobytes()
        assert a["loss"].values.tobytes() == b["loss"].values.tobytes()
        assert not np.array_equal(a["state"].values, run(map_, map_.initial_state(5), 50)["state"].values)

    def test_quadratic_orbit_and_metrics_match_closed_form(self):
        # x_t = (1 - lr h)^t x_0 exactly in exact arithmetic; 40 float64 products
        # accumulate < 1e-13 relative error.
        m = _quad()
        ds = run(m, m.initial_state(1), 40)
        x0 = m.initial_state(1).numpy()
        t = np.arange(40)[:, None]
        h = np.array([0.5, 1.0, 2.0])
        expected = (1 - 0.3 * h) ** t * x0
        np.testing.assert_allclose(ds["state"].values, expected, rtol=1e-13)
        np.testing.assert_allclose(ds["loss"].values, 0.5 * (h * expected**2).sum(1), rtol=1e-12)
        np.testing.assert_allclose(ds["grad_norm"].values, np.linalg.norm(h * expected, axis=1), rtol=1e-12)
        np.testing.assert_allclose(ds["final_state"].values, (1 - 0.3 * h) ** 40 * x0, rtol=1e-13)
        assert int(ds["final_step"]) == 40 and ds["step"].values.tolist() == list(range(40))

    def test_map_without_metrics_records_nan_loss(self):
        ds = run(HenonMap(), HenonMap().initial_state(0), 20)
        assert np.isnan(ds["loss"]).all() and np.isnan(ds["grad_norm"]).all()
        x = HenonMap().initial_state(0)
        for t in range(20):
            np.testing.assert_array_equal(ds["state"].values[t], x.numpy())
            x = HenonMap().step(x, t)

    def test_record_every_subsamples_the_same_orbit(self):
        full, sub = run(FakeNet(), FakeNet().initial_state(2), 30), run(FakeNet(), FakeNet().initial_state(2), 30, record_every=4)
        assert sub["step"].values.tolist() == list(range(0, 30, 4))
        xr.testing.assert_identical(sub["state"], full["state"].sel(step=sub["step"]))
        assert np.array_equal(sub["final_state"], full["final_state"])

    def test_eval_every_fills_test_metrics_on_its_grid(self):
        ds = run(FakeNet(), FakeNet().initial_state(0), 12, record_every=2, eval_every=4)
        evaluated = ~np.isnan(ds["test_accuracy"].values)
        assert ds["step"].values[evaluated].tolist() == [0, 4, 8]
        np.testing.assert_allclose(ds["test_loss"].values[evaluated], 2 * ds["loss"].values[evaluated], rtol=1e-15)
        assert "test_loss" not in run(FakeNet(), None, 3).variables

    def test_continuation_from_final_state_reproduces_one_long_run(self):
        whole = run(FakeNet(), FakeNet().initial_state(3), 20)
        first = run(FakeNet(), FakeNet().initial_state(3), 12)
        second = run(FakeNet(), first["final_state"].values, 8, t0=int(first["final_step"]))
        joined = xr.concat([first["state"], second["state"]], dim="step")
        assert joined.values.tobytes() == whole["state"].values.tobytes()
        assert second["step"].values.tolist() == list(range(12, 20))

    def test_attrs_are_netcdf_safe_and_complete(self):
        ds = run(FakeNet(), FakeNet().initial_state(7), 3)
        a = ds.attrs
        assert a["map"] == "FakeNet" and "seed" not in a and a["record"] == "all" and a["complete"] == 1
        assert a["nesterov"] == 0 and a["scheduler"] == "None" and a["extra"] == '{"a": 1}'
        np.testing.assert_array_equal(a["layer_sizes"], [3, 2])
        assert {"netdyn_version", "created", "record_every"} <= set(a)

    def test_non_finite_divergence_stops_cleanly_at_the_last_sound_step(self):
        # the rule off (divergence=None): lr * h = 1000, |x| grows x999 per step and
        # 0.5 x^2 overflows to inf before x does; the first bad state is the first
        # with a non-finite loss (b = t) or a non-finite value (b = t + 1)
        m = QuadraticGD([1.0], lr=1000.0)
        with pytest.warns(RuntimeWarning, match=r"diverged at step (\d+) \(non-finite"):
            ds = run(m, m.initial_state(0), 500, divergence=None)
        x, bad = m.initial_state(0), None
        for t in range(500):
            x_next, metrics = m.step_with_metrics(x, t)
            if not math.isfinite(metrics["loss"]) or not torch.isfinite(x_next).all():
                bad = t if not math.isfinite(metrics["loss"]) else t + 1
                break
            x = x_next
        assert bool(ds["diverged"]) and bad is not None and 0 < bad < 500
        assert int(ds["diverged_step"]) == bad and str(ds["divergence_reason"].values).startswith("non-finite")
        assert ds.sizes["step"] == bad and int(ds["step"][-1]) == bad - 1
        assert np.isfinite(ds["state"]).all() and np.isfinite(ds["loss"]).all()
        # final_state is the last sound state x_{b-1}, so a continuation reproduces the divergence
        assert int(ds["final_step"]) == bad - 1
        np.testing.assert_array_equal(ds["final_state"].values, ds["state"].values[-1])

    def test_divergence_of_a_map_without_metrics(self):
        # Henon from (10, 10) escapes to infinity doubly exponentially: the norm rule
        # (1e3 x ||x0||) fires long before the overflow
        with pytest.warns(RuntimeWarning, match=r"diverged at step \d+ \(unbounded growth"):
            ds = run(HenonMap(), torch.tensor([10.0, 10.0], dtype=torch.float64), 100)
        assert bool(ds["diverged"]) and 0 < ds.sizes["step"] < 100 and np.isfinite(ds["state"]).all()
        norms = np.linalg.norm(ds["state"].values, axis=1)
        assert norms.max() <= 1e3 * norms[0] and int(ds["diverged_step"]) == ds.sizes["step"]

    def test_the_last_state_is_checked_too(self):
        # stop exactly when Henon's escaping orbit first breaks the norm rule: x_steps (no loss,
        # no further step) is judged by its norm, every row is kept, final_state is x_{steps-1}
        x0 = torch.tensor([10.0, 10.0], dtype=torch.float64)
        with pytest.warns(RuntimeWarning, match="unbounded growth"):
            b = int(run(HenonMap(), x0, 100)["diverged_step"])
        with pytest.warns(RuntimeWarning, match=f"diverged at step {b} \\(unbounded growth"):
            ds = run(HenonMap(), x0, b)
        assert bool(ds["diverged"]) and ds.sizes["step"] == b and int(ds["final_step"]) == b - 1
        np.testing.assert_array_equal(ds["final_state"].values, ds["state"].values[-1])

    def test_gd_above_two_over_h_is_a_loss_blow_up_at_the_predicted_step(self):
        # x_t,i = (1 - lr h_i)^t x_0,i, |1 - lr h_max| = 2: L_t = sum_i h_i (1 - lr h_i)^(2t) x_0,i^2 / 2
        # grows like 4^t; the rule fires at the first t with L_t > 1e3 max(L_0, 1) -- long before any inf.
        h = np.array([0.5, 1.0, 3.0])
        m = QuadraticGD(h.tolist(), lr=1.0)
        x0 = m.initial_state(0)
        ds = run(m, x0, 400)
        closed = lambda t: 0.5 * float((h * (1 - h) ** (2 * t) * x0.numpy() ** 2).sum())  # noqa: E731
        expected = next(t for t in range(400) if closed(t) > 1e3 * max(closed(0), 1.0))
        assert bool(ds["diverged"]) and int(ds["diverged_step"]) == expected
        assert str(ds["divergence_reason"].values).startswith("loss blow-up")
        assert np.isfinite(ds["state"]).all() and abs(ds["state"]).max() < 1e3

    def test_logistic_map_from_a_tiny_start_is_sound(self):
        # x0 = 1e-4 grows ~4^t to O(1): a growth of 1e4 x ||x0||, below the floor-based
        # reference 1e3 x max(||x0||, 1)
        ds = run(LogisticMap(4.0), torch.tensor([1e-4], dtype=torch.float64), 300)
        assert not bool(ds["diverged"]) and int(ds["diverged_step"]) == -1
        assert str(ds["divergence_reason"].values) == "" and ds.sizes["step"] == 300

    def test_divergence_rule_is_configurable(self):
        m = QuadraticGD([0.5, 1.0, 3.0], lr=1.0)
        strict = run(m, m.initial_state(0), 50, divergence=DivergenceRule(loss_factor=2.0))
        default = run(m, m.initial_state(0), 50)
        assert 0 < int(strict["diverged_step"]) < int(default["diverged_step"])

    @pytest.mark.parametrize(
        "kwargs",
        [dict(steps=-1), dict(record_every=0), dict(flush_every=0), dict(x0=torch.zeros(2)),
         dict(x0=torch.full((3,), float("nan"))), dict(eval_every=3), dict(record=True)],
    )
    def test_bad_input_raises_value_error(self, kwargs):
        args = dict(x0=None, steps=5) | kwargs
        with pytest.raises(ValueError, match="^run: "):
            run(_quad(), **args)

    def test_the_start_and_length_come_first_and_the_rest_is_keyword_only(self):
        with pytest.raises(TypeError):
            run(_quad(), None, 5, 1)  # record_every is keyword-only
        m = _quad()
        xr.testing.assert_identical(run(m, None, 5)["state"], run(m, m.initial_state(), 5)["state"])

    def test_progress_bar_counts_steps(self, capsys):
        run(_quad(), None, 7, progress=True)
        assert "7/7" in capsys.readouterr().err

    def test_eval_every_must_be_a_multiple_of_record_every(self):
        with pytest.raises(ValueError, match="multiple of record_every"):
            run(FakeNet(), None, 5, record_every=2, eval_every=3)


class TestResolveRecord:
    def test_layer_selection_keeps_the_named_columns(self):
        full = run(FakeNet(), FakeNet().initial_state(1), 10)
        ds = run(FakeNet(), FakeNet().initial_state(1), 10, record=["b1"])
        assert ds["param_name"].values.tolist() == ["b1[0]", "b1[1]"] and ds.attrs["record"] == "layers:b1"
        np.testing.assert_array_equal(ds["state"].values, full["state"].values[:, 3:])
        again = run(FakeNet(), FakeNet().initial_state(1), 10, record=ds.attrs["record"])
        xr.testing.assert_identical(again["state"], ds["state"])

    def test_unknown_layer_lists_the_known_ones(self):
        with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['W9'\]; known layers: \['W1', 'b1'\]"):
            resolve_record(FakeNet(), record=["W1", "W9"])

    def test_layers_need_param_labels(self):
        with pytest.raises(ValueError, match="param_labels"):
            resolve_record(_quad(), record=["W1"])

    def test_all_labels_default_for_unlabelled_maps(self):
        sel = resolve_record(_quad(), record="all")
        assert sel.names == ["x0", "x1", "x2"] and sel.layers == ["x"] * 3


class TestSketchProjection:
    def test_johnson_lindenstrauss_pairwise_distances(self):
        # 20 points in R^3000, k = 200.  JL: P(|ratio^2 - 1| > 0.6) <= 2 exp(-k(0.18 - 0.072)/2)
        # = 4e-5 per pair, < 1% for all 190 pairs; the mean ratio^2 has spread ~sqrt(2/k)/sqrt(#indep.)
        rng = np.random.default_rng(0)
        pts = torch.from_numpy(rng.standard_normal((20, 3000)))
        proj = SketchProjection(3000, 200, seed=0)
        sk = torch.stack([proj(p) for p in pts])
        i, j = np.triu_indices(20, 1)
        ratio = (torch.cdist(sk, sk) ** 2 / torch.cdist(pts, pts) ** 2).numpy()[i, j]
        assert ratio.min() > 0.4 and ratio.max() < 1.6
        # measured mean 0.989 (per-pair std 0.096 = sqrt(2/k)); the mean's standard error lies between
        # 0.096/sqrt(190) = 0.007 and 0.096/sqrt(20) = 0.021 (pairs share points): 0.05 is >= 2.3 of them
        assert abs(ratio.mean() - 1) < 0.05

    def test_deterministic_by_seed(self):
        theta = torch.linspace(-1, 1, 500, dtype=torch.float64)
        assert torch.equal(SketchProjection(500, 8, seed=3)(theta), SketchProjection(500, 8, seed=3)(theta))
        assert not torch.equal(SketchProjection(500, 8, seed=3)(theta), SketchProjection(500, 8, seed=4)(theta))

    def test_chunkwise_regeneration_equals_the_full_matrix(self):
        # param_dim spans 3 blocks; without cache every block is regenerated per call.
        n = 2 * SKETCH_CHUNK_ROWS + 17
        theta = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        cached, uncached = SketchProjection(n, 4, seed=1), SketchProjection(n, 4, seed=1, cache_bytes=0)
        full = torch.cat([cached.block(c) for c in range(3)])
        assert full.shape == (n, 4)
        torch.testing.assert_close(cached(theta), theta @ full, rtol=1e-12, atol=1e-12)
        assert torch.equal(uncached(theta), cached(theta))

    def test_sketched_run_is_the_projection_of_the_full_run(self):
        m = PotentialGD(lambda x: (x**2).sum() / 2 + (x**4).sum() / 8, dim=300, lr=0.1)
        full, sk = run(m, m.initial_state(0), 15), run(m, m.initial_state(0), 15, record=16)
        assert sk.attrs["record"] == "sketch:16:0" and sk.attrs["sketch_seed"] == 0 and sk.sizes["param"] == 16
        p = torch.cat([SketchProjection(300, 16, seed=0).block(0)]).numpy()
        np.testing.assert_allclose(sk["state"].values, full["state"].values @ p, rtol=1e-12, atol=1e-12)
        xr.testing.assert_identical(run(m, m.initial_state(0), 15, record="sketch:16:0")["state"], sk["state"])


class TestStateMatrixAndAccessor:
    def test_accessor_forwards(self):
        ds = run(FakeNet(), FakeNet().initial_state(0), 6)
        np.testing.assert_array_equal(ds.netdyn.state_matrix(), state_matrix(ds))
        assert state_matrix(ds).shape == (6, 5)
        xr.testing.assert_identical(ds.netdyn.summarize(), summarize(ds))

    def test_state_matrix_rejects_other_datasets(self):
        with pytest.raises(ValueError, match="^state_matrix: "):
            state_matrix(xr.Dataset({"x": ("t", [1.0])}))


class TestSummarize:
    def test_fields(self, tmp_path):
        ds = run(FakeNet(), FakeNet().initial_state(5), 9, eval_every=4, path=tmp_path / "r.nc")
        s = summary_dict(summarize(ds))
        assert s["steps"] == 9 and s["last_step"] == 8 and s["map"] == "FakeNet" and s["optimizer"] == "heavyball"
        assert s["lr"] == 0.1 and s["diverged"] is False and s["complete"] is True
        assert s["final_loss"] == float(ds["loss"][-1])
        assert s["final_test_accuracy"] == float(ds["test_accuracy"].sel(step=8))
        assert s["file_size_bytes"] == (tmp_path / "r.nc").stat().st_size

    def test_is_a_dataset_that_round_trips_through_netcdf(self, tmp_path):
        ds = run(FakeNet(), FakeNet().initial_state(5), 9, eval_every=4, path=tmp_path / "r.nc")
        summary = summarize(ds)
        assert set(summary.data_vars) | set(summary.attrs) <= set(SUMMARY_FIELDS)
        assert summary.attrs["path"] == str(tmp_path / "r.nc") and bool(summary["diverged"]) is False
        summary.to_netcdf(tmp_path / "summary.nc")
        with xr.open_dataset(tmp_path / "summary.nc") as back:
            xr.testing.assert_identical(back.load(), summary)
            assert summary_dict(back) == summary_dict(summary)

    def test_in_memory_has_no_path(self):
        d = summary_dict(summarize(run(FakeNet(), None, 4)))
        assert d["path"] is None and d["file_size_bytes"] is None and d["steps"] == 4

    def test_info_command(self, tmp_path, capsys):
        run(FakeNet(), FakeNet().initial_state(1), 5, path=tmp_path / "r.nc")
        parser = argparse.ArgumentParser()
        info.register(parser.add_subparsers())
        args = parser.parse_args(["info", str(tmp_path / "r.nc")])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert "recorded steps" in out and "FakeNet" in out and "complete" in out
        with pytest.raises(FileNotFoundError):
            args.func(parser.parse_args(["info", str(tmp_path / "missing.nc")]))


class TestRunWithTrainingMap:
    def test_streamed_mlp_run_rebuilds_from_its_attrs(self, tmp_path):
        from netdyn.maps.problems import make_task, map_from_attrs, training_map

        task = make_task("iris", hidden=(4,), seed=0)
        tmap = training_map(task, lr=0.1, optimizer="sgd", momentum=0.9)
        assert tmap.dim > tmap.param_dim  # the momentum buffer is part of the state
        with run(tmap, tmap.initial_state(1), 12, eval_every=4, path=tmp_path / "mlp.nc", flush_every=5,
                 record=["0.weight"]) as ds:
            assert ds.sizes["param"] == 16 and set(ds["layer"].values) == {"0.weight"}
            assert ds.sizes["state_index"] == tmap.dim
            acc = ds["test_accuracy"].values[::4]
            assert np.all((acc >= 0) & (acc <= 1)) and np.isfinite(ds["loss"]).all()
            again = run(map_from_attrs(ds.attrs), ds["initial_state"].values, 12, eval_every=4,
                        record=ds.attrs["record"])
            xr.testing.assert_identical(again["state"], ds["state"].load())
            assert np.array_equal(again["final_state"], ds["final_state"])


def test_run_and_run_sweep_share_the_progress_default():
    """progress=None (tqdm's auto: a bar only on a terminal) in both long-running entry points."""
    import inspect

    from netdyn.sweep.grid import run_sweep

    for function in (run, run_sweep):
        assert inspect.signature(function).parameters["progress"].default is None, function.__name__
