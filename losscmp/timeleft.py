"""A run's time left, from the run's events and a clock; nothing drawn here.

Rich's own estimate is a rate over the last 30 s of the overall bar: a diverged or
failed trial's jump to done, or a retried one's drop back to zero, read as a burst or
a stall of speed, and the estimate swung far off for half a minute. This one measures
what an epoch of one trial costs and lays the work still to do out on the slots that
train at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from losscmp.events import EpochDone, StepDone, TrialEnded, TrialRetried, TrialStarted


@dataclass
class _Trial:
    started: float | None = None  # when this attempt started; None while it waits
    done: float = 0.0  # epochs done, fractional between epoch ends
    timed: tuple[float, float] | None = None  # (seconds, epochs) measured, if any
    training: bool = False  # started and with epochs still to train
    ended: bool = False


class TimeLeft:
    """Seconds until a run's ``trials`` (those this process trains, ``epochs`` each) end.

    One trial-epoch costs what the trials of this process measured: a finished trial's
    wall time over its epochs, a running or diverged one's time to its last epoch end over
    those epochs (a diverged trial of a fused group ends with its group, long after its
    last epoch). Failed trials and retried attempts measure nothing. The trials still to
    train go, whole, to the first free of as many slots as trials were seen training at
    once. ``seconds()`` is None until an epoch has ended, and 0 once every trial has."""

    def __init__(
        self, trials: Iterable[str], epochs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.epochs = max(1, epochs)
        self.clock = clock
        self.trials = {trial_id: _Trial() for trial_id in trials}
        self.slots = 1  # the most trials seen training at once

    def __call__(self, event) -> None:
        trial = self.trials.get(getattr(event, "trial_id", None))
        if trial is None or trial.ended:
            return  # another event, or a trial this process does not train (resumed)
        if isinstance(event, TrialStarted) and trial.started is None:
            trial.started, trial.training = self.clock(), True
            self.slots = max(self.slots, sum(other.training for other in self.trials.values()))
        elif isinstance(event, StepDone) and trial.training:
            trial.done = event.epochs_done
        elif isinstance(event, EpochDone) and trial.started is not None:
            self._epoch(trial, event.record)
        elif isinstance(event, TrialRetried):
            self.trials[event.trial_id] = _Trial()  # the attempt's time is no measure
        elif isinstance(event, TrialEnded):
            self._end(trial, event.status)

    def _epoch(self, trial: _Trial, record: dict) -> None:
        epoch = record["epoch"]
        trial.done, trial.timed = epoch, (self.clock() - trial.started, epoch)
        if record.get("status") == "diverged" or epoch >= self.epochs:
            # Nothing left to train: a fused group goes on without it, a finished trial is
            # tested; neither counts as a slot any more.
            trial.done, trial.training = self.epochs, False

    def _end(self, trial: _Trial, status: str) -> None:
        if status == "finished" and trial.started is not None:
            trial.timed = (self.clock() - trial.started, self.epochs)
        elif status == "failed":
            trial.timed = None
        trial.ended, trial.training, trial.done = True, False, self.epochs

    def per_epoch(self) -> float | None:
        """Seconds one trial-epoch takes on one slot; None before any was measured."""
        measured = [trial.timed for trial in self.trials.values() if trial.timed]
        epochs = sum(count for _, count in measured)
        return sum(seconds for seconds, _ in measured) / epochs if epochs else None

    def seconds(self) -> float | None:
        trials = [trial for trial in self.trials.values() if not trial.ended]
        if not trials:  # trials that all failed measured nothing, yet none is left
            return 0.0
        per_epoch = self.per_epoch()
        if per_epoch is None:
            return None
        waiting = sum(trial.started is None for trial in trials)
        busy = sorted(
            max(0.0, self.epochs - trial.done) * per_epoch
            for trial in trials
            if trial.started is not None
        )
        return finish_time(busy, max(self.slots, len(busy)), waiting, self.epochs * per_epoch)


def finish_time(busy: list[float], slots: int, waiting: int, each: float) -> float:
    """When the last of ``waiting`` jobs of ``each`` seconds ends, each going to the first
    free of ``slots`` slots, ``busy`` (sorted, none above ``each``) of them busy for that
    long. The slots take them in turn, so slot ``i`` gets a share and one more for the
    first ``waiting % slots``: no queue to simulate, whatever the number of trials."""
    loads = [0.0] * (slots - len(busy)) + busy
    rounds, extra = divmod(waiting, slots)
    return max(load + (rounds + (i < extra)) * each for i, load in enumerate(loads))
