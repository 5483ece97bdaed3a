"""Sweeps: one base scenario, many defense configurations, a paired comparison.

``schema.py`` reads a sweep file into every arm's scenario (checking that the arms share
the clients, batches and initial model), ``runner.py`` runs the arms that need it, each
in its own process (``arm.py``) and run directory, and ``progress.py`` shows arms × rounds.
``fedleak compare`` and ``fedleak report`` (:mod:`fedleak.results`) read what they stored.
"""

from fedleak.sweep.runner import SweepRunner
from fedleak.sweep.schema import Arm, Grid, Sweep, SweepFile, load_sweep

__all__ = ["Arm", "Grid", "Sweep", "SweepFile", "SweepRunner", "load_sweep"]
