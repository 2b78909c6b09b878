"""Write a valid run directory (docs/architecture.md, "Run directory") with chosen numbers.

Tests of ``report``, ``stats``-on-runs and ``plots`` use it instead of training.
The numbers follow a simple model so a test can say what the answer must be:

    per-image score(loss, dataset, seed, image, epoch)
        = clip(quality[loss] + seed_offset[seed] + image_offset[image] + noise, 0, 1)
          * EPOCH_SHAPE[epoch]

``quality`` is a float per loss, or a callable ``(loss, dataset) -> float``.
``noise`` is drawn per (loss, seed, image) from an RNG keyed by the loss's
*noise key*: losses listed in ``twins`` (``{"dice_again": "dice"}``) share their
twin's key and quality, so they produce identical numbers. The best epoch is
the second-to-last (EPOCH_SHAPE peaks there), the final epoch is slightly worse.
Files are written directly with json/pandas, not through losscmp.results, so the
fixture is an independent statement of the contract; only the names (trial ids,
label slugs) and the schema version come from losscmp.results, so they always
match what the runner writes.

    from run_fixtures import write_run
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0, 1, 2))
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from losscmp.results import SCHEMA_VERSION, slug, trial_id

DEFAULT_QUALITY = {"dice": 0.80, "focal": 0.65, "tversky": 0.78}
LR = 3e-3  # the run's --lr


def epoch_shape(epochs: int) -> np.ndarray:
    """Learning-curve factor per epoch: rises, peaks at the second-to-last, dips 2 % at the end."""
    if epochs == 1:
        return np.ones(1)
    rising = np.linspace(0.6, 1.0, epochs - 1)
    return np.append(rising, 0.98)


def held_out_epoch_shape(epochs: int) -> np.ndarray:
    """The test split's curve: rises to the last epoch (its own best is never validation's)."""
    return np.linspace(0.6, 1.0, epochs) if epochs > 1 else np.ones(1)


def _rng(*keys: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(keys).encode()))


def write_run(
    root: Path | str,
    *,
    quality: Mapping[str, float] | Callable[[str, str], float] | None = None,
    losses: Sequence[str] | None = None,
    datasets: Sequence[str] = ("synthetic",),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 4,
    n_images: int = 12,
    image_size: int = 32,
    noise: float = 0.03,
    seed_spread: float = 0.02,
    twins: Mapping[str, str] | None = None,
    diverged: Mapping[tuple[str, int], int] | None = None,
    class_names: Sequence[str] = ("background", "object"),
    run_id: str = "20260101-120000-abc123",
    config: Mapping[str, Any] | None = None,
    dataset_info: Mapping[str, Any] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    schema_version: int = SCHEMA_VERSION,
    panel: bool = True,
    write_csvs: bool = True,
    lrs: Sequence[float] | None = None,
    rate_quality: Mapping[float, float] | None = None,
    test_rate_quality: Mapping[float, float] | None = None,
) -> Path:
    """Write ``root/run_id`` and return it.

    ``diverged`` maps ``(loss, seed)`` to the epoch at which that trial's loss
    became NaN (applied on every dataset). ``class_names`` with more than two
    entries makes a multiclass run with ``val_dice_<class>`` columns.
    ``config``/``dataset_info``/``extra_meta`` override entries of run.json's
    config / every dataset's info / run.json itself (to make runs incomparable).
    ``write_csvs=False`` leaves only trials/ (report must rebuild the tables).
    """
    quality = DEFAULT_QUALITY if quality is None else quality
    twins = dict(twins or {})
    losses = list(losses) if losses is not None else _loss_names(quality, twins)
    run_dir = Path(root) / run_id
    (run_dir / "trials").mkdir(parents=True)
    settings = _Settings(
        quality,
        twins,
        losses,
        list(datasets),
        list(seeds),
        epochs,
        n_images,
        image_size,
        noise,
        seed_spread,
        list(class_names),
        schema_version,
        dict(rate_quality or {}),
        dict(test_rate_quality if test_rate_quality is not None else rate_quality or {}),
    )
    rates = list(lrs) if lrs is not None else [LR]
    if schema_version < 2:
        rates = [None]
    records = []
    for dataset in datasets:
        for seed in seeds:
            for rate in rates:
                for loss in losses:
                    stop = (diverged or {}).get((loss, seed))
                    record = _trial_record(settings, dataset, loss, seed, stop, rate)
                    records.append(record)
                    _write_json(run_dir / "trials" / f"{record['trial_id']}.json", record)
    meta = _run_meta(settings, run_id, records, schema_version)
    meta["config"].update(config or {})
    meta.update(extra_meta or {})
    for info in meta["datasets"].values():
        info.update(dataset_info or {})
    _write_json(run_dir / "run.json", meta)
    if write_csvs:
        _write_tables(run_dir, records)
    if panel:
        _write_panels(run_dir, records, settings)
    return run_dir


@dataclass
class _Settings:
    """Everything the number model and run.json need, gathered once."""

    quality: Mapping[str, float] | Callable[[str, str], float]
    twins: dict[str, str]
    losses: list[str]
    datasets: list[str]
    seeds: list[int]
    epochs: int
    n_images: int
    image_size: int
    noise: float
    seed_spread: float
    class_names: list[str]
    schema_version: int = SCHEMA_VERSION
    rate_quality: dict = None  # type: ignore[assignment]
    test_rate_quality: dict = None  # type: ignore[assignment]

    @property
    def mode(self) -> str:
        return "binary" if len(self.class_names) == 2 else "multiclass"

    def base_quality(self, loss: str, dataset: str) -> float:
        source = self.twins.get(loss, loss)
        if callable(self.quality):
            return float(self.quality(source, dataset))
        return float(self.quality[source])

    def image_scores(
        self, loss: str, dataset: str, seed: int, split: str = "val", rate: float | None = None
    ) -> np.ndarray:
        """Per-image score at the peak epoch, on the validation or the test images."""
        seed_offset = _rng("seed", dataset, seed).normal(0, self.seed_spread)
        images = "images" if split == "val" else "test-images"
        image_offset = _rng(images, dataset).normal(0, 0.08, self.n_images)
        key = self.twins.get(loss, loss)
        noise_key = ("noise", key, dataset, seed) + (() if split == "val" else (split,))
        jitter = _rng(*noise_key).normal(0, self.noise, self.n_images)
        offsets = self.rate_quality if split == "val" else self.test_rate_quality
        base = self.base_quality(loss, dataset) + (offsets or {}).get(rate, 0.0)
        return np.clip(base + seed_offset + image_offset + jitter, 0.0, 1.0)


def _loss_names(quality, twins: Mapping[str, str]) -> list[str]:
    if callable(quality):
        raise ValueError("pass losses=... when quality is a callable")
    return [*quality, *twins]


def _trial_record(
    settings: _Settings, dataset: str, loss: str, seed: int, stop: int | None, rate=None
):
    peak = settings.image_scores(loss, dataset, seed, "val", rate)
    shape = epoch_shape(settings.epochs)
    last = settings.epochs if stop is None else stop - 1
    epoch_rows = [_epoch_row(settings, peak * shape[e - 1], e) for e in range(1, last + 1)]
    if settings.schema_version >= 2:
        test_peak = settings.image_scores(loss, dataset, seed, "test", rate)
        test_shape = held_out_epoch_shape(settings.epochs)
        for row in epoch_rows:
            test_row = _epoch_row(settings, test_peak * test_shape[row["epoch"] - 1], row["epoch"])
            row.update(
                {key.replace("val_", "test_"): v for key, v in test_row.items() if "val_" in key}
            )
    if stop is not None:
        epoch_rows.append(
            {"epoch": stop, "train_loss": None, "lr": 1e-3, "seconds": 0.5, "status": "diverged"}
        )
    best_epoch = int(np.argmax(shape[:last])) + 1 if last else None
    images = []
    if best_epoch:
        images += _image_rows(peak * shape[best_epoch - 1], "best", with_hd95=False)
    if stop is None:
        images += _image_rows(peak * shape[-1], "final", with_hd95=True)
    return {
        "trial_id": trial_id(dataset, loss, seed, rate),
        "dataset": dataset,
        "loss": loss,
        **({"base_lr": rate} if rate is not None else {}),
        "seed": seed,
        "status": "finished" if stop is None else "diverged",
        "diverged_epoch": stop,
        "best_epoch": best_epoch,
        "seconds": round(1.0 * len(epoch_rows), 3),
        "loss_params": {},
        "epochs": epoch_rows,
        "images": images,
    }


def _epoch_row(settings: _Settings, image_dice: np.ndarray, epoch: int) -> dict[str, Any]:
    # Dataset-level scores sit slightly above the per-image mean (large objects dominate).
    dice = float(min(1.0, image_dice.mean() + 0.01))
    row = {
        "epoch": epoch,
        "train_loss": round(1.0 - dice, 6),
        "val_dice": dice,
        "val_iou": dice / (2 - dice),
        "val_mcc": dice - 0.02,
        "val_precision": dice,
        "val_recall": dice,
        "val_image_dice": float(image_dice.mean()),
        "val_image_iou": float((image_dice / (2 - image_dice)).mean()),
    }
    if len(settings.class_names) > 2:
        row.update(_per_class_dice(settings.class_names, dice))
    elif settings.schema_version >= 2:  # binary: a threshold below 0.5 helps a little
        row["threshold"] = 0.4
        at_threshold = min(1.0, dice + 0.01)
        row.update(
            {
                "val_dice_t": at_threshold,
                "val_iou_t": at_threshold / (2 - at_threshold),
                "val_mcc_t": at_threshold - 0.02,
                "val_ap": min(1.0, dice + 0.05),
                "val_ece": round(0.1 * (1 - dice), 6),
            }
        )
    return {**row, "lr": 1e-3, "seconds": 1.0, "status": "ok"}


def _per_class_dice(class_names: Sequence[str], dice: float) -> dict[str, float]:
    """Background near 1; foreground classes spread around ``dice`` (their mean is ``dice``)."""
    foreground = list(class_names[1:])
    offsets = np.linspace(0.05, -0.05, len(foreground))
    columns = {f"val_dice_{class_names[0]}": 0.99}
    columns.update(
        {
            f"val_dice_{name}": dice + offset
            for name, offset in zip(foreground, offsets, strict=True)
        }
    )
    return columns


def _image_rows(image_dice: np.ndarray, which: str, with_hd95: bool) -> list[dict[str, Any]]:
    rows = []
    for image, dice in enumerate(image_dice):
        row = {"which": which, "image": image, "dice": float(dice), "iou": float(dice / (2 - dice))}
        if with_hd95:
            row["hd95"] = round(20.0 * (1.0 - float(dice)), 4)
        rows.append(row)
    return rows


def _run_meta(settings: _Settings, run_id: str, records, schema_version: int) -> dict[str, Any]:
    base_config = {
        "losses": list(settings.losses),
        "dataset": settings.datasets[0],
        "data_dir": None,
        "fg_fraction": None,
        "epochs": settings.epochs,
        "batch_size": 4,
        "image_size": settings.image_size,
        "seeds": len(settings.seeds),
        "seed": min(settings.seeds),
        "lr": LR,
        "weight_decay": 1e-4,
        "model": "tiny",
        "encoder_weights": None,
        "device": "cpu",
        "amp": True,
        "limit": None,
        "num_workers": 0,
        "out": "results",
    }
    return {
        "schema_version": schema_version,
        "run_id": run_id,
        "config": base_config,
        "losses": {
            loss: {"name": loss.split("(")[0], "params": {}, "mode": settings.mode}
            for loss in settings.losses
        },
        "datasets": {
            label: {
                "spec": label,
                "mode": settings.mode,
                "class_names": settings.class_names,
                "image_size": settings.image_size,
                "train_size": 4 * settings.n_images,
                "val_size": settings.n_images,
                "source": "generated",
                **_fg_info(label),
            }
            for label in settings.datasets
        },
        "model": {"preset": "tiny", "encoder_name": "resnet18"},
        "trials": [record["trial_id"] for record in records],
        "seeds": settings.seeds,
        "versions": {"losscmp": "0.1.0"},
        "device": "cpu",
        # What every schema-2 losscmp recorded (a resume refuses a run.json without it).
        **({"execution": _EXECUTION} if schema_version >= 2 else {}),
        "git_commit": None,
        "started_at": "2026-01-01T12:00:00+00:00",
        "finished_at": "2026-01-01T12:05:00+00:00",
    }


# A one-process, one-thread, unfused CPU run, as runner.run_metadata records it.
_EXECUTION = {
    "executor": "local",
    "jobs": 1,
    "threads": 1,
    "fused": False,
    "ray_address": None,
    "fused_adamw": True,
    "fused_per_copy": True,
    "fused_own_weights": True,
    "fused_group_size": 16,
}


def _fg_info(label: str) -> dict[str, float]:
    match = re.search(r"fg_fraction=([0-9.eE-]+)", label)
    fraction = float(match.group(1)) if match else 0.1
    return {"requested_fg_fraction": fraction, "val_foreground_fraction": fraction}


def _rows(records, key: str) -> list[dict[str, Any]]:
    return [
        {
            "dataset": record["dataset"],
            "loss": record["loss"],
            **({"base_lr": record["base_lr"]} if "base_lr" in record else {}),
            "seed": record["seed"],
            **row,
        }
        for record in records
        for row in record[key]
    ]


def _write_tables(run_dir: Path, records) -> None:
    pd.DataFrame(_rows(records, "epochs")).to_csv(run_dir / "epochs.csv", index=False)
    pd.DataFrame(_rows(records, "images")).to_csv(run_dir / "images.csv", index=False)


def _write_panels(run_dir: Path, records, settings: _Settings) -> None:
    """Validation images with disc-shaped objects; each finished trial's prediction is the
    disc with a radius error that grows as the loss's quality drops."""
    panel_dir = run_dir / "panel"
    panel_dir.mkdir()
    k, image_size = 4, settings.image_size
    rows, cols = np.mgrid[:image_size, :image_size]
    for dataset in settings.datasets:
        centres = _rng("centres", dataset).uniform(0.3, 0.7, (k, 2)) * image_size
        radii = _rng("radii", dataset).uniform(0.1, 0.25, k) * image_size
        masks = np.stack([_disc(rows, cols, c, r) for c, r in zip(centres, radii, strict=True)])
        texture = _rng("texture", dataset).integers(0, 80, (k, image_size, image_size, 3))
        images = (texture + masks[..., None] * 150).astype(np.uint8)
        np.savez_compressed(panel_dir / f"val__{slug(dataset)}.npz", images=images, masks=masks)
        for record in records:
            if record["dataset"] != dataset or record["status"] != "finished":
                continue
            error = 1.0 - settings.base_quality(record["loss"], dataset)
            pred = np.stack(
                [
                    _disc(rows, cols, c + error * r, r * (1 - error))
                    for c, r in zip(centres, radii, strict=True)
                ]
            )
            np.savez_compressed(panel_dir / f"{record['trial_id']}.npz", pred=pred)


def _disc(rows: np.ndarray, cols: np.ndarray, centre, radius: float) -> np.ndarray:
    return (((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) <= radius**2).astype(np.uint8)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
