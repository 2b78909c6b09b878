"""Progress as small picklable events keyed by trial id.

Executors emit them from wherever a trial runs (this process, a worker
process, a Ray task) and the main process hands them to a listener, a plain
callable (the console draws progress from them). Library code never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class TrialInfo:
    """What a progress display needs to name a trial."""

    trial_id: str
    dataset: str
    loss: str  # the loss spec, e.g. 'tversky(alpha=0.3,beta=0.7)'
    seed: int
    lr: float | None = None  # the rate where the run compares several (--lr-grid), else None


@dataclass(frozen=True)
class RunOpened:
    """The run folder exists (a new run's, just made, or the resumed one): stopped from here
    on, the run is finished by ``--resume`` of this folder. RunStarted follows once the
    folder is checked and its tables rebuilt."""

    run_dir: Path


@dataclass(frozen=True)
class RunStarted:
    run_dir: Path
    todo: tuple[TrialInfo, ...]
    skipped: int
    epochs: int
    executor: str  # e.g. "local, 2 worker processes, fused groups"
    selections: tuple = ()  # plan.Selection: what each 'all' or pattern in --losses stood for


@dataclass(frozen=True)
class TrialStarted:
    trial_id: str
    where: str = ""  # "worker 2 · cuda:1"; empty in-process


@dataclass(frozen=True)
class StepDone:
    trial_id: str
    epoch: int
    step: int
    steps: int

    @property
    def epochs_done(self) -> float:
        """The epochs before this one, and this one's share of steps done."""
        return self.epoch - 1 + self.step / max(self.steps, 1)


# ``Evaluating.split`` of the last epoch's boundary scores (HD95, NSD) of the reported
# split, image by image: host work after the pass (minutes for Pets' 3669 test images).
BOUNDARIES = "boundaries"


@dataclass(frozen=True)
class Evaluating:
    """Batch ``batch`` of ``batches`` of an evaluation pass (``split``: val or test) is
    done, or image ``batch`` of ``batches`` of the boundary scores (``split``:
    ``BOUNDARIES``): what a display shows, and the worker's sign of life, while no step
    comes."""

    trial_id: str
    split: str
    batch: int
    batches: int


@dataclass(frozen=True)
class EpochDone:
    trial_id: str
    record: dict[str, Any] = field(default_factory=dict)  # the epochs.csv row


@dataclass(frozen=True)
class TrialRetried:
    trial_id: str
    reason: str


@dataclass(frozen=True)
class TrialEnded:
    trial_id: str
    status: str  # finished | diverged | failed
    reason: str | None = None


@dataclass(frozen=True)
class RunNote:
    """Something the user should know that is not an error (a damaged file set aside), or
    a warning (a tracker that failed: the run goes on without it)."""

    text: str
    warning: bool = False


Event = (
    RunOpened
    | RunStarted
    | TrialStarted
    | StepDone
    | Evaluating
    | EpochDone
    | TrialRetried
    | TrialEnded
    | RunNote
)


class Listener(Protocol):
    def __call__(self, event: Event) -> None: ...


def ignore(event: Event) -> None:
    """The listener of library callers that want no progress."""
