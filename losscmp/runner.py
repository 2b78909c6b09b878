"""Plan trials, check everything a user could get wrong, then run them.

``prepare`` does all the checking and data loading and writes nothing, so a
bad loss name or a missing dataset never leaves a half-made run folder.
``execute`` creates the run folder, trains each (dataset, loss, seed) trial
that has no result yet, and writes each one as it finishes, so an
interrupted run keeps every finished trial and ``--resume`` picks up the rest.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from losscmp.config import FIELD_NAMES, RunConfig, build_config
from losscmp.devices import describe_device, resolve_device
from losscmp.errors import LosscmpError, ParameterError
from losscmp.plan import Plan, check_image_size, make_loss, probe_loss
from losscmp.results import RunWriter, new_run_id, now_iso, read_run_json, slug


class RunListener:
    """Progress events; the CLI draws a progress bar from them. All optional."""

    def on_start(self, run_dir: Path, trials: list, skipped: list) -> None: ...
    def on_trial_start(self, trial, index: int, total: int, epochs: int) -> None: ...
    def on_step(self, trial, step: int, steps: int) -> None: ...
    def on_epoch(self, trial, record: dict[str, Any]) -> None: ...
    def on_trial_end(self, trial, record: dict[str, Any]) -> None: ...


@dataclass
class PreparedRun:
    plan: Plan
    datasets: dict[str, Any]
    settings: Any  # train.TrainSettings


def prepare(plan: Plan) -> PreparedRun:
    """Resolve the device, load the data, build each loss once: every user error surfaces here."""
    from losscmp.data import load_dataset
    from losscmp.model import build_model, resolve_preset
    from losscmp.train import TrainSettings

    config = plan.config
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file; it must be a folder for run folders")
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
    check_image_size(settings.preset, config.image_size)
    if config.encoder_weights:
        # Fetch the pretrained weights now, so a failed download leaves no run folder.
        build_model(settings.preset, 1, config.encoder_weights, seed=config.seed)
    if device.type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
    return PreparedRun(plan, datasets, settings)


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
        check_resumable(read_run_json(run_dir), prepared, run_dir)
        writer.update_meta(
            config=plan.config.to_dict(),
            trials=[trial.id for trial in plan.trials],
            seeds=plan.seeds,
            finished_at=None,
            resumed_at=now_iso(),
        )
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
    from losscmp.train import PANEL_SIZE

    for label, data in datasets.items():
        writer.write_panel(
            f"val__{slug(label)}",
            images=data.val_images[:PANEL_SIZE],
            masks=data.val_masks[:PANEL_SIZE],
        )


def run_metadata(prepared: PreparedRun, run_dir: Path) -> dict[str, Any]:
    plan, settings = prepared.plan, prepared.settings

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
        "device": describe_device(settings.device),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "started_at": now_iso(),
        "finished_at": None,
    }


def resume_config(run_dir: Path, config_file: str | None, flags: dict[str, Any]) -> RunConfig:
    """The stored run's config, overridden by the options the user gave."""
    return build_config(config_file, base=stored_config(read_run_json(run_dir), run_dir), **flags)


def stored_config(meta: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    stored = meta.get("config")
    if not isinstance(stored, dict) or not set(stored) <= set(FIELD_NAMES):
        raise LosscmpError(f"{Path(run_dir) / 'run.json'} is damaged (no valid config)")
    return stored


# What --resume may change: practical fields, and the number of seeds (more seeds add trials).
RESUMABLE_CHANGES = RunConfig.NON_RESULT_FIELDS | {"seeds"}


def check_resumable(meta: dict[str, Any], prepared: PreparedRun, run_dir: Path) -> None:
    """Refuse to mix trials of different experiments in one run folder."""
    stored = build_config(base=stored_config(meta, run_dir))
    current = prepared.plan.config
    changes = []
    for name in FIELD_NAMES:
        old, new = getattr(stored, name), getattr(current, name)
        if name == "losses":  # their order only orders the table
            old, new = sorted(old), sorted(new)
        if name not in RESUMABLE_CHANGES and old != new:
            changes.append(f"{name} ({old!r} -> {new!r})")
    stored_model = (meta.get("model") or {}).get("preset")
    if stored_model and stored_model != prepared.settings.preset.name:
        changes.append(f"model ({stored_model!r} -> {prepared.settings.preset.name!r})")
    stored_device = str(meta.get("device", "")).split(":")[0]
    if stored_device and stored_device != prepared.settings.device.type:
        changes.append(f"device ({stored_device!r} -> {prepared.settings.device.type!r})")
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


def _git_commit() -> str | None:
    """The commit of losscmp's own checkout; None for an installed copy (even one that
    happens to sit inside some other repository)."""
    package = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2 or Path(lines[0]) != package.parent:
        return None
    return lines[1]
