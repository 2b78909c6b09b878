"""Stand-ins for worker processes that fail on their own, importable by a spawned child."""

from __future__ import annotations

import os


def cannot_start(conn, index: int, device_type: str) -> None:
    """A worker that dies before it is ready (a broken install, out of memory at import)."""
    os._exit(3)


def silent_orphan(conn, index: int, device_type: str) -> None:
    """A worker busy for a minute without a message to its main process (a model build, a
    long step): only the parent watch can end it once its main process is gone."""
    import time

    from losscmp.executors.local import _exit_with_parent

    _exit_with_parent()
    conn.send(("ready", os.getpid()))
    time.sleep(60)


class _DiesOnTaking:
    """A worker's end of the pipe that kills the worker once it has taken a job of
    ``loss``: a death mid-job (the OOM killer), which costs the job an attempt."""

    def __init__(self, conn, loss: str) -> None:
        self.conn, self.loss, self.job = conn, loss, None

    def recv(self):
        message = self.conn.recv()
        self.job = message[0]
        return message

    def send(self, message) -> None:
        self.conn.send(message)
        if message[0] == "took" and any(trial.loss == self.loss for trial in self.job.trials):
            os._exit(9)

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


def dies_on_bce(conn, index: int, device_type: str) -> None:
    """A real worker, but one that dies whenever it takes bce's job."""
    from losscmp.executors.local import _worker_main

    _worker_main(_DiesOnTaking(conn, "bce"), index, device_type)


class _OrphanedOnTaking:
    """A worker's end of the pipe whose main process is gone just after it sent a job
    (killed alone): the worker's first message about the job finds the pipe closed."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def recv(self):
        message = self.conn.recv()
        self.conn.poll(30)  # true once the main process's end is closed
        return message

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


def light_worker(conn, index: int, device_type: str, orphaned_on_taking: bool) -> None:
    """A real worker without the imports of torch and the rest, which only slow it down."""
    from losscmp.executors import local

    local.import_job_modules = lambda: None
    local._worker_main(_OrphanedOnTaking(conn) if orphaned_on_taking else conn, index, device_type)


def cuda_assert_on_bce(conn, index: int, device_type: str) -> None:
    """A real worker, but one whose bce job meets a device-side assert (CUDA's sticky
    error: this process's GPU is unusable afterwards), naming the worker's pid."""
    from losscmp.executors import local

    run_job = local.run_job

    def asserting(job, context, emit, **kwargs):
        if any(trial.loss == "bce" for trial in job.trials):
            raise RuntimeError(f"CUDA error: device-side assert triggered (pid {os.getpid()})")
        return run_job(job, context, emit, **kwargs)

    local.run_job = asserting
    local._worker_main(conn, index, device_type)
