"""Datasets: a registry of loaders (synthetic, pets, folder) and the batch loader.

```python
data = load_dataset("synthetic(fg_fraction=0.02)", data_dir=None, image_size=64,
                    limit=None, seed=0)
loader = make_loader(data, split="train", batch_size=16, seed=0, epoch=3)
```

Importing this package costs numpy only; torch, PIL and albumentations load
inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from losscmp.data.base import SegmentationData
from losscmp.data.folder import load_folder, precheck_folder
from losscmp.data.loader import SegmentationLoader, make_loader
from losscmp.data.pets import DEFAULT_PETS_DIR, load_pets, pets_status, precheck_pets
from losscmp.data.synthetic import load_synthetic, precheck_synthetic
from losscmp.errors import DatasetError, ParameterError
from losscmp.registry import Registry, check_params
from losscmp.spec import Spec, as_spec

__all__ = [
    "DATASET_REGISTRY",
    "SegmentationData",
    "SegmentationLoader",
    "check_dataset",
    "dataset_status",
    "download_dataset",
    "list_datasets",
    "load_dataset",
    "make_loader",
]

DATASET_REGISTRY = Registry("dataset")
DATASET_REGISTRY.register(
    "synthetic",
    "Generated shapes on a textured background; foreground fraction as asked (no download)",
    family="generated",
    precheck=precheck_synthetic,
)(load_synthetic)
DATASET_REGISTRY.register(
    "pets",
    "Oxford-IIIT Pet: pet vs background (or 3-class trimaps), 7,349 photos",
    family="download",
    reference="https://www.robots.ox.ac.uk/~vgg/data/pets/",
    precheck=precheck_pets,
    run_options=frozenset({"data_dir"}),
)(load_pets)
DATASET_REGISTRY.register(
    "folder",
    "Your own images/ + masks/ folders: --dataset folder:PATH",
    family="local",
    precheck=precheck_folder,
)(load_folder)


def list_datasets(pattern: str | None = None) -> list[str]:
    return DATASET_REGISTRY.names(pattern)


def load_dataset(
    spec: str | Spec,
    *,
    data_dir: str | Path | None = None,
    image_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
) -> SegmentationData:
    """Build the named dataset at ``image_size`` pixels square, held in memory."""
    spec = as_spec(spec)
    entry = DATASET_REGISTRY.get(spec.name)
    params = check_params(entry, spec.params, "dataset")
    _check_context(image_size, limit)
    data = entry.factory(
        data_dir=user_path(data_dir),
        image_size=image_size,
        limit=limit,
        seed=seed,
        **params,
    )
    data.spec = spec.label
    check_foreground(data, spec)
    data.info.setdefault("spec", spec.label)
    if limit is not None:
        data.info["limit"] = limit
    return data


def check_dataset(
    spec: str | Spec,
    *,
    data_dir: str | Path | None = None,
    image_size: int = 64,
    limit: int | None = None,
) -> None:
    """Every check ``load_dataset`` would fail that needs no decoding or generating:
    the name, parameters and their ranges, the files' layout and pairing, whether the
    images fit in memory. Reads directory listings only; writes nothing.
    ``losscmp run`` (``--dry-run`` included) runs it while planning, before any folder."""
    spec = as_spec(spec)
    entry = DATASET_REGISTRY.get(spec.name)
    params = check_params(entry, spec.params, "dataset")
    _check_context(image_size, limit)
    if entry.precheck is not None:
        entry.precheck(
            data_dir=user_path(data_dir),
            image_size=image_size,
            limit=limit,
            **params,
        )


def user_path(path: str | Path | None) -> Path | None:
    """``~/pets`` from a config or a quoted --data-dir, as the shell would expand it
    (``folder:~/f0`` is expanded too)."""
    return Path(path).expanduser() if path is not None else None


def _check_context(image_size: int, limit: int | None) -> None:
    if image_size < 16:
        raise ParameterError(f"image size must be at least 16 pixels, not {image_size}")
    if limit is not None and limit < 3:
        raise ParameterError(
            f"limit must be at least 3 images (one each to train, validate and test), not {limit}"
        )


def check_foreground(data: SegmentationData, spec: Spec) -> None:
    """Refuse training masks without a single foreground pixel (every loss would score 0),
    and validation or test masks without one (no score on them would mean anything)."""
    if not data.class_pixel_counts("train")[1:].any():
        raise DatasetError(_no_training_foreground(data, spec))
    for split, name in (("val", "validation"), ("test", "test")):
        if data.size(split) and not data.class_pixel_counts(split)[1:].any():
            raise DatasetError(
                f"dataset '{spec.label}': the {name} masks hold no foreground pixel, so no "
                f"score on them means anything (Dice is 0 or undefined, AP undefined); "
                f"give a {name} split that shows the objects"
            )


def _no_training_foreground(data: SegmentationData, spec: Spec) -> str:
    classes = f" of any class 1..{data.num_classes - 1}" if data.num_classes > 2 else ""
    problem = (
        f"dataset '{spec.label}': the training masks hold no foreground pixel{classes}, "
        "so every loss would score 0"
    )
    if spec.name == "synthetic":
        pixels = data.size("train") * data.image_size**2
        hint = (
            f"fg_fraction={data.info.get('requested_fg_fraction')} is too small for "
            f"{data.size('train')} training image(s) of {data.image_size}x{data.image_size} "
            f"pixels (less than one foreground pixel in {pixels}): raise fg_fraction, "
            "n_train or the image size"
        )
    elif spec.name == "folder" and data.num_classes > 2:
        hint = (
            "check the masks: with num_classes > 2 a pixel value is a class index and 255 "
            "means 'ignore'; binary masks (e.g. 0/255) need num_classes=2"
        )
    elif spec.name == "folder":
        hint = "check that masks/ holds the right files and that they mark the foreground"
    else:
        hint = "check the dataset's masks"
    return f"{problem}; {hint}"


def dataset_status(data_dir_root: Path) -> list[dict[str, Any]]:
    """One row per dataset: name, description, present, path, how_to_get."""
    root = user_path(data_dir_root)
    rows = [
        {
            "name": "synthetic",
            "description": DATASET_REGISTRY.get("synthetic").description,
            "present": True,
            "path": "",
            "how_to_get": "built in: generated on the fly",
        },
        {
            "name": "pets",
            "description": DATASET_REGISTRY.get("pets").description,
            **pets_status(root / DEFAULT_PETS_DIR.name),
        },
        {
            "name": "folder",
            "description": DATASET_REGISTRY.get("folder").description,
            "present": True,  # nothing to fetch: it reads whatever folder it is given
            "path": "",
            "how_to_get": "your data: --dataset folder:PATH with PATH/images + PATH/masks",
        },
    ]
    return rows


def download_dataset(
    name: str,
    dest: Path,
    progress: Callable[[str, int, int | None], None] | None = None,
    **options: Any,
) -> Path:
    """Fetch, verify and extract a downloadable dataset into ``dest``; returns ``dest``."""
    from losscmp.data.download import download_pets

    entry = DATASET_REGISTRY.get(name)
    if entry.name != "pets":
        raise ParameterError(f"dataset '{name}' has nothing to download (only 'pets' has)")
    return download_pets(user_path(dest), progress=progress, **options)
