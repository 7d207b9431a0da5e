"""netdyn: neural-network training as a discrete dynamical system.

The public namespace only re-exports; each function lives, with its
documentation, in the module named beside it.  Importing netdyn registers the
``ds.netdyn`` xarray accessor.
"""
from . import accessor as _accessor  # noqa: F401  (registers ds.netdyn)
from ._version import __version__
from .bifurcation import orbit_diagram
from .chaos01 import chaos01, chaos01_k
from .cross_recurrence import crqa, cross_recurrence_matrix, joint_recurrence_matrix, jrqa
from .datadriven import analyze_dataset, nolds_lyap_e, nolds_lyap_r, observable_series, rosenstein
from .divergence import DivergenceRule, divergence_reason
from .distances import graph_distances, trajectory_distances
from .graphs import from_graph, graph_trajectory, to_graph
from .local_exponents import windowed_lyapunov
from .maps import (
    CircleRotation,
    DiscreteMap,
    HenonMap,
    LinearMap,
    LogisticMap,
    LorenzRK4,
    MapBase,
    PotentialGD,
    QuadraticGD,
    has_jacobian,
)
from .lyapunov import max_lyapunov
from .monitor import LyapunovMonitor
from .predict import compare_predictors, early_features, feature_matrix
from .problems import make_task, map_from_attrs, training_map
from .recurrence import recurrence_matrix, rqa, windowed_rqa
from .recurrence_network import network_measures, recurrence_network
from .significance import chaos_test, rank_p_value, significance
from .surrogates import ft_surrogates, iaaft_surrogates, shuffle_surrogates, surrogates
from .sharpness import sharpness, sharpness_along, track_sharpness
from .stability_threshold import stability_threshold, step_preconditioner
from .stability import OrbitalStability, orbital_stability
from .sweep import edge_of_chaos, fastest_lr, sweep
from .tangent import clv, ftle, lyapunov_spectrum, lyapunov_sum_from_jacobian
from .schedules import Schedule
from .storage import consolidate, open_trajectory, save_trajectory
from .training import TrainingMap
from .trajectory import run, summarize
from .twin import perturbation_growth

__all__ = [
    "__version__",
    "CircleRotation", "DiscreteMap", "HenonMap", "LinearMap", "LogisticMap", "LorenzRK4", "MapBase",
    "PotentialGD", "QuadraticGD", "has_jacobian",
    "TrainingMap", "make_task", "training_map", "map_from_attrs",
    "max_lyapunov", "windowed_lyapunov", "Schedule", "perturbation_growth", "lyapunov_spectrum", "ftle", "clv", "lyapunov_sum_from_jacobian",
    "sharpness", "sharpness_along", "track_sharpness", "stability_threshold", "step_preconditioner",
    "LyapunovMonitor",
    "early_features", "feature_matrix", "compare_predictors",
    "DivergenceRule", "divergence_reason",
    "run", "summarize", "open_trajectory", "save_trajectory", "consolidate",
    "rosenstein", "nolds_lyap_r", "nolds_lyap_e", "observable_series", "analyze_dataset",
    "rqa", "windowed_rqa", "recurrence_matrix", "recurrence_network", "network_measures", "crqa", "jrqa",
    "cross_recurrence_matrix", "joint_recurrence_matrix",
    "chaos01", "chaos01_k", "surrogates", "iaaft_surrogates", "ft_surrogates", "shuffle_surrogates",
    "significance", "chaos_test", "rank_p_value",
    "to_graph", "from_graph", "graph_trajectory", "trajectory_distances", "graph_distances",
    "sweep", "edge_of_chaos", "fastest_lr",
    "orbital_stability", "OrbitalStability", "orbit_diagram",
]
