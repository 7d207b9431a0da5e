"""The ``netdyn`` xarray accessor: ``ds.netdyn.<function>()`` on a trajectory Dataset.

Importing this module registers the accessor.  Each method has the name of the
function it calls and forwards to it in one line, with keywords; the logic and the
documentation live in that function.  The series methods take the scalar series
``observable`` of the trajectory (default ``"loss"``; see
:func:`netdyn.series.datadriven.observable_series`).

Examples
--------
>>> import netdyn as nd
>>> ds = nd.run(nd.LogisticMap(4.0), None, 20)
>>> int(ds.netdyn.summarize()["steps"])
20
"""
from __future__ import annotations

from typing import Any, Iterator

import networkx as nx
import numpy as np
import xarray as xr

from netdyn.orbits.distances import trajectory_distances
from netdyn.orbits.graphs import graph_trajectory
from netdyn.orbits.stability import OrbitalStability, orbital_stability
from netdyn.orbits.trajectory import state_matrix, summarize
from netdyn.series.chaos01 import chaos01
from netdyn.series.datadriven import (
    DivergenceCurve,
    EckmannSpectrum,
    analyze_dataset,
    nolds_lyap_e,
    nolds_lyap_r,
    observable_series,
    rosenstein,
)
from netdyn.series.recurrence import RQAResult, recurrence_matrix, rqa, windowed_rqa
from netdyn.series.significance import chaos_test

__all__ = ["NetdynAccessor"]


@xr.register_dataset_accessor("netdyn")
class NetdynAccessor:
    """``ds.netdyn``: netdyn's functions applied to a trajectory Dataset ``ds`` (from :func:`netdyn.run`).

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory Dataset with ``state(step, param)`` and ``loss(step)``.

    Examples
    --------
    >>> import netdyn as nd
    >>> ds = nd.run(nd.LogisticMap(4.0), None, 20)
    >>> ds.netdyn.state_matrix().shape
    (20, 1)
    """

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    # ------------------------------------------------------------ the trajectory itself
    def state_matrix(self) -> np.ndarray:
        """:func:`netdyn.orbits.trajectory.state_matrix` of this Dataset: ``(steps, params)``.

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> ds.netdyn.state_matrix().shape
        (300, 1)
        """
        return state_matrix(self._ds)

    def summarize(self) -> xr.Dataset:
        """:func:`netdyn.summarize` of this Dataset.

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> int(ds.netdyn.summarize()["steps"])
        300
        """
        return summarize(self._ds)

    def observable_series(self, observable: str = "loss", **kwargs: Any) -> np.ndarray:
        """:func:`netdyn.observable_series` of ``observable`` (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> ds.netdyn.observable_series("state").shape
        (300, 1)
        """
        return observable_series(self._ds, observable=observable, **kwargs)

    # ------------------------------------------------------------ orbits and graphs
    def orbital_stability(self, **kwargs: Any) -> OrbitalStability:
        """:func:`netdyn.orbital_stability` of this Dataset (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> ds.netdyn.orbital_stability(map_=nd.LogisticMap(4.0)).label
        'chaotic'
        """
        return orbital_stability(self._ds, **kwargs)

    def trajectory_distances(self, **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.trajectory_distances` of this Dataset (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> ds.netdyn.trajectory_distances().sizes["step"]
        300
        """
        return trajectory_distances(self._ds, **kwargs)

    def graph_trajectory(self, **kwargs: Any) -> Iterator[nx.DiGraph]:
        """:func:`netdyn.graph_trajectory`: a lazy iterator of weighted DiGraphs (keywords forwarded)."""
        return graph_trajectory(self._ds, **kwargs)

    # ------------------------------------------------------------ series analysis
    def analyze_dataset(self, **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.analyze_dataset` of this Dataset (keywords forwarded)."""
        return analyze_dataset(self._ds, **kwargs)

    def rosenstein(self, observable: str = "loss", **kwargs: Any) -> DivergenceCurve:
        """:func:`netdyn.rosenstein` of ``observable`` (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> round(float(ds.netdyn.rosenstein("state", emb_dim=1, lag=1).exponent), 1)  # ln 2 = 0.69
        0.7
        """
        return rosenstein(self._ds, observable=observable, **kwargs)

    def nolds_lyap_r(self, observable: str = "loss", **kwargs: Any) -> Any:
        """:func:`netdyn.nolds_lyap_r` of ``observable`` (keywords forwarded)."""
        return nolds_lyap_r(self._ds, observable=observable, **kwargs)

    def nolds_lyap_e(self, observable: str = "loss", **kwargs: Any) -> EckmannSpectrum:
        """:func:`netdyn.nolds_lyap_e` of ``observable`` (keywords forwarded)."""
        return nolds_lyap_e(self._ds, observable=observable, **kwargs)

    def recurrence_matrix(self, observable: str = "loss", **kwargs: Any) -> Any:
        """:func:`netdyn.recurrence_matrix` of ``observable`` (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> ds.netdyn.recurrence_matrix("state", recurrence_rate=0.1).shape
        (300, 300)
        """
        return recurrence_matrix(observable_series(self._ds, observable=observable), **kwargs)

    def rqa(self, observable: str = "loss", **kwargs: Any) -> RQAResult:
        """:func:`netdyn.rqa` of ``observable`` (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> round(float(ds.netdyn.rqa("param:0", recurrence_rate=0.1).RR), 2)
        0.1
        """
        return rqa(observable_series(self._ds, observable=observable), **kwargs)

    def windowed_rqa(self, observable: str = "loss", **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.windowed_rqa` of ``observable`` (keywords forwarded)."""
        return windowed_rqa(observable_series(self._ds, observable=observable), **kwargs)

    def chaos01(self, observable: str = "loss", **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.chaos01` (the 0-1 test for chaos) of ``observable`` (keywords forwarded).

        Examples
        --------
        >>> import netdyn as nd
        >>> ds = nd.run(nd.LogisticMap(4.0), None, 300)
        >>> float(ds.netdyn.chaos01("param:0")["K"]) > 0.8  # K near 1: chaotic
        True
        """
        return chaos01(self._ds, observable=observable, **kwargs)

    def chaos_test(self, observable: str = "loss", **kwargs: Any) -> xr.Dataset:
        """:func:`netdyn.chaos_test` (0-1 test, then surrogates) of ``observable`` (keywords forwarded)."""
        return chaos_test(self._ds, observable=observable, **kwargs)
