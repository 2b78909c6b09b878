"""A GPU that errs inside a Ray task, on a real local Ray whose one GPU is only declared.

The tasks train on the CPU; a stand-in for CUDA's failures, installed in each Ray worker
process that takes a task, raises what torch raises on a GPU (as tests/test_fake_cuda.py
does for the local executor): a device-side assert, after which every later CUDA call of
that process fails ("sticky"), and running out of memory, after which the GPU works on.
Each task asks Ray for the whole declared GPU, so the tasks run one after another: a
worker process Ray reused would take the next task.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # five tasks, each in a fresh process

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
RUN = ["--config", SMOKE, "--threads", "1", "--fuse", "off"]
DEVICE_SIDE_ASSERT = "CUDA error: device-side assert triggered"
OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 2.00 GiB"
BROKEN = "LOSSCMP_TEST_BROKEN_GPU"  # set in a worker process whose (stand-in) GPU is broken


@pytest.fixture(scope="module")
def ray_with_a_gpu():
    """One local Ray for the module with one GPU declared (none is there); the executor
    joins it and leaves it running."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
        configure_logging=False,
    )  # fmt: skip
    yield ray
    ray.shutdown()


def _task_meeting_gpu_errors(job, context, shared):
    """``_job_task`` in a Ray worker whose GPU meets, as torch reports them, a device-side
    assert in dice's jobs (the assert naming the process) and is out of memory in focal's;
    after the assert, every job of the process meets it again. Sent by value: this module
    is not importable in a Ray worker."""
    import os

    import torch

    import losscmp.worker as worker
    from losscmp.executors.ray import _job_task

    def run_job(job, context, emit, **options):
        if BROKEN in os.environ:  # every later CUDA call of this process fails
            raise torch.AcceleratorError(os.environ[BROKEN])
        (trial,) = job.trials
        if trial.loss == "dice":
            os.environ[BROKEN] = f"{DEVICE_SIDE_ASSERT} (pid {os.getpid()})"
            raise torch.AcceleratorError(os.environ[BROKEN])
        if trial.loss == "focal":
            raise torch.OutOfMemoryError(OUT_OF_MEMORY)
        return trains(job, context, emit, **options)

    trains = getattr(worker.run_job, "trains", worker.run_job)  # a reused process: once
    run_job.trains = trains
    worker.run_job = run_job
    yield from _job_task(job, context, shared)


def test_a_task_that_breaks_its_gpu_takes_its_worker_process_with_it(
    cli, ray_with_a_gpu, tmp_path, monkeypatch
):
    """dice's task leaves its worker's GPU in an error state: it is retried once in a fresh
    worker process (as a local worker that errs is replaced), then recorded failed; focal
    runs out of memory, retried then failed, as with the local pool; tversky, trained after
    both, in no process they broke, gives the numbers of a run that met no error. A
    reused worker process would have failed every task after dice's first."""
    from ray import cloudpickle

    import losscmp.executors.ray as ray_executor
    from losscmp.events import TrialRetried

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import it
    monkeypatch.setattr(ray_executor, "_job_task", _task_meeting_gpu_errors)
    monkeypatch.setattr(ray_executor, "_task_gpus", lambda context: 1.0)  # the whole GPU
    seen = []
    run = ray_executor.RayExecutor.run

    def run_and_listen(self, jobs, context, emit):
        def spy(event):
            seen.append(event)
            emit(event)

        return run(self, jobs, context, spy)

    monkeypatch.setattr(ray_executor.RayExecutor, "run", run_and_listen)
    try:
        on_ray = cli("run", *RUN, "--executor", "ray", "--jobs", "1", "--out", tmp_path / "ray")
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert on_ray.exit_code == 1, on_ray.output  # 1: trials failed

    (ray_dir,) = (tmp_path / "ray").iterdir()
    failed = json.loads((ray_dir / "run.json").read_text())["failed_trials"]
    retried = {event.trial_id: event.reason for event in seen if isinstance(event, TrialRetried)}
    assert retried.keys() == failed.keys() and len(failed) == 2
    (dice,) = [trial for trial in failed if "__dice__" in trial]
    (focal,) = [trial for trial in failed if "__focal__" in trial]
    said = f"AcceleratorError: {DEVICE_SIDE_ASSERT} (pid "
    assert retried[dice].startswith(said) and failed[dice].startswith(said)
    assert retried[dice] != failed[dice]  # another process's pid: a fresh worker process
    assert retried[focal] == failed[focal] == f"out of memory: {OUT_OF_MEMORY}"
    assert {row["loss"] for row in _epochs(ray_dir).values()} == {"tversky"}

    plain = cli("run", *RUN, "--losses", "tversky", "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    (plain_dir,) = (tmp_path / "plain").iterdir()
    assert _epochs(ray_dir) == _epochs(plain_dir)


def _epochs(run_dir: Path) -> dict[tuple, dict[str, str]]:
    """epochs.csv rows by (dataset, loss, seed, epoch), without the seconds."""
    with open(run_dir / "epochs.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        (row["dataset"], row["loss"], row["seed"], row["epoch"]): {
            key: value for key, value in row.items() if key != "seconds"
        }
        for row in rows
    }
