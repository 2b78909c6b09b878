"""Plan trials, check everything a user could get wrong, then run them.

``prepare`` does all the checking and data loading and writes nothing, so a
bad loss name or a missing dataset never leaves a half-made run folder.
``execute`` creates the run folder, trains each (dataset, loss, seed) trial
that has no result yet, and writes each one as it finishes, so an
interrupted run keeps every finished trial and ``--resume`` picks up the rest.
"""

from __future__ import annotations

import itertools
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from losscmp.config import RunConfig, build_config
from losscmp.errors import LosscmpError, ParameterError
from losscmp.results import RunWriter, new_run_id, now_iso, read_run_json
from losscmp.spec import Spec


class RunListener:
    """Progress events; the CLI draws a progress bar from them. All optional."""

    def on_start(self, run_dir: Path, trials: list, skipped: list) -> None: ...
    def on_trial_start(self, trial, index: int, total: int, epochs: int) -> None: ...
    def on_step(self, trial, step: int, steps: int) -> None: ...
    def on_epoch(self, trial, record: dict[str, Any]) -> None: ...
    def on_trial_end(self, trial, record: dict[str, Any]) -> None: ...


@dataclass
class Plan:
    """Checked config and the trials it implies, before any data is loaded."""

    config: RunConfig
    loss_specs: dict[str, Spec]
    dataset_specs: dict[str, Spec]
    trials: list = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + offset for offset in range(self.config.seeds)]


def plan_run(config: RunConfig) -> Plan:
    """Check every loss and dataset name and parameter; list the trials. Writes nothing."""
    from losscmp.data import DATASET_REGISTRY
    from losscmp.losses import LOSS_REGISTRY
    from losscmp.registry import check_params
    from losscmp.train import Trial

    loss_specs = {spec.label: spec for spec in config.loss_specs}
    for spec in loss_specs.values():
        check_params(LOSS_REGISTRY.get(spec.name), spec.params, "loss")
    dataset_specs = {spec.label: spec for spec in config.dataset_specs()}
    for spec in dataset_specs.values():
        check_params(DATASET_REGISTRY.get(spec.name), spec.params, "dataset")
    plan = Plan(config, loss_specs, dataset_specs)
    seeds = [config.seed + offset for offset in range(config.seeds)]
    plan.trials = [
        Trial(dataset, loss, seed)
        for dataset, seed, loss in itertools.product(dataset_specs, seeds, loss_specs)
    ]
    return plan


@dataclass
class PreparedRun:
    plan: Plan
    datasets: dict[str, Any]
    settings: Any  # train.TrainSettings


def prepare(plan: Plan) -> PreparedRun:
    """Resolve the device, load the data, build each loss once: every user error surfaces here."""
    from losscmp.data import load_dataset
    from losscmp.model import build_model, resolve_preset
    from losscmp.train import TrainSettings, make_loss

    config = plan.config
    device = resolve_device(config.device)
    datasets = {
        label: load_dataset(
            spec,
            data_dir=config.data_dir,
            image_size=config.image_size,
            limit=config.limit,
            seed=config.seed,
        )
        for label, spec in plan.dataset_specs.items()
    }
    for data in datasets.values():
        for spec in plan.loss_specs.values():
            make_loss(spec, data)  # raises on a mode or value the loss refuses
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
    if config.encoder_weights:
        # Fetch the pretrained weights now, so a failed download leaves no run folder.
        build_model(settings.preset, 1, config.encoder_weights, seed=config.seed)
    if device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
    return PreparedRun(plan, datasets, settings)


def resolve_device(name: str):
    """``auto`` takes CUDA, then MPS, then the CPU; an explicit choice must exist."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(mps and mps.is_available()),
        "cpu": True,
    }
    if name == "auto":
        name = next(device for device in ("cuda", "mps", "cpu") if available[device])
    if not available.get(name, False):
        raise ParameterError(f"--device {name}: no {name.upper()} device is available here")
    return torch.device(name)


def execute(
    prepared: PreparedRun,
    run_dir: Path | None = None,
    listener: RunListener | None = None,
) -> Path:
    """Train every trial without a result in ``run_dir`` (a new folder unless resuming)."""
    from losscmp.train import train_trial

    listener = listener or RunListener()
    plan, settings = prepared.plan, prepared.settings
    resuming = run_dir is not None
    run_dir = Path(run_dir) if resuming else Path(plan.config.out) / new_run_id()
    writer = RunWriter(run_dir)
    if resuming:
        writer.update_meta(finished_at=None, resumed_at=now_iso())
    else:
        writer.write_meta(run_metadata(prepared, run_dir))
        _write_validation_panels(writer, prepared.datasets)
    done = writer.finished_trials()
    todo = [trial for trial in plan.trials if trial.id not in done]
    skipped = [trial for trial in plan.trials if trial.id in done]
    listener.on_start(run_dir, todo, skipped)
    for index, trial in enumerate(todo, start=1):
        listener.on_trial_start(trial, index, len(todo), settings.epochs)
        outcome = train_trial(
            trial,
            plan.loss_specs[trial.loss],
            prepared.datasets[trial.dataset],
            settings,
            on_step=lambda step, steps, trial=trial: listener.on_step(trial, step, steps),
            on_epoch=lambda record, trial=trial: listener.on_epoch(trial, record),
        )
        if outcome.panel_predictions is not None:
            writer.write_panel(trial.id, pred=outcome.panel_predictions)
        writer.write_trial(outcome.record)
        listener.on_trial_end(trial, outcome.record)
    writer.update_meta(finished_at=now_iso())
    return run_dir


def _write_validation_panels(writer: RunWriter, datasets: dict[str, Any]) -> None:
    from losscmp.results import slug
    from losscmp.train import PANEL_SIZE

    for label, data in datasets.items():
        writer.write_panel(
            f"val__{slug(label)}",
            images=data.val_images[:PANEL_SIZE],
            masks=data.val_masks[:PANEL_SIZE],
        )


def run_metadata(prepared: PreparedRun, run_dir: Path) -> dict[str, Any]:
    plan, settings = prepared.plan, prepared.settings
    import torch

    return {
        "run_id": run_dir.name,
        "config": plan.config.to_dict(),
        "model": {"preset": settings.preset.name, **settings.preset.unet_kwargs},
        "losses": {
            label: {"name": spec.name, "params": spec.params}
            for label, spec in plan.loss_specs.items()
        },
        "datasets": {
            label: {"spec": label, **data.info} for label, data in prepared.datasets.items()
        },
        "trials": [trial.id for trial in plan.trials],
        "seeds": plan.seeds,
        "device": _describe_device(settings.device, torch),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "started_at": now_iso(),
        "finished_at": None,
    }


def load_resumable(run_dir: Path, config_file: str | None, flags: dict[str, Any]) -> RunConfig:
    """The stored config, overridden by what the user gave; refuse changes that alter results."""
    meta = read_run_json(run_dir)
    stored = RunConfig(**meta["config"])
    config = build_config(config_file, base=stored.to_dict(), **flags)
    changed = [
        name
        for name, value in config.to_dict().items()
        if name not in RunConfig.NON_RESULT_FIELDS and value != getattr(stored, name)
    ]
    if changed:
        first = changed[0]
        raise LosscmpError(
            f"--resume {run_dir}: this command changes {', '.join(changed)} "
            f"({getattr(stored, first)!r} -> {getattr(config, first)!r}); "
            "start a new run instead"
        )
    return config


def _describe_device(device, torch) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return (
            f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        )
    return device.type


def _versions() -> dict[str, str]:
    packages = ["losscmp", "torch", "segmentation-models-pytorch", "albumentations", "numpy"]
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
