"""The ``netdyn`` xarray accessor: ``ds.netdyn.<analysis>()`` on a trajectory Dataset.

Importing this module registers the accessor.  Each method forwards in one line to a
module function, where the logic and the documentation live.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .trajectory import state_matrix, summarize

__all__ = ["NetdynAccessor"]


@xr.register_dataset_accessor("netdyn")
class NetdynAccessor:
    """Thin forwarding layer over netdyn's functions for a trajectory Dataset."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def state_matrix(self) -> np.ndarray:
        """:func:`netdyn.trajectory.state_matrix` of this Dataset."""
        return state_matrix(self._ds)

    def summary(self) -> dict[str, Any]:
        """:func:`netdyn.trajectory.summarize` of this Dataset."""
        return summarize(self._ds)
