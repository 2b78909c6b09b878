"""The executor interface: jobs in, trial results out as they finish.

A job is one trial, or the trials of one (dataset, seed, learning rate) trained as
one fused model. Executors never write into the run folder: they return records, and
the runner (main process) is the folder's only writer. Whatever runs a job,
it runs ``losscmp.worker.run_job``, so a trial's numbers depend on its config
and seed only, never on the executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from losscmp.config import MAX_FUSED_LOSSES, RunConfig
from losscmp.events import Listener
from losscmp.plan import Trial
from losscmp.registry import Entry
from losscmp.spec import Spec

# A job whose worker died, raised or stalled is tried again once; the second failure is
# recorded.
ATTEMPTS = 2

# A busy worker that sends nothing for this long, per model its job trains
# (``stall_limit_s``), is taken for hung (a deadlock, a stuck CUDA call, a stopped process):
# it is killed and its job handled as a dead worker's. Training sends an event every step,
# evaluation every batch and the last epoch's boundary scores every image (at most ten a
# second), so the long silences are single pieces of work; the slowest, measured on one
# thread of a busy 2-core CPU (torch 2.14, 512 px):
# - a training step of the largest preset (`medium`), batch 16: 40 s (an evaluation batch:
#   9 s); a fused group's step runs every copy's model, 17 s a copy at 256 px (a 4-copy
#   step: 67 s; one model alone: 7.5 s), hence a limit per model;
# - distance maps on first use (``data.loader.split_maps``): 10 ms a 256 px mask, 35 s for
#   3312 masks (no more: beyond MAP_CACHE_BYTES they are computed per batch instead);
# - a worker's start: 2 s importing torch. (Nothing is compiled: no torch.compile.)
# (The last epoch's boundary scores report each image, 2-17 ms at 512 px.) The limit is
# some 45 times the longest: a hung trial holds its own worker only (the others go on)
# for half an hour, where a limit too short fails a slow but healthy trial twice over.
STALL_LIMIT_S = 30 * 60


@dataclass(frozen=True)
class Job:
    """Trials to train and return: one, or several as one fused model.

    ``group`` is the whole fused group as planned when some of it already has a result
    (``--resume``): a fused model's floating-point order depends on how many copies it
    stacks, so those are trained again beside ``trials`` and their outcomes dropped.
    """

    trials: tuple[Trial, ...]
    fused: bool = False
    group: tuple[Trial, ...] = ()

    @property
    def trained(self) -> tuple[Trial, ...]:
        return self.group or self.trials

    @property
    def name(self) -> str:
        first = self.trials[0]
        if len(self.trials) == 1:
            return first.id
        return f"{len(self.trials)} losses · seed {first.seed} · {first.dataset}"


@dataclass(frozen=True)
class Execution:
    """How a run's jobs are executed, resolved from the options (recorded in run.json)."""

    executor: str = "local"
    jobs: int = 1  # worker processes (local) or tasks in flight (ray; 0: what the cluster fits)
    threads: int = 1  # torch threads per job
    fused: bool = False  # the losses of a (dataset, seed, rate) trained as one stacked model
    ray_address: str | None = None
    # AdamW's fused kernel where torch has one for the device (config.FUSED_ADAMW_DEVICES):
    # it rounds differently from the default implementation, so a resumed run keeps its own.
    fused_adamw: bool = True
    # A fused model's copies one by one where config.PER_COPY_FUSED_DEVICES says (not vmap):
    # it rounds differently from vmap, which runs recorded without it used everywhere.
    fused_per_copy: bool = True
    # ... each with weights of its own (fused.SeparateCopies), not views of stacked ones: AdamW
    # rounds those otherwise, as runs recorded without it trained them.
    fused_own_weights: bool = True
    # The most losses in one fused model: under vmap (CUDA) a copy rounds by its group, so a
    # resumed run keeps the groups it started with whatever cap this losscmp has. A run's is
    # always set by runner.resolve_execution (runner._fused_group_cap); this default serves
    # an Execution made outside a run (an executor's before it starts, tests).
    fused_group_size: int = MAX_FUSED_LOSSES

    def describe(self, trials: Collection[Trial] = ()) -> str:
        """How jobs run, as a run's first lines say it: "3 worker processes, 2 threads
        each, losses fused per seed and learning rate". A fused group is a (dataset, seed,
        learning rate): of those, the planned ``trials`` name the datasets and rates only
        where they have several."""
        from losscmp.executors import executor_class

        workers = executor_class(self.executor).describe_workers(self.jobs)
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        text = f"{workers}, {threads}" + (" each" if self.jobs != 1 else "")  # 0: Ray's many
        return text + (f", losses fused per {_fused_per(trials)}" if self.fused else "")


def _fused_per(trials: Collection[Trial]) -> str:
    """'seed', 'seed and learning rate', 'dataset, seed and learning rate': what the fused
    groups of ``trials`` are made per (a dataset or rate they all share goes unsaid)."""
    keys = [
        ("dataset", len({trial.dataset for trial in trials}) > 1),
        ("seed", True),
        ("learning rate", len({trial.lr for trial in trials}) > 1),
    ]
    named = [name for name, several in keys if several]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


@dataclass(frozen=True)
class JobContext:
    """Everything a worker needs to rebuild the data and train a job; picklable."""

    config: RunConfig
    loss_specs: dict[str, Spec]
    dataset_specs: dict[str, Spec]
    settings: Any  # train.TrainSettings
    threads: int  # torch threads per job: part of what fixes floating-point order
    # Label -> the fingerprint of the dataset the main process loaded: a worker that loads
    # its own copy (no room to share it) trains only if its copy's is the same.
    dataset_fingerprints: dict[str, str] = field(default_factory=dict)
    # The losses and datasets of the run registered outside losscmp (by a notebook or a
    # script), by registry kind ('loss', 'dataset'): a worker process imported only
    # losscmp's own, and registers these before its job.
    users_entries: dict[str, tuple[Entry, ...]] = field(default_factory=dict)


@dataclass
class TrialResult:
    """A finished trial's outcome, or why it failed (after its retry)."""

    trial: Trial
    outcome: Any = None  # train.TrialOutcome
    failure: str | None = None


class Executor(ABC):
    """Runs jobs; yields a ``TrialResult`` per trial as soon as its job ends.

    Made from the run's options, then asked which device the jobs train on (it is where
    they run that decides: this machine, or a cluster), then started with the execution
    resolved for that device.
    """

    execution = Execution()  # until started
    # Run options only this executor reads (ray: ``ray_address``), refused with another.
    run_options: frozenset[str] = frozenset()

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @abstractmethod
    def run(self, jobs: list[Job], context: JobContext, emit: Listener) -> Iterator[TrialResult]:
        """Run every job; progress goes to ``emit`` (called in this process only)."""

    def resolve_device(self, name: str):
        """The device the jobs train on, for ``--device name``; a user error if there is none."""
        from losscmp.devices import resolve_device

        return resolve_device(name)

    @classmethod
    def resolve_execution(
        cls, config: RunConfig, device, fused: bool, jobs_to_run: int | None
    ) -> Execution:
        """Workers and threads per job on this machine: ``--jobs`` (by default one per GPU
        times ``--trials-per-gpu``, one on the CPU), never more than the ``jobs_to_run``
        (None: not known yet; each extra worker would import torch for nothing), and
        torch's own thread count (the cores, or OMP_NUM_THREADS) shared out among them."""
        import torch

        from losscmp.devices import cuda_device_count

        jobs = config.jobs
        if jobs is None:
            cuda = device.type == "cuda"
            jobs = config.trials_per_gpu * max(1, cuda_device_count()) if cuda else 1
        if jobs_to_run is not None:
            jobs = max(1, min(jobs, jobs_to_run))
        threads = config.threads or max(1, torch.get_num_threads() // jobs)
        return Execution(config.executor, jobs, threads, fused)

    @staticmethod
    def describe_workers(jobs: int) -> str:
        """Where the jobs run, as the run's first lines say it."""
        return "in this process" if jobs == 1 else f"{jobs} worker processes"

    def crowding(self, execution: Execution) -> str:
        """A note where the jobs would run on more threads at once than there are cores
        ('' if not, and by default: a Ray task reserves the CPUs it trains with)."""
        return ""

    def describe_device(self, device) -> str:
        """The device as run.json records it."""
        from losscmp.devices import describe_device

        return describe_device(device)

    def start_early(self, jobs_at_most: int) -> bool:
        """Start what needs neither the device nor torch (this process has not imported it
        yet), so that it overlaps the checks and the data: ``jobs_at_most``, an upper bound
        on the jobs (the trials to run, or the fused models ``--fuse on`` makes of them).
        ``close`` releases it should the checks fail. Whether it started anything (by
        default nothing)."""
        return False

    def start(self, execution: Execution, device, checks_only: bool = False) -> None:
        """Connect or start what the executor needs; fails before the run folder exists.
        ``checks_only`` (a dry run): only what the checks need, nothing to train with."""
        self.execution = execution

    def share(self, datasets: dict[str, Any]) -> dict[str, Any]:
        """Put the loaded datasets (by label) where this executor's workers can read them
        without loading them again; returns the copies this process keeps using (by default
        the same objects: in-process jobs read them as they are)."""
        return datasets

    def close(self) -> None:  # noqa: B027 (most executors hold nothing to release)
        """Release workers; called on success, error and Ctrl-C alike."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def failure_reason(error: BaseException) -> str:
    """One line for a job that raised, as every executor words it, with the first line of
    each note added to the error (a fused group's names the loss that raised). Running out
    of memory says so: a bare ``MemoryError`` has no message, and torch's ends in an
    allocator dump; cuDNN and cuBLAS name theirs in a RuntimeError."""
    from losscmp.devices import out_of_memory

    notes = "".join(f" ({_first_line(note)})" for note in getattr(error, "__notes__", ()))
    first = _first_line(str(error))
    if isinstance(error, MemoryError):
        reason = f"out of memory (MemoryError: {first})" if first else "out of memory (MemoryError)"
        return reason + notes
    memory = out_of_memory(error)  # torch's OutOfMemoryError, or cuDNN's, cuBLAS's status
    if memory:
        said = "out of memory" if memory == "yes" else "probably out of memory"
        return (f"{said}: {first}" if first else said) + notes
    return (f"{type(error).__name__}: {first}" if first else type(error).__name__) + notes


def _first_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


def stall_limit_s(job: Job) -> float:
    """How long ``job``'s worker may send nothing before it is taken for hung:
    ``STALL_LIMIT_S`` for each model the job trains (a fused group's)."""
    return STALL_LIMIT_S * len(job.trained)


def stall_reason(limit_s: float) -> str:
    """Why a job whose worker was silent for ``limit_s`` (``stall_limit_s``) failed."""
    silent = f"{limit_s / 60:g} min" if limit_s >= 60 else f"{limit_s:g} s"
    return f"worker stalled: nothing for {silent} (hung?); killed"


def failed(job: Job, reason: str) -> list[TrialResult]:
    """Every trial of ``job`` recorded as failed; a fused group out of memory says what to
    change, since its retry (the same group) needs the same memory."""
    held = len(job.trained)
    if job.fused and held > 1 and "out of memory" in reason.lower():
        reason += (
            f" (a fused group of {held} losses holds {held} models: a run with --fuse off "
            "trains them one at a time)"
        )
    return [TrialResult(trial, failure=reason) for trial in job.trials]


def succeeded(job: Job, outcomes: list) -> list[TrialResult]:
    return [
        TrialResult(trial, outcome) for trial, outcome in zip(job.trials, outcomes, strict=True)
    ]
