"""Run one job wherever it lands: this process, a worker process or a Ray task.

Every executor calls ``run_job``, so the same job gives the same numbers on
each. It loads the job's dataset (once per process), fixes the torch thread
count the run recorded, trains the trial or the fused group, and reports
progress as events. It never touches the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

from losscmp.events import EpochDone, Evaluating, Listener, StepDone, TrialStarted

# Step and evaluation events are for a progress bar: ten a second is plenty.
STEP_EVENT_INTERVAL_S = 0.1

# Datasets loaded by this process, by (label, loading options): a worker keeps them
# across the jobs it runs, so a dataset is generated or decoded once per process.
_DATASETS: dict[tuple, Any] = {}
# Why this process's own copy of a dataset was refused (``data.shared.check_own_copy``).
_REFUSED: dict[tuple, str] = {}


def run_job(job, context, emit: Listener, *, device=None, where: str = "") -> list:
    """Train ``job``; returns its ``TrialOutcome`` list, in the job's trial order."""
    from losscmp.devices import make_current
    from losscmp.train import train_trial

    adopt_registrations(context)
    settings = context.settings
    if device is not None:
        settings = dataclasses.replace(settings, device=device)
    # The current CUDA device is per thread, and a Ray task trains in a thread of a process
    # that has not touched CUDA yet: set it (which initialises CUDA) where training runs.
    make_current(settings.device)
    data = job_dataset(job.trials[0].dataset, context)
    relay = ProgressRelay(emit, {trial.id for trial in job.trials})
    for trial in job.trials:
        emit(TrialStarted(trial.id, where))
    with (
        torch_threads(context.threads),
        _cudnn_autotune(settings.device),
        _gpu_peak(settings.device) as peak,
    ):
        if job.fused:
            from losscmp.fused import train_fused_group

            outcomes = train_fused_group(
                list(job.trained),
                context.loss_specs,
                data,
                settings,
                on_step=relay.step,
                on_evaluation=relay.evaluation,
                on_epoch=relay.epoch,
                wanted={trial.id for trial in job.trials},
            )
        else:
            (trial,) = job.trials
            outcomes = [
                train_trial(
                    trial,
                    context.loss_specs[trial.loss],
                    data,
                    settings,
                    on_step=lambda step, steps: relay.step(trial, step, steps),
                    on_evaluation=lambda *batch: relay.evaluation(trial, *batch),
                    on_epoch=lambda record: relay.epoch(trial, record),
                )
            ]
    if peak:
        for outcome in outcomes:  # a fused group's memory, shared out among its trials
            outcome.record["gpu_peak_mib"] = round(peak[0] / len(outcomes), 1)
    wanted = {trial.id for trial in job.trials}
    return [
        outcome for trial, outcome in zip(job.trained, outcomes, strict=True) if trial.id in wanted
    ]


def import_job_modules() -> None:
    """Import what a job imports on first use, for a worker to do before it says it is
    ready, while the main process loads the data: smp (with timm, torchvision and
    torch._dynamo, 2 s on an idle 2-core CPU, about half a worker's start) and the
    boundary scores' scipy. Its first job took that much longer than its others."""
    import scipy.ndimage  # noqa: F401 (metrics' distance transforms)
    import scipy.spatial  # noqa: F401 (metrics' nearest boundary pixels)
    import segmentation_models_pytorch  # noqa: F401 (model.build_model's)

    import losscmp.fused  # noqa: F401 (torch, train, metrics)


def adopt_registrations(context) -> None:
    """Register the run's losses and datasets that a user's code registered in the main
    process: a worker process (``--jobs 2``, Ray) imported losscmp's own only."""
    from losscmp.data import DATASET_REGISTRY
    from losscmp.losses import LOSS_REGISTRY

    registries = {registry.kind: registry for registry in (LOSS_REGISTRY, DATASET_REGISTRY)}
    for kind, entries in context.users_entries.items():
        for entry in entries:
            if entry.name not in registries[kind]:
                registries[kind].add(entry)


def _check_registered(spec) -> None:
    """A dataset this worker lacks was registered by a notebook (losscmp's own and a
    module's are registered here): said so, not as an unknown name. This worker loads its
    own copy because there was no room to share the data (/dev/shm)."""
    from losscmp.data import DATASET_REGISTRY
    from losscmp.errors import DatasetError
    from losscmp.spec import as_spec

    name = as_spec(spec).name
    if name not in DATASET_REGISTRY:
        raise DatasetError(
            f"dataset '{name}' is defined in a notebook, which this worker process cannot "
            "import, and there was no room in /dev/shm to share its data with the workers: "
            "run it with jobs=1, or define it in a module of its own and import it from there"
        )


def job_dataset(label: str, context) -> Any:
    from losscmp.data import load_dataset
    from losscmp.data.shared import DataDiffers, check_own_copy

    config = context.config
    key = _dataset_key(label, config)
    if key in _REFUSED:  # this process's copy differs: every job of it is refused at once
        raise DataDiffers(_REFUSED[key])
    if key not in _DATASETS:
        _check_registered(context.dataset_specs[label])
        data = load_dataset(
            context.dataset_specs[label],
            data_dir=config.data_dir,
            image_size=config.image_size,
            limit=config.limit,
            seed=config.seed,
        )
        try:
            check_own_copy(data, context.dataset_fingerprints.get(label))
        except DataDiffers as error:
            _REFUSED[key] = str(error)
            raise
        _DATASETS[key] = data
    return _DATASETS[key]


@contextlib.contextmanager
def datasets_shared(datasets: dict[str, Any], config):
    """Hand this process's already loaded datasets to ``run_job`` for the run (the main
    process loads them to check the run; in-process jobs should not load them again), and
    take them back as it ends: left there, a program calling the CLI run after run (a
    sweep of seeds, of datasets) kept every earlier run's data in memory. A worker process
    keeps its own (``job_dataset``) across the jobs it runs, and ends with the run."""
    keys = [_dataset_key(label, config) for label in datasets]
    _DATASETS.update(zip(keys, datasets.values(), strict=True))
    try:
        yield
    finally:
        for key in keys:
            _DATASETS.pop(key, None)


def adopt_shared(shared: dict[str, Any], context) -> None:
    """Datasets the executor shared, by label: a handle whose ``load()`` gives the dataset
    without reading or generating it (``data.shared.SharedDataset``, a Ray object); once
    per process."""
    for label, handle in shared.items():
        key = _dataset_key(label, context.config)
        if key not in _DATASETS:
            _DATASETS[key] = handle.load()


def _dataset_key(label: str, config) -> tuple:
    """What decides a loaded dataset: its spec and the loading options."""
    return (label, config.data_dir, config.image_size, config.limit, config.seed)


@contextlib.contextmanager
def torch_threads(count: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _cudnn_autotune(device):
    import torch

    before = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def _gpu_peak(device):
    """Yields a list that holds, afterwards, the job's peak CUDA memory in MiB."""
    import torch

    peak: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield peak
    if device.type == "cuda":
        peak.append(torch.cuda.max_memory_allocated(device) / 2**20)


class ProgressRelay:
    """Turns the trainer's callbacks into events; step and evaluation events at most every
    0.1 s per trial, a pass's last step or batch always."""

    def __init__(self, emit: Listener, reported: set[str]) -> None:
        self.emit = emit
        self.reported = reported  # a resumed fused group's finished trials stay silent
        self.epoch_of: dict[str, int] = {}
        self.last_sent: dict[str, float] = {}

    def step(self, trial, step: int, steps: int) -> None:
        if self._due(trial, step, steps):
            self.emit(StepDone(trial.id, self.epoch_of.get(trial.id, 1), step, steps))

    def evaluation(self, trial, split: str, batch: int, batches: int) -> None:
        if self._due(trial, batch, batches):
            self.emit(Evaluating(trial.id, split, batch, batches))

    def _due(self, trial, done: int, total: int) -> bool:
        if trial.id not in self.reported:
            return False
        now = time.monotonic()
        if done < total and now - self.last_sent.get(trial.id, 0.0) < STEP_EVENT_INTERVAL_S:
            return False
        self.last_sent[trial.id] = now
        return True

    def epoch(self, trial, record: dict[str, Any]) -> None:
        if trial.id not in self.reported:
            return
        self.epoch_of[trial.id] = record["epoch"] + 1
        self.emit(EpochDone(trial.id, record))
