"""Plan trials, check everything a user could get wrong, then run them.

``prepare`` does all the checking and data loading and writes nothing, so a
bad loss name or a missing dataset never leaves a half-made run folder.
``execute`` creates the run folder, trains each (dataset, loss, seed) trial
that has no result yet, and writes each one as it finishes, so an
interrupted run keeps every finished trial and ``--resume`` picks up the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import sys
from collections.abc import Collection
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from losscmp.config import (
    FIELD_NAMES,
    MAX_FUSED_LOSSES,
    UNRECORDED_FUSED_GROUP_SIZE,
    Origins,
    RunConfig,
    build_config,
    separate_fused_copies,
    with_device_as_started,
)
from losscmp.errors import LosscmpError, ParameterError
from losscmp.events import (
    Listener,
    RunNote,
    RunOpened,
    RunStarted,
    TrialEnded,
    TrialInfo,
    ignore,
)
from losscmp.executors import create_executor, executor_class
from losscmp.executors.base import Execution, Executor, Job, JobContext
from losscmp.plan import Plan, Trial, check_image_size, make_loss, probe_loss
from losscmp.registry import Entry
from losscmp.results import (
    RUN_FILE,
    SCHEMA_VERSION,
    RunStore,
    check_out_dir,
    check_record_folders,
    new_run_id,
    now_iso,
    read_run_json,
    refuse_not_a_run,
    slug,
    started_elsewhere,
)
from losscmp.tracking import GuardedTracker, TrackedRun, create_tracker
from losscmp.worker import datasets_shared

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class PreparedRun:
    plan: Plan
    datasets: dict[str, Any]
    settings: Any  # train.TrainSettings
    execution: Execution
    executor: Executor
    tracker: GuardedTracker = dataclasses.field(default_factory=lambda: create_tracker(None))


def prepare(
    plan: Plan,
    resuming: bool = False,
    done: Collection[str] = (),
    dry_run: bool = False,
    group_size: int | None = None,
) -> PreparedRun:
    """Resolve the device and the executor, load the data, build each loss once: every
    user error surfaces here, before any folder exists. (A resumed run writes into its
    own folder only: no --out to check; ``done``, its finished trials, need no worker; a
    dry run, none at all; ``group_size``, its fused groups' cap (:func:`fused_group_size`),
    counts its jobs.)"""
    config = plan.config
    if not resuming:
        check_out_dir(config.out)
    if os.environ.get("MPLBACKEND"):  # (only then can importing matplotlib fail)
        # The report's figures need matplotlib: refused now, not after the whole run trained.
        from losscmp.render.figures import require_matplotlib

        require_matplotlib()
    executor = create_executor(config)  # e.g. Ray not installed: refused before any folder
    tracker = create_tracker(config.tracking)  # e.g. MLflow not installed: likewise
    try:
        # Before torch is imported here (resolving the device): workers that --jobs fixes.
        # At most the unfused jobs: 'auto' fuses or not by the device.
        started = not dry_run and executor.start_early(
            len(make_jobs(plan.trials, config.fuse == "on", done, group_size=group_size))
        )
        # With workers importing already, the data (no torch) first: a mistake in it then
        # stops them before this process imports torch too, which would compete with
        # their imports for the cores. Otherwise after start, whose workers overlap it.
        datasets = _load_datasets(plan) if started else None
        # Where the jobs run decides (a Ray cluster's GPUs, not this machine's). A Ray
        # cluster that cannot be reached is refused here, likewise.
        device = executor.resolve_device(config.device)
        execution = resolve_execution(config, device, plan.trials, done, group_size)
        check_workers_import_users_entries(plan, execution)
        # Started first, so that workers it spawns import torch while this process loads
        # and probes the data.
        executor.start(execution, device, checks_only=dry_run)
        if datasets is None:
            datasets = _load_datasets(plan)
        settings = _probe(plan, datasets, device)
        if not dry_run:
            datasets = executor.share(datasets)  # e.g. one copy in shared memory for workers
    except BaseException:
        executor.close()
        raise
    return PreparedRun(plan, datasets, settings, execution, executor, tracker)


def _load_datasets(plan: Plan) -> dict[str, Any]:
    """Each dataset of the plan, by label: read and checked (without torch)."""
    from losscmp.data import load_dataset

    config = plan.config
    return {
        label: load_dataset(
            spec,
            data_dir=config.data_dir,
            image_size=config.image_size,
            limit=config.limit,
            seed=config.seed,
        )
        for label, spec in plan.dataset_specs.items()
    }


def _probe(plan: Plan, datasets: dict[str, Any], device):
    """Each loss tried on each dataset, the model preset checked against the image size
    (and pretrained weights fetched): the training settings."""
    from losscmp.model import build_model, resolve_preset
    from losscmp.train import TrainSettings

    config = plan.config
    for data in datasets.values():
        for label, spec in plan.loss_specs.items():
            probe_loss(label, make_loss(spec, data), data)
    settings = TrainSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        num_workers=config.num_workers,
        preset=resolve_preset(config.model, device.type),
        encoder_weights=config.encoder_weights,
        device=device,
        amp=config.amp,
    )
    check_image_size(settings.preset, config.image_size, config.origins)
    if config.encoder_weights:
        # Fetch the pretrained weights now, so a failed download leaves no run folder.
        build_model(settings.preset, 1, config.encoder_weights, seed=config.seed)
    return settings


def _fused_group_cap(group_size: int | None) -> int:
    """The most losses in one of a run's fused models: ``group_size`` (a resumed run's own)
    or this losscmp's MAX_FUSED_LOSSES. The one place the default is read, at each call
    (Execution's default is bound at import, and every run's is set from this): tests
    lower runner.MAX_FUSED_LOSSES to cut small groups."""
    return group_size or MAX_FUSED_LOSSES


def resolve_execution(
    config: RunConfig,
    device,
    trials: Collection[Trial] = (),
    done: Collection[str] = (),
    group_size: int | None = None,
) -> Execution:
    """Fusion from the options and the device; workers and threads as the executor
    decides them for the jobs the planned ``trials`` not ``done`` make, fused in groups of
    at most ``group_size`` losses (a resumed run's own; by default MAX_FUSED_LOSSES)."""
    size = _fused_group_cap(group_size)
    fused = {"on": True, "off": False, "auto": device.type == "cuda"}[config.fuse]
    jobs_to_run = len(make_jobs(list(trials), fused, done, group_size=size)) if trials else None
    execution = executor_class(config.executor).resolve_execution(
        config, device, fused, jobs_to_run
    )
    return dataclasses.replace(execution, fused_group_size=size)


def planned_choices(
    prepared: PreparedRun, meta: dict[str, Any] | None = None, done: Collection[str] = ()
) -> list[tuple[str, str, str]]:
    """What the run will use for each option losscmp may decide (model, device, jobs,
    fusion), as (option, value, why): ``why`` is '' for a value used as given. ``meta``
    is a resumed run's run.json: the run keeps its own fusion and, for ``auto``, device;
    ``done``, its finished trials."""
    config, settings = prepared.plan.config, prepared.settings
    execution = prepared.execution if meta is None else stored_execution(meta, prepared.execution)
    device = settings.device.type
    idle = not _jobs(prepared.plan.trials, execution, settings.device, done)
    return [
        ("model", settings.preset.name, "auto" if config.model == "auto" else ""),
        ("device", device, _device_why(config.device, meta)),
        ("jobs", _jobs_text(execution.jobs), _jobs_why(config.jobs, execution.jobs, idle)),
        ("fuse", "on" if execution.fused else "off", _fuse_why(config.fuse, device, meta)),
    ]


def _device_why(given: str, meta: dict[str, Any] | None) -> str:
    if given == "auto":
        return "auto"
    # resume_config pins a resumed run's 'auto' to the device it started on
    stored = ((meta or {}).get("config") or {}).get("device")
    return "the run's" if stored == "auto" else ""


def _fuse_why(given: str, device: str, meta: dict[str, Any] | None) -> str:
    if meta is not None:
        return "the run's"  # stored_execution: a resumed run keeps its own
    return f"auto: {device.upper()}" if given == "auto" else ""


def _jobs_text(jobs: int) -> str:
    # Ray's 0: tasks in flight, twice what fits (executors.ray.InFlight), as --help says
    return str(jobs) if jobs else "twice what the cluster fits"


def _jobs_why(given: int | None, jobs: int, idle: bool = False) -> str:
    if given is None:
        return "auto"
    # "set", not "--jobs": on a resume the number may be the run's own, not typed now
    if given == jobs:
        return ""
    return f"{given} set: nothing to run" if idle else f"{given} set: only {jobs} to run"


def execution_notes(prepared: PreparedRun, meta: dict[str, Any] | None = None) -> list[str]:
    """What the user should know of how the trials will run, before they do: too few cores
    for them, an option this device does not read, a dataset decoded again by every run.
    ``meta``: a resumed run's run.json, whose threads the rest keeps."""
    from losscmp.data.cache import cache_note

    execution = prepared.execution if meta is None else stored_execution(meta, prepared.execution)
    notes = [prepared.executor.crowding(execution)]
    # Once a run: a cache that cannot be written is why each run decodes for as long again;
    # one written in the user's cache, not the data folder's, takes room the user looks for.
    notes += [cache_note(label, data.info) for label, data in prepared.datasets.items()]
    config, device = prepared.plan.config, prepared.settings.device.type
    origins = config.origins or Origins()
    if config.trials_per_gpu != 1 and device != "cuda":
        given = origins.given("trials_per_gpu", config.trials_per_gpu)
        notes.append(f"{given} counts on CUDA only: set aside on the {device}")
    if config.amp and origins.given_now("amp"):  # a resumed run's was noted when it started
        notes.append(_amp_set_aside(origins.name("amp"), prepared.settings.device))
    return [note for note in notes if note]


def _amp_set_aside(name: str, device) -> str:
    """The note for an --amp (``name``, as it was given) that trains in float32 here
    (devices.amp_trains_in_bf16): off CUDA, or on a GPU without native bf16 (V100, T4);
    '' where it counts, or where this process has no GPU to ask (Ray's head node)."""
    from losscmp.devices import amp_trains_in_bf16, cuda_device_count

    if device.type != "cuda":
        return f"{name} counts on CUDA only: set aside on the {device.type} (float32)"
    if cuda_device_count() == 0 or amp_trains_in_bf16(device):
        return ""
    return (
        f"{name} counts on GPUs with native bf16 only (compute capability 8.0 or newer): "
        "set aside on this one (float32)"
    )


def _separate_copies(execution: Execution, device) -> bool:
    """Whether the run's fused models hold their copies as models of their own."""
    own = execution.fused_per_copy, execution.fused_own_weights
    return separate_fused_copies(*own, device.type)


def _jobs(trials: list[Trial], execution: Execution, device, done: Collection[str]) -> list[Job]:
    """The jobs for the planned ``trials`` not ``done``, fused as ``execution`` says."""
    separate = _separate_copies(execution, device)
    return make_jobs(trials, execution.fused, done, separate, execution.fused_group_size)


def make_jobs(
    trials: list[Trial],
    fused: bool,
    done: Collection[str] = (),
    separate_copies: bool = False,
    group_size: int | None = None,
) -> list[Job]:
    """The jobs for the planned ``trials`` that are not ``done``: one per trial, or per
    (dataset, seed, learning rate) group of at most ``group_size`` losses (by default
    MAX_FUSED_LOSSES; a resumed run's own, run.json's ``execution.fused_group_size``: a
    group shares one optimizer and one schedule, one rate). A fused group is trained as planned,
    so that a resumed run gives the numbers of an uninterrupted one, unless its copies are
    models of their own (``separate_copies``: each rounds as alone): then only the trials
    not done train."""
    if not fused:
        return [Job((trial,)) for trial in trials if trial.id not in done]
    groups: dict[tuple[str, int, float | None], list[Trial]] = {}
    for trial in trials:
        groups.setdefault((trial.dataset, trial.seed, trial.lr), []).append(trial)
    size = _fused_group_cap(group_size)
    jobs = []
    for group in groups.values():
        group.sort(key=lambda trial: trial.loss)  # chunks independent of --losses' order
        for start in range(0, len(group), size):
            planned = tuple(group[start : start + size])
            todo = tuple(trial for trial in planned if trial.id not in done)
            if todo:
                again = planned if todo != planned and not separate_copies else ()
                jobs.append(Job(todo, fused=True, group=again))
    return jobs


def planned_jobs(
    prepared: PreparedRun, done: Collection[str] = (), meta=None
) -> tuple[Execution, list[Job]]:
    """How the trials not ``done`` would run and the jobs they make (``meta``: a resumed
    run's run.json, whose fusion and threads the rest keeps)."""
    execution = prepared.execution if meta is None else stored_execution(meta, prepared.execution)
    return execution, _jobs(prepared.plan.trials, execution, prepared.settings.device, done)


def planned_execution(prepared: PreparedRun, done: Collection[str] = (), meta=None) -> str:
    """How the trials not ``done`` would run, as a run's first lines say it, and, fused,
    into how many models (a dry run's last line). ``meta``: a resumed run's run.json,
    whose fusion and threads the rest keeps."""
    execution, jobs = planned_jobs(prepared, done, meta)
    text = execution.describe(prepared.plan.trials)
    if not (execution.fused and jobs):
        return text
    sizes = sorted({len(job.trained) for job in jobs})
    losses = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
    models = f"{len(jobs)} fused model{'s' if len(jobs) > 1 else ''}"
    return f"{text} ({models} of {losses} loss{'es' if sizes[-1] > 1 else ''})"


def execute(
    prepared: PreparedRun,
    run_dir: Path | None = None,
    listener: Listener | None = None,
    command: str | None = None,
) -> Path:
    """Train every trial without a result in ``run_dir`` (a new folder unless resuming).

    This process is the run folder's only writer: the executor returns records
    and this loop writes them as they arrive. ``command`` (the command line that
    started or resumed the run) is recorded in run.json for the report.
    """
    with prepared.executor:  # its workers are stopped whatever happens, refusals included
        return _execute(prepared, run_dir, listener or ignore, command)


def _execute(prepared: PreparedRun, run_dir: Path | None, emit: Listener, command) -> Path:
    plan = prepared.plan
    resuming = run_dir is not None
    if resuming:
        # Checked before the lock too, so that a refusal leaves the folder untouched (the
        # lock file included); _open_run checks again under the lock, which is what counts.
        check_resumable(read_run_json(run_dir), prepared, run_dir)
        store = RunStore(run_dir)
    else:
        run_id = new_run_id()
        store = RunStore.create(
            plan.config.out, run_id, run_metadata(prepared, Path(run_id), command)
        )
    emit(RunOpened(store.run_dir))
    with store.lock():
        execution = _open_run(store, prepared, resuming)
        done = store.finished_trials()
        for damaged in store.quarantined:
            emit(RunNote(f"{damaged.message}; that trial is trained again"))
        todo = [trial for trial in plan.trials if trial.id not in done]
        timed = not resuming or _record_resume(store, prepared, execution, todo, command, emit)
        store.rebuild_tables()  # a crash between a trial file and its tables leaves them stale
        try:
            # Inside: Ctrl-C while a resume logs the trials MLflow lacks (minutes, for
            # hundreds) left its parent and a half-logged child RUNNING.
            _start_tracking(store, prepared, emit)
            for note in execution_notes(prepared, store.read_meta() if resuming else None):
                emit(RunNote(note))
            emit(
                RunStarted(
                    store.run_dir,
                    _infos(todo, several_rates=len(plan.rates) > 1),
                    len(plan.trials) - len(todo),
                    prepared.settings.epochs,
                    execution.describe(plan.trials),
                    tuple(plan.selections),
                )
            )
            _run_jobs(store, prepared, execution, done, emit)
        except BaseException as error:
            prepared.tracker.end("killed" if isinstance(error, KeyboardInterrupt) else "failed")
            raise
        if timed:
            store.update_meta(finished_at=now_iso())
        prepared.tracker.end("failed" if store.read_meta().get("failed_trials") else "finished")
    return store.run_dir


def _start_tracking(store: RunStore, prepared: PreparedRun, emit) -> None:
    """Open the run in the tracker (on --resume, reopen it) and keep in run.json how to find
    it again. A tracker that fails says so once, as a warning, and is left out."""
    tracker: GuardedTracker = prepared.tracker
    if not tracker.active:
        return
    meta = store.read_meta()
    tracking = dict(meta.get("tracking") or {})
    records = store.load_trials()
    failed = _still_failed(prepared.plan.trials, meta, {record["trial_id"] for record in records})
    stored = tracking.get(tracker.name) or {}
    run = TrackedRun(store.run_dir, meta, records, stored, failed, note=lambda t: emit(RunNote(t)))
    state = tracker.start(run, warn=lambda text: emit(RunNote(text, warning=True)))
    if state:
        store.update_meta(tracking={**tracking, tracker.name: state})


def _still_failed(trials: list[Trial], meta: dict[str, Any], present: set[str]) -> list[dict]:
    """run.json's failed trials, as a tracker is told of them, but those with a record
    (a failure of an earlier attempt, trained since)."""
    reasons = meta.get("failed_trials") or {}
    return [
        failed_trial(trial, reasons[trial.id])
        for trial in trials
        if trial.id in reasons and trial.id not in present
    ]


def failed_trial(trial: Trial, reason: str) -> dict[str, Any]:
    """What a tracker is told of a trial that could not be trained: the fields a record
    would have named it by, and why."""
    own_rate = {"base_lr": trial.lr} if trial.lr is not None else {}
    return {
        "trial_id": trial.id,
        "dataset": trial.dataset,
        "loss": trial.loss,
        "seed": trial.seed,
        **own_rate,
        "reason": str(reason),
    }


def _open_run(store: RunStore, prepared: PreparedRun, resuming: bool) -> Execution:
    """Check a resumed run's run.json, or write a new run's panels; the execution to use."""
    if not resuming:  # run.json was written with the folder
        _write_reference_panels(store, prepared.datasets)
        return prepared.execution
    meta = store.read_meta()
    check_resumable(meta, prepared, store.run_dir)
    # A kill between the folder's rename and these files left a run whose report had no
    # prediction panel: the resumed run writes the missing ones.
    _write_reference_panels(store, prepared.datasets, only_missing=True)
    return stored_execution(meta, prepared.execution)


def _record_resume(
    store: RunStore,
    prepared: PreparedRun,
    execution: Execution,
    todo: list[Trial],
    command: str | None,
    emit: Listener,
) -> bool:
    """run.json of a run resumed to train ``todo``: how the rest runs, and when and by what;
    whether it was resumed. A finished run with nothing to train keeps its record as it
    was: its times (the report's duration would count the idle time between) included."""
    meta = store.read_meta()
    if not todo and meta.get("finished_at"):
        return False
    moved = device_change(meta, prepared)
    if moved:
        emit(RunNote(moved, warning=True))
    plan = prepared.plan
    origins = plan.config.origins or Origins()
    store.update_meta(
        config=plan.config.to_dict(),
        option_sources=origins.file_sources(meta.get("option_sources")),
        execution=dataclasses.asdict(execution),  # how the rest ran (executor, jobs)
        trials=[trial.id for trial in plan.trials],
        seeds=plan.seeds,
        finished_at=None,
        resumed_at=now_iso(),
        resume_command=command,
    )
    return True


def _run_jobs(store, prepared: PreparedRun, execution: Execution, done: set[str], emit):
    """Hand the jobs for the trials not ``done`` to the executor and write each result as
    it arrives."""
    plan = prepared.plan
    settings = dataclasses.replace(
        prepared.settings,
        fused_adamw=execution.fused_adamw,
        fused_per_copy=execution.fused_per_copy,
        fused_own_weights=execution.fused_own_weights,
    )
    # Computed already (run.json records them, --resume compares them): no cost here.
    fingerprints = {label: data.fingerprint() for label, data in prepared.datasets.items()}
    context = JobContext(
        plan.config,
        plan.loss_specs,
        plan.dataset_specs,
        settings,
        execution.threads,
        fingerprints,
        users_entries=users_entries(plan),
    )
    jobs = _jobs(plan.trials, execution, settings.device, done)
    try:
        with datasets_shared(prepared.datasets, plan.config):
            for result in prepared.executor.run(jobs, context, emit):
                _write_result(store, prepared, result, emit)
    except BaseException:
        # Stopped: the tables take the trials written since their last rebuild, as far as
        # they can (a second Ctrl-C or a full disk leaves them stale: report and --resume
        # rebuild them).
        with contextlib.suppress(Exception):
            store.flush_tables()
        raise
    store.flush_tables()


def check_workers_import_users_entries(plan: Plan, execution: Execution) -> None:
    """Spawned workers (local, --jobs 2 or more) import a user's loss class by its module's
    name: one defined in a notebook (its ``__main__``, no file) is not there, and every job
    would fail. Refused before any folder. (Ray pickles such a class whole.) A notebook's
    dataset loader is not refused: workers take the data shared, and only one that must
    load its own copy (no room in /dev/shm) fails its trials, saying why (``job_dataset``)."""
    if execution.executor != "local" or execution.jobs == 1 or _main_has_a_file():
        return
    for entry in users_entries(plan).get("loss", ()):
        if entry.module == "__main__":
            raise ParameterError(
                f"loss '{entry.name}' is defined in this notebook, which worker processes "
                f"(jobs={execution.jobs}) cannot import: run it with jobs=1, or define it in "
                "a module of its own and import it from there"
            )


def users_entries(plan: Plan) -> dict[str, tuple[Entry, ...]]:
    """The registry entries of the plan's losses and datasets that a user's code registered,
    by registry kind, as worker processes take them (``Entry.for_workers``); less a
    notebook's dataset loaders, which a spawned worker could not unpickle (every job would
    fail to start), and which workers that take the data shared do not need."""
    from losscmp.data import DATASET_REGISTRY
    from losscmp.losses import LOSS_REGISTRY

    used = [
        (LOSS_REGISTRY, plan.loss_specs.values(), True),
        (DATASET_REGISTRY, plan.dataset_specs.values(), _main_has_a_file()),
    ]
    found = {}
    for registry, specs, main_importable in used:
        entries = {spec.name: registry.get(spec.name) for spec in specs}
        users = tuple(
            entry.for_workers()
            for entry in entries.values()
            if not entry.from_losscmp and (main_importable or entry.module != "__main__")
        )
        if users:
            found[registry.kind] = users
    return found


def _main_has_a_file() -> bool:
    """Whether ``__main__`` is a script, which a spawned worker runs again (as
    ``__mp_main__``), so that what it defines can be imported there; a notebook's is not."""
    return bool(getattr(sys.modules["__main__"], "__file__", None))


def _write_result(store, prepared: PreparedRun, result, emit: Listener) -> None:
    """A job's result for one trial: its record and panel, or its failure."""
    trial = result.trial
    # A trial ends once the run folder has it, before the tracker copies it: a tracker that
    # waits (a lost server: MLflow retries for 4 minutes) is not the trial's time, which the
    # time left averages (after one such wait: 9:36 said for 4:17 left of a 345-trial run).
    if result.failure is not None:
        store.record_failed(trial.id, result.failure)
        emit(TrialEnded(trial.id, "failed", result.failure))
        prepared.tracker.failed(failed_trial(trial, result.failure))
        return
    outcome = result.outcome
    if outcome.panel_predictions is not None:
        store.write_panel(trial.id, pred=outcome.panel_predictions, split=outcome.panel_split)
    # Many trials: the tables are rebuilt when that is cheap beside the run, and at its end.
    store.write_trial(outcome.record, defer_tables=True)
    emit(TrialEnded(trial.id, outcome.record["status"]))
    prepared.tracker.trial(outcome.record)


def device_change(meta: dict[str, Any], prepared: PreparedRun) -> str:
    """What a resumed run should be told when it continues on another device of the same
    kind (another CPU model or instruction set, another GPU): its trials will round
    differently from those already trained; '' when the device is the recorded one."""
    from losscmp.devices import rounding_key

    stored = str(meta.get("device") or "")
    here = prepared.executor.describe_device(prepared.settings.device)
    if not stored or rounding_key(stored) in (None, rounding_key(here)):
        return ""
    return (
        f"this run started on {stored} and continues on {here}: the trials trained here "
        "may round differently from the finished ones (about a seed's spread after "
        "training); resume on the machine that started it for the numbers of an "
        "uninterrupted run"
    )


def stored_execution(meta: dict[str, Any], current: Execution) -> Execution:
    """A resumed run keeps the fusion (how a fused model runs its copies, and how many
    losses it holds at most), threads and AdamW kernel it started with (they change the
    floating-point order). Fusion and threads are in every resumable run.json
    (_refuse_unrecorded); runs from before the rest were recorded used the fused AdamW on
    CUDA only, fused by vmap, ran the CPU's copies one by one on views of stacked weights
    and fused at most UNRECORDED_FUSED_GROUP_SIZE losses."""
    stored = meta["execution"]
    started_on_cuda = _started_on_cuda(meta)
    return dataclasses.replace(
        current,
        fused=bool(stored["fused"]),
        threads=int(stored["threads"]),
        fused_adamw=bool(stored.get("fused_adamw", started_on_cuda)),
        fused_per_copy=bool(stored.get("fused_per_copy", False)),
        fused_own_weights=bool(stored.get("fused_own_weights", False)),
        fused_group_size=_stored_group_size(stored),
    )


def _stored_group_size(stored: dict[str, Any]) -> int:
    """run.json's ``execution.fused_group_size``; UNRECORDED_FUSED_GROUP_SIZE where absent."""
    return int(stored.get("fused_group_size", UNRECORDED_FUSED_GROUP_SIZE))


def fused_group_size(run_dir: Path | None) -> int | None:
    """The fused groups' cap of the run ``--resume`` names (None: a new run, this
    losscmp's MAX_FUSED_LOSSES): its jobs are counted by it before its run.json is
    checked again under its lock, so that a run cut in smaller groups gets its workers."""
    if run_dir is None:
        return None
    return _stored_group_size(read_run_json(run_dir).get("execution") or {})


def _infos(trials: list[Trial], several_rates: bool = False) -> tuple[TrialInfo, ...]:
    """The trials as progress names them: with their rate where the run has several."""
    return tuple(
        TrialInfo(
            trial.id, trial.dataset, trial.loss, trial.seed, trial.lr if several_rates else None
        )
        for trial in trials
    )


def _write_reference_panels(
    store: RunStore, datasets: dict[str, Any], only_missing: bool = False
) -> None:
    """The first images of each dataset's reported split and their masks, under
    ``<split>__<dataset>``: the trials' panel predictions are of these. ``only_missing``
    (--resume): those that are absent or unreadable; the data is the run's own (its
    fingerprint was checked), so they are what the run would have written."""
    from losscmp.train import PANEL_SIZE

    for label, data in datasets.items():
        split = data.reported_split
        name = f"{split}__{slug(label)}"
        if only_missing and store.has_panel(name):
            continue
        store.write_panel(
            name,
            images=data.images(split)[:PANEL_SIZE],
            masks=data.masks(split)[:PANEL_SIZE],
        )


def run_metadata(
    prepared: PreparedRun, run_dir: Path, command: str | None = None
) -> dict[str, Any]:
    plan, settings = prepared.plan, prepared.settings
    commit, dirty = git_state()
    return {
        "run_id": run_dir.name,
        "command": command,
        "config": plan.config.to_dict(),
        # The options a config file gave (the rest: the command's flags, or defaults).
        "option_sources": (plan.config.origins or Origins()).file_sources(),
        "model": {"preset": settings.preset.name, **settings.preset.unet_kwargs},
        "losses": {
            label: {"name": spec.name, "params": spec.params}
            for label, spec in plan.loss_specs.items()
        },
        "datasets": {
            label: {"spec": label, **data.info, "fingerprint": data.fingerprint()}
            for label, data in prepared.datasets.items()
        },
        # Relative dataset paths are read from here; --resume names it when data is missing.
        "working_dir": str(Path.cwd()),
        "trials": [trial.id for trial in plan.trials],
        "seeds": plan.seeds,
        "learning_rates": plan.rates,
        "device": prepared.executor.describe_device(settings.device),
        "execution": dataclasses.asdict(prepared.execution),
        "versions": _versions(),
        "git_commit": commit,
        "git_dirty": dirty,
        "started_at": now_iso(),
        "finished_at": None,
    }


def _started_on_cuda(meta: dict[str, Any]) -> bool:
    """Whether the run of this run.json started on a GPU (its device: ``cuda:0``)."""
    return str(meta.get("device", "")).startswith("cuda")


def resume_config(run_dir: Path, config_file: str | None, flags: dict[str, Any]) -> RunConfig:
    """The stored run's config, overridden by the options the user gave. ``--device auto``
    stays what it resolved to when the run started (trials of one run on one kind of device,
    even where a GPU has since appeared, or Ray decides differently)."""
    # A folder of runs, or a file or folder inside one, named with the run to resume.
    refuse_not_a_run(Path(run_dir), f"--resume {run_dir}", "--resume", folder_of_runs=False)
    meta = read_run_json(run_dir)
    check_record_folders(run_dir)
    _refuse_older_schema(meta, run_dir)  # before its config, which lacks later options
    _refuse_unrecorded(meta, run_dir)
    base = with_device_as_started(stored_config(meta, run_dir), meta)
    _refuse_another_out(run_dir, flags.get("out"))
    config = build_config(config_file, base=base, **flags)
    # Where the run folder is, whatever --out it was started with, or a config file gives.
    config.out = str(Path(run_dir).parent)
    sources = {key: source for key, source in config.origins.sources.items() if key != "out"}
    config.origins = dataclasses.replace(config.origins, sources=sources)  # not the file's
    return config


def _refuse_another_out(run_dir: Path, out: str | None) -> None:
    """``--out`` beside ``--resume`` names where the run folder already is (a script that
    always passes it), or it would be ignored: the user expected the run elsewhere. A
    config file's ``out`` is not checked: a file shared by several commands is no such
    request."""
    here = os.path.realpath(Path(run_dir).parent)
    if out is not None and os.path.realpath(Path(out).expanduser()) != here:
        raise LosscmpError(
            f"--resume continues {run_dir} where it is, in {Path(run_dir).parent}; --out {out} "
            "would be ignored: leave --out out, or give that folder"
        )


# Options added since run folders became schema 2: a run.json without them predates them,
# and their defaults are what it did.
OPTIONS_SINCE_SCHEMA = frozenset({"lr_grid", "tracking"})


def stored_config(meta: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """run.json's config, every option of this schema there and none this losscmp lacks."""
    path = Path(run_dir) / RUN_FILE
    stored = meta.get("config")
    if not isinstance(stored, dict):
        raise LosscmpError(f"{path} is damaged (no valid config)")
    unknown = [name for name in stored if name not in FIELD_NAMES]
    if unknown:
        raise LosscmpError(
            f"{path}: its config has {_quoted(unknown)}, an option this losscmp does not "
            "know (made by a newer losscmp, or edited by hand); resume it with the losscmp "
            "that started it"
        )
    missing = [name for name in RESULT_OPTIONS if name not in stored]
    if missing:
        raise LosscmpError(
            f"{path} is damaged (its config lacks {_quoted(missing)}; a resume would train "
            "with the default instead of the run's own)"
        )
    return stored


def _quoted(names: Collection[str]) -> str:
    return ", ".join(repr(name) for name in names)


# What --resume may change: practical fields, and the number of seeds (more seeds add trials).
RESUMABLE_CHANGES = RunConfig.NON_RESULT_FIELDS | {"seeds"}


def check_resumable(meta: dict[str, Any], prepared: PreparedRun, run_dir: Path) -> None:
    """Refuse to mix trials of different experiments in one run folder."""
    selectors = [selection.selector for selection in prepared.plan.selections]
    float32 = _trained_in_float32(meta, prepared)
    changes = config_changes(meta, prepared.plan.config, run_dir, selectors, float32)
    stored_model = (meta.get("model") or {}).get("preset")
    if stored_model and stored_model != prepared.settings.preset.name:
        changes.append(f"model ({stored_model!r} -> {prepared.settings.preset.name!r})")
    stored_device = str(meta.get("device", "")).split(":")[0]
    if stored_device and stored_device != prepared.settings.device.type:
        changes.append(f"device ({stored_device!r} -> {prepared.settings.device.type!r})")
    _refuse_changes(changes, run_dir)
    check_same_data(meta, prepared.datasets, run_dir)


# What a run made before data fingerprints were kept recorded of its data: checked instead.
DESCRIBED_DATA = (
    "train_size",
    "val_size",
    "test_size",
    "train_foreground_fraction",
    "val_foreground_fraction",
    "test_foreground_fraction",
)


def check_same_data(meta: dict[str, Any], datasets: dict[str, Any], run_dir: Path) -> None:
    """Refuse data that differs from what the run's finished trials saw: files edited or
    replaced since, a relative path that finds another folder from here, or (a run made
    before fingerprints were kept) a folder this version reads differently."""
    stored = meta.get("datasets") or {}
    changed = [
        label for label, data in datasets.items() if _data_differs(stored.get(label) or {}, data)
    ]
    if changed:
        started_in = started_elsewhere(meta)
        where = f"; the run was started in {started_in}" if started_in else ""
        raise LosscmpError(
            f"--resume {run_dir}: the data of {', '.join(changed)} is not what this run "
            f"trained on (files edited, added or removed since, or another folder found at a "
            f"relative path{where}); restore the data, or start a new run"
        )


def _data_differs(stored: dict[str, Any], data) -> bool:
    if "fingerprint" in stored:
        return stored["fingerprint"] != data.fingerprint()
    if stored.get("source") == "generated":  # made from its spec and seed, as it was
        return False
    return any(key in stored and stored[key] != data.info.get(key) for key in DESCRIBED_DATA)


def config_changes(
    meta: dict[str, Any],
    current: RunConfig,
    run_dir: Path,
    selectors: Collection[str] = (),
    trained_in_float32: bool | None = None,
) -> list[str]:
    """What ``current`` changes in the stored run that --resume may not change.
    ``selectors``: the ``all`` and patterns ``current.losses`` was expanded from;
    ``trained_in_float32``: whether the run trained in float32 whatever --amp says
    (:func:`_trained_in_float32`; unless given, a run that started on another device than
    CUDA)."""
    _refuse_older_schema(meta, run_dir)
    _refuse_unrecorded(meta, run_dir)  # run.json is read again under the run's lock
    stored = build_config(base=stored_config(meta, run_dir))
    changes = _execution_changes(meta, stored, current)
    if trained_in_float32 is None:
        trained_in_float32 = not _started_on_cuda(meta)
    # A run that --amp never reached trained as the rest will, whatever it says.
    unread = {"amp"} if trained_in_float32 else set()
    for name in FIELD_NAMES:
        old, new = getattr(stored, name), getattr(current, name)
        if name == "losses":  # their order only orders the table
            if set(old) != set(new):
                changes.append(_losses_change(old, new, selectors))
        elif name not in RESUMABLE_CHANGES | KEPT_EXECUTION | unread and old != new:
            changes.append(f"{name} ({old!r} -> {new!r})")
    if current.seeds < stored.seeds:  # more seeds add trials; fewer would hide some
        changes.append(
            f"seeds ({stored.seeds} -> {current.seeds}: a run can gain seeds, not lose them)"
        )
    return changes


# What a resume keeps of how the run trained, or checks against it; each in run.json since
# schema 2 (execution with its threads and fusion came first: every schema-2 losscmp wrote
# it, and older schemas are never resumed). Without one it took this machine's (threads
# from its cores, which round otherwise) or checked nothing (another model, device or
# data), without a word. A missing 'execution' is named before its keys.
KEPT_RECORDS = (
    ("device",),
    ("model", "preset"),
    ("datasets",),
    ("execution",),
    ("execution", "threads"),
    ("execution", "fused"),
)


def _refuse_unrecorded(meta: dict[str, Any], run_dir: Path) -> None:
    for keys in KEPT_RECORDS:
        value: Any = meta
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            raise LosscmpError(
                f"{Path(run_dir) / RUN_FILE} is damaged (it lacks {' '.join(map(repr, keys))}, "
                "which a resume keeps or checks the rest of the run by)"
            )


def _refuse_older_schema(meta: dict[str, Any], run_dir: Path) -> None:
    """A run folder of an older schema is read (``report``), never resumed."""
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise LosscmpError(
            f"--resume {run_dir}: the run was made by an older losscmp (schema version "
            f"{version}: validation only, no test split); report it as it is, or start a new run"
        )


# Options that --resume judges by what the run trained with (run.json's execution), not by
# what was typed: '--fuse auto' on the CPU trained unfused, so '--fuse off' changes nothing.
KEPT_EXECUTION = frozenset({"fuse", "threads"})

# The options a run.json's config must hold: those its numbers depend on (the others, and
# fusion and threads, which run.json's execution records, change none). Without 'epochs'
# a resume trained the rest for the default 8 epochs, beside trials of the run's own.
RESULT_OPTIONS = [
    name
    for name in FIELD_NAMES
    if name not in RunConfig.NON_RESULT_FIELDS | KEPT_EXECUTION | OPTIONS_SINCE_SCHEMA
]


def _trained_in_float32(meta: dict[str, Any], prepared: PreparedRun) -> bool:
    """Whether the run's trials trained in float32 whatever --amp said
    (devices.amp_trains_in_bf16): on a device other than CUDA, or on GPUs without native
    bf16 (V100, T4). The GPUs' bf16 is asked here, so only of the GPUs the run started on: a run
    resumed on others may have trained in bf16 there. Nor where this process has no GPU
    to ask (Ray's head node)."""
    from losscmp.devices import amp_trains_in_bf16, cuda_device_count, rounding_key

    if not _started_on_cuda(meta):
        return True
    device = prepared.settings.device
    if device.type != "cuda" or cuda_device_count() == 0:
        return False
    here = prepared.executor.describe_device(device)
    started_on = str(meta.get("device") or "")
    return rounding_key(started_on) == rounding_key(here) and not amp_trains_in_bf16(device)


def _execution_changes(meta: dict[str, Any], stored: RunConfig, current: RunConfig) -> list[str]:
    """The fusion and threads ``current`` asks for where they differ from those the run
    trained with (stored_execution keeps those); ``auto`` fusion as it resolves on the
    run's device, no ``--threads``: the run's own."""
    recorded = meta["execution"]  # with its fusion and threads (_refuse_unrecorded)
    changes = []
    if current.fuse != stored.fuse:
        trained_fused = bool(recorded["fused"])
        started_on_cuda = _started_on_cuda(meta)
        asked = {"on": True, "off": False}.get(current.fuse, started_on_cuda)
        if asked != trained_fused:
            how = "fused" if trained_fused else "unfused"
            changes.append(f"fuse ({stored.fuse!r}, which trained {how} -> {current.fuse!r})")
    trained_threads = recorded["threads"]
    if current.threads is not None and current.threads != trained_threads:
        changes.append(f"threads ({trained_threads} -> {current.threads})")
    return changes


def _losses_change(old: list[str], new: list[str], selectors: Collection[str]) -> str:
    """``losses (adds 'x'; drops 'y')``: a list of 23 against one of 24 says no more than
    the difference; where ``all`` or a pattern made the list, it says so."""
    parts = [
        f"{verb} {', '.join(repr(label) for label in labels)}"
        for verb, labels in (
            ("adds", [label for label in new if label not in old]),
            ("drops", [label for label in old if label not in new]),
        )
        if labels
    ]
    given = " and ".join(f"'{selector}'" for selector in selectors)
    if given:
        parts.append(f"{given} expanded to the losses registered now")
    return f"losses ({'; '.join(parts)})"


def _refuse_changes(changes: list[str], run_dir: Path) -> None:
    if changes:
        raise LosscmpError(
            f"--resume {run_dir}: this command changes {'; '.join(changes)}; "
            "resume with the run's own options, or start a new run"
        )


def _versions() -> dict[str, str]:
    packages = ["losscmp", "torch", "segmentation-models-pytorch", "albumentations", "numpy"]
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_state(package: Path = PACKAGE_DIR) -> tuple[str | None, bool | None]:
    """The commit of losscmp's own checkout and whether its code differs from that commit
    (tracked files under the package; numbers from edited code are not that commit's).
    (None, None) for an installed copy, even one that sits inside another repository."""
    try:
        found = _git(package, "rev-parse", "--show-toplevel", "HEAD")
        lines = found.stdout.split()
        if found.returncode != 0 or len(lines) != 2 or Path(lines[0]) != package.parent:
            return None, None
        changed = _git(package, "diff", "--quiet", "HEAD", "--", ".")
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return lines[1], {0: False, 1: True}.get(changed.returncode)


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
