"""The run's time left (timeleft.TimeLeft): events in, seconds out, on a clock the test sets.

Every expected number is worked out by hand in the test's comments."""

from __future__ import annotations

import pytest

from losscmp.events import EpochDone, StepDone, TrialEnded, TrialRetried, TrialStarted
from losscmp.timeleft import Costs, TimeLeft, finish_time


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


def test_an_epoch_costs_the_time_between_epoch_ends_and_a_trial_its_start_and_end():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (40, epoch("t0", 1)))
    # 40 s to the first epoch end, the only measure: t0's second epoch, then t1 and t2
    assert estimate.seconds() == pytest.approx(40 + 2 * 80)
    feed(estimate, clock, (90, epoch("t0", 2)), (100, TrialEnded("t0", "finished")))
    # 50 s from epoch end to epoch end. t0 was its process's first trial: its 10 s before
    # the steps and 10 s after the last epoch are no measure yet. 2 trials of 2 epochs.
    assert estimate.costs() == Costs(epoch=50, start=0, end=0)
    assert estimate.seconds() == pytest.approx(2 * 100)
    feed(estimate, clock, (100, TrialStarted("t1")), (160, epoch("t1", 1)))
    # t1 is warm: 60 s to its first epoch end, 10 s beyond an epoch. t1 has 50 s left,
    # t2 10 + 100 s
    assert estimate.costs() == Costs(epoch=50, start=10, end=0)
    assert estimate.seconds() == pytest.approx(50 + 110)
    feed(estimate, clock, (210, epoch("t1", 2)))
    assert estimate.seconds() == pytest.approx(110)  # t1's end is not measured yet
    feed(estimate, clock, (215, TrialEnded("t1", "finished")))
    # 5 s from t1's last epoch end to its end: t2's 10 s start, 2 epochs of 50 s, 5 s end
    assert estimate.costs() == Costs(epoch=50, start=10, end=5)
    assert estimate.seconds() == pytest.approx(115)
    feed(estimate, clock, (215, TrialStarted("t2")))
    assert estimate.seconds() == pytest.approx(115)  # no step yet: its start is to pay
    feed(estimate, clock, (215, StepDone("t2", epoch=1, step=1, steps=5)))
    assert estimate.seconds() == pytest.approx(1.8 * 50 + 5)
    feed(estimate, clock, (315, epoch("t2", 2)))
    assert estimate.seconds() == pytest.approx(5)  # its end is left


def test_a_first_trial_slower_than_the_rest_does_not_inflate_the_estimate():
    """Trials of 2 epochs of 1 s, 1 s before their first step, 0.5 s after their last
    epoch; the process's first trial pays 3 s more of one-off costs (first allocations,
    kernel choice). Its wall time, 6.5 s, read 3.25 s an epoch: '0:00:13 left' before the
    next two trials, 3.5 s each; and 5 s before the last one, once t1 had ended."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0")),
        (5, epoch("t0", 1)),
        (6, epoch("t0", 2)),
        (6.5, TrialEnded("t0", "finished")),
    )
    # 1 s an epoch; nothing measured yet besides: 2 s each for t1 and t2 (7 s are left:
    # their own 1.5 s each are measured on t1)
    assert estimate.seconds() == pytest.approx(4)
    feed(
        estimate,
        clock,
        (6.5, TrialStarted("t1")),
        (8.5, epoch("t1", 1)),
        (9.5, epoch("t1", 2)),
        (10, TrialEnded("t1", "finished")),
    )
    # t1: 1 s start, 1 s an epoch (t0's and t1's), 0.5 s end: t2's 3.5 s exactly
    assert estimate.seconds() == pytest.approx(3.5)


def test_the_estimate_is_rough_until_a_warm_trial_has_ended():
    """The run above: after t0 the estimate said 4 s and 7 s were left, and nothing said
    that a trial's start and end were not in it yet. It is rough until t1, a trial that
    paid no one-off costs, has measured them by ending; the numbers are the same."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (5, epoch("t0", 1)))
    assert estimate.rough() and estimate.seconds() == pytest.approx(5 + 2 * 10)
    feed(estimate, clock, (6, epoch("t0", 2)), (6.5, TrialEnded("t0", "finished")))
    assert estimate.rough() and estimate.seconds() == pytest.approx(4)
    feed(estimate, clock, (6.5, TrialStarted("t1")), (8.5, epoch("t1", 1)))
    assert estimate.rough()  # t1's start is measured, its end is not
    feed(estimate, clock, (9.5, epoch("t1", 2)), (10, TrialEnded("t1", "finished")))
    assert not estimate.rough() and estimate.seconds() == pytest.approx(3.5)


@pytest.mark.parametrize("how", ["failed", "diverged", "retried"])
def test_a_warm_trial_that_did_not_finish_leaves_the_estimate_rough(how):
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0")),
        (2, epoch("t0", 1)),
        (3, epoch("t0", 2)),
        (3, TrialEnded("t0", "finished")),
        (3, TrialStarted("t1")),
        (4, epoch("t1", 1, status="diverged" if how == "diverged" else "ok")),
    )
    if how == "retried":
        feed(estimate, clock, (5, TrialRetried("t1", "worker process died")))
    else:
        feed(estimate, clock, (5, TrialEnded("t1", how, reason="worker process died")))
    assert estimate.rough()


def test_trials_all_on_their_own_worker_stay_rough_until_the_end():
    """No trial follows another on a worker: every measure holds its one-off costs."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1"], epochs=1, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0", "worker 1")),
        (0, TrialStarted("t1", "worker 2")),
        (5, epoch("t0", 1)),
        (6, TrialEnded("t0", "finished")),
    )
    assert estimate.rough() and estimate.seconds() == pytest.approx(5)  # t1: its 5 s epoch
    feed(estimate, clock, (7, epoch("t1", 1)), (8, TrialEnded("t1", "finished")))
    assert not estimate.rough() and estimate.seconds() == 0  # nothing left: nothing rough


def test_two_workers_first_trials_one_off_costs_are_no_measure():
    """The run of the report, three 2-epoch trials with --jobs 2: after the first trial,
    the time left said 6.7 s (its wall time over 2 epochs, 3.35 s an epoch), and the run
    ended 2.7 s later."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0", "worker 1")),
        (0, TrialStarted("t1", "worker 2")),
        (5.5, epoch("t0", 1)),
        (5.5, epoch("t1", 1)),
    )
    # 5.5 s to the first epoch ends: the only measure yet. Each has an epoch left, t2 two.
    assert estimate.seconds() == pytest.approx(5.5 + 11)
    feed(
        estimate,
        clock,
        (6.5, epoch("t0", 2)),
        (6.6, epoch("t1", 2)),
        (6.7, TrialEnded("t0", "finished")),
    )
    # 1 s an epoch then 1.1 s: 1.05 s. t1 has its end left (not measured: 0), t2 2 epochs
    assert estimate.seconds() == pytest.approx(2 * 1.05)
    feed(
        estimate,
        clock,
        (6.7, TrialStarted("t2", "worker 1")),
        (6.8, TrialEnded("t1", "finished")),
        (7.2, StepDone("t2", epoch=1, step=1, steps=2)),
        (8.2, epoch("t2", 1)),
    )
    # t2 on worker 1, warm: 1.5 s to its first epoch end, 0.45 s beyond an epoch, paid
    assert estimate.costs() == Costs(epoch=pytest.approx(1.05), start=pytest.approx(0.45), end=0)
    assert estimate.seconds() == pytest.approx(1.05)


def test_a_trial_on_a_slot_that_ended_none_is_still_cold():
    """A worker whose first trial starts after another worker's ended pays its one-off
    costs all the same."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0", "worker 1")),
        (2, epoch("t0", 1)),
        (3, epoch("t0", 2)),
        (3, TrialEnded("t0", "finished")),
        (3, TrialStarted("t1", "worker 2")),
        (9, epoch("t1", 1)),
    )
    # t1's 6 s to its first epoch end hold 5 s of worker 2's start: no measure. 1 s an
    # epoch: t1 has 1 left, then t2 2 (one trial was seen training at a time)
    assert estimate.costs() == Costs(epoch=1, start=0, end=0)
    assert estimate.seconds() == pytest.approx(3)


def test_one_epoch_trials_measure_their_epoch_on_warm_trials():
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=1, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (5, epoch("t0", 1)))
    feed(estimate, clock, (5.5, TrialEnded("t0", "finished")))
    assert estimate.seconds() == pytest.approx(2 * 5)  # the first trial is all there is
    feed(estimate, clock, (5.5, TrialStarted("t1")), (7.5, epoch("t1", 1)))
    # t1 is warm: 2 s its epoch, its start included; t1 has its end left (0: not measured)
    assert estimate.seconds() == pytest.approx(2)
    feed(estimate, clock, (8, TrialEnded("t1", "finished")))
    assert estimate.seconds() == pytest.approx(2 + 0.5)


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
    # b0: 10 s to its first epoch end, 10 s to the next: 10 s of worker 1 an epoch, shared
    # by the group's two trials; a1 and b1 train side by side, 2 epochs of 2 * 5 s
    assert estimate.costs().epoch == pytest.approx(5)
    assert estimate.seconds() == pytest.approx(20)


def test_a_fused_group_is_one_job_of_its_trials_shared_seconds():
    """--fuse on -j 2, 2 epochs: a group of four losses on worker 1, a loss that fuses with
    none alone on worker 2, the same again waiting (a second seed); an epoch costs a group
    1 s per trial. Each trial counted as a slot of its own, an epoch of the lone trial as
    every trial's: '0:00:04 left' when 8 s were, and 2.5 times short (recorded runs of 46
    and 138 trials in groups of 16 and 7: 17 s for 42 s, 37 s for 67 s)."""
    clock = Clock()
    group, lone, waiting = ["a0", "a1", "a2", "a3"], "b0", ["c0", "c1", "c2", "c3"]
    estimate = TimeLeft([*group, lone, *waiting, "d0"], epochs=2, clock=clock)
    feed(estimate, clock, *[(0, TrialStarted(trial, "worker 1")) for trial in group])
    feed(
        estimate,
        clock,
        (0, TrialStarted(lone, "worker 2")),
        (1, epoch(lone, 1)),
        (2, epoch(lone, 2)),
        (2, TrialEnded(lone, "finished")),
    )
    # 1 s an epoch. Worker 1's group has 4 * 2 s left. The 5 waiting trials go as jobs of
    # 2.5 trials (5 trials in 2 jobs so far), 5 s each: both on worker 2, free now, by 10 s
    # (the truth: c0-c3 there, 8 s; d0 on worker 1 once its group ends at 8 s, 2 s)
    assert estimate.costs() == Costs(epoch=1, start=0, end=0)
    assert estimate.seconds() == pytest.approx(10)
    feed(estimate, clock, *[(2, TrialStarted(trial, "worker 2")) for trial in waiting])
    feed(estimate, clock, *[(4, epoch(trial, 1)) for trial in group])
    feed(estimate, clock, *[(6, epoch(trial, 1)) for trial in waiting])
    feed(estimate, clock, *[(6, StepDone(trial, epoch=2, step=1, steps=2)) for trial in group])
    # worker 1's group: half an epoch left, 4 * 0.5 s, then d0's 2 s; worker 2's: 4 * 1 s
    assert estimate.seconds() == pytest.approx(4)


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


def test_a_retried_trials_new_worker_is_cold_again():
    """A worker that died is replaced by a new process, which pays its one-off costs."""
    clock = Clock()
    estimate = TimeLeft(["t0", "t1", "t2"], epochs=2, clock=clock)
    feed(
        estimate,
        clock,
        (0, TrialStarted("t0", "worker 1")),
        (2, epoch("t0", 1)),
        (3, epoch("t0", 2)),
        (3, TrialEnded("t0", "finished")),
        (3, TrialStarted("t1", "worker 1")),
        (4, TrialRetried("t1", "worker process died")),
        (4, TrialStarted("t1", "worker 1")),
        (9, epoch("t1", 1)),
    )
    # t1's 5 s to its first epoch end hold the new worker's start: no measure. 1 s an
    # epoch: t1 has 1 left, then t2 2
    assert estimate.costs() == Costs(epoch=1, start=0, end=0)
    assert estimate.seconds() == pytest.approx(3)


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
        # a fused group busy longer than a job: the free slot takes both, at 0 and 5 s
        ([8.0], 2, 2, 5.0, 10.0),
        # ...and a third at 10 s, before the group's slot frees at 12 s
        ([12.0], 2, 3, 5.0, 15.0),
    ],
)
def test_finish_time_lays_the_waiting_trials_out_on_the_free_slots(
    busy, slots, waiting, each, expected
):
    assert finish_time(busy, slots, waiting, each) == pytest.approx(expected)


class CountedPasses(dict):
    """A TimeLeft's trials that count the passes over all of them."""

    passes = 0

    def values(self):
        self.passes += 1
        return super().values()


def test_no_event_costs_a_pass_over_every_trial():
    """The time left was worked out after every event (each step of each trial) with
    passes over every trial of the run: 390 trials sent 78,780 events, which took 7.0 s
    of the main process (1.3 s then), growing with the square of the trials. Then each
    trial's start, epoch end and end still made one (3450 trials of 30 steps: 6.6 s for
    all their events, 2.4 s now); none now."""
    clock = Clock()
    estimate = TimeLeft([f"t{i}" for i in range(1000)], epochs=2, clock=clock)
    feed(estimate, clock, (0, TrialStarted("t0")), (40, epoch("t0", 1)))
    assert estimate.seconds() == pytest.approx(40 + 999 * 80)  # asked after every event
    estimate.trials = CountedPasses(estimate.trials)
    feed(estimate, clock, (45, StepDone("t0", epoch=2, step=1, steps=4)))
    # t0: 0.75 of an epoch of 40 s left; the other 999 trials 2 epochs each, one at a time
    assert estimate.seconds() == pytest.approx(30 + 999 * 80)
    feed(estimate, clock, (50, StepDone("t0", epoch=2, step=4, steps=4)))
    assert estimate.seconds() == pytest.approx(999 * 80)
    assert estimate.trials.passes == 0
    feed(estimate, clock, (80, epoch("t0", 2)), (80, TrialEnded("t0", "finished")))
    assert estimate.seconds() == pytest.approx(999 * 80)  # 80 s a trial, as measured
    assert estimate.trials.passes == 0  # what a trial costs changed: kept up to date


def measured_by_passes(trials) -> Costs | None:
    """``TimeLeft.costs`` worked out from every trial, as it was before it kept sums."""
    warm_firsts = [trial.first for trial in trials if trial.first and trial.warm]
    ends = [trial.after for trial in trials if trial.after is not None and trial.warm]
    end = sum(ends) / len(ends) if ends else 0.0
    epochs = sum(trial.between[1] for trial in trials)
    if epochs:
        epoch = sum(trial.between[0] for trial in trials) / epochs
        beyond = [seconds - count * epoch for seconds, count in warm_firsts]
        return Costs(epoch, max(0.0, sum(beyond) / len(beyond) if beyond else 0.0), end)
    firsts = warm_firsts or [trial.first for trial in trials if trial.first]
    if not firsts:
        return None
    return Costs(sum(s for s, _ in firsts) / sum(count for _, count in firsts), 0.0, end)


def test_the_kept_sums_give_what_passes_over_every_trial_gave():
    """Random runs of three slots: trials that finish, diverge, fail or are retried; after
    every event the costs equal those worked out from every trial."""
    import random

    chance = random.Random(7)
    clock = Clock()
    trials = [f"t{i}" for i in range(60)]
    estimate = TimeLeft(trials, epochs=3, clock=clock)
    waiting = list(trials)
    slots: dict[str, str | None] = {"w1": None, "w2": None, "w3": None}
    epochs_done: dict[str, int] = {}
    checked = 0
    while waiting or any(slots.values()):
        clock.now += chance.uniform(0.5, 20)
        slot = chance.choice(list(slots))
        trial = slots[slot]
        if trial is None:
            if waiting:
                slots[slot] = waiting.pop(0)
                epochs_done[slots[slot]] = 0
                estimate(TrialStarted(slots[slot], slot))
            continue
        roll = chance.random()
        if roll < 0.05:
            estimate(TrialRetried(trial, "worker process died"))
            waiting.insert(0, trial)
            slots[slot] = None
        elif roll < 0.08:
            estimate(TrialEnded(trial, "failed", "worker process died"))
            slots[slot] = None
        else:
            epochs_done[trial] += 1
            diverged = roll < 0.12
            estimate(epoch(trial, epochs_done[trial], "diverged" if diverged else "ok"))
            if diverged or epochs_done[trial] == 3:
                clock.now += chance.uniform(0, 2)
                estimate(TrialEnded(trial, "diverged" if diverged else "finished"))
                slots[slot] = None
        expected = measured_by_passes(estimate.trials.values())
        got = estimate.costs()
        assert (got is None) == (expected is None)
        if got is not None:
            assert got.epoch == pytest.approx(expected.epoch)
            assert got.start == pytest.approx(expected.start, abs=1e-9)
            assert got.end == pytest.approx(expected.end)
            checked += 1
    assert checked > 150
