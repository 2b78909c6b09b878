"""This machine: jobs in this process (``--jobs 1``) or in N worker processes.

Workers are spawned (not forked: torch's thread pools do not survive a fork)
and kept for the whole run, so each imports torch and loads a dataset once.
A worker that dies (killed, out of memory) or raises costs only its job: the
job goes to a fresh worker once more, then its trials are recorded as failed
and the run goes on; in this process (``--jobs 1``) a job that raises likewise, but
one that leaves the GPU in an error state (a device-side assert, an illegal memory
access) stops the run: no later CUDA call of this process could succeed.
A busy worker silent for the stall limit (``stall_limit_s``: hung) is killed and counts as dead.
A job in this process has no such limit: its hung call would hold the process that must
fail it and go on (Ctrl-C still stops the run, keeping the finished trials).
Workers ignore Ctrl-C; the main process stops them.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from typing import Any, NoReturn

from losscmp.config import RunConfig
from losscmp.data.shared import DataDiffers, SharedArrays, SharedDataset, sweep_abandoned
from losscmp.devices import cuda_error_state
from losscmp.errors import GpuErrorState, raise_if_stopped
from losscmp.events import RunNote, TrialRetried
from losscmp.executors.base import (
    ATTEMPTS,
    Execution,
    Executor,
    Job,
    JobContext,
    TrialResult,
    failed,
    failure_reason,
    stall_limit_s,
    stall_reason,
    succeeded,
)
from losscmp.worker import adopt_shared, import_job_modules, run_job

JOIN_TIMEOUT_S = 5
# How long the run waits on its workers at most before it looks for a stop that a signal
# raised where Python dropped it (errors.stop_on_signal): a Ctrl-C stops it within this.
STOP_CHECK_S = 1.0


class LocalExecutor(Executor):
    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.device_type = "cpu"
        self.workers: list[_Worker] = []
        self.shared_arrays = SharedArrays()  # the datasets' shared-memory blocks (workers)
        self.shared: dict[str, SharedDataset] = {}  # label -> the handle sent to workers

    def run(self, jobs: list[Job], context: JobContext, emit) -> Iterator[TrialResult]:
        if self.execution.jobs == 1:
            # Before the first job, as a worker does: a module first imported inside a job
            # (smp's, at its first model) can leave a reference cycle through the job's
            # frames, which keeps that job's model, gradients and AdamW moments (GPU memory)
            # until Python's cycle collector runs, into later jobs' time and peak memory.
            if jobs:  # (a resumed run with nothing left to train imports nothing)
                import_job_modules()
            emit = _stopping(emit)  # a dropped stop ends the job at its next step
            for job in jobs:
                try:
                    yield from _run_here(job, context, emit)
                except GpuErrorState as broken:  # the job's failure written, then the stop
                    yield from failed(job, broken.reason)
                    raise
        else:
            yield from self._run_in_workers(jobs, context, emit)

    def start_early(self, jobs_at_most: int) -> bool:
        """Spawn the workers ``--jobs`` asks for (no more than the jobs to run) before the
        main process imports torch: their imports (torch, smp, scipy: 3-4 s) overlap its own
        instead of starting once torch is in (2 s). They learn the device with their first
        job."""
        jobs = min(self.config.jobs or 1, jobs_at_most)
        if jobs > 1 and not self.workers:
            self._spawn(jobs, device_type=None)
        return bool(self.workers)

    def start(self, execution: Execution, device, checks_only: bool = False) -> None:
        """Spawn the workers now, if they were not started early: each imports torch while
        the main process loads data. Started early, those beyond the jobs to run (the
        losses fused into fewer models) are stopped. A dry run (``checks_only``) spawns
        none: they would take the cores its checks run on (3.3 s against 2.0 s for -j 2)."""
        super().start(execution, device, checks_only)
        self.device_type = device.type
        self._keep_workers(execution.jobs if execution.jobs > 1 else 0)  # 1: this process
        if not checks_only:
            self._spawn_workers()

    def _keep_workers(self, count: int) -> None:
        """Stop the workers beyond the first ``count`` (all asked first, then joined)."""
        spares = self.workers[count:]
        for spare in spares:
            spare.stop()
        for spare in spares:
            spare.join()
        del self.workers[count:]

    def describe_device(self, device) -> str:
        """The GPUs the jobs train on: this process's, or the workers' (one each, in turn)."""
        from losscmp.devices import describe_device

        return describe_device(device, gpus=self.execution.jobs)

    def crowding(self, execution: Execution) -> str:
        cores, at_once = available_cores(), execution.jobs
        if at_once * execution.threads <= cores:
            return ""
        threads = f"{execution.threads} thread{'s' if execution.threads > 1 else ''}"
        trials = f"{at_once} trial{'s' if at_once > 1 else ''} at a time"
        shared = (
            f"the trials share them and run slower (with the numbers of {threads} each)"
            if at_once > 1
            else f"its threads share them and it runs slower (with the numbers of {threads})"
        )
        return f"{trials} × {threads} is more than this machine's {cores} cores: {shared}"

    def _spawn_workers(self) -> None:
        if self.execution.jobs > 1 and not self.workers:
            self._spawn(self.execution.jobs, self.device_type)

    def _spawn(self, jobs: int, device_type: str | None) -> None:
        spawn = multiprocessing.get_context("spawn")
        # A Ctrl-C held back while a worker starts is let through once all are listed (and
        # close() registered), not when the first has started: close() stops every one.
        with _ctrl_c_held():
            self.workers = [_Worker(spawn, i, device_type) for i in range(jobs)]
            # Should the caller never close this executor: at exit, before multiprocessing's
            # own handler (registered earlier, so run later) would wait for the workers.
            atexit.register(self.close)

    def share(self, datasets: dict[str, Any]) -> dict[str, Any]:
        """Workers map one shared copy of each dataset instead of loading their own; this
        process keeps only that copy too. A dataset with no room in /dev/shm is left as it
        is (its workers load it themselves, as before)."""
        if self.execution.jobs == 1:
            # No blocks of its own, but what a run killed with its process group left
            # (publish sweeps too): a resume with one trial left runs in this process.
            sweep_abandoned()
            return datasets
        kept = {}
        for label, data in datasets.items():
            handle = self.shared_arrays.publish(data)
            if handle is not None:
                self.shared[label] = handle
            kept[label] = handle.load() if handle is not None else data
        return kept

    def _run_in_workers(self, jobs: list[Job], context: JobContext, emit):
        spawn = multiprocessing.get_context("spawn")
        self._spawn_workers()
        self._keep_workers(len(jobs))  # fewer jobs than workers (a resumed run)
        queue = deque((job, 1) for job in jobs)
        while queue or any(worker.job for worker in self.workers):
            for worker in self.workers:
                if worker.job is None and queue:
                    worker.start_job(*queue.popleft(), context, self.shared)
            busy = [worker for worker in self.workers if worker.job]
            stalls_in = min(w.stalls_at() for w in busy) - time.monotonic()
            wait(
                [worker.conn for worker in busy] + [worker.process.sentinel for worker in busy],
                timeout=max(0.0, min(stalls_in, STOP_CHECK_S)),
            )  # woken up by news, else by the first worker to stall, else to look for a stop
            # Before the workers' news: a worker that the same Ctrl-C ended is no failure.
            raise_if_stopped()
            for worker in busy:
                # Stalled only after collect: what came in just now counts as heard.
                for result in [*worker.collect(emit), *worker.kill_if_stalled()]:
                    yield from _settle(result, queue, emit)
                if worker.broken:
                    with _ctrl_c_held():  # listed before a Ctrl-C held meanwhile is let through
                        self.workers[worker.index] = worker.replacement(spawn)

    def close(self) -> None:
        atexit.unregister(self.close)
        # A second Ctrl-C while the workers stop still frees the shared memory (else
        # Python's resource tracker does it at exit, with a warning about leaked objects).
        try:
            for worker in self.workers:
                worker.stop()
            for worker in self.workers:
                worker.join()
        finally:
            self.workers = []
            self.shared_arrays.close()  # mappings outlive the names: unlinking is safe now
            self.shared = {}


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _settle(result: _Ended, queue: deque, emit) -> list[TrialResult]:
    """A job's results, or the job back at the queue's head: tried again once if it failed,
    with no attempt spent if its worker died before taking it (killed while it waited)."""
    if result.failure is not None and not result.taken:
        emit(
            RunNote(
                f"a worker died while it waited for a job ({result.failure}); a new one takes it"
            )
        )
        queue.appendleft((result.job, result.attempt))
        return []
    if result.failure is None or result.attempt >= ATTEMPTS:
        return result.trial_results
    for trial in result.job.trials:
        emit(TrialRetried(trial.id, result.failure))
    queue.appendleft((result.job, result.attempt + 1))
    return []


def _stopping(emit):
    """``emit`` that first raises a stop a signal raised where it was dropped: a job in
    this process has no wait to see it at, but it emits as it trains (ProgressRelay: a
    step's event at most every 0.1 s, each evaluation and epoch's end)."""

    def emit_unless_stopped(event) -> None:
        raise_if_stopped()
        emit(event)

    return emit_unless_stopped


def _run_here(job: Job, context: JobContext, emit) -> list[TrialResult]:
    """In this process, as in a worker: a job that raises (out of GPU memory, a data-loader
    process killed) is retried once, then its trials are recorded as failed. One that
    leaves the GPU in an error state raises ``GpuErrorState``: every later job in this
    process would fail too (a worker is replaced instead)."""
    import torch

    for attempt in range(1, ATTEMPTS + 1):
        try:
            return succeeded(job, run_job(job, context, emit))
        except Exception as error:  # worded as a worker reports it
            reason = failure_reason(error)
        state = cuda_error_state(context.settings.device)
        if state is not None:
            raise GpuErrorState(reason, state)
        gc.collect()  # the failed job's tensors, should a cycle still hold them
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if attempt < ATTEMPTS:
            for trial in job.trials:
                emit(TrialRetried(trial.id, reason))
    return failed(job, reason)


PARENT_POLL_S = 0.25


def _exit_with_parent() -> None:
    """End this worker as soon as its main process is gone (SIGKILLed alone): it would
    otherwise train on until its next message finds the pipe closed, a whole model build
    and training step later (seconds here; minutes for a large fused group on a CPU),
    taking cores from the ``--resume`` the user starts meanwhile. A thread, not
    PR_SET_PDEATHSIG: that fires when the *thread* that started the worker ends."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    pid = parent.pid

    def watch() -> None:
        while os.getppid() == pid:  # reparented once the main process has died
            time.sleep(PARENT_POLL_S)
        _end_orphaned()

    threading.Thread(target=watch, name="losscmp-parent-watch", daemon=True).start()


def _end_orphaned() -> NoReturn:
    """End this worker now: its main process is gone. Not a return from ``_worker_main``:
    the interpreter's teardown with torch loaded took 2-5 s of a busy core beside the
    user's ``--resume`` (a worker waiting for a job, or sending progress, when its main
    process was SIGKILLed alone)."""
    os._exit(1)


class _Ended:
    """A job's end as the pool sees it: outcomes, or a failure to retry or record."""

    def __init__(
        self, job: Job, attempt: int, outcomes=None, failure: str | None = None, *, taken=True
    ):
        self.job, self.attempt, self.failure, self.taken = job, attempt, failure, taken
        self.trial_results = succeeded(job, outcomes) if failure is None else failed(job, failure)


class _Worker:
    def __init__(
        self, spawn, index: int, device_type: str | None, replacement: bool = False
    ) -> None:
        self.index, self.device_type = index, device_type
        self.conn, child = spawn.Pipe()
        self.process = spawn.Process(
            target=_worker_main,
            args=(child, index, device_type),
            name=f"losscmp-worker-{index + 1}",
            # Not daemonic, so that a trial can start --num-workers data-loader processes.
            # close() stops every worker; one whose main process is gone exits on its pipe.
            daemon=False,
        )
        with _ctrl_c_held():
            self.process.start()
        child.close()
        self.job: Job | None = None
        self.attempt = 0
        self.broken = False
        # A worker that dies before it takes its job (killed while it started or waited)
        # costs that job no attempt; a replacement only once it is ready (imports done), so
        # that workers which cannot start are not replaced for ever.
        self.excused = not replacement
        self.took = False
        # When it last sent anything, or was sent its job: the stall limit counts from
        # there, so that a worker hung before it takes its job is caught too.
        self.heard = time.monotonic()

    def start_job(self, job: Job, attempt: int, context: JobContext, shared: dict) -> None:
        self.job, self.attempt, self.took, self.heard = job, attempt, False, time.monotonic()
        # A worker that died while idle: collect() sees the death and the job is retried.
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send((job, context, shared))

    def collect(self, emit) -> list[_Ended]:
        """Everything the worker has sent; its death, if it died, as a failure."""
        ended = []
        while self.job is not None:
            try:
                if not self.conn.poll():
                    if self.process.is_alive():
                        break
                    raise EOFError
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                ended.append(self._end(failure=self._death()))
                break
            self.heard = time.monotonic()
            if kind == "event":
                emit(payload)
            elif kind == "ready":
                self.excused = True
            elif kind == "took":
                self.took = True
            elif kind == "done":
                ended.append(self._end(outcomes=payload))
            elif kind == "refused":
                ended.append(self._refused(payload))
            else:  # "error": the job raised; the worker exits rather than run on in a bad state
                ended.append(self._end(failure=payload))
        return ended

    def stalls_at(self) -> float:
        """When the busy worker, silent until then, is taken for hung."""
        return self.heard + stall_limit_s(self.job)

    def kill_if_stalled(self) -> list[_Ended]:
        """Its job as failed if the worker, busy, has been silent for the stall limit."""
        if self.job is None or time.monotonic() < self.stalls_at():
            return []
        self.process.kill()  # not terminate: a stopped process would not act on it
        return [self._end(failure=stall_reason(stall_limit_s(self.job)))]

    def _end(self, outcomes=None, failure: str | None = None) -> _Ended:
        taken = self.took or not self.excused
        ended = _Ended(self.job, self.attempt, outcomes, failure, taken=taken)
        self.job = None
        if failure is not None:
            self.broken = True
        return ended

    def _refused(self, reason: str) -> _Ended:
        """A job its worker refused, its own copy of the data differing from this process's:
        failed at once (a retry, on this machine, would read the same files), while the
        worker, which trained nothing, takes the next job."""
        ended = _Ended(self.job, ATTEMPTS, failure=reason)
        self.job = None
        return ended

    def _death(self) -> str:
        self.process.join(JOIN_TIMEOUT_S)
        code = self.process.exitcode
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        return f"worker process died ({how}; out of memory or killed?)"

    def replacement(self, spawn) -> _Worker:
        self.stop()
        self.join()
        return _Worker(spawn, self.index, self.device_type, replacement=True)

    def stop(self) -> None:
        # A worker holds nothing the run needs once its results are in (and after Ctrl-C
        # nothing worth waiting for): terminate it rather than wait seconds for torch to
        # tear down at interpreter exit.
        if self.process.is_alive():
            self.process.terminate()

    def join(self) -> None:
        self.process.join(JOIN_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C held back from this thread while it starts a worker, which inherits that
    until it ignores Ctrl-C (``_worker_main``): one that came before, while the new
    Python started and imported this module, ended the worker (exit 1, a traceback), a
    failure whose job was tried again. This process sees the Ctrl-C once it is let through:
    held around where the new worker is listed too, so that close() finds it (nested, the
    inner hold lets nothing through)."""
    # Started first: starting it lets Ctrl-C through again, before the worker starts.
    resource_tracker.ensure_running()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _worker_main(conn, index: int, device_type: str | None) -> None:
    """A worker's life: imports, 'ready', then jobs until it is stopped. ``device_type``
    None: started before the main process knew it (``start_early``); its first job's
    settings name it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    # Held back since it started (_ctrl_c_held): one that came meanwhile is dropped now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with_parent()
    import_job_modules()  # torch, smp, scipy: while the main process prepares
    from losscmp.devices import device_for_worker

    def emit(event) -> None:
        conn.send(("event", event))

    with contextlib.suppress(OSError):  # the main process is gone: recv says so below
        conn.send(("ready", None))
    device = None
    while True:  # until close() terminates this worker
        try:
            job, context, shared = conn.recv()
        # The main process is gone: its end closed, or reset where it was killed before it
        # read this worker's last message ('done', progress).
        except (EOFError, ConnectionResetError):
            _end_orphaned()
        try:
            conn.send(("took", None))
            if device is None:
                device = device_for_worker(device_type or context.settings.device.type, index)
                where = f"worker {index + 1}" + (f" · {device}" if device.type == "cuda" else "")
            adopt_shared(shared, context)
            outcomes = run_job(job, context, emit, device=device, where=where)
            conn.send(("done", outcomes))
        except (BrokenPipeError, ConnectionResetError):  # the main process is gone (killed)
            _end_orphaned()
        except DataDiffers as error:  # raised before training: nothing here is amiss
            with contextlib.suppress(OSError):
                conn.send(("refused", str(error)))
        except Exception as error:  # reported to the main process, which retries the job
            with contextlib.suppress(OSError):
                conn.send(("error", failure_reason(error)))
            return
