"""Figures (matplotlib is imported lazily inside each function)."""
from netdyn.plot.lyapunov import plot_convergence, plot_perturbation_growth, plot_sharpness
from netdyn.plot.orbits import plot_distance_curves, plot_orbit_diagram
from netdyn.plot.recurrence import plot_divergence, plot_recurrence
from netdyn.plot.sweep import plot_sweep

__all__ = [
    "plot_sweep",
    "plot_convergence", "plot_perturbation_growth", "plot_sharpness","plot_distance_curves", "plot_orbit_diagram", "plot_divergence", "plot_recurrence"]
