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

from losscmp.data.base import AUGMENTATION_MODULES, DEFAULT_AUGMENTATION, SegmentationData
from losscmp.data.folder import (
    folder_foreground_hint,
    folder_mode,
    folder_status,
    load_folder,
    precheck_folder,
)
from losscmp.data.loader import SegmentationLoader, make_loader
from losscmp.data.pets import (
    DEFAULT_PETS_DIR,
    download_pets_into,
    load_pets,
    pets_mode,
    pets_status,
    precheck_pets,
)
from losscmp.data.synthetic import (
    load_synthetic,
    precheck_synthetic,
    synthetic_foreground_hint,
    synthetic_mode,
    synthetic_status,
)
from losscmp.errors import DatasetError, ParameterError
from losscmp.registry import Registry, check_params
from losscmp.spec import Spec, as_spec

__all__ = [
    "DATASET_REGISTRY",
    "SegmentationData",
    "SegmentationLoader",
    "check_dataset",
    "dataset_mode",
    "dataset_modules",
    "dataset_status",
    "download_dataset",
    "downloadable",
    "list_datasets",
    "load_dataset",
    "make_loader",
]

DATASET_REGISTRY = Registry("dataset")
# The folder holding the datasets by default: `datasets` lists it, a download goes in it
# (unless its Entry.download_to says otherwise).
DATASETS_DIR = Path("datasets")
DATASET_REGISTRY.register(
    "synthetic",
    "Generated shapes on a textured background; foreground fraction as asked (no download)",
    family="generated",
    precheck=precheck_synthetic,
    status=synthetic_status,
    foreground_hint=synthetic_foreground_hint,
    mode_of=synthetic_mode,
    augmentation="dihedral",
)(load_synthetic)
DATASET_REGISTRY.register(
    "pets",
    "Oxford-IIIT Pet: pet vs background (or 3-class trimaps), 7,349 photos",
    family="download",
    reference="https://www.robots.ox.ac.uk/~vgg/data/pets/",
    precheck=precheck_pets,
    run_options=frozenset({"data_dir"}),
    status=pets_status,
    download=download_pets_into,
    download_to=DEFAULT_PETS_DIR,
    mode_of=pets_mode,
    augmentation="albumentations",
)(load_pets)
DATASET_REGISTRY.register(
    "folder",
    "Your own images/ + masks/ folders: --dataset folder:PATH",
    family="local",
    precheck=precheck_folder,
    status=folder_status,
    foreground_hint=folder_foreground_hint,
    mode_of=folder_mode,
    augmentation="albumentations",
)(load_folder)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Sorted dataset names, optionally filtered by an fnmatch pattern such as ``syn*``."""
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
    data = entry.load()(
        data_dir=user_path(data_dir),
        image_size=image_size,
        limit=limit,
        seed=seed,
        **params,
    )
    data.spec = spec.label
    if entry.mode_of and data.mode != entry.mode_of(**params):  # out of step: a bug
        raise RuntimeError(f"{spec.label} loaded as {data.mode}, its mode_of says otherwise")
    if entry.augmentation and data.augmentation != entry.augmentation:  # likewise
        raise RuntimeError(
            f"{spec.label} loaded with {data.augmentation} augmentation, its entry says otherwise"
        )
    check_foreground(data, spec)
    data.info.setdefault("spec", spec.label)
    if limit is not None:
        data.info["limit"] = limit
    return data


def dataset_mode(spec: str | Spec) -> str:
    """'binary' or 'multiclass': what the dataset will be once loaded (no file is read)."""
    spec = as_spec(spec)
    entry = DATASET_REGISTRY.get(spec.name)
    if entry.mode_of is None:  # a dataset registered without it: known once loaded only
        raise ParameterError(
            f"dataset '{spec.name}' does not say its mode (binary or multiclass) before it is "
            "loaded, which 'all' and patterns need: name the losses"
        )
    return entry.mode_of(**check_params(entry, spec.params, "dataset"))


def dataset_modules(spec: str | Spec) -> tuple[str, ...]:
    """The modules a run of the dataset imports for it beyond losscmp's own (its
    augmentation's), known before loading: asked of its entry, never of its name."""
    entry = DATASET_REGISTRY.get(as_spec(spec).name)
    return AUGMENTATION_MODULES[entry.augmentation or DEFAULT_AUGMENTATION]


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
    """Refuse training masks without a single foreground pixel (every loss would score 0)
    or, binary, without a background one (every loss would mark everything and score 1),
    and validation or test masks without a foreground pixel (no score on them would mean
    anything)."""
    train_counts = data.class_pixel_counts("train")
    if not train_counts[1:].any():
        raise DatasetError(_no_training_foreground(data, spec))
    if data.mode == "binary" and not train_counts[0]:
        raise DatasetError(
            f"dataset '{spec.label}': the training masks hold no background pixel, so every "
            "loss would learn to mark every pixel and score Dice 1; check the masks (0 marks "
            "background)"
        )
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
    explain = DATASET_REGISTRY.get(spec.name).foreground_hint
    hint = explain(data) if explain else "check the dataset's masks"
    return f"{problem}; {hint}"


def dataset_status(data_dir_root: Path) -> list[dict[str, Any]]:
    """One row per dataset: name, description, present, path, how_to_get."""
    root = user_path(data_dir_root)
    return [
        {"name": entry.name, "description": entry.description, **_status(entry, root)}
        for entry in DATASET_REGISTRY
    ]


def _status(entry, root: Path) -> dict[str, Any]:
    if entry.status is not None:
        return entry.status(root)
    return {"present": True, "path": "", "how_to_get": ""}


def downloadable() -> dict[str, Path]:
    """The datasets ``datasets download`` fetches, each with its folder by default."""
    return {
        entry.name: entry.download_to or DATASETS_DIR / entry.name
        for entry in DATASET_REGISTRY
        if entry.download is not None
    }


def download_dataset(
    name: str,
    dest: Path | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    **options: Any,
) -> Path:
    """Fetch, verify and extract a downloadable dataset into ``dest`` (by default its
    entry's folder: ``downloadable``); returns the folder."""
    entry = DATASET_REGISTRY.get(name)
    if entry.download is None:
        fetchable = [f"'{other.name}'" for other in DATASET_REGISTRY if other.download]
        verb = "has" if len(fetchable) == 1 else "have"
        raise ParameterError(
            f"dataset '{name}' has nothing to download (only {' and '.join(fetchable)} {verb})"
        )
    if dest is None:
        dest = downloadable()[name]
    return entry.download(user_path(dest), progress=progress, **options)
