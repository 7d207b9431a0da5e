"""Where commands write, and how they read their input: one convention for all.

* Every command that writes takes ``-o/--output``; by default it writes into
  ``./netdyn-out/<command>-<stem>/`` in the current folder (``<stem>``: the input
  file's stem, or a name built from the task options), never next to the input.
* A folder is written with a manifest (:data:`MANIFEST`) saying which command and
  options produced it.  Writing into a folder that holds a DIFFERENT result (another
  manifest, or without a manifest files of the same names) is refused with a
  message naming ``--force``; rerunning the same command on the same input
  replaces its own result.
* Results are written to a staging folder and moved in only once everything is
  computed, so a failing command leaves nothing behind.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from netdyn._version import __version__

OUTPUT_ROOT = Path("netdyn-out")
MANIFEST = "netdyn.json"

#: options that do not change a result (they are left out of the manifest)
NOT_RESULT_OPTIONS = frozenset({"func", "on_interrupt", "command", "output", "outdir", "force", "debug",
                                "no_progress", "workers", "scheduler", "scheduler_timeout"})


def add_output_arguments(parser: argparse.ArgumentParser, what: str = "folder", dest: str = "output") -> None:
    """``-o/--output`` (default: ``./netdyn-out/<command>-<input>/``) and ``--force``."""
    names = ["-o", "--output"] + (["--outdir"] if dest == "outdir" else [])
    parser.add_argument(*names, dest=dest, type=Path, default=None,
                        help=f"output {what} (default: ./{OUTPUT_ROOT}/{parser.prog.split()[-1]}-<input>"
                        f"{'/' if what == 'folder' else '.nc'})")
    parser.add_argument("--force", action="store_true", help=f"overwrite an output {what} that holds a different result")


def default_output(command: str, stem: str, suffix: str = "") -> Path:
    """``./netdyn-out/<command>-<stem><suffix>``."""
    return OUTPUT_ROOT / f"{command}-{stem}{suffix}"


def task_stem(args: argparse.Namespace) -> str:
    """A file-name stem from task options: ``<task>-<optimizer>-lr<lr>-seed<seed>``."""
    return f"{args.task}-{args.optimizer}-lr{args.lr:g}-seed{args.seed}"


def manifest(command: str, args: argparse.Namespace, source: str | os.PathLike | None = None) -> dict[str, Any]:
    """What produced a result: the command, its result-changing options and the input file's identity."""
    options = {k: (os.fspath(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())
               if k not in NOT_RESULT_OPTIONS and not callable(v)}
    out: dict[str, Any] = {"command": command, "options": json.loads(json.dumps(options, default=str))}
    if source is not None:
        stat = os.stat(source)
        out["input"] = {"path": os.path.abspath(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return out


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("command", "options", "input")
    return all(a.get(k) == b.get(k) for k in keys)


def check_output_dir(outdir: Path, names: Iterable[str], made_by: Mapping[str, Any], force: bool) -> None:
    """Refuse (``ValueError``) to write ``names`` into ``outdir`` if it holds a different result.

    A different result: ``outdir`` has a manifest from another command, options or
    input; or it has no manifest but already holds one of ``names``.  ``force``
    allows both.  ``outdir`` being an existing file is always refused.
    """
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"expected an output folder, got the existing file {os.fspath(outdir)!r}")
    if force or not outdir.is_dir():
        return
    recorded = outdir / MANIFEST
    if recorded.is_file():
        try:
            previous = json.loads(recorded.read_text())
        except (OSError, ValueError):
            previous = {}
        if _same(previous, made_by):
            return
        detail = f"from `netdyn {previous.get('command', '?')}` with other options or input"
    else:
        clash = sorted(n for n in names if (outdir / n).exists())
        if not clash:
            return
        detail = f"{', '.join(clash)} not written by this command"
    raise ValueError(f"{os.fspath(outdir)!r} already holds a different result ({detail}); "
                     f"pass --force to overwrite it or -o to write elsewhere")


def write_manifest(outdir: Path, made_by: Mapping[str, Any]) -> None:
    """Write ``made_by`` (with the netdyn version) as ``outdir/netdyn.json``, atomically."""
    outdir.mkdir(parents=True, exist_ok=True)
    tmp = outdir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({**made_by, "netdyn_version": __version__}, indent=1) + "\n")
    os.replace(tmp, outdir / MANIFEST)


@contextlib.contextmanager
def staged_output(outdir: Path, names: Iterable[str], made_by: Mapping[str, Any], force: bool) -> Iterator[Path]:
    """A staging folder whose files are moved into ``outdir`` when the block succeeds.

    Checks ``outdir`` first (:func:`check_output_dir`).  If the block raises (or is
    interrupted) the staging folder is removed and ``outdir`` is untouched.
    """
    names = list(names)
    check_output_dir(outdir, names, made_by, force)
    stage = Path(tempfile.mkdtemp(prefix="netdyn-stage-"))
    try:
        yield stage
        outdir.mkdir(parents=True, exist_ok=True)
        for stale in names:  # files of the result being replaced that this run did not write
            old = outdir / stale
            if old.is_file() and not (stage / stale).exists():
                old.unlink()
        for item in sorted(stage.iterdir()):
            target = outdir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            shutil.move(os.fspath(item), os.fspath(target))
        write_manifest(outdir, made_by)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def open_input(path: str | os.PathLike, min_steps: int = 1) -> xr.Dataset:
    """Open a trajectory file (:func:`netdyn.open_trajectory`) and check it holds ``min_steps`` rows.

    Missing, unreadable and foreign files raise the library's ``FileNotFoundError`` /
    ``ValueError``; an incomplete file keeps its warning.  A file with fewer than
    ``min_steps`` recorded steps raises ``ValueError``.
    """
    from netdyn.io.storage import open_trajectory

    if os.path.isdir(path):
        raise ValueError(f"expected a trajectory file, got the folder {os.fspath(path)!r}")
    ds = open_trajectory(path)
    n = int(ds.sizes.get("step", 0))
    if n < min_steps:
        ds.close()
        raise ValueError(f"expected a trajectory with at least {min_steps} recorded step(s), "
                         f"got {n} in {os.fspath(path)!r}")
    if min_steps and not np.isfinite(np.asarray(ds["state"].isel(step=0).values)).all():
        ds.close()
        raise ValueError(f"expected finite recorded states, got non-finite values from the first recorded step "
                         f"in {os.fspath(path)!r}: there is no orbit to analyse")
    return ds


@contextlib.contextmanager
def quiet_open(path: str | os.PathLike) -> Iterator[xr.Dataset | None]:
    """The trajectory at ``path`` with warnings silenced, or ``None`` if it cannot be read."""
    from netdyn.io.storage import open_trajectory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = open_trajectory(path)
        except (OSError, ValueError):
            yield None
            return
    with ds:
        yield ds
