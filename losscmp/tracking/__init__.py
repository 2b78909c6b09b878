"""Trackers by name: ``--tracking mlflow`` mirrors a run into MLflow.

A new tracker is one module with a ``Tracker`` subclass (``tracking/base.py``)
plus one line here. Importing this package imports no tracker library.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from losscmp.errors import unknown
from losscmp.tracking.base import GuardedTracker, TrackedRun, Tracker

__all__ = ["TRACKERS", "GuardedTracker", "TrackedRun", "check_tracker", "create_tracker"]

# name -> "module:class", imported only when chosen (MLflow is an optional extra).
TRACKERS = {
    "mlflow": "losscmp.tracking.mlflow:MlflowTracker",
}


def tracker_class(name: str | None) -> type[Tracker]:
    if name is None:
        return Tracker
    if name not in TRACKERS:
        raise unknown("tracker", name, list(TRACKERS))
    module, _, cls = TRACKERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def check_tracker(name: str | None, out: Path | str) -> None:
    """Refuse a tracker whose package is missing (one line: how to install it) or whose
    store a run into ``out`` could not log to (one line: why)."""
    cls = tracker_class(name)
    cls.check_installed()
    cls.check_store(Path(out))


def create_tracker(name: str | None) -> GuardedTracker:
    """The tracker ``name`` names (None: one that tracks nothing), guarded so that its
    failures are one warning and never the run's."""
    cls = tracker_class(name)
    cls.check_installed()
    return GuardedTracker(cls())
