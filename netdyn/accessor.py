"""The ``netdyn`` xarray accessor: ``ds.netdyn.<analysis>()`` on a trajectory Dataset.

Importing this module registers the accessor.  Each method forwards in one line to a
module function, where the logic and the documentation live.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from netdyn.series.datadriven import DivergenceCurve, analyze_dataset, rosenstein
from netdyn.series.observables import observable_series
from netdyn.orbits.distances import trajectory_distances
from netdyn.orbits.graphs import graph_trajectory
from netdyn.series.recurrence import RQAResult, rqa, windowed_rqa
from netdyn.orbits.stability import OrbitalStability, orbital_stability
from netdyn.orbits.trajectory import state_matrix, summarize

__all__ = ["NetdynAccessor"]


@xr.register_dataset_accessor("netdyn")
class NetdynAccessor:
    """Thin forwarding layer over netdyn's functions for a trajectory Dataset."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def state_matrix(self) -> np.ndarray:
        """:func:`netdyn.orbits.trajectory.state_matrix` of this Dataset."""
        return state_matrix(self._ds)

    def summary(self) -> dict[str, Any]:
        """:func:`netdyn.orbits.trajectory.summarize` of this Dataset."""
        return summarize(self._ds)

    def series(self, observable: str = "loss", seed: int = 0) -> np.ndarray:
        """:func:`netdyn.series.observables.observable_series` of this Dataset."""
        return observable_series(self._ds, observable=observable, seed=seed)

    def rosenstein(self, observable: str = "loss", **kwargs: Any) -> DivergenceCurve:
        """:func:`netdyn.series.datadriven.rosenstein` of ``observable`` (keywords forwarded)."""
        return rosenstein(self._ds, observable=observable, **kwargs)

    def rqa(self, observable: str = "loss", **kwargs: Any) -> RQAResult:
        """:func:`netdyn.series.recurrence.rqa` of ``observable`` (keywords forwarded)."""
        return rqa(self.series(observable), **kwargs)

    def windowed_rqa(self, observable: str = "loss", **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.series.recurrence.windowed_rqa` of ``observable`` (keywords forwarded)."""
        return windowed_rqa(self.series(observable), **kwargs)

    def analyze(self, **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.series.datadriven.analyze_dataset` of this Dataset."""
        return analyze_dataset(self._ds, **kwargs)

    def orbit(self, **kwargs: Any) -> OrbitalStability:
        """:func:`netdyn.orbits.stability.orbital_stability` of this Dataset."""
        return orbital_stability(self._ds, **kwargs)

    def distances(self, **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.orbits.distances.trajectory_distances` of this Dataset."""
        return trajectory_distances(self._ds, **kwargs)

    def graphs(self, **kwargs: Any) -> Any:
        """:func:`netdyn.orbits.graphs.graph_trajectory`: a lazy iterator of weighted DiGraphs."""
        return graph_trajectory(self._ds, **kwargs)
