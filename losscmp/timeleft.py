"""A run's time left, from the run's events and a clock; nothing drawn here.

Rich's own estimate is a rate over the last 30 s of the overall bar: a diverged or
failed trial's jump to done, or a retried one's drop back to zero, read as a burst or
a stall of speed, and the estimate swung far off for half a minute. This one measures
what an epoch of one trial costs, and what a trial costs besides its epochs, and lays
the work still to do out on the slots that train at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from losscmp.events import EpochDone, StepDone, TrialEnded, TrialRetried, TrialStarted

# The events that change what a trial costs, or which trials are running.
TIMED_EVENTS = (TrialStarted, EpochDone, TrialRetried, TrialEnded)


@dataclass
class _Trial:
    started: float | None = None  # when this attempt started; None while it waits
    warm: bool = False  # its slot had ended a trial before: no one-off costs in its times
    where: str = ""  # its slot, as TrialStarted names it
    job: list[str] | None = None  # the trials started with it on its slot (a fused group)
    done: float = 0.0  # epochs done, fractional between epoch ends
    last_epoch: tuple[float, int] | None = None  # (when, which) of its last epoch end
    first: tuple[float, int] | None = None  # (seconds, epochs) from its start to 1st end
    between: tuple[float, int] = (0.0, 0)  # (seconds, epochs) between its epoch ends
    after: float | None = None  # seconds from its last epoch end to its end, if finished
    training: bool = False  # started and with epochs still to train
    diverged: bool = False
    ended: bool = False

    @property
    def share(self) -> float:
        """Its part of its slot's seconds: the trials of a fused group train as one model,
        and an epoch of the group is one epoch of each."""
        return 1 / len(self.job) if self.job else 1.0

    def at_start(self) -> bool:
        return self.started is not None and not self.ended and not self.done and not self.last_epoch


@dataclass
class _Sums:
    """What ``TimeLeft.costs`` reads of every trial, summed, and kept up to date as each
    trial changes (its part taken out, then put back): a pass over every trial at each
    trial's start, epoch and end grew with the square of the trials (3450 trials: 4 s)."""

    between_s: float = 0.0  # seconds between epoch ends, all trials
    between_epochs: int = 0  # ...and the epochs they took
    firsts: int = 0  # trials with a first epoch end
    firsts_s: float = 0.0  # seconds from their start to it
    firsts_epochs: int = 0  # ...and the epochs that was
    warm_firsts: int = 0  # the same, of warm trials only
    warm_firsts_s: float = 0.0
    warm_firsts_epochs: int = 0
    warm_ends: int = 0  # warm trials that ended, measured after their last epoch
    warm_ends_s: float = 0.0

    def add(self, trial: _Trial, sign: int = 1) -> None:
        self.between_s += sign * trial.between[0]
        self.between_epochs += sign * trial.between[1]
        if trial.first:
            seconds, epochs = trial.first
            self.firsts += sign
            self.firsts_s += sign * seconds
            self.firsts_epochs += sign * epochs
            if trial.warm:
                self.warm_firsts += sign
                self.warm_firsts_s += sign * seconds
                self.warm_firsts_epochs += sign * epochs
        if trial.after is not None and trial.warm:
            self.warm_ends += sign
            self.warm_ends_s += sign * trial.after

    def remove(self, trial: _Trial) -> None:
        self.add(trial, sign=-1)


@dataclass(frozen=True)
class Costs:
    """Seconds of one trial on one slot: per epoch, before its first epoch's steps
    (model, first batch) and after its last epoch (its result sent and written)."""

    epoch: float
    start: float
    end: float


class TimeLeft:
    """Seconds until a run's ``trials`` (those this process trains, ``epochs`` each) end.

    An epoch costs what this process's trials took from one epoch end to the next (before
    any trial has ended two epochs: from a trial's start to its first epoch end, a warm
    trial's if any). A trial's costs besides its epochs (to its first epoch end, beyond
    an epoch; from its last epoch end to its end) are measured on warm trials only, those
    started on a slot (``TrialStarted.where``) that had ended a trial: the first trials of
    a worker pay its process's one-off costs too (first allocations, kernel choice), and
    until a warm trial has measured them they count as nothing (a slot whose trial failed
    or was retried is cold again: a worker that died is replaced). A failed trial and a
    retried attempt measure nothing, nor does a diverged trial's end (a fused group's
    ends with its group). A job is the trials a slot starts one after another before
    any trains (a fused group; else one trial): its trials share its slot's seconds, so
    a group of K trials' epoch is an epoch of 1/K of its seconds for each. The trials
    still to train go, in jobs the mean size of those started, to the first free of as
    many slots as jobs were seen training at once. ``seconds()`` is None until an
    epoch has ended, and 0 once every trial has.

    Until a warm trial has ended, the estimate is ``rough()``: its epochs are first
    trials' (the very first, start-up included, until a trial has two), which may run
    slower than later ones, and a trial's start and end count as nothing; it may read
    too high or too low, and a display says so."""

    def __init__(
        self, trials: Iterable[str], epochs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.epochs = max(1, epochs)
        self.clock = clock
        self.trials = {trial_id: _Trial() for trial_id in trials}
        self.slots = 1  # the most jobs (a trial, or a fused group) seen training at once
        self.used: set[str] = set()  # the slots that have ended a trial
        self._jobs: dict[str, list[str]] = {}  # slot -> the trials of the job it last started
        self._jobs_started = 0  # and how many jobs, of how many trials, were started
        self._trials_started = 0
        # A run sends hundreds of events per trial (every step), and asks for the time left
        # after each: what would take a pass over every trial is kept up to date instead.
        self._unended = len(self.trials)
        self._started: dict[str, _Trial] = {}  # started and not ended
        self._training: set[str] = set()
        self._costs: Costs | None = None
        self._costs_known = False  # _costs is what costs() gives now: no epoch end since
        self._warm_ended = False  # a warm trial has measured a trial's start and end
        self._sums = _Sums()  # of self.trials

    def __call__(self, event) -> None:
        trial_id = getattr(event, "trial_id", None)
        trial = self.trials.get(trial_id)
        if trial is None or trial.ended:
            return  # another event, or a trial this process does not train (resumed)
        if isinstance(event, StepDone):
            if trial.training:
                trial.done = event.epochs_done
            return  # the most frequent event: nothing a trial costs has changed
        if not isinstance(event, TIMED_EVENTS):
            return  # e.g. Evaluating: nothing to count
        self._costs_known = False
        self._sums.remove(trial)  # put back, as it is after the event, below
        if isinstance(event, TrialStarted) and trial.started is None:
            trial.started, trial.training = self.clock(), True
            trial.where, trial.warm = event.where, event.where in self.used
            trial.job = self._job_for(trial_id, event.where)
            self._started[trial_id] = trial
            self._training.add(trial_id)
            jobs = {id(self.trials[training].job) for training in self._training}
            self.slots = max(self.slots, len(jobs))
        elif isinstance(event, EpochDone) and trial.started is not None:
            self._epoch(trial, event.record)
        elif isinstance(event, TrialRetried):
            self.used.discard(trial.where)  # a worker that died is replaced by a new one
            self.trials[trial_id] = _Trial()  # the attempt's time is no measure
            self._started.pop(trial_id, None)
        elif isinstance(event, TrialEnded):
            self._end(trial, event.status)
            self._started.pop(trial_id, None)
            self._unended -= 1
        self._sums.add(self.trials[trial_id])
        if not self.trials[trial_id].training:
            self._training.discard(trial_id)

    def _job_for(self, trial_id: str, where: str) -> list[str]:
        """The job a trial starts in: its slot's last one while none of that job's trials
        has ended an epoch or left (a fused group's trials start one after another, before
        it trains), else a new one. Ray tasks that start at once on one node may read as
        one job: their seconds are then shared out, and what the slots do in all stays."""
        job = self._jobs.get(where)
        starting = job is not None and trial_id not in job  # not a retried attempt's
        if not starting or not all(self.trials[member].at_start() for member in job):
            job = self._jobs[where] = []
            self._jobs_started += 1
        job.append(trial_id)
        self._trials_started += 1
        return job

    def _epoch(self, trial: _Trial, record: dict) -> None:
        now, epoch = self.clock(), record["epoch"]
        trial.diverged = record.get("status") == "diverged"
        if trial.last_epoch is None:
            trial.first = ((now - trial.started) * trial.share, epoch)
        else:
            when, last = trial.last_epoch
            seconds = (now - when) * trial.share
            trial.between = (trial.between[0] + seconds, trial.between[1] + epoch - last)
        trial.last_epoch, trial.done = (now, epoch), epoch
        if trial.diverged or epoch >= self.epochs:
            # Nothing left to train: a fused group goes on without it, a finished trial is
            # sent back; neither counts as a slot any more.
            trial.done, trial.training = self.epochs, False

    def _end(self, trial: _Trial, status: str) -> None:
        if status == "finished" and trial.last_epoch is not None:
            trial.after = (self.clock() - trial.last_epoch[0]) * trial.share
            self._warm_ended = self._warm_ended or trial.warm
        if status == "failed":
            trial.first, trial.between = None, (0.0, 0)
            self.used.discard(trial.where)
        elif trial.started is not None:
            self.used.add(trial.where)
        trial.ended, trial.training, trial.done = True, False, self.epochs

    def costs(self) -> Costs | None:
        """What a trial costs on one slot, as measured so far; None before an epoch ended."""
        if not self._costs_known:
            self._costs, self._costs_known = self._measure(), True
        return self._costs

    def _measure(self) -> Costs | None:
        sums = self._sums
        end = sums.warm_ends_s / sums.warm_ends if sums.warm_ends else 0.0
        if sums.between_epochs:
            epoch = sums.between_s / sums.between_epochs
            # the mean over warm trials of their first epoch end's seconds beyond an epoch
            beyond = sums.warm_firsts_s - sums.warm_firsts_epochs * epoch
            start = beyond / sums.warm_firsts if sums.warm_firsts else 0.0
            return Costs(epoch, max(0.0, start), end)
        # No trial has ended two epochs: a first one, its start included, is the measure.
        if sums.warm_firsts:
            return Costs(sums.warm_firsts_s / sums.warm_firsts_epochs, 0.0, end)
        if sums.firsts:
            return Costs(sums.firsts_s / sums.firsts_epochs, 0.0, end)
        return None

    def rough(self) -> bool:
        """Whether trials remain and no warm trial has ended: the estimate rests on first
        trials alone, which pay one-off costs, and counts no trial's start or end."""
        return bool(self._unended) and not self._warm_ended

    def seconds(self) -> float | None:
        if not self._unended:  # trials that all failed measured nothing, yet none is left
            return 0.0
        costs = self.costs()
        if costs is None:
            return None
        loads: dict[int, float] = {}  # a running job's seconds left on its slot
        for trial in self._started.values():
            job = id(trial.job)
            loads[job] = loads.get(job, 0.0) + _left(trial, costs, self.epochs)
        busy = sorted(loads.values())
        waiting = self._unended - len(self._started)
        # The waiting trials go to the slots as jobs the size of those started so far:
        # a fused group, whole, keeps one slot busy while another may have ended.
        trials_a_job = self._trials_started / self._jobs_started if self._jobs_started else 1
        jobs = math.ceil(waiting / trials_a_job - 1e-9)
        each = costs.start + self.epochs * costs.epoch + costs.end
        job_each = waiting * each / jobs if jobs else 0.0
        return finish_time(busy, max(self.slots, len(busy)), jobs, job_each)


def _left(trial: _Trial, costs: Costs, epochs: int) -> float:
    """A started trial's seconds left: its start is paid once it has trained a step, and a
    diverged trial has nothing left (a fused group's ends with its group)."""
    if trial.diverged:
        return 0.0
    start = costs.start if trial.done == 0 else 0.0
    return start + (epochs - trial.done) * costs.epoch + costs.end


def finish_time(busy: list[float], slots: int, waiting: int, each: float) -> float:
    """When the last of ``waiting`` jobs of ``each`` seconds ends, each going to the first
    free of ``slots`` slots, ``busy`` (sorted) of them busy for that long. The slots that
    free first take them in turn, so slot ``i`` of those gets a share and one more for the
    first ``waiting % used``: no queue to simulate, whatever the number of trials. A slot
    busier than that (a fused group of many trials) takes none: the others end first."""
    loads = [0.0] * (slots - len(busy)) + busy
    for used in range(1, len(loads) + 1):
        rounds, extra = divmod(waiting, used)
        # the latest end of the used slots: the busiest of them, or of those given one more
        ends = loads[used - 1] + rounds * each
        if extra:
            ends = max(ends, loads[extra - 1] + (rounds + 1) * each)
        if used == len(loads) or ends - each <= loads[used]:
            break  # the next slot frees after the last job has started: it takes none
    return max(ends, loads[-1])
