"""Figures (matplotlib is imported lazily inside each function)."""
from .orbits import plot_distance_curves, plot_orbit_diagram
from .recurrence import plot_divergence, plot_recurrence

__all__ = ["plot_distance_curves", "plot_orbit_diagram", "plot_divergence", "plot_recurrence"]
