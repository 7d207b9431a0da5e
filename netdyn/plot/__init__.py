"""Figures (matplotlib is imported lazily inside each function)."""
from .lyapunov import plot_convergence, plot_perturbation_growth, plot_sharpness
from .orbits import plot_distance_curves, plot_orbit_diagram
from .recurrence import plot_divergence, plot_recurrence
from .sweep import plot_sweep

__all__ = [
    "plot_sweep",
    "plot_convergence", "plot_perturbation_growth", "plot_sharpness","plot_distance_curves", "plot_orbit_diagram", "plot_divergence", "plot_recurrence"]
