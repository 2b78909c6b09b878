"""Trackers by name: ``--tracking mlflow`` mirrors a run into MLflow.

A new tracker is one module with a ``Tracker`` subclass (``tracking/base.py``)
plus one line in ``TRACKERS``: ``--tracking`` accepts it and its ``--help`` says what it
does from there. Importing this package imports no tracker library, nor the base
classes until asked for (``--help`` reads ``TRACKERS`` only).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from losscmp.errors import unknown

if TYPE_CHECKING:
    from losscmp.tracking.base import GuardedTracker, TrackedRun, Tracker

__all__ = [
    "TRACKERS",
    "GuardedTracker",
    "Registered",
    "TrackedRun",
    "Tracker",
    "check_tracker",
    "create_tracker",
    "trackers_help",
]


class Registered(NamedTuple):
    """One tracker: its class, imported only when chosen (MLflow is an optional extra),
    and what choosing it does, as ``--tracking``'s help says it."""

    path: str  # "module:Class"
    does: str


TRACKERS = {
    "mlflow": Registered(
        "losscmp.tracking.mlflow:MlflowTracker",
        "log each trial to MLflow ($MLFLOW_TRACKING_URI, else a SQLite store in <out>/mlruns/)",
    ),
}


def __getattr__(name: str) -> Any:
    """``GuardedTracker``, ``TrackedRun``, ``Tracker``: imported when first used, since
    the run folder's module they import is not needed to list the trackers."""
    if name in ("GuardedTracker", "TrackedRun", "Tracker"):
        from losscmp.tracking import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tracker_class(name: str | None) -> type[Tracker]:
    if name is None:
        from losscmp.tracking.base import Tracker

        return Tracker
    if name not in TRACKERS:
        raise unknown("tracker", name, list(TRACKERS))
    module, _, cls = TRACKERS[name].path.partition(":")
    return getattr(importlib.import_module(module), cls)


def trackers_help() -> str:
    """'mlflow: log each trial to MLflow (...)': every tracker, for ``--help``."""
    return "; ".join(f"{name}: {entry.does}" for name, entry in TRACKERS.items())


def check_tracker(name: str | None, out: Path | str) -> None:
    """Refuse a tracker whose package is missing (one line: how to install it) or whose
    store a run into ``out`` could not log to (one line: why)."""
    cls = tracker_class(name)
    cls.check_installed()
    cls.check_store(Path(out))


def create_tracker(name: str | None) -> GuardedTracker:
    """The tracker ``name`` names (None: one that tracks nothing), guarded so that its
    failures are one warning and never the run's."""
    from losscmp.tracking.base import GuardedTracker

    cls = tracker_class(name)
    cls.check_installed()
    return GuardedTracker(cls())
