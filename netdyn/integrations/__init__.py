"""Adapters that plug netdyn's online diagnostics into training frameworks.

Each sub-module imports its framework (an optional dependency) and raises an
``ImportError`` naming the extra to install when it is absent:

* :mod:`netdyn.integrations.lightning` — :class:`LyapunovCallback` for PyTorch
  Lightning (``pip install netdyn[lightning]``).
"""
