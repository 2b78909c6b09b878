"""What every registered dataset must do, checked on a small sample of each (seconds, no
network): load as its entry says (the mode its ``mode_of`` gives, uint8 images and
class-index masks, as many classes as it names), three disjoint non-empty splits, and
the same arrays for the same seed.

A new dataset gets these checks by adding a small sample of itself to ``SAMPLES``; the
first test fails, naming it, until it has one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_data import make_folder, make_pets_tree

from losscmp.data import (
    DATASET_REGISTRY,
    SegmentationData,
    check_dataset,
    dataset_mode,
    list_datasets,
)
from losscmp.data import load_dataset as load
from losscmp.data.base import SPLITS
from losscmp.spec import as_spec

IMAGE_SIZE = 32

# (spec, load_dataset's keyword arguments) of one small sample.
Sample = tuple[str, dict[str, Any]]


def synthetic_samples(root: Path) -> list[Sample]:
    small = "n_train=6,n_val=3,n_test=3"
    return [(f"synthetic({small})", {}), (f"synthetic({small},num_classes=4)", {})]


def pets_samples(root: Path) -> list[Sample]:
    make_pets_tree(root / "pets", trainval=10, test=4, quirks=False)
    where = {"data_dir": root / "pets"}
    return [("pets", where), ("pets(border=fg)", where), ("pets(mode=trimap)", where)]


def folder_samples(root: Path) -> list[Sample]:
    make_folder(root / "two", count=12)
    make_folder(root / "three", count=12, num_classes=3, val_count=2, test_count=2)
    return [(f"folder:{root / 'two'}", {}), (f"folder(path={root / 'three'},num_classes=3)", {})]


# Each registered dataset: its samples, made under a test's folder (binary and multiclass
# where it has both).
SAMPLES: dict[str, Callable[[Path], list[Sample]]] = {
    "synthetic": synthetic_samples,
    "pets": pets_samples,
    "folder": folder_samples,
}


def samples(name: str, root: Path) -> list[Sample]:
    if name not in SAMPLES:
        pytest.fail(f"dataset '{name}' has no sample: add a small one to SAMPLES in {__file__}")
    return SAMPLES[name](root)


@pytest.mark.parametrize("name", list_datasets())
def test_every_registered_dataset_has_a_sample_here(name, tmp_path):
    assert samples(name, tmp_path)


@pytest.mark.parametrize("name", list_datasets())
def test_a_dataset_loads_as_its_entry_says(name, tmp_path):
    """The mode ``mode_of`` says before loading (``--losses all`` is chosen from it) and the
    augmentation its entry declares are what loading makes, and the masks hold the classes
    the data names, nothing else."""
    for spec, where in samples(name, tmp_path):
        check_dataset(spec, image_size=IMAGE_SIZE, **where)  # the checks without loading
        data = load(spec, image_size=IMAGE_SIZE, **where)
        assert (data.name, data.spec) == (name, as_spec(spec).label)
        assert data.mode == dataset_mode(spec), spec
        # What a run checks is installed before its folder exists (losscmp.dependencies).
        assert data.augmentation == DATASET_REGISTRY.get(name).augmentation, spec
        assert (data.mode == "binary") == (data.num_classes == 2), spec
        assert data.out_channels == (1 if data.mode == "binary" else data.num_classes)
        for split in SPLITS:
            check_arrays(data, split)
        labels = set(np.unique(np.concatenate([data.masks(split).ravel() for split in SPLITS])))
        assert labels - {data.ignore_index} == set(range(data.num_classes)), spec


def check_arrays(data: SegmentationData, split: str) -> None:
    images, masks = data.images(split), data.masks(split)
    count = len(masks)
    assert images.dtype == masks.dtype == np.uint8
    assert images.shape == (count, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert masks.shape == (count, IMAGE_SIZE, IMAGE_SIZE)
    assert len(data.names(split)) in (0, count)  # names, when the dataset has them, per image


@pytest.mark.parametrize("name", list_datasets())
def test_a_datasets_three_splits_are_non_empty_and_disjoint(name, tmp_path):
    """No image is trained on and scored (by its name, when it has one, and by its pixels),
    and each split has one at least, with ``limit`` too."""
    for spec, where in samples(name, tmp_path):
        for limit in (None, 4):
            data = load(spec, image_size=IMAGE_SIZE, limit=limit, **where)
            sizes = [data.size(split) for split in SPLITS]
            assert min(sizes) >= 1, (spec, limit, sizes)
            assert limit is None or sum(sizes) <= limit, (spec, sizes)
            pixels = [{digest(image) for image in data.images(split)} for split in SPLITS]
            assert sum(map(len, pixels)) == len(set().union(*pixels)), (spec, limit)
            names = [set(data.names(split)) for split in SPLITS]
            assert sum(map(len, names)) == len(set().union(*names)), (spec, limit)


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).data).hexdigest()


@pytest.mark.parametrize("name", list_datasets())
def test_the_same_seed_loads_the_same_arrays(name, tmp_path):
    """A trial's numbers depend on its config and seed only: loading again (a worker, a
    resume, a cache now written) gives the same images, masks and names."""
    for spec, where in samples(name, tmp_path):
        first, again = (load(spec, image_size=IMAGE_SIZE, seed=3, **where) for _ in range(2))
        for split in SPLITS:
            assert np.array_equal(first.images(split), again.images(split)), (spec, split)
            assert np.array_equal(first.masks(split), again.masks(split)), (spec, split)
            assert first.names(split) == again.names(split)
        assert first.fingerprint() == again.fingerprint()
        assert (first.class_names, first.ignore_index) == (again.class_names, again.ignore_index)


def test_the_samples_cover_only_registered_datasets():
    """A dataset taken out of the registry takes its sample with it."""
    assert set(SAMPLES) <= {entry.name for entry in DATASET_REGISTRY}
