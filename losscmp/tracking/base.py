"""What a tracker is, and the guard that keeps a failing one from touching the run.

A tracker mirrors a run into an experiment tracker (MLflow, ...). The run folder
stays the truth: a tracker only copies what the runner writes there, so a
tracker that fails costs the mirror, never a trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from losscmp.results import REPORT_PAGE, SUMMARY_FILE

# Files of a finished run's report that a tracker attaches to the run (when they exist).
REPORT_FILES = (SUMMARY_FILE, REPORT_PAGE)
MAX_REASON = 200  # characters of a tracker's error shown in its one warning line


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker is given when a run (or its resume) starts."""

    run_dir: Path
    meta: dict[str, Any]  # run.json as it stands
    records: list[dict[str, Any]] = field(default_factory=list)  # trial records already there
    stored: dict[str, Any] = field(default_factory=dict)  # what start returned last time
    # Trials that could not be trained and have no record yet (run.json's failed_trials),
    # each as ``failed`` receives it.
    failed: list[dict[str, Any]] = field(default_factory=list)
    # A line for the user, e.g. before logging many trials (a run resumed after its
    # server was lost: minutes, before training goes on).
    note: Callable[[str], None] = lambda text: None


class Tracker:
    """The calls a tracker receives, in the main process, in this order: ``start``;
    ``trial`` for each trial record the runner writes and ``failed`` for each trial that
    could not be trained; ``end``; then ``attach`` once the report files exist. This
    base class tracks nothing (no ``--tracking``)."""

    name = "none"

    @classmethod
    def check_installed(cls) -> None:
        """Raise LosscmpError (one line: how to install) when the tracker's package is
        missing; called while planning, before any folder exists."""

    @classmethod
    def check_store(cls, out: Path) -> None:
        """Raise LosscmpError (one line: what is wrong with it) when a run into ``out`` could
        not log to the tracker's store; called while planning, after ``check_installed``,
        before any folder exists. Writes nothing."""

    def start(self, run: TrackedRun) -> dict[str, Any]:
        """Open the run's record in the tracker (on ``--resume``, reopen the one ``stored``
        names) and log the finished and failed trials it lacks. Returns what run.json keeps
        to find the record again."""
        return {}

    def trial(self, record: dict[str, Any]) -> None:
        """Log one finished or diverged trial record (as written to ``trials/``); it
        replaces what ``failed`` logged for the same trial."""

    def failed(self, trial: dict[str, Any]) -> None:
        """Log a trial that could not be trained (its worker died twice): ``trial_id``,
        ``dataset``, ``loss``, ``seed``, ``base_lr`` (when the trial has its own rate) and
        ``reason``. ``--resume`` trains it again: then ``trial`` (or ``failed`` once more)
        replaces it."""

    def end(self, status: str) -> None:
        """The trials are done: ``finished``, ``failed`` (some trials failed) or ``killed``."""

    def attach(self, paths: list[Path]) -> None:
        """Attach the report files of the finished run."""

    def reason(self, error: Exception) -> str:
        """One line for the warning when a call failed (a secret it quotes hidden)."""
        return one_line(error)


class GuardedTracker:
    """Calls a tracker and turns its first exception into one warning; after that the
    tracker is left alone for the rest of the run."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.name = tracker.name
        self.active = type(tracker) is not Tracker
        self.warn: Callable[[str], None] = lambda text: None

    def start(self, run: TrackedRun, warn: Callable[[str], None]) -> dict[str, Any] | None:
        self.warn = warn
        return self._call("start", run)

    def trial(self, record: dict[str, Any]) -> None:
        self._call("trial", record)

    def failed(self, trial: dict[str, Any]) -> None:
        self._call("failed", trial)

    def end(self, status: str) -> None:
        self._call("end", status)

    def attach(self, run_dir: Path) -> None:
        paths = [Path(run_dir) / name for name in REPORT_FILES]
        self._call("attach", [path for path in paths if path.is_file()])

    def _call(self, method: str, *args: Any) -> Any:
        if not self.active:
            return None
        try:
            return getattr(self.tracker, method)(*args)
        except Exception as error:  # any failure of the tracker: the run goes on without it
            self.active = False
            self.warn(
                f"{self.name} tracking stopped: {self.tracker.reason(error)}; "
                "the run folder holds every result (--resume logs the rest)"
            )
            return None


def one_line(error: BaseException | str) -> str:
    """The first line of an error, cut to MAX_REASON characters."""
    lines = str(error).strip().splitlines()
    text = lines[0].rstrip(".") if lines else type(error).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
