"""netdyn: neural-network training as a discrete dynamical system.

The public namespace only re-exports; each function lives, with its
documentation, in the module named beside it.  Importing netdyn registers the
``ds.netdyn`` xarray accessor.
"""
from netdyn import accessor as _accessor  # noqa: F401  (registers ds.netdyn)
from netdyn._version import __version__
from netdyn.orbits.bifurcation import orbit_diagram
from netdyn.series.chaos01 import chaos01, chaos01_k
from netdyn.series.cross_recurrence import crqa, cross_recurrence_matrix, joint_recurrence_matrix, jrqa
from netdyn.series.datadriven import DivergenceCurve, EckmannSpectrum, analyze_dataset, nolds_lyap_e, nolds_lyap_r, rosenstein
from netdyn.series.observables import observable_series
from netdyn.maps.divergence import DivergenceRule, divergence_reason
from netdyn.orbits.distances import graph_distances, trajectory_distances
from netdyn.orbits.graphs import from_graph, graph_trajectory, to_graph
from netdyn.lyapunov.local import windowed_lyapunov
from netdyn.maps.base import DiscreteMap, MapBase, has_jacobian
from netdyn.maps.vmap_training import VmapTrainingMap
from netdyn.maps.classic import (
    CircleRotation,
    HenonMap,
    LinearMap,
    LogisticMap,
    LorenzRK4,
    PotentialGD,
    QuadraticGD,
)
from netdyn.lyapunov.maximal import max_lyapunov
from netdyn.monitor import LyapunovMonitor
from netdyn.lyapunov.predict import compare_predictors, early_features, feature_matrix
from netdyn.maps.problems import make_task, map_from_attrs, training_map
from netdyn.series.recurrence import RQAResult, recurrence_matrix, rqa, windowed_rqa
from netdyn.series.recurrence_network import network_measures, recurrence_network
from netdyn.series.significance import chaos_test, rank_p_value, significance
from netdyn.series.surrogates import ft_surrogates, iaaft_surrogates, shuffle_surrogates, surrogates
from netdyn.sharpness.hessian import Sharpness, sharpness_at, sharpness_along, track_sharpness
from netdyn.sharpness.threshold import stability_threshold, step_preconditioner
from netdyn.orbits.stability import OrbitalStability, orbital_stability
from netdyn.sweep.grid import edge_of_chaos, fastest_lr, run_sweep
from netdyn.lyapunov.spectrum import clv, ftle, lyapunov_spectrum, lyapunov_sum_from_jacobian
from netdyn.maps.schedules import Schedule
from netdyn.io.storage import consolidate, open_trajectory, save_trajectory
from netdyn.maps.training import TrainingMap
from netdyn.orbits.trajectory import run, summarize
from netdyn.lyapunov.growth import perturbation_growth

__all__ = [
    "__version__",
    "CircleRotation", "DiscreteMap", "HenonMap", "LinearMap", "LogisticMap", "LorenzRK4", "MapBase",
    "PotentialGD", "QuadraticGD", "has_jacobian",
    "TrainingMap", "VmapTrainingMap", "make_task", "training_map", "map_from_attrs",
    "max_lyapunov", "windowed_lyapunov", "Schedule", "perturbation_growth", "lyapunov_spectrum", "ftle", "clv", "lyapunov_sum_from_jacobian",
    "Sharpness", "sharpness_at", "sharpness_along", "track_sharpness", "stability_threshold", "step_preconditioner",
    "LyapunovMonitor",
    "early_features", "feature_matrix", "compare_predictors",
    "DivergenceRule", "divergence_reason",
    "run", "summarize", "open_trajectory", "save_trajectory", "consolidate",
    "rosenstein", "nolds_lyap_r", "nolds_lyap_e", "observable_series", "analyze_dataset", "DivergenceCurve", "EckmannSpectrum",
    "rqa", "RQAResult", "windowed_rqa", "recurrence_matrix", "recurrence_network", "network_measures", "crqa", "jrqa",
    "cross_recurrence_matrix", "joint_recurrence_matrix",
    "chaos01", "chaos01_k", "surrogates", "iaaft_surrogates", "ft_surrogates", "shuffle_surrogates",
    "significance", "chaos_test", "rank_p_value",
    "to_graph", "from_graph", "graph_trajectory", "trajectory_distances", "graph_distances",
    "run_sweep", "edge_of_chaos", "fastest_lr",
    "orbital_stability", "OrbitalStability", "orbit_diagram",
]
