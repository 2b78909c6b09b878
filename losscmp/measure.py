"""--estimate's time: a few real training steps timed here, then ``estimate``.

Each job shape (a dataset and a loss, or the losses of a fused group) is built as a run
builds it (``train.start_trial``, ``fused.start_group``) and trained for a warm-up step
and ``STEPS`` more on the run's own first batches (``train.train_step``,
``fused.group_step``: the run's code, not a copy), with the run's model, batch, image
size, device, AMP and threads per job; its evaluation passes are timed over a few batches
and scaled to the split, and the boundary scores of the last epoch over a few images.
The run's start is this dry run's own; with ``--jobs 2`` or more, a worker is spawned as the
run spawns them and timed until it is ready. The report after the trials: its modules'
imports and a stand-in figure, timed. Nothing is kept: the weights trained here are thrown
away, the worker stopped.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time
from collections.abc import Collection

from losscmp.estimate import (
    ROUGHLY,
    JobCost,
    job_seconds,
    report_seconds,
    rough_duration,
    run_seconds,
    slowdown,
    start_with_workers,
)

STEPS = 3  # timed training steps of the first job shape, after one warm-up step
# ... and of each other shape: the process is warm by then (kernels chosen, memory
# pooled), and what differs between shapes is their losses and maps, in every step.
OTHER_STEPS = 2
EVALUATION_BATCHES = 3  # evaluation batches timed per split (the first one a warm-up)
BOUNDARY_IMAGES = 4  # images whose boundary scores are timed
# Seconds of measuring after which the shapes left (26 losses alone: 26 shapes) are not
# timed but taken as the slowest timed one of their kind (the same target maps, the host
# work that differs most between losses); one shape of each kind is timed whatever it takes.
BUDGET_S = 8.0
# How long a worker's start is waited for at most: one that takes longer counts this much.
WORKER_WAIT_S = 60.0


class _Enough(Exception):
    """Stops an evaluation pass once enough of its batches are timed."""


def estimate_line(prepared, began: float, done: Collection[str] = (), meta=None) -> str:
    """--estimate's last line: about how long the trials not ``done`` take here, measured
    (``began``: ``time.monotonic()`` when the command began: a run's start, its data loaded
    and its checks made, takes what this dry run's did; ``meta``: a resumed run's run.json,
    whose fusion and threads the rest keeps)."""
    from losscmp.runner import planned_jobs

    execution, jobs = planned_jobs(prepared, done, meta)
    if execution.executor != "local":
        return (
            f"time: not estimated for --executor {execution.executor} (its tasks run "
            "on the cluster's machines, as many at once as it fits)"
        )
    if not jobs:
        return "time: nothing left to train"
    main_s = time.monotonic() - began
    # Imported now whatever the jobs: else the first job's timed setup would count them.
    job_imports_s = _import_seconds()
    try:
        costs, timed = measure_job_costs(prepared, jobs, execution)
    except Exception as error:  # the plan is printed and checked: an estimate is a bonus
        reason = " ".join(str(error).split()[:30]) or type(error).__name__
        return f"time: not estimated: a timed training step failed ({reason})"
    start_s = _start_seconds(main_s, job_imports_s, execution)
    epochs = prepared.plan.config.epochs
    durations = [job_seconds(*costs[_shape(job)], epochs) for job in jobs]
    slower = _slowdown(execution, prepared.settings.device)
    seconds = run_seconds(durations, execution.jobs, slower, start_s, _report_s(prepared))
    shapes = len(costs)
    if shapes == 1:
        kinds = "its one kind of job"
    elif timed == shapes:
        kinds = f"each of its {shapes} kinds of job"
    else:
        kinds = f"{timed} of its {shapes} kinds of job, the others taken as the slowest of theirs"
    return (
        f"time: about {rough_duration(seconds)} here for {len(jobs)} job"
        f"{'s' if len(jobs) > 1 else ''} (measured a few training steps and an evaluation "
        f"of {kinds}; rough, {ROUGHLY})"
    )


def _import_seconds() -> float:
    """What a run imports before its first job (``worker.import_job_modules``: smp, scipy),
    timed: part of its start that this dry run has not paid yet."""
    from losscmp.worker import import_job_modules

    began = time.perf_counter()
    import_job_modules()
    return time.perf_counter() - began


def _start_seconds(main_s: float, job_imports_s: float, execution) -> float:
    """The run's start: this dry run's own (``main_s``: imports, data, checks) and, in this
    process (``--jobs 1``), the job modules' imports; with workers, theirs instead (one
    spawned now, timed), beside the main process's start on the cores."""
    if execution.jobs == 1:
        return main_s + job_imports_s
    from losscmp.executors.local import available_cores

    return start_with_workers(main_s, _worker_seconds(), execution.jobs, available_cores())


def _worker_seconds() -> float:
    """A worker's start, timed: one spawned as the run spawns them
    (``executors.local._Worker``), from its spawn to its 'ready' (a fresh Python, torch, smp,
    scipy: ``worker.import_job_modules``), then stopped. Alone on the cores, the dry run's
    checks done: the run's workers start beside its main process (``start_with_workers``)."""
    from multiprocessing.connection import wait

    from losscmp.executors.local import _Worker

    began = time.perf_counter()
    worker = _Worker(multiprocessing.get_context("spawn"), 0, device_type=None)
    try:
        while True:
            wait([worker.conn, worker.process.sentinel], timeout=WORKER_WAIT_S)
            if not worker.conn.poll():  # died, or still not ready: the rest is the guess
                return time.perf_counter() - began
            kind, _payload = worker.conn.recv()
            if kind == "ready":
                return time.perf_counter() - began
    finally:
        worker.stop()
        worker.join()


def _report_s(prepared) -> float:
    """The report after the trials: its modules imported, timed now (what this dry run has
    not loaded: pandas, matplotlib), and its figures (the learning curves, each dataset's
    prediction panel, the imbalance dial's figure) drawn as one stand-in figure is, timed."""
    began = time.perf_counter()
    import pandas  # noqa: F401 (the tables)

    import losscmp.render.html  # noqa: F401 (report.html)
    import losscmp.summary  # noqa: F401
    from losscmp.render import figures

    figures.require_matplotlib()
    import_s = time.perf_counter() - began
    datasets = len(prepared.plan.dataset_specs)
    drawn = 1 + datasets + (datasets > 1)
    return report_seconds(import_s, _figure_seconds(prepared.plan.config.losses), drawn)


def _figure_seconds(losses) -> float:
    """One figure of the report's kind (``figures._figure``: a constrained layout, a PNG
    as ``figures.png_bytes`` writes it) with a line per loss, drawn and encoded, timed."""
    from losscmp.render import figures

    began = time.perf_counter()
    figure = figures._figure(6.4, 3.6)
    axis = figure.subplots()
    for index, loss in enumerate(losses):
        axis.plot([0, 1, 2], [index, index + 1, index], label=figures.plain(loss))
    axis.legend()
    axis.set_title("stand-in")
    figures.png_bytes(figure)
    return time.perf_counter() - began


def measure_job_costs(prepared, jobs, execution) -> tuple[dict[tuple, tuple[JobCost, int]], int]:
    """Each distinct shape of ``jobs``: its ``JobCost`` and steps per epoch, timed with the
    run's threads per job (up to ``BUDGET_S``; the rest as the slowest of their kind);
    and how many shapes were timed."""
    from losscmp.worker import _cudnn_autotune, torch_threads

    device = prepared.settings.device
    firsts = {}  # a job of each shape: one of each kind (its maps) first, then the rest
    kinds: dict[frozenset, tuple] = {}  # each kind's first shape: timed whatever the budget
    for job in jobs:
        if kinds.setdefault(_maps(job, prepared), _shape(job)) == _shape(job):
            firsts.setdefault(_shape(job), job)
    for job in jobs:
        firsts.setdefault(_shape(job), job)
    costs: dict[tuple, tuple[JobCost, int]] = {}
    shared: dict[tuple, float] = {}  # evaluations and boundary scores, by what they depend on
    with torch_threads(execution.threads), _cudnn_autotune(device):
        for shape, job in firsts.items():
            if not costs:  # the first, with the process's one-off costs: out of the budget
                costs[shape] = _measure(job, prepared, shared, first=True)
                began = time.perf_counter()
            elif shape in kinds.values() or time.perf_counter() - began < BUDGET_S:
                costs[shape] = _measure(job, prepared, shared, first=False)
    timed = len(costs)
    for shape, job in firsts.items():
        if shape not in costs:
            costs[shape] = _slowest_of_kind(job, costs, firsts, prepared)
    return costs, timed


def _maps(job, prepared) -> frozenset:
    """The target maps a job's losses need: the host work that sets losses apart."""
    from losscmp.losses import LOSS_REGISTRY

    specs = prepared.plan.loss_specs
    return frozenset().union(
        *(LOSS_REGISTRY.get(specs[trial.loss].name).needs for trial in job.trained)
    )


def _slowest_of_kind(job, costs, firsts, prepared) -> tuple[JobCost, int]:
    """The timed cost with the slowest step among shapes needing the same maps as ``job``
    (of any, where none of its kind was timed)."""
    kind = _maps(job, prepared)
    same = [cost for shape, cost in costs.items() if _maps(firsts[shape], prepared) == kind]
    return max(same or costs.values(), key=lambda cost: cost[0].step_s)


def _shape(job) -> tuple:
    """What a job's time depends on besides its seed and rate: its dataset and losses."""
    trained = job.trained
    return trained[0].dataset, job.fused, tuple(trial.loss for trial in trained)


def _measure(job, prepared, shared: dict, first: bool) -> tuple[JobCost, int]:
    """``job``'s cost and steps per epoch; ``shared``: the evaluation and boundary seconds
    measured so far, by dataset (and copies): every loss's model evaluates alike;
    ``first``: the process's first steps, after a warm-up step."""
    from losscmp.train import trial_settings

    trials = list(job.trained)
    data = prepared.datasets[trials[0].dataset]
    settings = trial_settings(prepared.settings, trials)
    specs = prepared.plan.loss_specs
    started = time.perf_counter()
    if job.fused:
        model, step, steps_per_epoch, needs = _fused(trials, specs, data, settings)
        copies = len(trials)
    else:
        model, step, steps_per_epoch, needs = _alone(trials[0], specs, data, settings)
        copies = 1
    setup_s = time.perf_counter() - started
    steps = STEPS if first else OTHER_STEPS
    step_s = _step_seconds(step, data, settings, needs, trials[0].seed, steps, warm=first)
    dataset = trials[0].dataset
    if (dataset, copies) not in shared:
        shared[dataset, copies] = _evaluation_seconds(model, data, settings, job.fused)
    if dataset not in shared:
        shared[dataset] = _boundary_seconds(data)
    evaluation_s, final_s = shared[dataset, copies], copies * shared[dataset]
    return JobCost(setup_s, step_s, evaluation_s, final_s), steps_per_epoch


def _alone(trial, specs, data, settings):
    """(model, one step of a batch, steps per epoch, the loss's maps) of a trial alone."""
    from losscmp.model import input_memory_format
    from losscmp.train import start_trial, train_step

    model, loss_fn, optimizer, scheduler, steps = start_trial(
        trial, specs[trial.loss], data, settings
    )
    model.train()
    layout = input_memory_format(model)

    def step(batch):
        return train_step(model, loss_fn, optimizer, scheduler, batch, settings, layout)

    return model, step, steps, loss_fn


def _fused(trials, specs, data, settings):
    """The same of a fused group (its model: the fused model)."""
    from losscmp.fused import _needs_of, group_step, start_group

    fused, copies, scheduler, steps = start_group(trials, specs, data, settings)
    fused.train()
    needs = _needs_of(copies)

    def step(batch):
        return group_step(fused, copies, scheduler, batch, settings, needs)

    return fused, step, steps, needs


def _step_seconds(step, data, settings, needs, seed: int, steps: int, warm: bool) -> float:
    """The median of ``steps`` steps' seconds, each from asking the loader for its batch to
    the step's end on the device; after a warm-up step (``warm``: the process's first
    steps pay one-off costs: kernels chosen, memory pooled); fewer where an epoch has
    fewer."""
    from losscmp.train import training_loader

    loader = iter(training_loader(data, settings, needs, seed, epoch=1))
    seconds = []
    began = time.perf_counter()
    for batch in loader:
        float(step(batch).sum())  # waits for the device: the step's own time, not the next's
        now = time.perf_counter()
        seconds.append(now - began)
        began = now
        if len(seconds) >= steps + warm:
            break
    return statistics.median(seconds[warm:] or seconds)


def _evaluation_seconds(model, data, settings, fused: bool) -> float:
    """One epoch's evaluation passes (validation, and test where there is one), each timed
    over its first batches and scaled to its batches."""
    splits = ["val", "test"] if data.has_test else ["val"]
    return sum(_pass_seconds(model, data, settings, split, fused) for split in splits)


def _pass_seconds(model, data, settings, split: str, fused: bool) -> float:
    from losscmp.fused import _evaluate
    from losscmp.train import evaluate

    ends = [time.perf_counter()]
    batches = 0

    def on_batch(_split: str, number: int, count: int) -> None:
        nonlocal batches
        ends.append(time.perf_counter())
        batches = count
        if number >= EVALUATION_BATCHES and number < count:
            raise _Enough

    with contextlib.suppress(_Enough):
        (_evaluate if fused else evaluate)(model, data, settings, split, on_batch=on_batch)
    timed = [later - earlier for earlier, later in zip(ends, ends[1:], strict=False)]
    if len(timed) == batches:  # the whole pass ran
        return ends[-1] - ends[0]
    return statistics.median(timed[1:]) * batches


def _boundary_seconds(data) -> float:
    """The last epoch's boundary scores of one model over the reported split, timed on a
    few of its masks against themselves shifted 2 px (a trained model's prediction is
    near its mask; an untrained one's noise would cost many times more) and shared among
    the threads as ``train.all_boundary_scores`` shares them."""
    import numpy as np
    import torch

    from losscmp.train import boundary_scores

    masks = data.masks(data.reported_split)
    images = len(masks)
    timed = min(images, BOUNDARY_IMAGES)
    if not timed:
        return 0.0
    began = time.perf_counter()
    for index in range(timed):
        mask = np.asarray(masks[index])
        boundary_scores(np.roll(mask, 2, axis=(0, 1)), mask, data)
    per_image = (time.perf_counter() - began) / timed
    return per_image * images / torch.get_num_threads()


def _slowdown(execution, device) -> float:
    """Jobs on the CPU share its cores (``estimate.slowdown``); elsewhere each is taken
    to run as it did alone."""
    if device.type != "cpu":
        return 1.0
    from losscmp.executors.local import available_cores

    return slowdown(execution.jobs, execution.threads, available_cores())
