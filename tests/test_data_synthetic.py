"""The synthetic dataset: exact foreground fraction, determinism, not separable by a threshold."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from fixtures_data import best_threshold_dice
from scipy import ndimage

from losscmp.data import load_dataset
from losscmp.data.synthetic import MAX_FG_FRACTION
from losscmp.errors import DatasetError, ParameterError, UnknownNameError


@functools.cache
def synthetic(spec: str = "synthetic", size: int = 64, seed: int = 0, limit=None):
    """Cached: several tests read the same set, and nothing here mutates it."""
    return load_dataset(spec, data_dir=None, image_size=size, limit=limit, seed=seed)


@pytest.mark.parametrize("fraction", [0.01, 0.02, 0.1, 0.3, 0.6])
def test_requested_foreground_fraction_is_achieved(fraction):
    data = synthetic(f"synthetic(fg_fraction={fraction},n_train=64,n_val=32)")
    for split in ("train", "val"):
        assert data.foreground_fraction(split) == pytest.approx(fraction, abs=2e-5)


def test_per_image_foreground_varies_around_the_mean():
    data = synthetic("synthetic(fg_fraction=0.1)")
    per_image = (data.train_masks > 0).mean(axis=(1, 2))
    assert per_image.std() > 0.02
    assert per_image.max() < 0.9


def test_same_seed_same_data_other_seed_other_data():
    spec = "synthetic(n_train=32,n_val=8)"
    first, again = synthetic(spec, seed=3), synthetic.__wrapped__(spec, seed=3)
    other = synthetic(spec, seed=4)
    assert np.array_equal(first.train_images, again.train_images)
    assert np.array_equal(first.val_masks, again.val_masks)
    assert not np.array_equal(first.train_images, other.train_images)


def test_changing_val_size_keeps_training_images():
    small = synthetic("synthetic(n_train=32,n_val=8)")
    large = synthetic("synthetic(n_train=32,n_val=16)")
    assert np.array_equal(small.train_images, large.train_images)


def test_test_split_has_its_own_stream():
    small = synthetic("synthetic(n_train=32,n_val=8,n_test=8)")
    large = synthetic("synthetic(n_train=32,n_val=8,n_test=16)")
    assert np.array_equal(small.train_images, large.train_images)
    assert np.array_equal(small.val_images, large.val_images)
    assert not np.array_equal(small.test_images, small.val_images)
    assert small.foreground_fraction("test") == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.3])
def test_no_intensity_threshold_separates_objects(fraction):
    data = synthetic(f"synthetic(fg_fraction={fraction})")
    foreground = data.val_masks > 0
    trivial = 2 * fraction / (1 + fraction)  # Dice of predicting everything as foreground
    gray = data.val_images.mean(axis=-1).round()
    assert best_threshold_dice(gray, foreground) < trivial + 0.06
    for channel in range(3):
        assert best_threshold_dice(data.val_images[..., channel], foreground) < trivial + 0.06


def test_objects_vary_in_shape_and_size():
    data = synthetic("synthetic(fg_fraction=0.1)")
    areas, fill_ratios = [], []
    for mask in data.train_masks[:64]:
        labels, count = ndimage.label(mask > 0)
        for region in ndimage.find_objects(labels):
            piece = labels[region] > 0
            areas.append(piece.sum())
            fill_ratios.append(piece.sum() / piece.size)
    areas, fill_ratios = np.array(areas), np.array(fill_ratios)
    assert np.percentile(areas, 90) > 8 * np.percentile(areas, 10)
    assert fill_ratios.min() < 0.35  # thin curves barely fill their bounding box
    assert fill_ratios.max() > 0.7  # ellipses and polygons do


def test_multiclass_variant():
    data = synthetic("synthetic(num_classes=4,fg_fraction=0.2)")
    assert data.mode == "multiclass"
    assert data.num_classes == data.out_channels == 4
    counts = data.class_pixel_counts("train")
    assert counts.shape == (4,) and (counts > 0).all()
    assert counts[1:].sum() / counts.sum() == pytest.approx(0.2, abs=2e-5)


def test_binary_defaults_and_info():
    data = synthetic()
    assert data.mode == "binary" and data.out_channels == 1 and data.ignore_index is None
    assert data.class_names == ("background", "object")
    assert data.train_images.shape == (256, 64, 64, 3) and data.train_images.dtype == np.uint8
    assert data.val_masks.shape == (64, 64, 64) and data.val_masks.dtype == np.uint8
    assert data.test_masks.shape == (64, 64, 64) and data.info["test_size"] == 64
    assert data.info["train_size"] == 256 and data.spec == "synthetic"
    assert list(data.class_pixel_counts("train")) == list(np.bincount(data.train_masks.ravel()))


def test_limit_takes_a_smaller_deterministic_set():
    data = synthetic(limit=40)
    assert sum(data.size(split) for split in ("train", "val", "test")) == 40
    assert np.array_equal(data.train_images, synthetic.__wrapped__(limit=40).train_images)


def test_generation_is_fast():
    start = time.perf_counter()
    synthetic.__wrapped__("synthetic(n_train=256,n_val=64)")
    assert time.perf_counter() - start < 3.0  # ~0.4 s alone; slack for a busy machine


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic(fg_fraction=1.5)", "fg_fraction"),
        (f"synthetic(fg_fraction={MAX_FG_FRACTION})", r"must be in \(0, 0.9\)"),
        ("synthetic(fg_fraction=abc)", "fg_fraction"),
        ("synthetic(num_classes=1)", "num_classes"),
        ("synthetic(n_train=0)", "n_train"),
        ("synthetic(fg_frac=0.1)", "did you mean 'fg_fraction'"),
    ],
)
def test_bad_parameters_are_one_line_errors(spec, message):
    with pytest.raises(ParameterError, match=message) as error:
        synthetic(spec)
    assert "\n" not in str(error.value)


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(UnknownNameError, match="did you mean 'synthetic'"):
        synthetic("synthtic")


def test_fraction_too_small_for_any_foreground_pixel_is_refused():
    spec = "synthetic(fg_fraction=0.00001,n_train=4,n_val=2)"  # 0.16 of a pixel in 4 x 64 x 64
    with pytest.raises(DatasetError, match=r"no foreground pixel.*fg_fraction=1e-05 is too small"):
        synthetic.__wrapped__(spec)
    tiny = synthetic("synthetic(fg_fraction=0.0001,n_train=4,n_val=2)")  # 2 pixels: still loads
    assert tiny.class_pixel_counts("train")[1] == 2
