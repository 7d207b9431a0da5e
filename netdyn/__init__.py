"""netdyn: neural-network training as a discrete dynamical system.

The public namespace only re-exports; each function lives, with its
documentation, in the module named beside it.  Importing netdyn registers the
``ds.netdyn`` xarray accessor.
"""
from . import accessor as _accessor  # noqa: F401  (registers ds.netdyn)
from ._version import __version__
from .bifurcation import orbit_diagram
from .datadriven import analyze_dataset, nolds_lyap_e, nolds_lyap_r, observable_series, rosenstein
from .distances import graph_distances, trajectory_distances
from .graphs import from_graph, graph_trajectory, to_graph
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
from .problems import make_task, map_from_attrs, training_map
from .recurrence import recurrence_matrix, rqa, windowed_rqa
from .stability import OrbitalStability, orbital_stability
from .storage import open_trajectory, save_trajectory
from .training import TrainingMap
from .trajectory import run, summarize

__all__ = [
    "__version__",
    "CircleRotation", "DiscreteMap", "HenonMap", "LinearMap", "LogisticMap", "LorenzRK4", "MapBase",
    "PotentialGD", "QuadraticGD", "has_jacobian",
    "TrainingMap", "make_task", "training_map", "map_from_attrs",
    "run", "summarize", "open_trajectory", "save_trajectory",
    "rosenstein", "nolds_lyap_r", "nolds_lyap_e", "observable_series", "analyze_dataset",
    "rqa", "windowed_rqa", "recurrence_matrix",
    "to_graph", "from_graph", "graph_trajectory", "trajectory_distances", "graph_distances",
    "orbital_stability", "OrbitalStability", "orbit_diagram",
]
