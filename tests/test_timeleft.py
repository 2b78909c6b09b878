"""The run's time left (timeleft.TimeLeft): events in, seconds out, on a clock the test sets.

Every expected number is worked out by hand in the test's comments."""

from __future__ import annotations

import pytest

from losscmp.events import EpochDone, StepDone, TrialEnded, TrialRetried, TrialStarted
from losscmp.timeleft import TimeLeft, finish_time


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def epoch(trial_id: str, number: int, status: str = "ok") -> EpochDone:
    return EpochDone(trial_id, {"epoch": number, "status": status})


def feed(estimate: TimeLeft, clock: Clock, *timed) -> None:
    """(seconds, event) pairs: each event seen at its time."""
    for now, event in timed:
        clock.now = now
        estimate(event)


def test_unknown_until_an_epoch_ends():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1"], epochs=2, clock=clock)
    assert estimate.seconds() is None
    feed(estimate, clock, (0, TrialStarted("t0")), (30, StepDone("t0", 1, 3, 4)))
    assert estimate.seconds() is None  # a step's rate leaves out the evaluation: no basis


def test_one_slot_from_the_first_epoch_then_from_the_finished_trial():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (40, epoch("t0", 1)))
    # 40 s an epoch: t0's second epoch, then t1 and t2 in turn, two epochs each
    assert estimate.seconds() == pytest.approx(40 + 2 * 80)
    feed(estimate, clock, (90, epoch("t0", 2)), (100, TrialEnded("t0", "finished")))
    # t0 took 100 s for 2 epochs (its test pass included): 50 s an epoch, 2 trials to go
    assert estimate.seconds() == pytest.approx(2 * 100)


def test_two_workers_count_running_trials_progress():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2", "t3"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0", "worker 1")),
        (0, TrialStarted("t1", "worker 2")),
        (100, epoch("t0", 2)),
        (100, TrialEnded("t0", "finished")),
        (100, StepDone("t1", epoch=2, step=1, steps=2)),
    )
    # 50 s an epoch; t1 has half an epoch left (25 s). Worker 1 takes t2 now (ends at
    # 100 s), worker 2 takes t3 at 25 s (ends at 125 s).
    assert estimate.seconds() == pytest.approx(125)


def test_a_fused_groups_diverged_trial_counts_its_epochs_not_its_groups_wall_time():
    """A diverged trial of a fused group ends with its group: its wall time over its one
    epoch would make an epoch look twice as long as it is."""
    clock = Clock()
    estimate = TimeLeft(["a0", "b0", "a1", "b1"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("a0", "worker 1")),
        (0, TrialStarted("b0", "worker 1")),
        (10, epoch("a0", 1, status="diverged")),
        (10, epoch("b0", 1)),
        (20, epoch("b0", 2)),
        (20, TrialEnded("b0", "finished")),
        (20, TrialEnded("a0", "diverged")),
    )
    # a0: 10 s for 1 epoch, b0: 20 s for 2: 10 s an epoch; a1 and b1 train side by side
    assert estimate.per_epoch() == pytest.approx(10)
    assert estimate.seconds() == pytest.approx(20)


def test_a_trial_that_diverged_early_has_nothing_left():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1"], epochs=4, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (30, epoch("t0", 1, status="diverged")))
    assert estimate.seconds() == pytest.approx(4 * 30)  # t1's 4 epochs, not t0's 3 more
    feed(estimate, clock, (31, TrialEnded("t0", "diverged")))
    assert estimate.seconds() == pytest.approx(4 * 30)


def test_a_failed_trial_is_no_measure_and_no_work_left():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0", "worker 1")),
        (0, TrialStarted("t1", "worker 2")),
        (5, TrialEnded("t0", "failed", reason="worker process died")),
    )
    assert estimate.seconds() is None
    feed(estimate, clock, (100, epoch("t1", 2)), (100, TrialEnded("t1", "finished")))
    # 50 s an epoch from t1 alone; only t2 is left, on either worker
    assert estimate.seconds() == pytest.approx(100)


def test_a_retried_attempt_measures_nothing_and_its_trial_starts_over():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0")),
        (50, epoch("t0", 1)),
        (60, TrialRetried("t0", "worker process died")),
    )
    assert estimate.seconds() is None
    feed(estimate, clock, (60, TrialStarted("t0")), (100, epoch("t0", 1)))
    # 40 s an epoch: t0's second epoch, then t1's two
    assert estimate.seconds() == pytest.approx(40 + 80)


def test_a_resumed_run_counts_only_the_trials_it_trains():
    """The trials finished before the resume are not in ``trials``; a fused group's
    finished members train again silently and send nothing."""
    clock = Clock()
    estimate = TimeLeft(["t3"], epochs=2, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t3")), (30, epoch("t3", 1)), (30, epoch("t0", 1)))
    assert estimate.seconds() == pytest.approx(30)


def test_nothing_left_once_every_trial_ended():
    clock = Clock()
    estimate = TimeLeft(["t0"], epochs=1, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (9, epoch("t0", 1)))
    assert estimate.seconds() == 0
    feed(estimate, clock, (10, TrialEnded("t0", "finished")))
    assert estimate.seconds() == 0


def test_nothing_left_when_every_trial_failed_or_none_was_to_train():
    """Rich's estimate is 0 once its bar is full: the overall bar's last frame said
    '-:--:--' instead for a run whose trials all failed before an epoch ended, and for a
    resume that had nothing left to train."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0")),
        (5, TrialEnded("t0", "failed", reason="worker process died")),
    )
    assert estimate.seconds() is None  # t1 is left, and nothing was measured
    feed(estimate, clock, (6, TrialEnded("t1", "failed", reason="worker process died")))
    assert estimate.seconds() == 0
    assert TimeLeft([], epochs=2, clock=clock).seconds() == 0


@pytest.mark.parametrize(
    ("busy", "slots", "waiting", "each", "expected"),
    [
        ([], 1, 3, 10.0, 30.0),
        ([4.0], 1, 0, 10.0, 4.0),
        # free slots at 0, 0, 10 take 100 s jobs: 100, 100, 110, then 200, 200
        ([10.0], 3, 5, 100.0, 200.0),
        # more slots than jobs: the busy slot's own time is the longest
        ([30.0, 90.0], 4, 1, 50.0, 90.0),
    ],
)
def test_finish_time_lays_the_waiting_trials_out_on_the_free_slots(
    busy, slots, waiting, each, expected
):
    assert finish_time(busy, slots, waiting, each) == pytest.approx(expected)
