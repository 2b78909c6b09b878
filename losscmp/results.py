"""The run directory: what ``run`` writes and ``report`` reads.

Every file is written atomically (temp file + rename), so a killed process
leaves either the old file or the new one. Finished trials live in
``trials/<trial-id>.json``; the tidy CSVs are rebuilt from them after each
trial, which makes resuming a matter of skipping trials that have a file.
See docs/architecture.md for the layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from losscmp.errors import LosscmpError

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
TRIALS_DIR = "trials"
PANEL_DIR = "panel"
EPOCH_COLUMNS = [
    "dataset",
    "loss",
    "seed",
    "epoch",
    "train_loss",
    "val_dice",
    "val_iou",
    "val_mcc",
    "val_precision",
    "val_recall",
    "val_image_dice",
    "val_image_iou",
    "lr",
    "seconds",
    "status",
]
IMAGE_COLUMNS = ["dataset", "loss", "seed", "which", "image", "dice", "iou", "hd95", "nsd"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def slug(text: str) -> str:
    """A filesystem-safe form of a loss or dataset label."""
    cleaned = re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")
    return cleaned[:80] or "x"


def trial_id(dataset: str, loss: str, seed: int) -> str:
    """Readable and unique: slugs can collide (cut, symbols folded); the hash cannot."""
    digest = hashlib.sha1(f"{dataset}\0{loss}".encode()).hexdigest()[:8]
    return f"{slug(dataset)}__{slug(loss)}__seed{seed}__{digest}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def atomic_write_csv(path: Path, frame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise LosscmpError(f"{run_dir} is not a losscmp run folder (no {RUN_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LosscmpError(f"{path} is damaged (not valid JSON)") from None
    if not isinstance(meta, dict):
        raise LosscmpError(f"{path} is damaged (not a JSON object)")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise LosscmpError(
            f"{path} has schema version {version}; this losscmp reads version {SCHEMA_VERSION}"
        )
    return meta


class RunWriter:
    """Writes one run directory as trials finish."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.trials_dir = self.run_dir / TRIALS_DIR

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / RUN_FILE, {"schema_version": SCHEMA_VERSION, **meta})

    def update_meta(self, **changes: Any) -> None:
        meta = read_run_json(self.run_dir)
        meta.update(changes)
        atomic_write_json(self.run_dir / RUN_FILE, meta)

    def finished_trials(self) -> set[str]:
        return {path.stem for path in self.trials_dir.glob("*.json")}

    def write_trial(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.trials_dir / f"{record['trial_id']}.json", record)
        self.rebuild_tables()

    def write_panel(self, name: str, **arrays) -> None:
        import io

        import numpy as np

        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.run_dir / PANEL_DIR / f"{name}.npz", buffer.getvalue())

    def load_trials(self) -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for path in sorted(self.trials_dir.glob("*.json"))]

    def rebuild_tables(self) -> None:
        """Regenerate epochs.csv and images.csv from every trial file."""
        import pandas as pd

        trials = self.load_trials()
        epochs = pd.DataFrame(_rows(trials, "epochs"))
        images = pd.DataFrame(_rows(trials, "images"))
        atomic_write_csv(self.run_dir / "epochs.csv", _ordered(epochs, EPOCH_COLUMNS))
        atomic_write_csv(self.run_dir / "images.csv", _ordered(images, IMAGE_COLUMNS))


def _rows(trials: Iterable[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    rows = []
    for trial in trials:
        identity = {"dataset": trial["dataset"], "loss": trial["loss"], "seed": trial["seed"]}
        rows.extend({**identity, **record} for record in trial[key])
    return rows


def _ordered(frame, columns: list[str]):
    """Known columns first in a fixed order, extra ones (per-class) after, sorted."""
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    extra = sorted(set(frame.columns) - set(columns))
    return frame[columns + extra]
