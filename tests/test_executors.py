"""Executors: the same numbers from every executor, workers that die, jobs and threads."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from losscmp.config import build_config
from losscmp.errors import Terminated
from losscmp.events import (
    BOUNDARIES,
    EpochDone,
    Evaluating,
    RunNote,
    RunStarted,
    StepDone,
    TrialEnded,
    TrialInfo,
    TrialRetried,
    TrialStarted,
)
from losscmp.executors.base import Execution, Executor
from losscmp.plan import Trial, plan_run
from losscmp.runner import execute, make_jobs, prepare, resolve_execution

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
METRICS = ["train_loss", "val_dice", "val_iou", "val_mcc", "val_precision", "val_recall", "lr"]
# Four quick trials: two losses x two seeds on a very small set.
QUICK = {
    "losses": "dice,bce",
    "dataset": "synthetic(fg_fraction=0.1,n_train=16,n_val=8)",
    "epochs": 2,
    "seeds": 2,
    "model": "tiny",
    "device": "cpu",
    "threads": 1,
}


def epochs_frame(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "epochs.csv")
    return frame.sort_values(["loss", "seed", "epoch"]).reset_index(drop=True)


def only_run_dir(out: Path) -> Path:
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


@pytest.fixture
def workers_when_resolved(monkeypatch) -> list[int]:
    """The local executor's workers each time it resolves the device (where this process
    imports torch): filled in as runs prepare."""
    from losscmp.executors.local import LocalExecutor

    counts: list[int] = []
    resolve_device = LocalExecutor.resolve_device

    def recorded(self, name):
        counts.append(len(self.workers))
        return resolve_device(self, name)

    monkeypatch.setattr(LocalExecutor, "resolve_device", recorded)
    return counts


def test_a_data_mistake_stops_early_workers_before_torch_is_imported_here(
    cli, tmp_path, workers_when_resolved
):
    """-j 2 spawns its workers before this process imports torch (resolving the device);
    a mistake in the data was found only after that import, which then shared the cores
    with the workers' own: +0.9 s on a 2-core machine. The data is now read first, with
    workers started: the mistake is refused before the device is resolved, the workers
    stopped, no folder made. Without early workers the data still loads after it."""
    import multiprocessing

    from fixtures_data import make_folder
    from PIL import Image

    root = tmp_path / "cases"
    make_folder(root, count=6)
    for mask in (root / "masks").iterdir():  # no foreground anywhere: found on reading
        Image.fromarray(np.zeros((40, 56), np.uint8)).save(mask)
    resolved = workers_when_resolved
    args = ["--dataset", f"folder:{root}", "--device", "cpu", "--out", tmp_path / "out"]
    with_workers = cli("run", *args, "--jobs", "2")
    assert with_workers.exit_code == 2
    assert "the training masks hold no foreground pixel" in with_workers.stderr
    assert resolved == []  # refused before the device (torch) was resolved
    assert multiprocessing.active_children() == [] and not (tmp_path / "out").exists()
    in_this_process = cli("run", *args, "--jobs", "1")
    assert in_this_process.exit_code == 2 and resolved == [0]


@pytest.mark.slow
def test_two_worker_processes_give_the_sequential_numbers(cli, tmp_path):
    """Each worker also runs a data-loader process of its own (``--num-workers 1``: a
    worker process may have children), and the batches are the same."""
    common = ["--config", SMOKE, "--threads", "1"]
    assert cli("run", *common, "--out", tmp_path / "seq").exit_code == 0
    pooled_args = ["--jobs", "2", "--num-workers", "1", "--out", tmp_path / "pool"]
    result = cli("run", *common, *pooled_args)
    assert result.exit_code == 0, result.output
    sequential = epochs_frame(only_run_dir(tmp_path / "seq"))
    pooled = epochs_frame(only_run_dir(tmp_path / "pool"))
    pd.testing.assert_frame_equal(sequential[METRICS], pooled[METRICS])
    meta = json.loads((only_run_dir(tmp_path / "pool") / "run.json").read_text())
    assert meta["execution"] == {
        "executor": "local",
        "jobs": 2,
        "threads": 1,
        "fused": False,
        "ray_address": None,
        "fused_adamw": True,
        "fused_per_copy": True,
        "fused_own_weights": True,
        "fused_group_size": 16,
    }


@pytest.mark.slow
def test_fused_groups_in_two_workers_give_the_in_process_numbers(cli, tmp_path):
    """Two seeds, so two fused groups: one per worker, or both in this process."""
    common = ["--config", SMOKE, "--dataset", "synthetic(fg_fraction=0.1,n_train=16,n_val=8)"]
    common += ["--seeds", "2", "--fuse", "on", "--threads", "1"]
    assert cli("run", *common, "--out", tmp_path / "here").exit_code == 0
    assert cli("run", *common, "--jobs", "2", "--out", tmp_path / "pool").exit_code == 0
    here = epochs_frame(only_run_dir(tmp_path / "here"))
    pooled = epochs_frame(only_run_dir(tmp_path / "pool"))
    assert len(here) == 3 * 2 * 2  # losses x seeds x epochs
    pd.testing.assert_frame_equal(here[METRICS], pooled[METRICS])
    meta = json.loads((only_run_dir(tmp_path / "pool") / "run.json").read_text())
    assert meta["execution"]["fused"] is True and meta["execution"]["jobs"] == 2


class WorkerKiller:
    """A listener that SIGKILLs (or sends ``sig``) the worker running ``victim`` at its first
    step, ``times`` times."""

    def __init__(self, prepared, victim: str, times: int, sig=signal.SIGKILL) -> None:
        self.prepared, self.victim, self.times, self.sig = prepared, victim, times, sig
        self.where: dict[str, str] = {}
        self.events: list = []
        self.pids: list[int] = []

    def __call__(self, event) -> None:
        self.events.append(event)
        if isinstance(event, TrialStarted):
            self.where[event.trial_id] = event.where
        if isinstance(event, StepDone) and event.trial_id == self.victim and self.times > 0:
            self.times -= 1
            index = int(self.where[event.trial_id].split()[1]) - 1
            self.pids.append(self.prepared.executor.workers[index].process.pid)
            os.kill(self.pids[-1], self.sig)


# Four steps an epoch: the victim is surely mid-trial when the kill lands.
LONGER = {**QUICK, "dataset": "synthetic(fg_fraction=0.1,n_train=64,n_val=8)"}


def run_with_killer(tmp_path: Path, times: int):
    plan = plan_run(build_config(**LONGER, jobs=2, out=str(tmp_path)))
    prepared = prepare(plan)
    victim = plan.trials[1].id
    killer = WorkerKiller(prepared, victim, times)
    run_dir = execute(prepared, listener=killer)
    return plan, run_dir, victim, killer


@pytest.mark.slow
def test_a_killed_worker_costs_one_retry_and_changes_no_number(tmp_path):
    _, run_dir, victim, killer = run_with_killer(tmp_path / "killed", times=1)
    retried = [e for e in killer.events if type(e).__name__ == "TrialRetried"]
    assert [e.trial_id for e in retried] == [victim]
    assert "SIGKILL" in retried[0].reason
    meta = json.loads((run_dir / "run.json").read_text())
    assert "failed_trials" not in meta
    plain = prepare(plan_run(build_config(**LONGER, out=str(tmp_path / "plain"))))
    plain_dir = execute(plain)
    pd.testing.assert_frame_equal(epochs_frame(run_dir)[METRICS], epochs_frame(plain_dir)[METRICS])


@pytest.mark.slow
def test_a_trial_whose_worker_dies_twice_is_recorded_failed_and_the_run_goes_on(tmp_path, cli):
    plan, run_dir, victim, killer = run_with_killer(tmp_path, times=2)
    meta = json.loads((run_dir / "run.json").read_text())
    assert list(meta["failed_trials"]) == [victim]
    assert "worker process died" in meta["failed_trials"][victim]
    finished = {path.stem for path in (run_dir / "trials").glob("*.json")}
    assert finished == {trial.id for trial in plan.trials} - {victim}
    ended = {e.trial_id: e.status for e in killer.events if isinstance(e, TrialEnded)}
    assert ended[victim] == "failed"
    # --resume trains just the failed trial, and the run is then complete.
    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    finished = {path.stem for path in (run_dir / "trials").glob("*.json")}
    assert finished == {trial.id for trial in plan.trials}
    assert json.loads((run_dir / "run.json").read_text()).get("failed_trials", {}) == {}


# A healthy worker of the run below is silent for at most ~7 s (importing torch, building
# the model before its first step) on 2 busy cores: three times that is no stall.
TEST_STALL_LIMIT_S = 20


def test_a_fused_group_may_stay_silent_for_as_long_as_its_models_together():
    """A fused group's step and evaluation batch run every copy's model, its resumed
    trials' included: one limit for any job killed a slow but healthy group."""
    from losscmp.executors.base import STALL_LIMIT_S, Job, stall_limit_s, stall_reason

    trials = tuple(Trial("synthetic", loss, 0) for loss in ("dice", "bce", "focal"))
    assert stall_limit_s(Job(trials[:1])) == STALL_LIMIT_S
    assert stall_limit_s(Job(trials, fused=True)) == 3 * STALL_LIMIT_S
    assert stall_limit_s(Job(trials[2:], fused=True, group=trials)) == 3 * STALL_LIMIT_S
    reason = stall_reason(stall_limit_s(Job(trials, fused=True)))
    assert reason == "worker stalled: nothing for 90 min (hung?); killed"


@pytest.mark.slow
def test_a_stalled_worker_is_killed_and_its_trial_retried_with_the_same_numbers(
    tmp_path, monkeypatch
):
    """A worker that hung (here stopped by SIGSTOP) used to hang the whole run for ever: it
    is now killed once silent for the stall limit, like a dead worker, and its trial goes
    to a fresh worker."""
    import threading

    import losscmp.executors.base as base

    monkeypatch.setattr(base, "STALL_LIMIT_S", TEST_STALL_LIMIT_S)
    plan = plan_run(build_config(**LONGER, jobs=2, out=str(tmp_path / "stalled")))
    prepared = prepare(plan)
    victim = plan.trials[1].id
    stopper = WorkerKiller(prepared, victim, times=1, sig=signal.SIGSTOP)
    # Without the watchdog the run would wait for ever: the stopped worker is killed later
    # instead, so the test fails (a death, not a stall) rather than hangs.
    rescue = threading.Timer(6 * TEST_STALL_LIMIT_S, lambda: _kill_all(stopper.pids))
    rescue.start()
    try:
        run_dir = execute(prepared, listener=stopper)
    finally:
        rescue.cancel()
    retried = [(e.trial_id, e.reason) for e in stopper.events if isinstance(e, TrialRetried)]
    assert retried == [(victim, "worker stalled: nothing for 20 s (hung?); killed")]
    assert "failed_trials" not in json.loads((run_dir / "run.json").read_text())
    plain = execute(prepare(plan_run(build_config(**LONGER, out=str(tmp_path / "plain")))))
    pd.testing.assert_frame_equal(epochs_frame(run_dir)[METRICS], epochs_frame(plain)[METRICS])


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_refused_resume_stops_the_workers_it_started(tmp_path):
    """prepare spawns the workers; a refusal after it (here --resume of a folder that is no
    run) still stops them and frees the shared data: none is left to wait for at exit."""
    import multiprocessing

    from losscmp.errors import LosscmpError

    prepared = prepare(plan_run(build_config(**QUICK, jobs=2, out=str(tmp_path))))
    assert len(multiprocessing.active_children()) == 2
    with pytest.raises(LosscmpError, match="is not a losscmp run folder"):
        execute(prepared, run_dir=tmp_path)
    assert multiprocessing.active_children() == []
    assert prepared.executor.workers == [] and prepared.executor.shared == {}


def test_workers_that_jobs_asks_for_start_before_the_device_is_resolved(
    tmp_path, workers_when_resolved
):
    """Resolving the device imports torch in the main process (2 s): the workers were
    spawned after it, so their own imports (torch, smp) began 2 s late; they learn the
    device with their first job."""
    import multiprocessing

    prepared = prepare(plan_run(build_config(**QUICK, jobs=2, out=str(tmp_path))))
    with prepared.executor:
        assert workers_when_resolved == [2]
        assert len(multiprocessing.active_children()) == 2
    assert multiprocessing.active_children() == []


def test_workers_started_early_beyond_the_fused_jobs_are_stopped(tmp_path, monkeypatch):
    """-j 4 for four trials starts four workers early; fused on a GPU ('auto'), they are
    two models (one a seed): two workers are stopped before any job, and the two left
    train them. '--fuse on' counts its models before it starts any: two workers, or none
    for one model, which trains in this process."""
    import multiprocessing

    from losscmp.executors.local import LocalExecutor

    early = []
    start_early = LocalExecutor.start_early

    def counted(self, jobs_at_most):
        started = start_early(self, jobs_at_most)
        early.append(len(self.workers))
        return started

    monkeypatch.setattr(LocalExecutor, "start_early", counted)
    fused_by_device = build_config(**QUICK, jobs=4, out=str(tmp_path))
    monkeypatch.setattr(
        "losscmp.runner.resolve_execution",
        lambda *args, **kwargs: dataclasses.replace(
            resolve_execution(*args, **kwargs), fused=True, jobs=2
        ),
    )
    prepared = prepare(plan_run(fused_by_device))
    with prepared.executor:
        assert (early, len(prepared.executor.workers)) == ([4], 2)
        assert len(multiprocessing.active_children()) == 2
    monkeypatch.undo()
    monkeypatch.setattr(LocalExecutor, "start_early", counted)
    early.clear()
    config = build_config(**QUICK, jobs=4, fuse="on", out=str(tmp_path))
    prepared = prepare(plan_run(config))
    with prepared.executor:
        assert (early, prepared.execution.jobs, len(prepared.executor.workers)) == ([2], 2, 2)
        assert len(multiprocessing.active_children()) == 2
    early.clear()
    one_job = build_config(**{**QUICK, "seeds": 1}, jobs=4, fuse="on", out=str(tmp_path))
    prepared = prepare(plan_run(one_job))  # one fused model: it trains in this process
    with prepared.executor:
        assert (early, prepared.execution.jobs, prepared.executor.workers) == ([0], 1, [])
        assert multiprocessing.active_children() == []


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["by import path", "by class"])
def test_a_loss_registered_by_users_code_trains_in_worker_processes(tmp_path, monkeypatch, factory):
    """A worker process imports losscmp's own losses only: a notebook's registration
    travels with the job, so its trials train there as with --jobs 1."""
    import users_code

    from losscmp.losses import LOSS_REGISTRY
    from losscmp.summary import load_run

    monkeypatch.setattr(LOSS_REGISTRY, "_entries", dict(LOSS_REGISTRY._entries))
    registered = "users_code:ScaledBCE" if factory == "by import path" else users_code.ScaledBCE
    LOSS_REGISTRY.register("scaled_bce", "BCE times scale", modes=("binary",))(registered)
    options = {**QUICK, "losses": "scaled_bce(scale=0.25),bce", "seeds": 1, "epochs": 1}
    run_dir = execute(prepare(plan_run(build_config(**options, jobs=2, out=str(tmp_path)))))
    trials = load_run(run_dir).trials
    assert sorted(zip(trials.loss, trials.status, strict=True)) == [
        ("bce", "finished"),
        ("scaled_bce(scale=0.25)", "finished"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["by import path", "by function"])
def test_a_dataset_registered_by_users_code_loads_in_worker_processes(
    tmp_path, monkeypatch, factory
):
    """Without room in /dev/shm each worker loads its own copy of the data, and a worker
    process imports losscmp's own datasets only: a notebook's registration travels with
    the job (its ``mode_of`` lambda, which no worker needs, stays behind), so its trials
    train there as with --jobs 1 instead of failing with 'unknown dataset'."""
    import users_code

    from losscmp.data import DATASET_REGISTRY, shared
    from losscmp.summary import load_run

    monkeypatch.setattr(shared, "HEADROOM_BYTES", 1 << 60)  # a full /dev/shm: own copies
    monkeypatch.setattr(DATASET_REGISTRY, "_entries", dict(DATASET_REGISTRY._entries))
    registered = (
        "users_code:load_few_shapes" if factory == "by import path" else users_code.load_few_shapes
    )
    register = DATASET_REGISTRY.register("few_shapes", "a few shapes", mode_of=lambda **_: "binary")
    register(registered)
    options = {**QUICK, "dataset": "few_shapes(fg_fraction=0.3)", "seeds": 1, "epochs": 1}
    run_dir = execute(prepare(plan_run(build_config(**options, jobs=2, out=str(tmp_path)))))
    trials = load_run(run_dir).trials
    assert sorted(zip(trials.loss, trials.dataset, trials.status, strict=True)) == [
        ("bce", "few_shapes(fg_fraction=0.3)", "finished"),
        ("dice", "few_shapes(fg_fraction=0.3)", "finished"),
    ]


def test_a_notebooks_own_loss_class_is_refused_where_workers_would_need_it(tmp_path, monkeypatch):
    """Spawned workers cannot import a class a notebook defined (its __main__ has no file):
    refused before any folder, not as every trial failing; --jobs 1 trains it here."""
    import sys
    import types

    import users_code

    from losscmp.errors import ParameterError
    from losscmp.losses import LOSS_REGISTRY

    class NotebookBCE(users_code.ScaledBCE):
        pass

    NotebookBCE.__module__ = "__main__"
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(LOSS_REGISTRY, "_entries", dict(LOSS_REGISTRY._entries))
    LOSS_REGISTRY.register("notebook_bce", "BCE times scale", modes=("binary",))(NotebookBCE)
    options = {**QUICK, "losses": "notebook_bce,bce", "out": str(tmp_path / "runs")}
    refused = "loss 'notebook_bce' is defined in this notebook, .* run it with jobs=1"
    with pytest.raises(ParameterError, match=refused):
        prepare(plan_run(build_config(**options, jobs=2)), dry_run=True)
    assert list(tmp_path.iterdir()) == []
    with prepare(plan_run(build_config(**options, jobs=1)), dry_run=True).executor:
        pass


def test_a_notebooks_own_dataset_loader_runs_with_workers_that_take_the_data_shared(
    tmp_path, monkeypatch
):
    """Workers take the data shared; a loader a notebook defined cannot be imported (or
    unpickled) in them, so it is not sent, and --jobs 2 is not refused for it: only a
    worker that must load its own copy (no room in /dev/shm) fails, saying why."""
    import sys
    import types

    import users_code

    from losscmp import worker
    from losscmp.data import DATASET_REGISTRY
    from losscmp.errors import DatasetError
    from losscmp.runner import users_entries

    def notebook_shapes(**params):
        return users_code.load_few_shapes(**params)

    notebook_shapes.__module__ = "__main__"
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    monkeypatch.setattr(DATASET_REGISTRY, "_entries", dict(DATASET_REGISTRY._entries))
    register = DATASET_REGISTRY.register("notebook_shapes", "shapes", mode_of=lambda: "binary")
    register(notebook_shapes)
    options = {**QUICK, "dataset": "notebook_shapes", "out": str(tmp_path / "runs")}
    plan = plan_run(build_config(**options, jobs=2))
    with prepare(plan, dry_run=True).executor:
        pass
    assert "dataset" not in users_entries(plan)
    # A worker process, where the notebook's registration is not: its own copy is refused.
    monkeypatch.setattr(DATASET_REGISTRY, "_entries", dict(DATASET_REGISTRY._entries))
    del DATASET_REGISTRY._entries["notebook_shapes"]
    context = types.SimpleNamespace(
        config=plan.config, dataset_specs=plan.dataset_specs, dataset_fingerprints={}
    )
    (label,) = plan.dataset_specs
    with pytest.raises(DatasetError, match="'notebook_shapes' is defined in a notebook.*jobs=1"):
        worker.job_dataset(label, context)


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_finished_trials(tmp_path):
    plan = plan_run(build_config(**QUICK, jobs=2, out=str(tmp_path)))
    prepared = prepare(plan)
    seen: list[str] = []

    def interrupt_after_first_trial(event) -> None:
        if isinstance(event, TrialEnded):
            seen.append(event.trial_id)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(prepared, listener=interrupt_after_first_trial)
    run_dir = only_run_dir(tmp_path)
    assert {path.stem for path in (run_dir / "trials").glob("*.json")} == set(seen)
    assert prepared.executor.workers == []  # closed: every worker joined


def test_jobs_are_single_trials_or_fused_groups_per_dataset_and_seed():
    trials = [Trial(d, loss, seed) for d in ("a", "b") for seed in (0, 1) for loss in "xyz"]
    assert [job.trials for job in make_jobs(trials, fused=False)] == [(t,) for t in trials]
    groups = make_jobs(trials, fused=True)
    assert len(groups) == 4 and all(job.fused for job in groups)
    assert [{t.loss for t in job.trials} for job in groups] == [set("xyz")] * 4
    assert [(job.trials[0].dataset, job.trials[0].seed) for job in groups] == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
    ]


def test_a_resumed_fused_group_is_trained_whole_and_returns_only_what_is_missing():
    """Under vmap a group's rounding depends on how many copies it stacks."""
    trials = [Trial("a", loss, seed) for seed in (0, 1) for loss in "xyz"]
    done = {trials[0].id, trials[3].id, trials[4].id, trials[5].id}  # seed 1 is complete
    (job,) = make_jobs(trials, fused=True, done=done)
    assert job.trials == tuple(trials[1:3]) and job.trained == tuple(trials[:3])
    assert make_jobs(trials, fused=True, done={t.id for t in trials}) == []
    assert [job.trials for job in make_jobs(trials, fused=False, done=done)] == [
        (trials[1],),
        (trials[2],),
    ]
    (whole,) = make_jobs(trials[:3], fused=True)
    assert whole.group == () and whole.trained == whole.trials
    # Copies that are models of their own (the CPU's) round as alone: only the missing train.
    (separate,) = make_jobs(trials, fused=True, done=done, separate_copies=True)
    assert separate.trials == separate.trained == tuple(trials[1:3])


def test_a_fused_group_out_of_memory_says_how_to_need_less():
    from losscmp.executors.base import Job, failed

    trials = tuple(Trial("a", loss, 0) for loss in "xyz")
    oom = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    (first, *_) = failed(Job(trials, fused=True), oom)
    assert first.failure == (
        f"{oom} (a fused group of 3 losses holds 3 models: a run with --fuse off trains them "
        "one at a time)"
    )
    # A resumed group trains the whole planned group again, to return one of its trials.
    (resumed,) = failed(Job(trials[:1], fused=True, group=trials), oom)
    assert "a fused group of 3 losses holds 3 models" in resumed.failure
    assert failed(Job(trials[:1]), oom)[0].failure == oom  # one trial: nothing to split
    assert failed(Job(trials, fused=True), "ValueError: bad")[0].failure == "ValueError: bad"


def test_fused_groups_are_capped(monkeypatch):
    import losscmp.runner as runner

    monkeypatch.setattr(runner, "MAX_FUSED_LOSSES", 2)
    trials = [Trial("a", loss, 0) for loss in "vwxyz"]
    assert [len(job.trials) for job in make_jobs(trials, fused=True)] == [2, 2, 1]
    # The same chunks whatever the order of --losses (a resumed run may reorder them).
    chunks = [{t.loss for t in job.trials} for job in make_jobs(trials[::-1], fused=True)]
    assert chunks == [{"v", "w"}, {"x", "y"}, {"z"}]


def test_describe_says_what_a_fused_model_is_made_per_and_threads_each_only_for_many():
    """A fused model is a (dataset, seed, learning rate): a learning-rate grid's were called
    'losses of a seed fused'; one job is not 'N threads each'."""
    grid = [Trial("a", loss, seed, lr) for loss in "xy" for seed in (0, 1) for lr in (1e-3, 3e-3)]
    one_rate = [trial for trial in grid if trial.lr == 1e-3]
    two_sets = one_rate + [dataclasses.replace(trial, dataset="b") for trial in grid]
    fused = Execution("local", 1, 2, fused=True)
    assert fused.describe(one_rate) == "in this process, 2 threads, losses fused per seed"
    assert fused.describe(grid) == (
        "in this process, 2 threads, losses fused per seed and learning rate"
    )
    assert Execution("local", 3, 1, fused=True).describe(two_sets) == (
        "3 worker processes, 1 thread each, losses fused per dataset, seed and learning rate"
    )
    assert Execution("local", 1, 1).describe(grid) == "in this process, 1 thread"
    assert Execution("ray", 0, 1).describe() == (
        "Ray tasks, as many as the cluster fits at once, 1 thread each"
    )
    assert Execution("ray", 4, 2).describe() == "Ray tasks, at most 4 at once, 2 threads each"


def test_execution_divides_threads_among_jobs_and_fuses_on_cuda_only():
    import torch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cores = torch.get_num_threads()
    assert resolve_execution(build_config(), cpu) == Execution("local", 1, cores, False)
    two = resolve_execution(build_config(jobs=2), cpu)
    assert (two.jobs, two.threads) == (2, max(1, cores // 2))
    assert resolve_execution(build_config(fuse="on", threads=3), cpu).fused
    assert resolve_execution(build_config(threads=3), cpu).threads == 3
    assert not resolve_execution(build_config(), cpu).fused
    assert resolve_execution(build_config(fuse="off", jobs=1), cuda).fused is False
    assert resolve_execution(build_config(jobs=1), cuda).fused is True
    ray = resolve_execution(build_config(executor="ray"), cpu)
    assert (ray.jobs, ray.threads) == (0, 1)  # as many one-CPU tasks as the cluster fits
    assert "as many as the cluster fits" in ray.describe()
    # No more workers than jobs: -j 16 for 3 trials starts 3 (or 1 fused group: 1).
    trials = [Trial("a", loss, 0) for loss in "xyz"]
    capped = resolve_execution(build_config(jobs=16), cpu, trials)
    assert (capped.jobs, capped.threads) == (3, max(1, cores // 3))
    assert resolve_execution(build_config(jobs=16, fuse="on"), cpu, trials).jobs == 1
    done = {trials[0].id, trials[1].id}  # a resumed run: only what is left needs workers
    assert resolve_execution(build_config(jobs=16), cpu, trials, done).jobs == 1
    assert resolve_execution(build_config(executor="ray", jobs=16), cpu, trials).jobs == 16


def test_workers_take_the_visible_gpus_round_robin(monkeypatch):
    """Three GPUs, --trials-per-gpu 2: six workers, two on each GPU; the CPU is shared."""
    import torch

    import losscmp.devices as devices

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 3)
    execution = resolve_execution(build_config(trials_per_gpu=2), torch.device("cuda"))
    assert execution.jobs == 6
    placed = [devices.device_for_worker("cuda", index) for index in range(execution.jobs)]
    assert [device.index for device in placed] == [0, 1, 2, 0, 1, 2]
    assert devices.device_for_worker("cpu", 4) == torch.device("cpu")
    # and each worker makes its GPU the current one (no context on GPU 0 from the others);
    # "cuda" alone (a run in this process) is the current GPU. set_device's own check of
    # its argument runs here too: it refuses a device without an index, GPU or not.
    from torch.cuda._utils import _get_device_index  # what torch.cuda.set_device checks with

    made_current = []
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda device: made_current.append(_get_device_index(device))
    )
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    for device in [*placed[:2], torch.device("cuda"), torch.device("cpu")]:
        devices.make_current(device)
    assert made_current == [0, 1, 2]


# A whole in-process run in a fresh interpreter (smp not imported yet), the cycle collector
# off: the model parameters still alive, other than build_model's cached initial models,
# as each job starts (where the job's GPU peak is reset).
LEFT_OVER_PROBE = """
import contextlib, gc, sys
import torch
import losscmp.worker as worker
from losscmp.cli import app
from losscmp.model import _INITIAL_MODELS
from typer.testing import CliRunner

alive, measured = [], worker._gpu_peak

@contextlib.contextmanager
def counting(device):
    cached = {id(p) for model in _INITIAL_MODELS.values() for p in model.parameters()}
    objects = gc.get_objects()
    alive.append(sum(isinstance(o, torch.nn.Parameter) and id(o) not in cached for o in objects))
    with measured(device) as peak:
        yield peak

worker._gpu_peak = counting
gc.disable()
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print(alive)
"""


@pytest.mark.slow
def test_an_in_process_job_leaves_no_model_behind_for_the_next(tmp_path):
    """A job in this process (--jobs 1, CUDA's default on one GPU) frees its model as it
    ends: smp imported inside the first job left a reference cycle through its frames that
    kept its model, gradients and AdamW moments (GPU memory) into the next jobs, counted
    in their gpu_peak_mib, until Python's cycle collector ran."""
    import subprocess
    import sys

    args = ["run", "--losses", "dice,bce", "--seeds", "2", "--fuse", "off", "--jobs", "1"]
    args += ["--dataset", "synthetic(n_train=8,n_val=4,n_test=4)", "--epochs", "1"]
    args += ["--model", "tiny", "--image-size", "32", "--device", "cpu", "--threads", "1"]
    found = subprocess.run(
        [sys.executable, "-c", LEFT_OVER_PROBE, *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0]"


def test_a_dry_run_gives_ray_s_default_jobs_as_the_help_does():
    """Without --jobs Ray keeps twice the tasks the cluster fits in flight (InFlight), as
    --help and the README say; the dry run's 'jobs' read 'as many as the cluster fits'."""
    from types import SimpleNamespace

    from losscmp.runner import planned_choices

    config = build_config(executor="ray")
    prepared = SimpleNamespace(
        plan=SimpleNamespace(config=config, trials=[Trial("a", "dice", 0)]),
        settings=SimpleNamespace(
            preset=SimpleNamespace(name="tiny"), device=SimpleNamespace(type="cpu")
        ),
        execution=Execution("ray", 0, 1, False),
    )
    assert ("jobs", "twice what the cluster fits", "auto") in planned_choices(prepared)


@pytest.mark.parametrize(
    ("capability", "native"), [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)]
)
def test_bf16_autocast_only_where_the_gpu_has_bf16(monkeypatch, capability, native):
    """V100 (7.0) and T4 (7.5) emulate bf16, slower than float32: they train in float32."""
    import torch

    from losscmp import devices

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    devices.native_bf16.cache_clear()
    try:
        assert devices.native_bf16(torch.device("cuda", 0)) is native
    finally:
        devices.native_bf16.cache_clear()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "rey"], "did you mean 'ray'"),
        (["--fuse", "yes"], "--fuse must be one of auto, on, off"),
        (["--jobs", "0"], "--jobs must be between 1 and 1024, got 0"),
        (["-j", "-2"], "--jobs must be between 1 and 1024, got -2"),
        (["--threads", "0"], "--threads must be between 1 and 1024"),
        (["--trials-per-gpu", "0"], "--trials-per-gpu must be between 1 and 1024"),
    ],
)
def test_execution_options_are_checked_before_any_folder(cli, tmp_path, args, message):
    result = cli("run", "--config", SMOKE, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_progress_shows_every_running_trial_and_an_overall_bar(tmp_path):
    from losscmp.console import TrainingProgress

    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(3))
    with TrainingProgress() as progress:
        _show_trials(progress, infos, tmp_path)


def test_progress_prints_paths_labels_and_reasons_as_typed(tmp_path, capsys):
    """'--out a[/b]' ended 'losscmp run' in a MarkupError traceback at its first line (the
    run folder just made); a dataset at 'scans[v2]' lost '[v2]' from its progress line."""
    from rich.text import Text

    from losscmp.console import TrainingProgress

    datasets = ("folder(path='/data/scans[v2]')", "synthetic")
    infos = tuple(TrialInfo(f"t{i}", dataset, "dice", 0) for i, dataset in enumerate(datasets))
    run_dir = tmp_path / "a[" / "b]"
    with TrainingProgress() as progress:
        progress(RunStarted(run_dir, infos, skipped=0, epochs=1, executor="in this process"))
        progress(TrialStarted("t0", "worker [1]"))
        (line,) = [task.description for task in progress.progress.tasks][1:]
        assert Text.from_markup(line).plain == f"  dice · seed 0 · {datasets[0]} (worker [1])"
        progress(TrialEnded("t1", "failed", reason="[Errno 28] No space left on device"))
    err = capsys.readouterr().err
    assert f"run folder: {run_dir}" in err
    assert "[Errno 28] No space left on device" in err


@pytest.mark.parametrize("environment", [{"TERM": "dumb"}, {"TTY_INTERACTIVE": "0"}])
def test_a_terminal_rich_does_not_animate_gets_a_line_per_ended_trial(
    tmp_path, monkeypatch, environment
):
    """TERM=dumb (Emacs' shell, some CI runners) or TTY_INTERACTIVE=0 (Rich's switch for
    colours without animation): a terminal Rich draws no live frames on. Taken for a live
    one, the run showed nothing between its first line and its last frame."""
    import io

    from losscmp import console

    screen = console._Console(file=io.StringIO(), force_terminal=True, _environ=environment)
    monkeypatch.setattr(console, "err", screen)
    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(2))
    with console.TrainingProgress() as progress:
        progress(RunStarted(tmp_path, infos, skipped=0, epochs=1, executor="2 workers"))
        progress(TrialStarted("t0", "worker 1"))
        progress(TrialEnded("t0", "finished"))
        assert "finished: loss0 · seed 0 (1/2 trials)\n" in screen.file.getvalue()
    assert "\x1b[?25l" not in screen.file.getvalue()  # no live display was started


def test_whether_the_console_animates_is_asked_when_a_run_starts(monkeypatch):
    """Rich decides ``is_interactive`` once, when a console is made: ``console.err`` at
    import. Imported while a terminal was declared (TTY_COMPATIBLE=1, as a test or a
    calling program may), a later run into a log kept the live display, whose last frame
    was glued to the run's closing line (a test failed by the order the suite ran in)."""
    import io

    from losscmp import console

    environment = {"TTY_COMPATIBLE": "1"}
    screen = console._Console(file=io.StringIO(), _environ=environment)
    assert screen.is_interactive
    environment.clear()  # now a log: a StringIO is no terminal
    assert not screen.is_interactive
    environment["TTY_INTERACTIVE"] = "1"
    assert screen.is_interactive
    environment.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="0")
    assert not screen.is_interactive
    environment.update(TTY_INTERACTIVE="", TERM="dumb")
    assert not screen.is_interactive


def test_a_consoles_colours_and_width_are_those_of_the_environment_it_draws_in():
    """Rich reads the terminal's colours, COLUMNS and NO_COLOR once, when a console is made:
    ``console.err`` at import. Imported while a test declared an 80-column terminal
    (TTY_COMPATIBLE=1, COLUMNS=80), later runs into a log got colour codes around their
    'note:' and 80-column progress lines (tests failed by the order the suite ran in)."""
    import io

    from losscmp import console

    environment = {"TTY_COMPATIBLE": "1", "TERM": "xterm-256color", "COLUMNS": "80"}
    screen = console._Console(file=io.StringIO(), _environ=environment)
    assert (screen.color_system, screen.width) == ("256", 80)
    environment.clear()  # now a log, 200 columns wide
    environment["COLUMNS"] = "200"
    screen.print("[yellow]note:[/yellow] set aside")
    assert (screen.color_system, screen.width) == (None, 200)
    environment.update(TTY_COMPATIBLE="1", TERM="xterm", NO_COLOR="1")  # a terminal, no colours
    screen.print("[yellow]note:[/yellow] set aside")
    assert screen.color_system == "standard"
    assert screen.file.getvalue() == "note: set aside\n" * 2
    given = console._Console(
        file=io.StringIO(),
        width=100,
        color_system="truecolor",
        no_color=False,
        _environ=environment,
    )
    environment.clear()
    given.print("[yellow]note:[/yellow]")
    assert (given.width, given.file.getvalue()) == (100, "\x1b[33mnote:\x1b[0m\n")


def test_running_trials_beyond_the_terminals_rows_are_counted_on_a_line(tmp_path):
    """A fused group's 23 losses on a 10-row terminal: Rich cut the lines it had no room
    for under a bare '...' (and printed them all, scrolling, when the run was stopped)."""
    import io

    from rich.console import Console

    from losscmp.console import TrainingProgress

    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(23))
    progress = TrainingProgress()
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="fused"))
    progress.progress.stop()  # drawn below at a chosen size instead
    for info in infos:
        progress(TrialStarted(info.trial_id, "worker 1"))
    screen = Console(file=io.StringIO(), width=80, height=10)
    screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
    lines = screen.file.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("all trials")
    assert [line.split()[0] for line in lines[1:9]] == [f"loss{i}" for i in range(8)]
    assert lines[9] == "  … and 15 more running"
    tall = Console(file=io.StringIO(), width=80, height=30)
    tall.print(progress.progress.make_tasks_table(progress.progress.tasks))
    assert len(tall.file.getvalue().splitlines()) == 24  # room for all: none left out


def _show_trials(progress, infos, run_dir) -> None:
    progress(RunStarted(run_dir, infos, skipped=1, epochs=2, executor="2 workers"))
    progress(TrialStarted("t0", "worker 1"))
    progress(TrialStarted("t1", "worker 2"))
    progress(StepDone("t0", epoch=1, step=2, steps=4))
    record = {"epoch": 1, "status": "ok", "train_loss": 0.5, "val_dice": 0.4, "val_mcc": 0.3}
    progress(EpochDone("t1", record))
    running = {task.description for task in progress.progress.tasks}
    assert running == {
        "all trials",
        "  loss0 · seed 0 [dim](worker 1)[/dim]",
        "  loss1 · seed 0 [dim](worker 2)[/dim]",
    }
    overall = progress.progress.tasks[0]
    assert overall.total == 6 and overall.completed == pytest.approx(0.5 + 1)
    progress(TrialEnded("t1", "finished"))
    assert len(progress.progress.tasks) == 2  # the finished trial's line is gone
    assert progress.progress.tasks[0].completed == pytest.approx(0.5 + 2)


@pytest.mark.slow
def test_workers_map_the_data_the_main_process_loaded_and_never_read_the_dataset(tmp_path):
    """The dataset's folder is deleted once the main process has loaded it: --jobs 2 still
    trains (the workers map the main process's shared copy), with the sequential numbers,
    and the shared blocks are gone when the run ends."""
    import shutil
    from multiprocessing import shared_memory

    from fixtures_data import make_folder

    root = tmp_path / "cases"
    make_folder(root, count=16, val_count=6, test_count=6, shape=(48, 48))
    options = {**QUICK, "dataset": f"folder:{root}", "seeds": 1, "image_size": 64}
    plain = execute(prepare(plan_run(build_config(**options, out=str(tmp_path / "plain")))))
    prepared = prepare(plan_run(build_config(**options, jobs=2, out=str(tmp_path / "pool"))))
    (handle,) = prepared.executor.shared.values()
    blocks = [where.segment for where in handle.arrays.values()]
    (kept,) = prepared.datasets.values()
    assert kept.train_images.flags.writeable is False  # this process too keeps the shared copy
    shutil.rmtree(root)

    run_dir = execute(prepared)
    assert "failed_trials" not in json.loads((run_dir / "run.json").read_text())
    pd.testing.assert_frame_equal(epochs_frame(run_dir)[METRICS], epochs_frame(plain)[METRICS])
    assert len(blocks) == 6
    for name in blocks:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_in_process_a_job_that_raises_is_retried_then_recorded_failed(tmp_path, monkeypatch):
    """--jobs 1 treats a job that raises (here as when a data-loader process is killed) as
    a worker's death: one retry, then failed with the reason, and the run goes on."""
    import losscmp.executors.local as local

    plan = plan_run(build_config(**QUICK, out=str(tmp_path)))
    flaky, broken = plan.trials[0].id, plan.trials[1].id
    calls: dict[str, int] = {}

    def run_job(job, context, emit, **kwargs):
        (trial,) = job.trials
        calls[trial.id] = calls.get(trial.id, 0) + 1
        if trial.id == broken or (trial.id == flaky and calls[trial.id] == 1):
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Killed.")
        return real_run_job(job, context, emit, **kwargs)

    real_run_job = local.run_job
    monkeypatch.setattr(local, "run_job", run_job)
    events = []
    run_dir = execute(prepare(plan), listener=events.append)
    assert calls == {flaky: 2, broken: 2, **{trial.id: 1 for trial in plan.trials[2:]}}
    retried = [(e.trial_id, e.reason) for e in events if isinstance(e, TrialRetried)]
    reason = "RuntimeError: DataLoader worker (pid 1) is killed by signal: Killed."
    assert retried == [(flaky, reason), (broken, reason)]
    assert json.loads((run_dir / "run.json").read_text())["failed_trials"] == {broken: reason}
    finished = {path.stem for path in (run_dir / "trials").glob("*.json")}
    assert finished == {trial.id for trial in plan.trials} - {broken}


# One loss of two fails (its job raises, or its worker dies, twice); the other trains.
FAILING_BCE = {**QUICK, "seeds": 1, "epochs": 1}


def _bce_fails_in_process(monkeypatch) -> None:
    """--jobs 1: bce's job raises on both attempts (a data-loader process killed)."""
    import losscmp.executors.local as local

    real_run_job = local.run_job

    def run_job(job, context, emit, **kwargs):
        if any(trial.loss == "bce" for trial in job.trials):
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Killed.")
        return real_run_job(job, context, emit, **kwargs)

    monkeypatch.setattr(local, "run_job", run_job)


def _bce_worker_dies(monkeypatch) -> None:
    """--jobs 2: the worker that takes bce's job dies, and so does the fresh one."""
    from worker_faults import dies_on_bce

    import losscmp.executors.local as local

    monkeypatch.setattr(local, "_worker_main", dies_on_bce)


@pytest.mark.parametrize(
    ("jobs", "inject", "reason"),
    [
        pytest.param(
            "1", _bce_fails_in_process, "RuntimeError: DataLoader worker", id="in-process"
        ),
        pytest.param(
            "2",
            _bce_worker_dies,
            "worker process died (exit code 9; out of memory or killed?)",
            id="workers",
            marks=pytest.mark.slow,  # 15 s: workers spawned, and spawned again as they die
        ),
    ],
)
def test_a_run_with_a_failed_trial_exits_1_naming_it_and_the_resume_command(
    cli, tmp_path, monkeypatch, jobs, inject, reason
):
    """A run whose trial failed exited 0, as one whose every trial trained: a script (a
    CI job, 'losscmp run ... && losscmp report ...') could not tell that the table lacks
    it. It still prints the table and writes the report, then exits 1, its last line
    naming the failed trial and the command that trains it; that command exits 0."""
    inject(monkeypatch)
    out = tmp_path / "runs"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in FAILING_BCE.items()]
    result = cli("run", *flags, "--out", out, "--jobs", jobs)

    assert result.exit_code == 1, result.output
    run_dir = only_run_dir(out)
    (failed,) = json.loads((run_dir / "run.json").read_text())["failed_trials"].values()
    assert failed.startswith(reason)
    assert "dice" in result.stdout and "bce" not in result.stdout  # the table, without bce
    assert (run_dir / "summary.csv").is_file() and (run_dir / "report.html").is_file()
    dataset = "'synthetic(fg_fraction=0.1,n_train=16,n_val=8)'"
    command = (
        f"losscmp run --losses dice,bce --dataset {dataset} --epochs 1 --seeds 1 --model tiny "
        f"--device cpu --out {out} --jobs {jobs} --threads 1 --resume {run_dir}"
    )
    assert result.stderr.splitlines()[-1] == (
        f"losscmp: 1 of 2 trials failed (bce · seed 0); train it again with: {command}"
    )

    monkeypatch.undo()  # the fault mended: the printed command finishes the run
    resumed = cli(*shlex.split(command)[1:])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr.splitlines()[-1] == f"wrote {run_dir / 'report.html'}"
    assert json.loads((run_dir / "run.json").read_text())["failed_trials"] == {}
    assert len(list((run_dir / "trials").glob("*.json"))) == 2


def test_a_failed_run_says_once_which_trials_failed_and_report_still_notes_them(
    cli, tmp_path, monkeypatch
):
    """A user's audit: a run with a failed trial printed the news twice, a note under its
    table (the raw trial id, 'trial(s)') and then its exit-1 line, which names the trial
    and the command that trains it again. The run prints the line alone; 'losscmp report'
    on the run (which prints no such line) and its report.html keep the note, which names
    the trial as the line does."""
    _bce_fails_in_process(monkeypatch)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in FAILING_BCE.items()]
    result = cli("run", *flags, "--out", tmp_path)

    assert result.exit_code == 1, result.output
    run_dir = only_run_dir(tmp_path)
    (failed_id,) = json.loads((run_dir / "run.json").read_text())["failed_trials"]
    reason = "RuntimeError: DataLoader worker (pid 1) is killed by signal: Killed."
    lines = result.stderr.splitlines()
    news = [line for line in lines if "bce" in line and not line.startswith("retry: ")]
    assert news == [f"failed: bce · seed 0: {reason}", lines[-1]]  # as it happened, then last
    assert lines[-1].startswith("losscmp: 1 of 2 trials failed (bce · seed 0); train it again ")

    note = (  # the trial named as the run's lines name it, not by its id
        f"note: {run_dir}: 1 trial failed (bce · seed 0: {reason}); "
        f"'losscmp run --resume {run_dir}' tries it again"
    )
    report = cli("report", run_dir)
    assert report.exit_code == 0, report.output
    assert report.stderr.splitlines()[0] == note
    assert "1 trial failed (bce · seed 0: " in (run_dir / "report.html").read_text()


@pytest.mark.parametrize(
    ("stop", "status", "stopped_by"),
    [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_stopped_while_the_table_prints_still_names_the_failed_trials(
    cli, tmp_path, monkeypatch, stop, status, stopped_by
):
    """Ctrl-C while the report of a run with a failed trial was written: exit 130 with a
    line that said 'every trial is saved' and no word of the failed one, which run.json
    records as failed. The line now says the trials that trained are saved, and the
    failure line follows, last, as in a run not stopped; the status stays 130 (SIGTERM's
    143)."""
    import losscmp.cli

    def interrupted(*args, **kwargs):
        raise stop

    _bce_fails_in_process(monkeypatch)
    monkeypatch.setattr(losscmp.cli, "_print_report", interrupted)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in FAILING_BCE.items()]
    result = cli("run", *flags, "--out", tmp_path)

    assert result.exit_code == status, result.output
    run_dir = only_run_dir(tmp_path)
    (failed_id,) = json.loads((run_dir / "run.json").read_text())["failed_trials"]
    assert "__bce__" in failed_id
    stopped, failed = result.stderr.splitlines()[-2:]
    assert failed.startswith("losscmp: 1 of 2 trials failed (bce · seed 0); train it again ")
    assert failed.endswith(f" --threads 1 --resume {run_dir}")
    command = failed.split("train it again with: ")[1]  # both lines give the one command
    assert stopped == (
        f"losscmp: {stopped_by}; the trials that trained are saved in {run_dir}; losscmp "
        f"report {run_dir} prints the table, and this writes its report.html too: {command}"
    )


def test_a_run_whose_every_trial_failed_exits_1_not_as_a_mistake(cli, tmp_path, monkeypatch):
    """Workers that cannot start fail every trial: the run's report then refused it as a
    mistake would be ('error: ... has no finished trials', exit status 2). It has no table
    to print; it exits 1 with the line that names the failed trials and the resume."""
    from worker_faults import cannot_start

    import losscmp.executors.local as local

    monkeypatch.setattr(local, "_worker_main", cannot_start)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in FAILING_BCE.items()]
    result = cli("run", *flags, "--out", tmp_path, "--jobs", "2")

    assert result.exit_code == 1, result.output
    run_dir = only_run_dir(tmp_path)
    assert result.stdout == "" and "error" not in result.stderr
    assert not (run_dir / "summary.csv").exists()
    last = result.stderr.splitlines()[-1]
    assert last.startswith("losscmp: 2 of 2 trials failed (dice · seed 0, bce · seed 0); ")
    assert last.endswith(f" --jobs 2 --threads 1 --resume {run_dir}")


def test_the_failure_line_names_three_trials_and_counts_the_rest():
    """A run over several rates and datasets names each failed trial by both, as its
    'failed:' line does; past three, the line counts them."""
    from losscmp.console import failed_trials_line

    config = build_config(
        losses="dice,bce", fg_fraction="0.1,0.2", lr_grid="0.001,0.01", seeds=1, out="runs"
    )
    plan = plan_run(config)
    line = failed_trials_line(plan.trials[:5], plan, "losscmp run --resume runs/x")
    first = [
        f"{trial.loss} @ lr {trial.lr:g} · seed 0 · {trial.dataset}" for trial in plan.trials[:3]
    ]
    assert len(plan.trials) == 8
    assert line == (
        f"losscmp: 5 of 8 trials failed ({', '.join(first)}, 2 more); train them again with: "
        "losscmp run --resume runs/x"
    )


@pytest.mark.parametrize("fuse", ["off", "on"])
def test_evaluation_reports_each_batch_of_validation_and_test(tmp_path, monkeypatch, fuse):
    """An epoch's evaluation sent nothing from its first batch to its last (tens of minutes
    for Pets at 512 px on a CPU): the console's line stood still and a worker looked hung.
    Every batch now goes out (throttled like steps: here not at all), for each trial of a
    fused group too, between the epoch's last step and its end; and so does every image of
    the last epoch's boundary scores (HD95, NSD) of the reported split, the test split
    here (minutes for Pets' 3669 test images, after the console said 'testing 20/20')."""
    import losscmp.worker as worker

    monkeypatch.setattr(worker, "STEP_EVENT_INTERVAL_S", 0.0)
    dataset = "synthetic(fg_fraction=0.1,n_train=4,n_val=8,n_test=4)"  # batches: 1, 2, 1
    options = {**QUICK, "dataset": dataset, "seeds": 1, "batch_size": 4, "fuse": fuse}
    plan = plan_run(build_config(**options, out=str(tmp_path)))
    events: list = []
    execute(prepare(plan), listener=events.append)
    epoch = [("step", 1, 1), ("val", 1, 2), ("val", 2, 2), ("test", 1, 1)]
    boundaries = [(BOUNDARIES, image, 4) for image in range(1, 5)]
    for trial in plan.trials:
        mine = [event for event in events if getattr(event, "trial_id", None) == trial.id]
        shown = [shown for shown in map(_progress, mine) if shown]
        assert shown == [*epoch, ("epoch",), *epoch, *boundaries, ("epoch",)]


def test_boundary_images_are_sent_at_most_ten_times_a_second(monkeypatch):
    """Pets' 3669 test images at 1 ms each: one event per image would be 3669 for a
    console that draws ten frames a second; like steps and batches, the images go out
    every 0.1 s per trial, the first and the last always."""
    from types import SimpleNamespace

    import losscmp.worker as worker

    now = iter(1000 + 0.001 * tick for tick in range(10_000))  # a clock, 1 ms an image
    monkeypatch.setattr(worker, "time", SimpleNamespace(monotonic=lambda: next(now)))
    events: list = []
    relay = worker.ProgressRelay(events.append, {"t0"})
    trial = SimpleNamespace(id="t0")
    for image in range(1, 3670):
        relay.evaluation(trial, BOUNDARIES, image, 3669)
    sent = [event.batch for event in events]
    assert sent[0] == 1 and sent[-1] == 3669 and 30 <= len(sent) <= 38
    assert min(np.diff(sent[:-1])) >= 100  # 0.1 s apart, the last excepted
    assert {(event.split, event.batches) for event in events} == {(BOUNDARIES, 3669)}


def _progress(event) -> tuple:
    """A step, evaluation batch or epoch end as (what, done, of); () for other events."""
    if isinstance(event, StepDone):
        return ("step", event.step, event.steps)
    if isinstance(event, Evaluating):
        return (event.split, event.batch, event.batches)
    return ("epoch",) if isinstance(event, EpochDone) else ()


def test_run_json_names_the_cluster_joined_through_ray_address(monkeypatch):
    import torch

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    cpu = torch.device("cpu")
    assert resolve_execution(build_config(executor="ray"), cpu).ray_address == "10.0.0.5:6379"
    given = build_config(executor="ray", ray_address="10.0.0.9:6379")
    assert resolve_execution(given, cpu).ray_address == "10.0.0.9:6379"
    assert resolve_execution(build_config(), cpu).ray_address is None  # local: ignored


@pytest.mark.slow
def test_a_resumed_run_records_how_its_rest_ran(cli, tmp_path):
    """run.json's execution says how the last part ran (workers here), while the threads
    and fusion stay the run's own (they change the numbers)."""
    first = cli("run", "--config", SMOKE, "--epochs", "1", "--threads", "1", "--out", tmp_path)
    assert first.exit_code == 0, first.output
    run_dir = only_run_dir(tmp_path)
    for trial_file in sorted((run_dir / "trials").glob("*.json"))[:2]:
        trial_file.unlink()
    resumed = cli("run", "--resume", run_dir, "-j", "4")  # 2 trials left: 2 workers
    assert resumed.exit_code == 0, resumed.output
    execution = json.loads((run_dir / "run.json").read_text())["execution"]
    assert (execution["executor"], execution["jobs"], execution["threads"]) == ("local", 2, 1)


class LastFirstExecutor(Executor):
    """A new executor as a user would add one: runs the jobs in this process, newest
    first (an executor decides the order; the numbers must not depend on it)."""

    def run(self, jobs, context, emit):
        from losscmp.executors.base import succeeded
        from losscmp.worker import run_job

        for job in reversed(jobs):
            yield from succeeded(job, run_job(job, context, emit))


def test_run_help_names_every_registered_executor(monkeypatch, cli):
    """--executor's help said 'local (this machine) or ray (a Ray cluster)' in cli.py: a new
    executor, accepted by --executor from its EXECUTORS line, went unnamed by --help."""
    from losscmp import executors

    help_text = " ".join(cli("run", "--help").stdout.replace("│", " ").split())
    assert f"{executors.executors_help()}. [default: local]" in help_text
    assert all(
        f"{name} ({entry.where})" in help_text for name, entry in executors.EXECUTORS.items()
    )

    def registered(path: str, where: str):
        return executors.Registered(path, where, "jobs", "1", "1")

    two = {"local": registered("m:L", "this machine"), "far": registered("m:F", "a cluster")}
    monkeypatch.setattr(executors, "EXECUTORS", two)
    assert executors.executors_help() == "local (this machine) or far (a cluster)"
    monkeypatch.setitem(two, "threads", registered("m:T", "threads of this process"))
    assert executors.executors_help() == (
        "local (this machine), far (a cluster) or threads (threads of this process)"
    )


@pytest.mark.slow
def test_a_new_executor_is_one_class_and_one_registration_line(monkeypatch, cli, tmp_path):
    from losscmp import executors

    monkeypatch.setitem(
        executors.EXECUTORS,
        "lastfirst",
        executors.Registered(
            f"{__name__}:LastFirstExecutor",
            "this process, last job first",
            jobs="jobs at once",
            jobs_default="1",
            threads_default="the cores",
        ),
    )
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in QUICK.items()]
    assert cli("run", *flags, "--out", tmp_path / "local").exit_code == 0
    result = cli("run", *flags, "--executor", "lastfirst", "--out", tmp_path / "new")
    assert result.exit_code == 0, result.output
    local = epochs_frame(only_run_dir(tmp_path / "local"))
    new = epochs_frame(only_run_dir(tmp_path / "new"))
    pd.testing.assert_frame_equal(local[METRICS], new[METRICS])
    meta = json.loads((only_run_dir(tmp_path / "new") / "run.json").read_text())
    assert meta["execution"]["executor"] == "lastfirst" and meta["execution"]["jobs"] == 1


@pytest.mark.slow
def test_a_worker_killed_while_it_waits_costs_no_trial_an_attempt(tmp_path):
    """A worker killed before its first job, or between two jobs, had no trial to lose: the
    job it was about to take goes to a fresh worker with its retry still unspent (it used to
    be charged an attempt, and named in a 'retry' line, for a trial it never started)."""
    plan = plan_run(build_config(**QUICK, jobs=2, out=str(tmp_path)))
    prepared = prepare(plan)
    workers = prepared.executor.workers
    os.kill(workers[0].process.pid, signal.SIGKILL)  # still starting, or waiting for a job
    events: list = []
    where: dict[str, int] = {}

    def kill_between_trials(event) -> None:
        events.append(event)
        if isinstance(event, TrialStarted):
            where[event.trial_id] = int(event.where.split()[1]) - 1
        if isinstance(event, TrialEnded) and sum(isinstance(e, TrialEnded) for e in events) == 1:
            os.kill(workers[where[event.trial_id]].process.pid, signal.SIGKILL)

    run_dir = execute(prepared, listener=kill_between_trials)
    assert [e for e in events if isinstance(e, TrialRetried)] == []
    notes = [e.text for e in events if isinstance(e, RunNote)]
    assert len(notes) == 2
    assert all(
        "a worker died while it waited for a job (worker process died (killed by "
        "signal SIGKILL" in note
        for note in notes
    )
    assert "failed_trials" not in json.loads((run_dir / "run.json").read_text())
    assert len(list((run_dir / "trials").glob("*.json"))) == len(plan.trials)


def test_workers_that_cannot_start_fail_their_trials_and_are_not_replaced_for_ever(
    tmp_path, monkeypatch
):
    """The excuse for a worker that dies before it takes its job is spent by the workers
    spawned at the start: a replacement that dies before it is ready costs the job an
    attempt, so a run whose workers cannot start ends, its trials failed with the reason."""
    from worker_faults import cannot_start

    import losscmp.executors.local as local

    monkeypatch.setattr(local, "_worker_main", cannot_start)
    plan = plan_run(build_config(**{**QUICK, "seeds": 1}, jobs=2, out=str(tmp_path)))
    events: list = []
    run_dir = execute(prepare(plan), listener=events.append)
    reason = "worker process died (exit code 3; out of memory or killed?)"
    failed = json.loads((run_dir / "run.json").read_text())["failed_trials"]
    assert failed == {trial.id: reason for trial in plan.trials}
    retried = sorted(e.trial_id for e in events if isinstance(e, TrialRetried))
    assert retried == sorted(trial.id for trial in plan.trials)  # once each, then failed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_worker_imports_what_its_first_job_needs_before_it_is_ready():
    """smp (timm, torchvision, torch._dynamo) and the boundary scores' scipy were imported
    in a worker's first job, after the main process had handed it over: 2-4 s, where they
    could have been imported while the main process loaded the data."""
    import multiprocessing

    from losscmp.executors.local import _worker_main

    spawn = multiprocessing.get_context("spawn")
    conn, child = spawn.Pipe()
    worker = spawn.Process(target=_worker_main, args=(child, 0, "cpu"))
    worker.start()
    try:
        assert conn.poll(300) and conn.recv() == ("ready", None)
        mapped = Path(f"/proc/{worker.pid}/maps").read_text()
    finally:
        worker.kill()
        worker.join()
    assert "torchvision/_C" in mapped  # smp's encoders are torchvision's
    assert "scipy/spatial/_ckdtree" in mapped


def test_ctrl_c_while_a_worker_starts_does_not_end_it():
    """Ctrl-C reaches the workers too (the terminal's whole process group): one that came
    while a worker started, before it ignores Ctrl-C, ended it (KeyboardInterrupt, exit
    1), a failure whose job was tried again. It is held back until the worker ignores it."""
    import multiprocessing

    from losscmp.executors.local import _Worker

    worker = _Worker(multiprocessing.get_context("spawn"), 0, "cpu")
    try:
        os.kill(worker.process.pid, signal.SIGINT)  # while the new Python starts up
        said = None
        with contextlib.suppress(EOFError):  # it died
            said = worker.conn.recv() if worker.conn.poll(300) else "nothing in 300 s"
        assert said == ("ready", None), worker.process.join(5) or worker.process.exitcode
        assert worker.process.is_alive()
    finally:
        worker.stop()
        worker.join()


def test_a_ctrl_c_while_workers_start_leaves_each_started_one_to_close(monkeypatch):
    """A Ctrl-C held back while the first of two workers started was let through as that
    one had started, before it was listed: the KeyboardInterrupt left the executor with no
    workers, so close() stopped none, and both ran on until their pipes were collected."""
    import multiprocessing

    from losscmp.config import RunConfig
    from losscmp.executors import local

    started = local._Worker.__init__

    def ctrl_c_after_the_first(self, spawn, index, *args, **kwargs):
        started(self, spawn, index, *args, **kwargs)
        if index == 0:
            os.kill(os.getpid(), signal.SIGINT)  # held back: pending until let through

    monkeypatch.setattr(local._Worker, "__init__", ctrl_c_after_the_first)
    executor = local.LocalExecutor(RunConfig())
    processes = multiprocessing.active_children
    with pytest.raises(KeyboardInterrupt):
        executor._spawn(2, "cpu")
    try:
        assert [worker.index for worker in executor.workers] == [0, 1]
    finally:
        executor.close()
    assert not [p for p in processes() if p.name.startswith("losscmp-worker")]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_worker_whose_main_process_is_killed_alone_exits_at_once(tmp_path):
    """kill -9 of the main process only: a worker busy without a message (a model build, a
    long step) trained on, burning a core beside the user's --resume, until its next
    message found the pipe closed."""
    import subprocess
    import sys
    import time

    tests = Path(__file__).parent
    script = (
        "import multiprocessing, time\n"
        "from worker_faults import silent_orphan\n"
        "if __name__ == '__main__':\n"
        "    spawn = multiprocessing.get_context('spawn')\n"
        "    conn, child = spawn.Pipe()\n"
        "    spawn.Process(target=silent_orphan, args=(child, 0, 'cpu')).start()\n"
        "    print(conn.recv()[1], flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    main = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    try:
        worker = int(main.stdout.readline())
        main.kill()  # the main process alone: the worker is orphaned
        main.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker)
    finally:
        main.stdout.close()
        with contextlib.suppress(NameError, ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


@pytest.mark.parametrize(
    "when", ["waiting for a job", "taking a job", "waiting, its last message unread"]
)
def test_a_worker_whose_pipe_closes_ends_at_once_not_through_the_interpreters_teardown(when, capfd):
    """kill -9 of the main process only, seen by a worker through its pipe (waiting for a
    job, or sending a message about one): it returned and ran the interpreter's teardown,
    2-5 s of a busy core with torch loaded beside the user's --resume. Exit code 1 is
    _end_orphaned's os._exit (0: a return through the teardown). A main process killed
    before it read the worker's last message (its 'done', progress) resets the pipe: the
    worker's wait raised ConnectionResetError, a traceback in the user's terminal."""
    import multiprocessing

    from worker_faults import light_worker

    spawn = multiprocessing.get_context("spawn")
    conn, child = spawn.Pipe()
    taking = when == "taking a job"
    worker = spawn.Process(target=light_worker, args=(child, 0, "cpu", taking))
    worker.start()
    child.close()
    try:
        if when == "waiting, its last message unread":
            assert conn.poll(30)  # 'ready' has come, and stays unread
        else:
            assert conn.recv() == ("ready", None)
        if taking:
            conn.send(("job", "context", "shared"))
        conn.close()  # as the main process's end closes when it is killed
        worker.join(20)
        assert worker.exitcode == 1
        assert capfd.readouterr().err == ""  # no traceback of the worker's
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()


def test_a_failure_reason_is_one_line_that_names_running_out_of_memory():
    """A worker out of memory (here under RLIMIT_AS, as in a container) raised a bare
    MemoryError: 'failed: lovasz · seed 0: MemoryError: ' said nothing."""
    import torch

    from losscmp.executors.base import failure_reason

    assert failure_reason(MemoryError()) == "out of memory (MemoryError)"
    assert failure_reason(MemoryError("mmap")) == "out of memory (MemoryError: mmap)"
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nGPU 0 ...")
    assert failure_reason(cuda) == "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert failure_reason(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert failure_reason(ValueError()) == "ValueError"


# Running out of GPU memory in cuDNN or cuBLAS, as torch raises it (a RuntimeError whose
# message names the library's status: cuDNN 8's ALLOC_FAILED, cuDNN 9's host and device
# allocation failures, cuBLAS's at its handle's creation).
LIBRARY_OUT_OF_MEMORY = [
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "CUDA error: out of memory",
]
CUDNN_NOT_SUPPORTED = (
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a "
    "non-contiguous input."
)


@pytest.mark.parametrize("message", LIBRARY_OUT_OF_MEMORY)
def test_cudnn_and_cublas_out_of_memory_is_named_as_torchs_is(message):
    """Out of memory in cuDNN or cuBLAS read 'RuntimeError: cuDNN error: ...' and, in a
    fused group, gave no advice (and blamed a loss: tests/test_fused.py): it now reads
    as torch's OutOfMemoryError does, advice included."""
    from losscmp.executors.base import Job, failed, failure_reason

    reason = failure_reason(RuntimeError(message))
    assert reason == f"out of memory: {message}"
    trials = tuple(Trial("a", loss, 0) for loss in "xy")
    assert failed(Job(trials, fused=True), reason)[0].failure == (
        f"{reason} (a fused group of 2 losses holds 2 models: a run with --fuse off trains "
        "them one at a time)"
    )


def test_cudnns_bare_not_supported_is_probably_out_of_memory_its_named_causes_are_not():
    """cuDNN's bare NOT_SUPPORTED is what it says with no memory left for a workspace (at
    a large batch); NOT_SUPPORTED_ARCH_MISMATCH and its other named causes are not."""
    from losscmp.executors.base import failure_reason

    assert failure_reason(RuntimeError(CUDNN_NOT_SUPPORTED)) == (
        f"probably out of memory: {CUDNN_NOT_SUPPORTED}"
    )
    mismatch = "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH"
    assert failure_reason(RuntimeError(mismatch)) == f"RuntimeError: {mismatch}"
    assert failure_reason(RuntimeError("CUDA error: device-side assert triggered")) == (
        "RuntimeError: CUDA error: device-side assert triggered"
    )


def test_a_second_ctrl_c_while_workers_stop_still_frees_the_shared_memory(tmp_path, monkeypatch):
    """Ctrl-C twice: the second landed while close() waited for the workers and left the
    shared blocks to Python's resource tracker, which warned of 'leaked shared_memory
    objects' at exit."""
    from multiprocessing import shared_memory

    import losscmp.executors.local as local

    prepared = prepare(plan_run(build_config(**QUICK, jobs=2, out=str(tmp_path))))
    (handle,) = prepared.executor.shared.values()
    blocks = [where.segment for where in handle.arrays.values()]
    real_join = local._Worker.join

    def join_interrupted(worker) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, while the first one's
        real_join(worker)  # shutdown waits for a worker

    monkeypatch.setattr(local._Worker, "join", join_interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepared.executor.close()
    assert blocks
    for name in blocks:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


@pytest.mark.parametrize("width", [40, 80, 120])
def test_progress_lines_keep_the_bar_and_the_times_on_a_narrow_terminal(tmp_path, width):
    """On an 80-column terminal, '-j 2' labels with worker names made Rich shrink every
    column alike: the bar vanished and the elapsed and remaining times read '0…' '-…'."""
    import io
    import re

    from rich.console import Console

    from losscmp.console import TrainingProgress

    infos = tuple(
        TrialInfo(f"t{i}", "synthetic", loss, i) for i, loss in enumerate(["tversky"] * 3)
    )
    progress = TrainingProgress()
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="2 worker processes"))
    progress.progress.stop()  # drawn below at a chosen width instead
    progress(TrialStarted("t0", "worker 1"))
    progress(TrialStarted("t1", "worker 2"))
    record = {"epoch": 1, "status": "ok", "train_loss": 0.8488, "val_dice": 0.12, "val_mcc": 0.06}
    progress(EpochDone("t0", record))
    progress(StepDone("t1", epoch=1, step=1, steps=3))
    progress(Evaluating("t1", "val", 12, 40))
    screen = Console(file=io.StringIO(), width=width)
    screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
    lines = screen.file.getvalue().splitlines()
    assert len(lines) == 3  # the overall bar and one line per running trial
    for line in lines:
        assert len(line.rstrip()) <= width
        assert re.search(r"[━╸╺].* \d:\d\d:\d\d +(~?\d:\d\d:\d\d|-:--:--)$", line.rstrip()), line
    if width >= 120:  # room for everything: nothing is cut
        assert "…" not in screen.file.getvalue()


# Running trials (their infos and where they run) and the labels their lines show at 60, 80,
# 100 and 120 columns: the label column gets 15, 23, 31 and 39 cells (fit_widths), or what a
# label needs to keep its rate and seed whole (TrialLabel.floor).
LABELLED_RUNS = {
    "short labels": (
        [
            (TrialInfo("t0", "synthetic", "dice", 0), None),
            (TrialInfo("t1", "synthetic", "focal", 1), None),
        ],
        {
            60: ["  dice · seed 0", "  focal s1"],
            80: ["  dice · seed 0", "  focal · seed 1"],
            100: ["  dice · seed 0", "  focal · seed 1"],
            120: ["  dice · seed 0", "  focal · seed 1"],
        },
    ),
    "a rate grid on 2 workers": (
        [
            (TrialInfo("t0", "synthetic", "dice", 0, 0.001), "worker 1"),
            (TrialInfo("t1", "synthetic", "dice", 0, 0.003), "worker 2"),
            (TrialInfo("t2", "synthetic", "tversky(alpha=0.3,beta=0.7)", 0, 0.003), "worker 3"),
        ],
        {
            60: ["  dice @ 0.001", "  dice @ 0.003", "  tv…7) @ 0.003"],
            80: ["  dice @ lr 0.001", "  dice @ lr 0.003", "  tversky(…0.7) @ 0.003"],
            100: [
                "  dice @ lr 0.001 · seed 0",
                "  dice @ lr 0.003 · seed 0",
                "  tversky(….3,beta=0.7) @ 0.003",
            ],
            120: [
                "  dice @ lr 0.001 · seed 0 (worker 1)",
                "  dice @ lr 0.003 · seed 0 (worker 2)",
                "  tversky(alpha=0.3,beta=0.7) @ 0.003",
            ],
        },
    ),
    "seeds of a long spec": (
        [
            (TrialInfo("t0", "synthetic", "tversky(alpha=0.3,beta=0.7)", 0), "worker 1"),
            (TrialInfo("t1", "synthetic", "tversky(alpha=0.3,beta=0.7)", 1), "worker 2"),
        ],
        {
            60: ["  tvers…0.7) s0", "  tvers…0.7) s1"],
            80: ["  tversky(…beta=0.7) s0", "  tversky(…beta=0.7) s1"],
            100: ["  tversky(…pha=0.3,beta=0.7) s0", "  tversky(…pha=0.3,beta=0.7) s1"],
            120: [
                "  tversky(alpha=0.3,beta=0.7) · seed 0",
                "  tversky(alpha=0.3,beta=0.7) · seed 1",
            ],
        },
    ),
    "a rate grid and seeds": (  # at 60 columns each read 'focal @ 0.00…'
        [
            (TrialInfo("t0", "synthetic", "focal", 0, 0.001), "worker 1"),
            (TrialInfo("t1", "synthetic", "focal", 0, 0.003), "worker 2"),
            (TrialInfo("t2", "synthetic", "focal", 1, 0.001), "worker 3"),
            (TrialInfo("t3", "synthetic", "focal", 1, 0.003), "worker 4"),
        ],
        {
            60: [
                "  focal @ 0.001 s0",
                "  focal @ 0.003 s0",
                "  focal @ 0.001 s1",
                "  focal @ 0.003 s1",
            ],
            80: [
                "  focal @ lr 0.001 s0",
                "  focal @ lr 0.003 s0",
                "  focal @ lr 0.001 s1",
                "  focal @ lr 0.003 s1",
            ],
            100: [
                "  focal @ lr 0.001 · seed 0",
                "  focal @ lr 0.003 · seed 0",
                "  focal @ lr 0.001 · seed 1",
                "  focal @ lr 0.003 · seed 1",
            ],
            120: [
                "  focal @ lr 0.001 · seed 0 (worker 1)",
                "  focal @ lr 0.003 · seed 0 (worker 2)",
                "  focal @ lr 0.001 · seed 1 (worker 3)",
                "  focal @ lr 0.003 · seed 1 (worker 4)",
            ],
        },
    ),
    "an alpha sweep and seeds": (  # at 60 and 80 columns each alpha read 'tversky(…beta=0.7)'
        [
            (TrialInfo("t0", "synthetic", "tversky(alpha=0.3,beta=0.7)", 0), "worker 1"),
            (TrialInfo("t1", "synthetic", "tversky(alpha=0.5,beta=0.7)", 0), "worker 2"),
            (TrialInfo("t2", "synthetic", "tversky(alpha=0.3,beta=0.7)", 1), "worker 3"),
        ],
        {
            60: ["  tvers…0.3… s0", "  tvers…0.5… s0", "  tvers…0.3… s1"],
            80: ["  tversky(alpha=0.3… s0", "  tversky(alpha=0.5… s0", "  tversky(alpha=0.3… s1"],
            100: [  # its end already tells them apart: cut as before
                "  tversky(…pha=0.3,beta=0.7) s0",
                "  tversky(…pha=0.5,beta=0.7) s0",
                "  tversky(…pha=0.3,beta=0.7) s1",
            ],
            120: [
                "  tversky(alpha=0.3,beta=0.7) · seed 0",
                "  tversky(alpha=0.5,beta=0.7) · seed 0",
                "  tversky(alpha=0.3,beta=0.7) · seed 1",
            ],
        },
    ),
    "a dataset sweep": (  # each read 'dice · synthetic(…48)' at 80 columns
        [
            (TrialInfo("t0", "synthetic(fg_fraction=0.05,n_train=48)", "dice", 0), "worker 1"),
            (TrialInfo("t1", "synthetic(fg_fraction=0.2,n_train=48)", "dice", 0), "worker 2"),
        ],
        {
            60: ["  dice · syn…5…", "  dice · syn…2…"],
            80: ["  dice · synthetic(…05…", "  dice · synthetic(….2…"],
            100: ["  dice · synthetic(…ction=0.05…", "  dice · synthetic(…action=0.2…"],
            120: [
                "  dice · synthetic(…on=0.05,n_train=48)",
                "  dice · synthetic(…ion=0.2,n_train=48)",
            ],
        },
    ),
    "several datasets": (
        [
            (TrialInfo("t0", "synthetic(fg_fraction=0.01)", "dice", 0), "worker 1"),
            (TrialInfo("t1", "synthetic(fg_fraction=0.2)", "dice", 0), "worker 2"),
            (TrialInfo("t2", "folder(path='/data/scans[v2]')", "dice", 0), "worker [3]"),
        ],
        {
            60: ["  dice · syn…1)", "  dice · syn…2)", "  dice · fol…')"],
            80: ["  dice · synthetic(…01)", "  dice · synthetic(….2)", "  dice · folder(…[v2]')"],
            100: [
                "  dice · synthetic(…ction=0.01)",
                "  dice · synthetic(…action=0.2)",
                "  dice · folder(…ta/scans[v2]')",
            ],
            120: [
                "  dice · synthetic(fg_fraction=0.01)",
                "  dice · synthetic(fg_fraction=0.2)",
                "  dice · folder(path='/data/scans[v2]')",
            ],
        },
    ),
}


@pytest.mark.parametrize("width", [60, 80, 100, 120])
@pytest.mark.parametrize("run", LABELLED_RUNS)
def test_a_narrow_terminal_shortens_labels_to_what_tells_running_trials_apart(tmp_path, run, width):
    """At 80 columns, 'dice @ lr 0.001 · seed 0 (worker 1)' lost its end in the label
    column's 23 cells: '  dice @ lr 0.001 · se…', the same for each seed, and a long spec
    kept only its start ('  tversky(alpha=0.3,be…') whatever its rate, seed or dataset.
    Where it runs goes first, then the seed's word ('s0'; the seed where the run has one)
    and the rate's ('@ 0.003'), then the middle of the loss spec and the dataset's; only
    then is the end cut."""
    import io
    import re

    from rich.cells import cell_len
    from rich.console import Console

    from losscmp.console import TrainingProgress

    running, expected = LABELLED_RUNS[run]
    progress = TrainingProgress()
    infos = tuple(info for info, _ in running)
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="3 worker processes"))
    progress.progress.stop()  # drawn below at a chosen width instead
    for info, where in running:
        progress(TrialStarted(info.trial_id, where))
    screen = Console(record=True, width=width, force_terminal=True, file=io.StringIO())
    screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
    lines = screen.export_text().splitlines()[1:]  # below the overall bar
    assert [re.match("(.*?) +[━╸╺]", line).group(1) for line in lines] == expected[width]
    for line in lines:  # the bar and both times still there, in the terminal's width
        assert cell_len(line) <= width
        assert re.search(r"[━╸╺] .*\d:\d\d:\d\d +-:--:--$", line.rstrip()), line


def test_a_label_gives_way_in_order_and_a_log_line_names_the_trial_in_full():
    """Each step as far as the one before does not fit: where it runs, the seed's word,
    the rate's, the loss spec's middle, the dataset's middle, then the end."""
    from losscmp.console import TrialLabel

    label = TrialLabel("tversky(alpha=0.3,beta=0.7)", 1, 0.003, "synthetic(fg_fraction=0.2)", "w 2")
    widths = (84, 83, 75, 69, 68, 60, 50, 40, 30, 26, 20)
    assert {width: label.fit(width).plain for width in widths} == {
        84: "  tversky(alpha=0.3,beta=0.7) @ lr 0.003 · seed 1 · synthetic(fg_fraction=0.2) (w 2)",
        83: "  tversky(alpha=0.3,beta=0.7) @ lr 0.003 · seed 1 · synthetic(fg_fraction=0.2)",
        75: "  tversky(alpha=0.3,beta=0.7) @ lr 0.003 s1 · synthetic(fg_fraction=0.2)",
        69: "  tversky(alpha=0.3,beta=0.7) @ 0.003 s1 · synthetic(fg_fraction=0.2)",
        68: "  tversky(…pha=0.3,beta=0.7) @ 0.003 s1 · synthetic(fg_fraction=0.2)",
        60: "  tversky(…beta=0.7) @ 0.003 s1 · synthetic(fg_fraction=0.2)",
        50: "  tver….7) @ 0.003 s1 · synthetic(fg_fraction=0.2)",
        40: "  tv…7) @ 0.003 s1 · synthetic(…ion=0.2)",
        30: "  tv…7) @ 0.003 s1 · synt…0.2)",
        26: "  tv…7) @ 0.003 s1 · sy…2)",  # its floor: the column gives it this much
        20: "  tv…7) @ 0.003 s1…",
    }
    assert label.floor() == 26
    assert (
        label.name()
        == "tversky(alpha=0.3,beta=0.7) @ lr 0.003 · seed 1 · synthetic(fg_fraction=0.2)"
    )
    assert TrialLabel("dice", 0, sole_seed=True).fit(8).plain == "  dice"


def test_progress_is_told_a_trials_rate_where_the_run_has_several():
    """The rate travels apart from the loss spec, so that a label can shorten the spec and
    keep the rate ('tversky(…0.7) @ 0.003')."""
    from losscmp.runner import _infos

    trials = [Trial("synthetic", "tversky(alpha=0.3,beta=0.7)", 1, lr) for lr in (1e-3, 3e-3)]
    assert [(info.loss, info.seed, info.lr) for info in _infos(trials, several_rates=True)] == [
        ("tversky(alpha=0.3,beta=0.7)", 1, 1e-3),
        ("tversky(alpha=0.3,beta=0.7)", 1, 3e-3),
    ]
    assert [info.lr for info in _infos(trials[:1])] == [None]


def test_a_trials_line_says_which_split_it_scores_and_keeps_its_bar(tmp_path):
    """A long evaluation (minutes on a CPU) left a trial's line at its last step, as if
    hung: it now says 'validating 3/40', then 'testing' (and in the last epoch 'boundaries'),
    in the room of the epoch's line it stands in for (the bar keeps its width), until the
    epoch's scores replace it."""
    import io
    import re

    from rich.console import Console

    from losscmp.console import TrainingProgress

    progress = TrainingProgress()
    infos = (TrialInfo("t0", "synthetic", "tversky", 0),)
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="in this process"))
    progress.progress.stop()  # drawn below at a chosen width instead
    progress(TrialStarted("t0"))
    record = {"epoch": 1, "status": "ok", "train_loss": 0.8488, "val_dice": 0.12, "val_mcc": 0.06}
    progress(EpochDone("t0", record))
    scores = "epoch 1/2 dice 0.120 mcc 0.060 loss 0.8488"

    def line() -> tuple[str, tuple[int, int]]:
        """The trial's status and where its bar is, drawn 80 columns wide."""
        screen = Console(file=io.StringIO(), width=80)
        screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
        drawn = screen.file.getvalue().splitlines()[1]
        return progress.progress.tasks[1].fields["status"], re.search("[━╸╺]+", drawn).span()

    progress(StepDone("t0", epoch=2, step=4, steps=4))  # a full bar: its span is its width
    status, bar = line()
    assert status == scores
    progress(Evaluating("t0", "val", 3, 40))
    assert line() == ("validating  3/40", bar)
    progress(Evaluating("t0", "test", 20, 20))
    assert line() == ("testing 20/20", bar)
    progress(Evaluating("t0", BOUNDARIES, 120, 3669))  # the last epoch's HD95 and NSD
    assert line() == ("boundaries  120/3669", bar)
    progress(EpochDone("t0", {**record, "epoch": 2}))
    assert line()[0] == scores.replace("epoch 1/2", "epoch 2/2")


def test_a_narrow_terminal_cuts_no_evaluation_status_that_fits(tmp_path):
    """At 60 columns the status column has 17 cells: 'validating  3/40' fits, yet it read
    'validating  3/40…', as if more followed, when padded to the epoch's scores it stands
    in for. The bar keeps its width all the same."""
    import io
    import re

    from rich.console import Console

    from losscmp.console import TrainingProgress

    progress = TrainingProgress()
    infos = (TrialInfo("t0", "synthetic", "dice", 0),)
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="in this process"))
    progress.progress.stop()  # drawn below at a chosen width instead
    progress(TrialStarted("t0"))
    record = {"epoch": 1, "status": "ok", "train_loss": 0.8488, "val_dice": 0.12, "val_mcc": 0.06}
    progress(EpochDone("t0", record))

    def line() -> tuple[str, tuple[int, int]]:
        """The trial's line drawn 60 columns wide, and where its bar is."""
        screen = Console(file=io.StringIO(), width=60)
        screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
        drawn = screen.file.getvalue().splitlines()[1]
        return drawn, re.search("[━╸╺]+", drawn).span()

    drawn, bar = line()
    assert re.search(r"[━╸╺] +epoch 1/2 +0:00:00", drawn), drawn  # the whole fields that fit
    progress(Evaluating("t0", "val", 3, 40))
    drawn, bar_now = line()
    assert re.search(r"[━╸╺] +validating  3/40 +0:00:00", drawn), drawn
    assert bar_now == bar
    progress(Evaluating("t0", "test", 20, 20))
    assert re.search(r"[━╸╺] +testing 20/20 +0:00:00", line()[0])


def test_an_80_column_terminal_keeps_the_validation_dice_of_running_trials(tmp_path):
    """Two running trials with their workers' names on an 80-column terminal: the epoch's
    scores, cut with '…', read 'epoch 1/8 loss 0.8488 dic…', the validation Dice lost to
    the training loss. They now give way a field at a time from the end, the loss first."""
    import io
    import re

    from rich.console import Console

    from losscmp.console import TrainingProgress

    progress = TrainingProgress()
    infos = (TrialInfo("t0", "synthetic", "tversky", 0), TrialInfo("t1", "synthetic", "dice", 1))
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=8, executor="2 worker processes"))
    progress.progress.stop()  # drawn below at a chosen width instead
    for trial_id, worker in (("t0", "worker 1"), ("t1", "worker 2")):
        progress(TrialStarted(trial_id, where=worker))
    record = {"epoch": 1, "status": "ok", "train_loss": 0.8488, "val_dice": 0.12, "val_mcc": 0.06}
    progress(EpochDone("t0", record))
    progress(EpochDone("t1", {**record, "val_dice": 0.345}))
    screen = Console(file=io.StringIO(), width=80)
    screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
    lines = screen.file.getvalue().splitlines()[1:]
    statuses = [re.search(r"[━╸╺] +(epoch.*?)  ", line).group(1) for line in lines]
    assert statuses == ["epoch 1/8 dice 0.120", "epoch 1/8 dice 0.345"], lines


def test_a_log_gets_a_line_per_ended_trial(tmp_path, capsys):
    """With stderr in a file (nohup, a batch job) Rich draws no live lines, only the last
    frame at the end: a log said nothing from 'executing: ...' until the run was over."""
    from losscmp.console import TrainingProgress

    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(3))
    with TrainingProgress() as progress:
        progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="2 workers"))
        progress(TrialStarted("t0"))
        progress(Evaluating("t0", "val", 1, 2))  # a display's only: no line in a log
        progress(TrialEnded("t1", "finished"))
        progress(TrialEnded("t0", "diverged"))
        progress(TrialEnded("t2", "failed", reason="worker process died"))
    # All of it: Rich's last frame of the bars (and a blank line) came after these lines.
    assert capsys.readouterr().err.splitlines() == [
        f"run folder: {tmp_path}",
        "executing: 2 workers",
        "finished: loss1 · seed 0 (1/3 trials)",
        "diverged: loss0 · seed 0 (2/3 trials)",
        "failed: loss2 · seed 0: worker process died",
    ]


def test_a_log_and_the_bar_mark_the_time_left_rough_until_a_warm_trial_has_ended(tmp_path, capsys):
    """Trials of 2 epochs of 10 s, 10 s after their last epoch. After the first trial the
    log said '0:00:40 left' and the run took 60 s more: the first trial measures no trial's
    start or end (a worker's first pays one-off costs). Until a trial started after one had
    ended has ended too, the time left is marked rough, '~'; then the same numbers, plain."""
    import io

    from rich.console import Console

    from losscmp.console import TrainingProgress

    ticks = iter([0.0, 10.0, 20.0, 30.0, 30.0, 40.0, 50.0, 60.0, 60.0, 70.0, 80.0, 90.0])
    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(3))
    ok = {"status": "ok", "train_loss": 0.5, "val_dice": 0.4, "val_mcc": 0.3}

    def overall() -> str:
        screen = Console(file=io.StringIO(), width=120)
        screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
        return screen.file.getvalue().splitlines()[0].split()[-1]

    shown = []
    with TrainingProgress(clock=lambda: next(ticks)) as progress:
        progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="in this process"))
        for trial in ("t0", "t1", "t2"):
            progress(TrialStarted(trial))
            progress(EpochDone(trial, {**ok, "epoch": 1}))
            shown.append(overall())
            progress(EpochDone(trial, {**ok, "epoch": 2}))
            progress(TrialEnded(trial, "finished"))
    # t0 after its first epoch: 10 s an epoch (start included), 10 s for its second, 20 s
    # each for t1 and t2. t1 after its first epoch: 10 s left, then t2's 30 s. t2: 10 s.
    assert shown == ["~0:00:50", "~0:00:30", "0:00:20"]
    assert capsys.readouterr().err.splitlines()[2:] == [
        "finished: loss0 · seed 0 (1/3 trials, ~0:00:40 left)",
        "finished: loss1 · seed 0 (2/3 trials, 0:00:30 left)",
        "finished: loss2 · seed 0 (3/3 trials)",
    ]


def test_a_logs_lines_are_not_broken_at_80_columns(tmp_path, capsys):
    """A loss with parameters at one rate of a grid made a line longer than a log's 80
    columns, and Rich broke it in two: 'finished: tversky(alpha=0.7,beta=0.3) @ lr 0.001
    · seed 0 (24/156 trials, ' and '0:00:30 left)' (a grep for the trial lost its tally)."""
    from losscmp.console import TrainingProgress

    loss, label = "tversky(alpha=0.7,beta=0.3)", "tversky(alpha=0.7,beta=0.3) @ lr 0.001"
    infos = tuple(TrialInfo(f"t{seed}", "synthetic", loss, seed, 0.001) for seed in (0, 1))
    executor = "2 worker processes, 1 thread each, " + "x" * 60
    with TrainingProgress() as progress:
        progress(RunStarted(tmp_path, infos, skipped=0, epochs=1, executor=executor))
        progress(TrialRetried("t1", "worker process died (signal 9: killed, e.g. out of memory)"))
        progress(TrialEnded("t0", "finished"))
        progress(TrialEnded("t1", "failed", reason="worker process died twice, " + "y" * 40))
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"executing: {executor}",
        f"retry: {label} · seed 1: worker process died (signal 9: killed, e.g. out of memory); "
        "trying once more",
        f"finished: {label} · seed 0 (1/2 trials)",
        f"failed: {label} · seed 1: worker process died twice, " + "y" * 40,
    ]


def test_a_log_names_the_dataset_of_a_run_over_several(tmp_path, capsys):
    """'--fg-fraction 0.01,0.2' logged 'finished: dice · seed 0' twice: which one ended?"""
    from losscmp.console import TrainingProgress

    infos = tuple(
        TrialInfo(f"t{i}", f"synthetic(fg_fraction={fg})", "dice", 0)
        for i, fg in enumerate([0.01, 0.2])
    )
    with TrainingProgress() as progress:
        progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="in this process"))
        progress(TrialEnded("t1", "finished"))
        progress(TrialEnded("t0", "failed", reason="worker process died"))
    lines = capsys.readouterr().err.splitlines()
    assert lines[2:4] == [
        "finished: dice · seed 0 · synthetic(fg_fraction=0.2) (1/2 trials)",
        "failed: dice · seed 0 · synthetic(fg_fraction=0.01): worker process died",
    ]


def _overall_time_left(progress) -> str:
    """The time left that the overall bar's line ends with, as a terminal shows it."""
    import io

    from rich.console import Console

    screen = Console(file=io.StringIO(), width=120)
    screen.print(progress.progress.make_tasks_table(progress.progress.tasks))
    return screen.file.getvalue().splitlines()[0].split()[-1]


def test_the_overall_time_left_holds_through_a_diverged_and_a_retried_trial(tmp_path):
    """Rich's rate over the last 30 s read a diverged trial's jump to done as a burst of
    speed and a retried one's drop to zero as a stall: the overall time left swung far off.
    It is now an epoch's measured cost times the epochs left, on the trials that train at
    once, and '-:--:--' until an epoch has ended."""
    clock = iter([0.0, 0.0, 60.0, 60.0, 120.0])
    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(4))
    ok = {"epoch": 1, "status": "ok", "train_loss": 0.5, "val_dice": 0.4, "val_mcc": 0.3}
    from losscmp.console import TrainingProgress

    progress = TrainingProgress(clock=lambda: next(clock))
    progress(RunStarted(tmp_path, infos, skipped=3, epochs=4, executor="2 worker processes"))
    progress.progress.stop()  # drawn below instead
    progress(TrialStarted("t0", "worker 1"))  # at 0 s
    progress(TrialStarted("t1", "worker 2"))  # at 0 s
    assert _overall_time_left(progress) == "-:--:--"
    progress(EpochDone("t0", ok))  # 60 s for epoch 1
    progress(EpochDone("t1", ok))
    # 60 s an epoch: both have 3 epochs left (180 s), then t2 and t3 side by side (240 s);
    # rough ('~') while no trial after a worker's first has ended
    assert _overall_time_left(progress) == "~0:07:00"
    progress(EpochDone("t0", {**ok, "epoch": 2, "status": "diverged"}))  # at 120 s
    progress(TrialEnded("t0", "diverged"))  # at 120 s
    # t0's 2 epochs in 120 s, t1's 1 in 60 s: still 60 s an epoch, not a jump to done.
    # Worker 1 takes t2 now (240 s); worker 2 ends t1's 3 epochs left (180 s), then t3.
    assert _overall_time_left(progress) == "~0:07:00"
    progress(TrialRetried("t1", "worker process died"))
    # t1 starts over and its epoch measures nothing: t1, t2, t3 of 240 s each on 2 workers
    assert _overall_time_left(progress) == "~0:08:00"


@pytest.mark.parametrize(
    ("skipped", "kept"), [(1, "(1 finished trial kept)"), (2, "(2 finished trials kept)")]
)
def test_the_run_folder_line_counts_the_kept_trials_in_words(tmp_path, capsys, skipped, kept):
    """A resume that kept one trial said '(1 finished trials kept)'."""
    from losscmp.console import TrainingProgress

    infos = (TrialInfo("t0", "synthetic", "dice", 0),)
    with TrainingProgress() as progress:
        progress(RunStarted(tmp_path, infos, skipped=skipped, epochs=1, executor="in this process"))
    assert capsys.readouterr().err.splitlines()[0] == f"run folder: {tmp_path} {kept}"


def test_ray_counts_the_tasks_each_node_fits_by_cpus_and_gpu_share():
    from losscmp.executors.ray import tasks_that_fit

    nodes = [{"CPU": 8.0}, {"CPU": 3.0}, {"CPU": 0.0, "memory": 1e9}]  # e.g. a head with none
    assert tasks_that_fit(nodes, cpus=2) == 4 + 1
    gpu_nodes = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}, {"CPU": 64.0}]
    assert tasks_that_fit(gpu_nodes, cpus=1, gpus=1 / 3) == 6 + 2  # the CPUs cap the second
    assert tasks_that_fit(gpu_nodes, cpus=1, gpus=1.0) == 2 + 1  # a CPU node runs no GPU task


def test_ray_with_no_jobs_keeps_twice_what_the_cluster_fits_in_flight(monkeypatch):
    """With no --jobs every task was submitted at once, and the driver looked at each of
    them for every progress event (345 streams: 0.36 ms a look instead of 0.01 ms): now
    twice what the live nodes fit, counted again every ROOM_CHECK_S for nodes that join."""
    from types import SimpleNamespace

    import torch

    import losscmp.executors.ray as ray_executor
    from losscmp.executors.base import JobContext

    nodes = [{"CPU": 2.0}]
    monkeypatch.setattr(ray_executor, "_alive_nodes", lambda: nodes)
    settings = SimpleNamespace(device=torch.device("cpu"))
    context = JobContext(build_config(), {}, {}, settings, threads=1)
    now = [0.0]
    in_flight = ray_executor.InFlight(0, context, clock=lambda: now[0])
    assert in_flight() == 4
    nodes.append({"CPU": 4.0})  # a node joins: counted at the next check
    now[0] = ray_executor.ROOM_CHECK_S - 1
    assert in_flight() == 4
    now[0] = ray_executor.ROOM_CHECK_S
    assert in_flight() == 12
    assert ray_executor.InFlight(3, context)() == 3  # --jobs 3: as given, nodes not asked


def test_a_second_ctrl_c_while_ray_stops_at_exit_ends_the_wait_quietly(monkeypatch):
    """A run stopped by Ctrl-C prints how to resume it, then waits at exit for the Ray it
    started to stop (about 2 s): a second Ctrl-C then printed a traceback ('Exception
    ignored in atexit callback ... KeyboardInterrupt') below the resume line."""
    import atexit
    import threading

    ray = pytest.importorskip("ray")
    import losscmp.executors.ray as ray_executor

    stopped = threading.Event()
    at_exit = []
    monkeypatch.setattr(ray, "shutdown", stopped.wait)  # Ray that takes until released
    monkeypatch.setattr(atexit, "register", at_exit.append)
    monkeypatch.setattr(atexit, "unregister", at_exit.remove)
    ray_executor._shut_down_in_background()
    (wait_at_exit,) = at_exit
    ctrl_c = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    handler = signal.getsignal(signal.SIGINT)
    ctrl_c.start()
    try:
        wait_at_exit()  # returns at the Ctrl-C, raising nothing
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C came out of the exit handler: a traceback at exit")
    else:
        assert not stopped.is_set()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the command is over
    finally:
        ctrl_c.join()
        stopped.set()
        ray_executor.wait_for_shutdown()
        # Ignored, it was inherited by every losscmp the later tests start: their Ctrl-C
        # went unheard and the runs trained to the end.
        signal.signal(signal.SIGINT, handler)
    assert ray_executor._shutdown is None and at_exit == []


class CountedPasses(dict):
    """A progress display's epochs done by trial that count the passes over all of them."""

    passes = 0

    def values(self):
        self.passes += 1
        return super().values()


def test_a_step_moves_the_overall_bar_without_a_pass_over_every_trial(tmp_path):
    """Every step event summed the epochs done of every trial the run had seen: a pass over
    345 trials per step of a 345-trial run (over 3450, 22 us a step instead of 11)."""
    from losscmp.console import TrainingProgress

    infos = tuple(TrialInfo(f"t{i}", "synthetic", f"loss{i}", 0) for i in range(1000))
    progress = TrainingProgress(clock=lambda: 0.0)
    progress(RunStarted(tmp_path, infos, skipped=0, epochs=2, executor="ray"))
    progress.progress.stop()
    progress.done_epochs = CountedPasses(progress.done_epochs)
    ok = {"epoch": 1, "status": "ok", "train_loss": 0.5, "val_dice": 0.4, "val_mcc": 0.3}
    for index in range(998):
        trial = f"t{index}"
        progress(TrialStarted(trial, "ray"))
        progress(StepDone(trial, epoch=1, step=1, steps=3))
        progress(EpochDone(trial, ok))
        progress(TrialEnded(trial, "finished"))
    for trial in ("t998", "t999"):
        progress(TrialStarted(trial, "ray"))
        progress(StepDone(trial, epoch=2, step=1, steps=4))
    progress(TrialRetried("t998", "worker process died"))  # back to no epoch done
    (overall,) = [task for task in progress.progress.tasks if task.id == progress.overall]
    assert overall.completed == pytest.approx(998 * 2 + 1.25)
    progress(TrialEnded("t998", "failed", "worker process died"))
    progress(StepDone("t999", epoch=2, step=4, steps=4))
    progress(TrialEnded("t999", "finished"))
    assert overall.completed == 1000 * 2  # exactly: the bar reads as done
    assert progress.done_epochs.passes == 0


def test_more_threads_than_cores_is_noted_before_a_run_and_a_dry_run(cli, tmp_path, monkeypatch):
    """-j 3 on a 2-core machine, or --threads above its cores: the trials share the cores
    and run slower (with the numbers of their thread count, which may be why it was asked
    for); it was said nowhere. Not a refusal: nothing is wrong with the numbers."""
    import losscmp.executors.local as local

    monkeypatch.setattr(local, "available_cores", lambda: 2)
    args = ["--config", SMOKE, "--epochs", "1", "--losses", "dice", "--out", tmp_path]
    crowded = cli("run", *args, "--threads", "3", "--dry-run")
    assert crowded.exit_code == 0, crowded.output
    assert (  # one trial: its threads share the cores ('the trials share them' said before)
        "note: 1 trial at a time × 3 threads is more than this machine's 2 cores: its "
        "threads share them and it runs slower (with the numbers of 3 threads)"
    ) in crowded.stderr
    fits = cli("run", *args, "--threads", "2", "--dry-run")
    assert fits.exit_code == 0 and "note:" not in fits.stderr
    workers = cli("run", *args, "--losses", "dice,focal,tversky", "-j", "3", "--dry-run")
    assert (
        "note: 3 trials at a time × 1 thread is more than this machine's 2 cores: the "
        "trials share them and run slower (with the numbers of 1 thread each)"
    ) in workers.stderr
    run = cli("run", *args, "--threads", "3")
    assert run.exit_code == 0, run.output
    assert run.stderr.splitlines()[0].startswith("note: 1 trial at a time × 3 threads is more")


def test_trials_per_gpu_on_the_cpu_is_noted_as_set_aside(cli, tmp_path):
    """It was taken without a word and changed nothing ('jobs 1 (auto)')."""
    args = ["--config", SMOKE, "--epochs", "1", "--losses", "dice", "--out", tmp_path]
    result = cli("run", *args, "--device", "cpu", "--trials-per-gpu", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "note: --trials-per-gpu 4 counts on CUDA only: set aside on the cpu" in result.stderr
    assert "note:" not in cli("run", *args, "--device", "cpu", "--dry-run").stderr


def test_trials_per_gpu_from_a_config_file_is_noted_by_its_key(cli, tmp_path):
    """The note named '--trials-per-gpu 4', a flag the command line did not have, where
    the config file's 'trials_per_gpu: 4' gave it; a resumed run's own is the run's."""
    config = tmp_path / "per_gpu.yaml"
    config.write_text(SMOKE.read_text() + "trials_per_gpu: 4\n", encoding="utf-8")
    args = ["--config", config, "--epochs", "1", "--losses", "dice", "--device", "cpu"]
    result = cli("run", *args, "--out", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 0, result.output
    note = f"config file {config}: 'trials_per_gpu' 4 counts on CUDA only: set aside on the cpu"
    assert f"note: {note}" in result.stderr.splitlines()
    resumed = build_config(base={"trials_per_gpu": 4}).origins  # as --resume reads run.json
    assert resumed.given("trials_per_gpu", 4) == "the run's 'trials_per_gpu' 4"


def test_a_dry_run_spawns_no_worker(cli, tmp_path, monkeypatch):
    """A dry run trains nothing: its workers (spawned early, or by start) only took the
    cores its checks run on (-j 2: 3.3 s against 2.0 s) and shared its data for nothing."""
    import losscmp.executors.local as local

    def no_worker(*args, **kwargs):
        raise AssertionError("a dry run spawned a worker")

    monkeypatch.setattr(local, "_Worker", no_worker)
    monkeypatch.setattr(local.SharedArrays, "publish", no_worker)
    args = ["--config", SMOKE, "--epochs", "1", "--losses", "dice,focal", "--out", tmp_path]
    result = cli("run", *args, "-j", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().splitlines()[-1].startswith("executing: 2 worker processes")


def test_a_60_column_terminal_tells_each_rate_and_seed_of_a_run_apart(cli, tmp_path, monkeypatch):
    """A user's audit: 'losscmp run' over 2 rates and 2 seeds in a 60-column terminal drew
    every trial's line as '  focal @ 0.00…' (the label column's 15 cells), so two running
    trials looked the same. The column now gives the label room for its rate and seed."""
    options = {**QUICK, "losses": "focal", "epochs": 1, "lr_grid": "0.001,0.003"}
    labels = _labels_drawn_at_60_columns(cli, tmp_path, monkeypatch, options)
    assert labels == {f"focal @ {rate} s{seed}" for rate in ("0.001", "0.003") for seed in (0, 1)}


def test_a_60_column_terminal_tells_the_losses_of_an_alpha_sweep_apart(cli, tmp_path, monkeypatch):
    """Two tversky specs that differ in their first value only were each drawn as
    'tversky(…0.7) s0' at 60 columns: the spec's end, the same in both. The label keeps
    the values that differ instead, the run's specs compared up front."""
    losses = "tversky(alpha=0.3,beta=0.7),tversky(alpha=0.5,beta=0.7)"
    options = {**QUICK, "losses": losses, "epochs": 1, "seeds": 1}
    labels = _labels_drawn_at_60_columns(cli, tmp_path, monkeypatch, options)
    assert labels == {"tversky(…0.3…", "tversky(…0.5…"}


def _labels_drawn_at_60_columns(cli, tmp_path, monkeypatch, options: dict) -> set[str]:
    """The labels of the trials' lines that 'losscmp run' with ``options`` draws live on a
    60-column terminal, a frame drawn as each trial starts."""
    import re

    import losscmp.console as console

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stderr is a terminal, drawn live
    monkeypatch.setenv("TERM", "xterm-256color")  # not CI's dumb one: Rich draws no frames there
    monkeypatch.setenv("COLUMNS", "60")
    started = console.TrainingProgress._on_TrialStarted

    def drawn_when_started(self, event):  # a frame per trial, whenever the timer draws
        started(self, event)
        self.progress.refresh()

    monkeypatch.setattr(console.TrainingProgress, "_on_TrialStarted", drawn_when_started)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    result = cli("run", *flags, "--out", tmp_path)

    assert result.exit_code == 0, result.output
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)  # colours, cursor moves
    lines = [re.match(r"  (\S.*?) +[━╸╺]", line) for line in re.split("[\r\n]", frames)]
    return {line.group(1) for line in lines if line}


def test_jobs_and_threads_help_come_from_the_executors_entries(cli, monkeypatch):
    """--jobs' and --threads' help named Ray's defaults, written out in cli.py: a new
    executor's were missing until cli.py was edited too."""
    from losscmp import executors
    from losscmp.config import RunConfig

    monkeypatch.setenv("COLUMNS", "400")
    text = " ".join(cli("run", "--help").stdout.replace("│", " ").split())
    local, ray = executors.EXECUTORS["local"], executors.EXECUTORS["ray"]
    assert next(iter(executors.EXECUTORS)) == RunConfig().executor  # shown first, unnamed
    assert (
        f"Trials (or fused groups) run at once: {local.jobs} with --executor local, "
        f"{ray.jobs} with ray. [default: {local.jobs_default}; ray: {ray.jobs_default}]"
    ) in text
    assert (
        f"Torch threads per trial ({ray.threads}). "
        f"[default: {local.threads_default}; ray: {ray.threads_default}]"
    ) in text
    toy = executors.Registered("toy:Toy", "a toy", "toy slots", "3", "2", "toy cores")
    monkeypatch.setitem(executors.EXECUTORS, "toy", toy)
    assert executors.jobs_help().endswith(
        f"toy slots with toy. \\[default: {local.jobs_default}; ray: {ray.jobs_default}; toy: 3]"
    )
    assert executors.threads_help() == (
        f"Torch threads per trial ({ray.threads}; toy cores). "
        f"\\[default: {local.threads_default}; ray: {ray.threads_default}; toy: 2]"
    )
