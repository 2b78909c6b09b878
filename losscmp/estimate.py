"""A run's time, estimated from measured costs: --estimate's arithmetic, nothing timed here.

``measure.measure_job_costs`` times a few real training steps and an evaluation of each
job shape (a loss alone, or a fused group of losses) on this machine; these pure functions
turn those costs and the plan into seconds: the run's start (with worker processes, their
imports beside the main process's on the cores), each job's epochs of steps and
evaluations, the jobs laid out on the slots that train at once, in the order the executor
hands them out, then the report. Rough by nature: a diverged trial stops early, a loaded
machine runs slower, and a few steps' median is not an epoch's.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

# The spread the estimate's wording owns up to: what a few steps' median can be off by
# on a machine whose load changes (measured against whole runs in the README).
ROUGHLY = "±50 %"


@dataclass(frozen=True)
class JobCost:
    """What one job of a shape costs, in seconds, measured where it would run."""

    setup_s: float  # its model(s), loss(es) and optimizer built
    step_s: float  # one training step, its batch's loading included
    evaluation_s: float  # one epoch's evaluation passes (validation, and test if any)
    final_s: float = 0.0  # the last epoch's boundary scores of the reported split


def job_seconds(cost: JobCost, steps_per_epoch: int, epochs: int) -> float:
    """One job's seconds: its setup, then each epoch's steps and evaluation, then the last
    epoch's boundary scores."""
    epoch_s = steps_per_epoch * cost.step_s + cost.evaluation_s
    return cost.setup_s + epochs * epoch_s + cost.final_s


def laid_out(durations: Sequence[float], slots: int) -> float:
    """The seconds until the last job ends when ``slots`` jobs run at once, each job (in
    order) taken by the first slot to be free, as the executors hand them out."""
    if not durations:
        return 0.0
    free_at = [0.0] * max(1, min(slots, len(durations)))
    for duration in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration)
    return max(free_at)


def slowdown(slots: int, threads: int, cores: int) -> float:
    """How much slower each job runs than it did measured alone: jobs × threads beyond the
    cores share them (1 where they fit)."""
    return max(1.0, slots * threads / max(cores, 1))


def run_seconds(
    durations: Sequence[float],
    slots: int,
    slower: float = 1.0,
    start_s: float = 0.0,
    report_s: float = 0.0,
) -> float:
    """The run's seconds: its start (imports, data, checks; workers ready), then its jobs'
    ``durations`` (each as measured alone) laid out on ``slots``, each ``slower`` for
    sharing the cores, then its report."""
    return start_s + laid_out([duration * slower for duration in durations], slots) + report_s


def start_with_workers(main_s: float, worker_s: float, workers: int, cores: int) -> float:
    """Seconds until the first job can start in a worker: ``workers`` processes, spawned as
    the command starts, each import for ``worker_s`` (measured alone) while the main
    process's own start (``main_s``: imports, data, checks) goes on beside them, all on
    ``cores``. Neither waits for the other, but together they can go no faster than the
    cores do their sum of work."""
    shared = (workers * worker_s + main_s) / max(cores, 1)
    return max(main_s, worker_s, shared)


def report_seconds(import_s: float, figure_s: float, figures: int) -> float:
    """The report after the trials: its modules imported (pandas, matplotlib: ``import_s``,
    what the dry run had not loaded), then ``figures`` figures drawn, ``figure_s`` each."""
    return import_s + figure_s * figures


def rough_duration(seconds: float) -> str:
    """``seconds`` as a person says a rough duration: '45 s', '2.5 min', '12 min', '3.5 h',
    '2.1 days', with no more precision than the estimate has."""
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes = seconds / 60
    if minutes < 10:
        return f"{round(minutes * 2) / 2:g} min"
    if minutes < 120:
        return f"{round(minutes)} min"
    hours = minutes / 60
    if hours < 48:
        return f"{round(hours * 2) / 2:g} h"
    return f"{hours / 24:.1f} days"
