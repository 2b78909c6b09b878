"""The in-memory dataset every loader reads: uint8 images and class-index masks.

Datasets are small enough (a few thousand images at training size) to hold
decoded and resized in memory, which is what makes every later epoch cheap.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from losscmp.errors import ParameterError

# train: what the model learns from; val: used only to choose (the epoch, the threshold, the
# learning rate); test: reported, never used to choose anything.
SPLITS = ("train", "val", "test")
IGNORE_INDEX = 255

# How a training sample may be augmented. "dihedral" (flips and 90-degree turns)
# is exact on the pixel grid, so cached distance maps can be turned with the
# mask; "albumentations" is the full pipeline of transforms.py.
Augmentation = Literal["dihedral", "albumentations"]
# The augmentation of a dataset that does not say (of a registry entry without one).
DEFAULT_AUGMENTATION: Augmentation = "albumentations"
# The modules beyond numpy that each augmentation imports: a run checks a dataset's are
# installed before its folder exists (losscmp.dependencies), not when every trial fails.
AUGMENTATION_MODULES: dict[str, tuple[str, ...]] = {
    "dihedral": (),
    "albumentations": ("albumentations",),
}


@dataclass
class SegmentationData:
    """Train, validation and test images and masks of one dataset, already at training size.

    The test split is optional for a dataset built by hand (the Python API, tests): without
    one, a run evaluates and reports validation only.
    """

    name: str
    spec: str
    mode: Literal["binary", "multiclass"]
    class_names: tuple[str, ...]
    train_images: np.ndarray  # uint8 (N, H, W, 3)
    train_masks: np.ndarray  # uint8 (N, H, W): class index, 255 = ignore
    val_images: np.ndarray
    val_masks: np.ndarray
    ignore_index: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    augmentation: Augmentation = DEFAULT_AUGMENTATION
    # Source names per sample (file ids), when the dataset has them; for per-image reports.
    train_names: tuple[str, ...] = ()
    val_names: tuple[str, ...] = ()
    test_images: np.ndarray | None = None
    test_masks: np.ndarray | None = None
    test_names: tuple[str, ...] = ()
    # Distance maps per (split, name), filled by the loader on first use.
    map_cache: dict[tuple[str, str], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def out_channels(self) -> int:
        return 1 if self.mode == "binary" else self.num_classes

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    def images(self, split: str) -> np.ndarray:
        return self._split_arrays(split)[0]

    def masks(self, split: str) -> np.ndarray:
        return self._split_arrays(split)[1]

    @property
    def has_test(self) -> bool:
        return self.test_masks is not None and len(self.test_masks) > 0

    @property
    def reported_split(self) -> str:
        """Where per-image scores (images.csv, HD95) and the prediction panel are taken:
        the test split, which chooses nothing; validation for a dataset without one."""
        return "test" if self.has_test else "val"

    def names(self, split: str) -> tuple[str, ...]:
        self._split_arrays(split)
        return {"train": self.train_names, "val": self.val_names, "test": self.test_names}[split]

    def size(self, split: str) -> int:
        return len(self.masks(split))

    def class_pixel_counts(self, split: str = "train") -> np.ndarray:
        """Pixels per class (K,) over the split, ignored pixels left out.

        K = 2 for binary ([background, foreground]) as the losses' ``fit`` expects.
        """
        counts = np.bincount(self.masks(split).ravel(), minlength=256)
        return counts[: max(self.num_classes, 2)].astype(np.int64)

    def foreground_fraction(self, split: str = "train") -> float:
        """Share of labelled pixels that are not background."""
        counts = self.class_pixel_counts(split)
        total = counts.sum()
        return float(counts[1:].sum() / total) if total else 0.0

    def fingerprint(self) -> str:
        """A digest of what training and scoring read: every split's names, images and
        masks, the mode, the classes and the ignore label. ``--resume`` compares it with
        the run's, so trials of one run never see different data (files edited, another
        folder found at a relative path). About 1 s per GB of images: computed once."""
        if self._fingerprint is None:
            self._fingerprint = self._digest()
        return self._fingerprint

    def _digest(self) -> str:
        digest = hashlib.sha256()
        described = [self.mode, list(self.class_names), self.ignore_index]
        digest.update(json.dumps(described).encode())
        for split in SPLITS:
            digest.update(json.dumps([split, list(self.names(split))]).encode())
            for array in self._split_arrays(split):
                digest.update(json.dumps([str(array.dtype), list(array.shape)]).encode())
                digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()[:16]

    def _split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.train_images, self.train_masks
        if split == "val":
            return self.val_images, self.val_masks
        if split == "test":
            if self.test_images is None or self.test_masks is None:
                empty = self.val_images[:0], self.val_masks[:0]
                return empty
            return self.test_images, self.test_masks
        raise ParameterError(f"unknown split '{split}'; choose from: {', '.join(SPLITS)}")


@dataclass(frozen=True)
class LoadContext:
    """What every dataset factory gets from the run besides its own parameters."""

    data_dir: Path | None
    image_size: int
    limit: int | None
    seed: int


def describe(data: SegmentationData, **extra: Any) -> dict[str, Any]:
    """The JSON-able summary stored in ``info`` (and so in run.json)."""
    return {
        "mode": data.mode,
        "class_names": list(data.class_names),
        "image_size": data.image_size,
        "train_size": data.size("train"),
        "val_size": data.size("val"),
        "train_foreground_fraction": round(data.foreground_fraction("train"), 6),
        "val_foreground_fraction": round(data.foreground_fraction("val"), 6),
        "test_size": data.size("test"),
        "test_foreground_fraction": round(data.foreground_fraction("test"), 6),
        **extra,
    }


def split_counts(total: int, limit: int | None, val_fraction: float) -> tuple[int, int]:
    """(train, val) sizes for ``total`` images capped at ``limit``; val keeps at least one."""
    kept = total if limit is None else min(total, limit)
    val = max(1, round(kept * val_fraction)) if kept > 1 else 0
    return kept - val, val
