"""--estimate: the arithmetic by hand (estimate.py), and the line it prints under the dry
run's plan (measure.estimate_line) for a new run and for the rest of a resumed one; a
--dry-run alone times nothing."""

import re

import pytest

from losscmp.estimate import (
    JobCost,
    job_seconds,
    laid_out,
    report_seconds,
    rough_duration,
    run_seconds,
    slowdown,
    start_with_workers,
)


def test_a_job_costs_its_setup_its_epochs_and_its_final_scores():
    cost = JobCost(setup_s=2.0, step_s=0.5, evaluation_s=3.0, final_s=4.0)
    # 2 + 3 epochs x (10 steps x 0.5 + 3) + 4
    assert job_seconds(cost, steps_per_epoch=10, epochs=3) == 30.0


def test_the_final_scores_default_to_nothing():
    assert job_seconds(JobCost(1.0, 1.0, 1.0), steps_per_epoch=2, epochs=1) == 4.0


@pytest.mark.parametrize(
    ("durations", "slots", "seconds"),
    [
        ([4, 3, 2, 1], 1, 10),  # one after another
        # slots free at [0, 0]: 4 -> [0, 4]; 3 -> [3, 4]; 2 -> [4, 5]; 1 -> [5, 5]
        ([4, 3, 2, 1], 2, 5),
        ([4, 3, 2, 1], 8, 4),  # more slots than jobs: the longest job
        # in order, not longest first: 1 -> [1, 0]... [1, 1]; 4 on the first free: 5
        ([1, 1, 4], 2, 5),
        ([], 3, 0),
    ],
)
def test_jobs_are_laid_out_in_order_on_the_first_free_slot(durations, slots, seconds):
    assert laid_out(durations, slots) == seconds


@pytest.mark.parametrize(
    ("slots", "threads", "cores", "factor"),
    [(2, 1, 2, 1.0), (1, 1, 8, 1.0), (2, 2, 2, 2.0), (3, 2, 4, 1.5), (2, 1, 0, 2.0)],
)
def test_jobs_beyond_the_cores_share_them(slots, threads, cores, factor):
    assert slowdown(slots, threads, cores) == factor


def test_a_run_is_its_start_then_its_jobs_slowed_and_laid_out():
    # 3 + three 10 s jobs at 1.5x on 2 slots: [15, 15] then 15 more on one: 30
    assert run_seconds([10, 10, 10], slots=2, slower=1.5, start_s=3) == 33


def test_a_run_ends_with_its_report():
    # 3 + 30 as above, then a 2 s report
    assert run_seconds([10, 10, 10], slots=2, slower=1.5, start_s=3, report_s=2) == 35


@pytest.mark.parametrize(
    ("main_s", "worker_s", "workers", "cores", "seconds"),
    [
        (5, 4, 2, 2, 6.5),  # 2 workers x 4 s + the main process's 5 s on 2 cores: 13 / 2
        (5, 4, 2, 8, 5),  # cores enough: the main process's own start is the longer
        (2, 4, 2, 16, 4),  # ... or a worker's imports
        (1, 1, 2, 0, 3),  # no core known: one
    ],
)
def test_workers_start_beside_the_main_process_on_the_cores(
    main_s, worker_s, workers, cores, seconds
):
    assert start_with_workers(main_s, worker_s, workers, cores) == seconds


def test_a_report_is_its_imports_then_its_figures():
    assert report_seconds(import_s=1.5, figure_s=0.25, figures=3) == 2.25
    assert report_seconds(import_s=0.0, figure_s=0.25, figures=0) == 0.0


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0.4, "5 s"),
        (44, "45 s"),
        (89, "90 s"),
        (150, "2.5 min"),
        (599, "10 min"),
        (720, "12 min"),
        (3 * 3600 + 1800, "3.5 h"),
        (3 * 86400, "3.0 days"),
    ],
)
def test_a_duration_is_said_no_more_precisely_than_it_is_known(seconds, said):
    assert rough_duration(seconds) == said


TINY = ["--dataset", "synthetic(n_train=32,n_val=8)", "--image-size", "32", "--device", "cpu"]
ESTIMATE = re.compile(
    r"time: about \d[\d.]* (s|min|h|days) here for (\d+) jobs? \(measured a few training "
    r"steps and an evaluation of (.+); rough, ±50 %\)"
)


def _estimate(output: str) -> re.Match:
    found = ESTIMATE.fullmatch(" ".join(output.strip().splitlines()[-1].split()))
    assert found, output
    return found


def test_a_dry_run_alone_times_nothing_and_prints_no_time(cli, tmp_path, monkeypatch):
    """--dry-run stays the quick check it was: no step trained, its plan its last lines."""
    import losscmp.measure

    def trains(*args, **kwargs):
        raise AssertionError("a dry run trained a step")

    monkeypatch.setattr(losscmp.measure, "estimate_line", trains)
    result = cli("run", *TINY, "--losses", "dice", "--dry-run", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("executing: ")
    assert "time:" not in result.output


def test_an_estimate_is_a_dry_run_that_writes_nothing(cli, tmp_path):
    result = cli("run", *TINY, "--losses", "dice", "--epochs", "1", "--estimate",
                 "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(dry run: nothing trained)" in result.output
    lines = result.output.strip().splitlines()
    assert lines[-2].startswith("executing: ") and lines[-1].startswith("time: about ")
    assert not (tmp_path / "r").exists()


def test_an_estimate_ends_with_a_measured_time_for_its_jobs(cli, tmp_path):
    losses = ["--losses", "dice,focal,boundary", "--seeds", "2", "--epochs", "1"]
    result = cli("run", *TINY, *losses, "--threads", "1", "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    found = _estimate(result.output)
    assert found[2] == "6"  # 3 losses x 2 seeds, each a job of its own
    assert found[3] == "each of its 3 kinds of job"  # the seed changes no step's cost


def test_a_fused_estimate_times_its_fused_groups(cli, tmp_path):
    losses = ["--losses", "dice,focal", "--seeds", "2", "--epochs", "1", "--fuse", "on"]
    result = cli("run", *TINY, *losses, "--threads", "1", "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    found = _estimate(result.output)
    assert (found[2], found[3]) == ("2", "its one kind of job")  # 2 seeds: 2 fused models


def test_a_resumed_estimate_times_the_trials_left_only(cli, tmp_path):
    from run_fixtures import write_run

    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    result = cli("run", "--resume", run_dir, "--seeds", "3", "--estimate")
    assert result.exit_code == 0, result.output
    assert _estimate(result.output)[2] == "4"  # seeds 1 and 2 of both losses


def test_a_run_finished_has_nothing_left_to_time(cli, tmp_path):
    from run_fixtures import write_run

    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,))
    result = cli("run", "--resume", run_dir, "--estimate")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "time: nothing left to train"


def test_a_step_that_fails_while_timed_is_said_not_a_traceback(cli, tmp_path, monkeypatch):
    """Out of memory on the GPU, say: the plan is printed already and every check made."""
    import losscmp.measure

    def fails(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(losscmp.measure, "_measure", fails)
    result = cli("run", *TINY, "--losses", "dice", "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == (
        "time: not estimated: a timed training step failed "
        "(CUDA out of memory. Tried to allocate 2.00 GiB)"
    )


def test_past_the_budget_the_kinds_left_are_the_slowest_timed_of_their_kind(
    cli, tmp_path, monkeypatch
):
    """One job of each kind (its target maps) is timed whatever the budget; once it is
    spent (here at once) dice, of focal's kind (no maps), is taken as focal's cost."""
    import losscmp.measure
    from losscmp.estimate import JobCost

    timed = []
    hour_per_epoch = {"focal": 360.0, "dice": 1.0, "boundary": 720.0}  # x 10 steps

    def fake(job, prepared, shared, first):
        (trial,) = job.trained
        timed.append(trial.loss)
        return JobCost(0.0, hour_per_epoch[trial.loss], 0.0), 10

    monkeypatch.setattr(losscmp.measure, "_measure", fake)
    monkeypatch.setattr(losscmp.measure, "BUDGET_S", 0.0)
    losses = ["--losses", "focal,dice,boundary", "--epochs", "1", "--jobs", "1"]
    result = cli("run", *TINY, *losses, "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert timed == ["focal", "boundary"]  # the first of each kind, in the jobs' order
    found = _estimate(result.output)
    # focal 1 h, dice as focal 1 h (timed: 10 s), boundary 2 h, one after another
    assert found[0].startswith("time: about 4 h here for 3 jobs")
    assert found[3] == "2 of its 3 kinds of job, the others taken as the slowest of theirs"


def _quick_steps(monkeypatch):
    """Every kind of job timed at nothing: what the line adds up is the start and report."""
    import losscmp.measure
    from losscmp.estimate import JobCost

    monkeypatch.setattr(
        losscmp.measure, "_measure", lambda *args, **kwargs: (JobCost(0.0, 0.0, 0.0), 1)
    )


def test_workers_start_is_timed_and_counted_with_jobs_2(cli, tmp_path, monkeypatch):
    """An hour to start a worker: an hour before the first job (the dry run's start and the
    report, seconds, are lost in the rounding)."""
    import losscmp.measure

    _quick_steps(monkeypatch)
    monkeypatch.setattr(losscmp.measure, "_worker_seconds", lambda: 3600.0)
    losses = ["--losses", "dice,focal", "--epochs", "1", "--jobs", "2", "--threads", "1"]
    result = cli("run", *TINY, *losses, "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert _estimate(result.output)[0].startswith("time: about 60 min here for 2 jobs")


def test_no_worker_is_started_to_time_a_run_in_this_process(cli, tmp_path, monkeypatch):
    import losscmp.measure

    def spawns():
        raise AssertionError("a worker was timed for --jobs 1")

    monkeypatch.setattr(losscmp.measure, "_worker_seconds", spawns)
    losses = ["--losses", "dice,focal", "--epochs", "1", "--jobs", "1"]
    result = cli("run", *TINY, *losses, "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert _estimate(result.output)[2] == "2"


def test_the_report_after_the_trials_is_counted(cli, tmp_path, monkeypatch):
    """Half an hour a figure: the learning curves and the one dataset's prediction panel."""
    import losscmp.measure

    _quick_steps(monkeypatch)
    monkeypatch.setattr(losscmp.measure, "_figure_seconds", lambda losses: 1800.0)
    losses = ["--losses", "dice,focal", "--epochs", "1", "--jobs", "1"]
    result = cli("run", *TINY, *losses, "--estimate", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert _estimate(result.output)[0].startswith("time: about 60 min here for 2 jobs")


def test_a_worker_timed_is_spawned_as_the_run_spawns_them_then_stopped():
    import multiprocessing

    from losscmp.measure import WORKER_WAIT_S, _worker_seconds

    seconds = _worker_seconds()
    assert 0 < seconds < WORKER_WAIT_S  # it said it was ready: torch, smp and scipy imported
    assert not [child for child in multiprocessing.active_children() if child.is_alive()]
