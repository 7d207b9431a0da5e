"""Bad input to every command: exit status != 0 (2 for input errors), ONE line on stderr
(``netdyn <command>: error: ...``), no traceback, nothing written.

Every call runs in-process (``netdyn.cli.main``) from an empty working folder, so
"nothing written" is checked by listing that folder (the default output lands there,
in ``./netdyn-out``) and the folder of the input files.
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import xarray as xr

from netdyn.cli import EXIT_INTERNAL, EXIT_USAGE, describe_warning, main
from netdyn.maps.problems import make_task, training_map
from netdyn.io.storage import open_trajectory, save_trajectory
from netdyn.orbits.trajectory import run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One good trajectory and one file of each kind of bad input, in their own folder."""
    root = tmp_path_factory.mktemp("corpus")
    tmap = training_map(make_task("iris", hidden=(5,)), lr=0.5)
    run(tmap, None, 200, path=root / "good.nc", eval_every=20).close()
    run(tmap, None, 0, path=root / "zero.nc").close()
    raw = (root / "good.nc").read_bytes()
    (root / "truncated.nc").write_bytes(raw[: len(raw) // 2])
    (root / "empty.nc").write_bytes(b"")
    (root / "text.nc").write_text("step,loss\n0,1.0\n")
    xr.Dataset({"foo": ("x", np.arange(3.0))}).to_netcdf(root / "foreign.nc")
    with open_trajectory(root / "good.nc") as good:
        bad = good.load().copy(deep=True)
    flagged = bad.copy(deep=True)  # a sound orbit whose file says the training diverged
    flagged["diverged"] = ((), True)
    save_trajectory(flagged, root / "flagged.nc")
    bad["state"][:] = np.nan
    bad["loss"][:] = np.nan
    bad["initial_state"][:] = np.nan
    save_trajectory(bad, root / "nan.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        relu = training_map(make_task("iris", hidden=(5,), activation="relu"), lr=100.0)
        diverged = run(relu, None, 120, path=root / "diverged.nc")
    assert bool(diverged.diverged) and diverged.sizes["step"] < 120  # the corpus holds what its name says
    diverged.close()
    return root


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def listing(folder) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files} | {
        os.path.relpath(os.path.join(d, s), folder) for d, subs, _ in os.walk(folder) for s in subs}


def refused(argv: list[str], capsys, workdir, corpus=None, status: int = EXIT_USAGE) -> str:
    """Run ``netdyn argv``; assert the refusal contract; return the error line."""
    before = listing(corpus) if corpus is not None else None
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == status, (argv, code, err)
    assert len(lines) == 1, (argv, err)
    prefix = f"netdyn {argv[0]}: error: " if argv and not argv[0].startswith("bogus") else "netdyn: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in out + err and out == "", (argv, out)
    assert listing(workdir) == set(), (argv, listing(workdir))
    if corpus is not None:
        assert listing(corpus) == before
    return lines[0]


FILE_COMMANDS = ["info", "analyze", "orbital-stability", "distances", "lyapunov"]
UNREADABLE = ["missing.nc", "empty.nc", "text.nc", "truncated.nc", "foreign.nc"]


@pytest.mark.parametrize("command", FILE_COMMANDS)
@pytest.mark.parametrize("name", UNREADABLE)
def test_unreadable_files_are_refused_in_one_line(command, name, corpus, workdir, capsys):
    refused([command, str(corpus / name)], capsys, workdir, corpus)


@pytest.mark.parametrize("command", ["analyze", "orbital-stability", "distances"])
@pytest.mark.parametrize("name", ["zero.nc", "nan.nc"])
def test_files_without_an_orbit_are_refused(command, name, corpus, workdir, capsys):
    line = refused([command, str(corpus / name)], capsys, workdir, corpus)
    assert "0 in" in line or "non-finite" in line


def test_lyapunov_refuses_a_non_finite_initial_state(corpus, workdir, capsys):
    assert "finite initial_state" in refused(["lyapunov", str(corpus / "nan.nc")], capsys, workdir, corpus)


def test_a_missing_file_gets_one_message_from_every_command(corpus, workdir, capsys):
    missing = str(corpus / "missing.nc")
    messages = {refused([c, missing], capsys, workdir).split(": error: ", 1)[1] for c in FILE_COMMANDS}
    assert len(messages) == 1 and "no such file" in messages.pop()


def test_a_folder_as_input_is_refused(corpus, workdir, capsys):
    for command in FILE_COMMANDS:
        refused([command, str(corpus)], capsys, workdir)


@pytest.mark.parametrize("name", ["zero.nc", "nan.nc", "diverged.nc"])
def test_info_describes_readable_but_odd_files(name, corpus, workdir, capsys):
    assert main(["info", str(corpus / name), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == {"zero.nc": 0, "nan.nc": 200}.get(name, summary["steps"])
    assert summary["diverged"] is (name == "diverged.nc")
    assert listing(workdir) == set()


def test_lyapunov_needs_only_the_initial_state_so_a_0_step_file_works(corpus, workdir, capsys):
    """A 0-step file still holds the full initial state and the map's attributes: the exponent from it
    is the one from the 200-step file of the same run (same map, same x0, same t0)."""
    values = []
    for name in ("zero.nc", "good.nc"):
        assert main(["lyapunov", str(corpus / name), "--steps", "20", "--plot", "", "-o", name]) == 0
        with xr.open_dataset(workdir / name / "lyapunov.nc") as saved:
            values.append(float(saved["lyapunov"]))
    assert np.isfinite(values[0]) and values[0] == values[1]


def test_orbit_of_a_run_flagged_diverged_says_so(corpus, workdir, capsys):
    assert main(["orbital-stability", str(corpus / "flagged.nc")]) == 0
    out = capsys.readouterr().out
    assert "flagged.nc: divergent" in out and "note: training diverged" in out


def test_orbit_of_a_diverged_run_classifies_or_refuses_in_one_line(corpus, workdir, capsys):
    """How many rows a diverged run keeps depends on the divergence rule; either way: no traceback."""
    code = main(["orbital-stability", str(corpus / "diverged.nc")])
    out, err = capsys.readouterr()
    if code == 0:
        assert "diverged.nc: divergent" in out
    else:
        assert code == EXIT_USAGE and len(err.splitlines()) == 1 and err.startswith("netdyn orbital-stability: error: ")
    assert "Traceback" not in out + err


def test_info_says_a_diverged_run_diverged(corpus, workdir, capsys):
    assert main(["info", str(corpus / "diverged.nc")]) == 0
    assert "training diverged" in capsys.readouterr().out


BAD_OPTIONS = {
    "train": [
        ["--steps", "0"], ["--steps", "-5"], ["--steps", "abc"], ["--lr", "0"], ["--lr", "-1"], ["--lr", "nan"],
        ["--lr", "inf"], ["--seed", "-1"], ["--hidden", "0"], ["--hidden", "a,b"], ["--hidden", ""],
        ["--activation", "nope"], ["--optimizer", "nonsense"], ["--batch-size", "0"], ["--record-every", "0"],
        ["--eval-every", "0"], ["--init", "bogus"], ["--init-scale", "0"], ["--momentum", "-0.1"],
        ["--record", "nolayer"], ["--record-every", "2", "--eval-every", "3"], ["--task", "mnist"], ["--bogus"],
    ],
    "lyapunov": [
        ["--steps", "0"], ["--method", "euler"], ["--d0", "0"], ["--renorm-every", "0"], ["--transient", "-1"],
        ["--steps", "10", "--renorm-every", "3"], ["--plot", "nowhere/fig.png"], ["--lr", "-0.5"],
        ["--optimizer", "nonsense"],
    ],
    "sweep": [
        ["--optimizer", "nonsense"], ["--optimizer", "sgd,sgd"], ["--activation", "nope"], ["--lr", "0:1:3"],
        ["--lr", "abc"], ["--lr", "1,1"], ["--lr", "-1,2"], ["--lr", "0.1:1:0log"], ["--seeds", "0"],
        ["--seeds", "-1,2"], ["--seeds", "a"], ["--steps", "10"], ["--steps", "0"], ["--eval-every", "0"],
        ["--optimizer-kwargs", "{bad"], ["--optimizer-kwargs", "[1]"], ["--optimizer-kwargs", '{"nonsense": 1}'],
        ["--target", "2"], ["--target", "0"], ["--workers", "-1"], ["--lyapunov-transient", "100000"],
        ["--scheduler", "nonsense"], ["--n-train", "0"], ["--threshold", "nan"], ["--hidden", "-3"],
    ],
    "demo": [["--workers", "-1"], ["--target", "0"], ["--threshold", "inf"], ["--scheduler-timeout", "0"]],
}


@pytest.mark.parametrize("command,options", [(c, o) for c, opts in BAD_OPTIONS.items() for o in opts],
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_invalid_options_are_refused_before_any_work(command, options, workdir, capsys):
    refused([command, *options], capsys, workdir)


FILE_OPTIONS = {
    "analyze": [["--emb-dim", "0"], ["--lag", "-1"], ["--recurrence-rate", "2"], ["--recurrence-rate", "0"],
                ["--trajectory-len", "0"], ["--observable", "nope"], ["--theiler", "-1"], ["--seed", "x"]],
    "orbital-stability": [["--tail", "0"], ["--tol", "-1"]],
    "distances": [["--layer-sizes", "a"], ["--layer-sizes", "4,0,3"]],
    "lyapunov": [["--steps", "0"], ["--d0", "-1"]],
}


@pytest.mark.parametrize("command,options", [(c, o) for c, opts in FILE_OPTIONS.items() for o in opts],
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_invalid_options_on_a_good_file(command, options, corpus, workdir, capsys):
    refused([command, str(corpus / "good.nc"), *options], capsys, workdir, corpus)


def test_no_command_and_unknown_command(workdir, capsys):
    refused([], capsys, workdir)
    refused(["bogus"], capsys, workdir)


def test_debug_shows_the_exception(corpus, workdir, monkeypatch):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "info", str(corpus / "missing.nc")])
    with pytest.raises(FileNotFoundError):
        main(["info", str(corpus / "missing.nc"), "--debug"])
    monkeypatch.setenv("NETDYN_DEBUG", "1")
    with pytest.raises(ValueError):
        main(["info", str(corpus / "text.nc")])


def test_an_unexpected_exception_is_one_line_with_status_1(corpus, workdir, capsys, monkeypatch):
    from netdyn.commands import info

    def broken(ds):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(info, "summarize", broken)
    line = refused(["info", str(corpus / "good.nc")], capsys, workdir, status=EXIT_INTERNAL)
    assert "ZeroDivisionError: a bug" in line and "--debug" in line


class TestWarnings:
    @staticmethod
    def message(text: str, category: type[Warning]) -> warnings.WarningMessage:
        return warnings.WarningMessage(category(text), category, "nolds/__init__.py", 3)

    def test_unactionable_deprecations_are_dropped(self):
        w = self.message("pkg_resources is deprecated as an API.", UserWarning)
        assert describe_warning(w) is None
        assert describe_warning(self.message("x is deprecated", DeprecationWarning)) is None

    def test_false_nearest_neighbours_is_said_in_words(self):
        w = self.message("false_nearest_neighbours: no dimension up to 10 has fewer than 1% false neighbours; "
                         "using 10", RuntimeWarning)
        line = describe_warning(w)
        assert "--emb-dim" in line and "\n" not in line

    def test_other_warnings_keep_their_message_on_one_line(self):
        assert describe_warning(self.message("run: a\n   b", RuntimeWarning)) == "run: a b"

    def test_a_repeated_warning_is_said_once_and_distinct_ones_are_capped(self, capsys):
        from netdyn.cli import WarningLines

        lines = WarningLines(limit=20)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lines
            for step in range(1000):
                warnings.warn("run: the same thing", RuntimeWarning)
            for step in range(30):
                warnings.warn(f"run: step {step}", RuntimeWarning)
        lines.report("train")
        err = capsys.readouterr().err.splitlines()
        assert err[0] == "netdyn train: warning: run: the same thing" and len(err) == 21
        assert err[-1] == "netdyn train: warning: 11 more distinct warnings not shown"

    def test_analyze_prints_no_raw_warning(self, corpus, workdir, capsys):
        assert main(["analyze", str(corpus / "good.nc"), "--no-figures"]) == 0
        err = capsys.readouterr().err
        assert "warnings.warn" not in err and "pkg_resources" not in err and "Traceback" not in err
        assert all(line.startswith("netdyn analyze: warning: ") for line in err.splitlines())


class TestOutputConvention:
    def test_default_output_is_in_the_current_folder_never_next_to_the_input(self, corpus, workdir, capsys):
        before = listing(corpus)
        assert main(["distances", str(corpus / "good.nc"), "--no-kendall"]) == 0
        assert main(["orbital-stability", str(corpus / "good.nc")]) == 0
        assert listing(corpus) == before
        out = workdir / "netdyn-out" / "distances-good"
        assert {p.name for p in out.iterdir()} == {"good_distances.nc", "good_distances.png", "netdyn.json"}
        stability = workdir / "netdyn-out" / "orbital-stability-good"
        assert {p.name for p in stability.iterdir()} == {"good_orbital_stability.nc", "netdyn.json"}
        said = capsys.readouterr().out
        assert f"in {os.path.join('netdyn-out', 'distances-good')}" in said
        assert f"in {os.path.join('netdyn-out', 'orbital-stability-good')}" in said

    def test_same_result_is_replaced_a_different_one_needs_force(self, corpus, workdir, capsys):
        argv = ["distances", str(corpus / "good.nc"), "--no-kendall", "-o", "o"]
        assert main(argv) == 0 and main(argv) == 0  # the same command on the same file: replaced
        capsys.readouterr()
        written = (workdir / "o" / "good_distances.nc").stat().st_mtime_ns
        code = main(["distances", str(corpus / "good.nc"), "-o", "o"])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE and "--force" in err and len(err.splitlines()) == 1
        assert (workdir / "o" / "good_distances.nc").stat().st_mtime_ns == written
        assert main(["distances", str(corpus / "good.nc"), "-o", "o", "--force"]) == 0
        assert json.loads((workdir / "o" / "netdyn.json").read_text())["options"]["no_kendall"] is False

    def test_a_folder_holding_foreign_files_of_the_same_name_is_not_overwritten(self, corpus, workdir, capsys):
        (workdir / "mine").mkdir()
        (workdir / "mine" / "good_distances.nc").write_text("my own file")
        code = main(["distances", str(corpus / "good.nc"), "-o", "mine"])
        assert code == EXIT_USAGE and "--force" in capsys.readouterr().err
        assert (workdir / "mine" / "good_distances.nc").read_text() == "my own file"

    def test_train_refuses_to_overwrite_a_file(self, workdir, capsys):
        (workdir / "run.nc").write_text("precious")
        argv = ["train", "--task", "iris", "--hidden", "3", "--steps", "5", "-o", "run.nc"]
        assert main(argv) == EXIT_USAGE and "--force" in capsys.readouterr().err
        assert (workdir / "run.nc").read_text() == "precious"
        assert main(argv + ["--force"]) == 0
        with open_trajectory(workdir / "run.nc") as ds:
            assert ds.sizes["step"] == 5

    def test_train_default_file_name(self, workdir, capsys):
        assert main(["train", "--task", "iris", "--hidden", "3", "--steps", "5", "--lr", "0.25"]) == 0
        assert listing(workdir) == {"netdyn-out", os.path.join("netdyn-out", "train-iris-sgd-lr0.25-seed0.nc")}

    def test_a_failing_command_leaves_nothing_behind(self, corpus, workdir, capsys):
        # fails inside the analysis (unknown observable), after the output folder was checked
        refused(["analyze", str(corpus / "good.nc"), "--observable", "nope", "-o", "out"], capsys, workdir, corpus)

    def test_sweep_default_folder_resumes_the_same_grid_and_writes_another_beside(self, workdir, capsys):
        argv = ["sweep", "--task", "iris", "--hidden", "3", "--lr", "0.5", "--steps", "32", "--workers", "0",
                "--no-progress"]
        assert main(argv) == 0
        out = workdir / "netdyn-out" / "sweep-iris"
        assert {p.name for p in out.iterdir()} == {"result.nc", "sweep.png", "points"}
        capsys.readouterr()
        assert main(argv) == 0 and "0 points computed, 1 loaded" in capsys.readouterr().out
        first = (out / "result.nc").read_bytes()
        assert main([a if a != "0.5" else "0.25,0.5" for a in argv]) == 0
        assert "holds another grid" in capsys.readouterr().out and (out / "result.nc").read_bytes() == first
        assert len(list(out.glob("result-*.nc"))) == 1


def test_sweep_lr_range_given_high_to_low_is_run_ascending(workdir, capsys, monkeypatch):
    from netdyn.commands import sweep as command

    seen = {}

    def fake_sweep(**options):  # stands in for the training: only the grid matters here
        seen.update(options)
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run_sweep", fake_sweep)
    code = main(["sweep", "--task", "iris", "--lr", "10:0.01:4log", "--steps", "40", "--workers", "0", "-o", "s"])
    out, err = capsys.readouterr()
    assert code == 130 and seen["lr"] == sorted(seen["lr"]) and len(seen["lr"]) == 4
    assert "descending" in out and "0.01 to 10" in out
    assert err.splitlines()[-1].startswith("netdyn sweep: interrupted; 0 of 4 points are stored")


class TestScheduler:
    """--scheduler addresses that are not a reachable Dask scheduler: one line, within the timeout."""

    @pytest.fixture()
    def http_server(self):
        """A TCP server that answers anything with an HTTP response (what Dask misreads as 3 EiB)."""
        import socket
        import threading

        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        server.settimeout(0.2)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                with conn:
                    try:
                        conn.recv(1024)
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 8)
                    except OSError:
                        pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
        stop.set()
        thread.join()
        server.close()

    def test_a_server_that_is_not_dask(self, http_server, workdir, capsys):
        import time

        start = time.monotonic()
        argv = ["sweep", "--task", "iris", "--lr", "0.1", "--steps", "40", "--scheduler", http_server,
                "--scheduler-timeout", "2"]
        line = refused(argv, capsys, workdir)
        assert "is not a Dask scheduler" in line and "EiB" not in line
        assert time.monotonic() - start < 10

    def test_an_unreachable_address(self, workdir, capsys):
        import socket

        with socket.socket() as s:  # a port that nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = ["sweep", "--task", "iris", "--lr", "0.1", "--steps", "40", "--scheduler", f"tcp://127.0.0.1:{port}",
                "--scheduler-timeout", "1"]
        assert "could not reach a Dask scheduler" in refused(argv, capsys, workdir)

    def test_a_dask_worker_is_not_a_scheduler_and_a_scheduler_is(self):
        from distributed import LocalCluster

        from netdyn.commands.sweep import connect, probe_scheduler

        with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
            worker = next(iter(cluster.workers.values())).address
            with pytest.raises(ValueError, match="says it is 'Worker'"):
                probe_scheduler(worker, 5)
            client = connect(cluster.scheduler_address, 5)
            try:
                assert client.scheduler_info()["type"] == "Scheduler"
            finally:
                client.close()


class TestReliabilityInWords:
    """Reliability fields (added by the diagnostics) are said in words when present, ignored when absent."""

    def test_exponent(self):
        from netdyn.commands._report import exponent_words

        assert "NOT resolved" in exponent_words(xr.Dataset({"lyapunov": np.inf, "diverged": False}))[0]
        assert "NOT resolved" in exponent_words(xr.Dataset({"lyapunov": 0.3, "unresolved": True}))[0]
        assert exponent_words(xr.Dataset({"lyapunov": 0.1, "diverged": False})) == []
        (line,) = exponent_words(xr.Dataset({"lyapunov": np.inf, "diverged": True, "diverged_step": 5}))
        assert "diverged at step 5" in line

    def test_orbit(self):
        from dataclasses import dataclass

        from netdyn.commands._report import orbit_words

        @dataclass
        class Orbit:
            label: str = "chaotic"
            confidence: str = "low"
            conflict: str = "the exponent is positive but the orbit returns"

        assert orbit_words(Orbit()) == ["the orbital class has low confidence",
                                        "the evidence conflicts: the exponent is positive but the orbit returns"]
        assert orbit_words(Orbit(confidence="high", conflict="")) == []
        assert orbit_words(object()) == []  # a result without the fields

    def test_rosenstein_and_divergence(self):
        from netdyn.commands._report import divergence_words, rosenstein_words

        result = xr.Dataset({"rosenstein_reliable": False}, attrs={"rosenstein_reason": "no linear region"})
        assert rosenstein_words(result) == ["the Rosenstein exponent is NOT reliable: no linear region"]
        assert rosenstein_words(xr.Dataset({"rosenstein_reliable": True})) == []
        assert divergence_words(xr.Dataset({"diverged": True, "divergence_reason": "loss blow-up"})) == \
            "training diverged: loss blow-up"
        assert divergence_words(xr.Dataset({"diverged": False})) is None
