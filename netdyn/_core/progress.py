"""The one progress-bar rule of netdyn's long-running functions.

Every long-running public function takes ``progress: bool | None = None``:
``True`` shows a tqdm bar, ``False`` hides it and ``None`` (the default) leaves it
to tqdm: shown only when the output is a terminal (tqdm's ``disable=None``).
"""
from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int, *, progress: bool | None, desc: str, unit: str = "step") -> Any:
    """A tqdm bar over ``total`` units, shown according to ``progress``.

    Parameters
    ----------
    total : int
        Number of units (e.g. map steps) the caller will ``update``.
    progress : bool or None
        ``True``: show; ``False``: hide; ``None``: show only on a terminal.
    desc : str
        Label of the bar, usually the public function's name.
    unit : str, default "step"
        Name of one unit.

    Returns
    -------
    tqdm.tqdm
        Use as a context manager and call ``update(n)``.

    Examples
    --------
    >>> from netdyn._core.progress import progress_bar
    >>> with progress_bar(3, progress=False, desc="demo") as bar:
    ...     bar.update(3)
    >>> bar.disable
    True
    """
    return tqdm(total=total, desc=desc, unit=unit, disable=None if progress is None else not progress)
