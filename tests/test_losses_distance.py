"""Target distance maps (losscmp.losses.distance) and the per-step prediction field."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from losscmp.losses.distance import prediction_distance, target_maps


def square_mask(size: int = 9) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[3:6, 3:6] = 1
    return mask


def test_signed_distance_is_negative_inside_positive_outside():
    maps = target_maps(square_mask(), mode="binary", num_classes=2, names=["signed_distance"])
    signed = maps["signed_distance"]
    assert signed.shape == (1, 9, 9) and signed.dtype == np.float32
    assert signed[0, 4, 4] == -2.0  # centre of a 3x3 square: 2 px to the outside
    assert signed[0, 3, 3] == -1.0  # corner inside
    assert signed[0, 4, 2] == 1.0  # next to the square
    assert signed[0, 0, 4] == 3.0
    assert (signed[0][square_mask() == 1] < 0).all()
    assert (signed[0][square_mask() == 0] > 0).all()


def test_absent_or_full_class_gives_zeros_and_multiclass_has_one_map_per_class():
    mask = square_mask()
    maps = target_maps(mask, mode="multiclass", num_classes=3, names=["signed_distance"])
    signed = maps["signed_distance"]
    assert signed.shape == (3, 9, 9)
    assert (signed[2] == 0).all()  # class 2 absent
    np.testing.assert_array_equal(signed[0], -signed[1])
    full = np.ones((5, 5), np.uint8)
    assert (
        target_maps(full, mode="binary", num_classes=2, names=["signed_distance"])[
            "signed_distance"
        ]
        == 0
    ).all()


def test_ignored_pixels_are_not_foreground():
    mask = square_mask()
    mask[0, 0] = 255
    with_ignore = target_maps(
        mask, mode="binary", num_classes=2, ignore_index=255, names=["signed_distance"]
    )
    plain = target_maps(square_mask(), mode="binary", num_classes=2, names=["signed_distance"])
    np.testing.assert_array_equal(with_ignore["signed_distance"], plain["signed_distance"])


def test_object_distance_is_the_sum_of_the_two_nearest_objects():
    mask = np.zeros((1, 11), np.uint8)
    mask[0, 0] = 1
    mask[0, 10] = 1
    distance = target_maps(mask, mode="binary", num_classes=2, names=["object_distance"])[
        "object_distance"
    ]
    assert distance.shape == (1, 1, 11)
    np.testing.assert_allclose(distance[0, 0], np.full(11, 10.0))  # d1 + d2 = 10 on the line
    one_object = target_maps(
        square_mask(), mode="binary", num_classes=2, names=["object_distance"]
    )["object_distance"]
    assert np.isinf(one_object).all()


def test_unknown_map_name_is_rejected():
    with pytest.raises(ValueError, match="unknown target map"):
        target_maps(square_mask(), mode="binary", num_classes=2, names=["sdf"])


def test_batched_prediction_distance_equals_per_image_scipy():
    rng = np.random.default_rng(0)
    stack = rng.random((5, 20, 17)) > 0.7
    stack[3] = False  # no foreground
    stack[4] = True  # no background
    field = prediction_distance(stack)
    for image, result in zip(stack, field, strict=True):
        if image.any() and not image.all():
            expected = ndimage.distance_transform_edt(image) + ndimage.distance_transform_edt(
                ~image
            )
        else:
            expected = np.zeros(image.shape)
        np.testing.assert_allclose(result, expected, rtol=1e-6)


@pytest.mark.parametrize("chunk_pixels", [2000, 1 << 26], ids=["row-blocks", "all-at-once"])
def test_torch_prediction_distance_equals_scipy(chunk_pixels):
    """The GPU path (run here on the CPU) is exact too, in blocks of rows of an image too
    large for one chunk and with every image in one."""
    import torch

    from losscmp.losses.distance import torch_prediction_distance

    rng = np.random.default_rng(1)
    stack = rng.random((6, 21, 17)) > 0.8
    stack[3], stack[4], stack[5] = False, True, False
    stack[5, 20, 0] = True  # a single corner pixel
    field = torch_prediction_distance(torch.from_numpy(stack), chunk_pixels=chunk_pixels)
    np.testing.assert_allclose(field.numpy(), prediction_distance(stack), rtol=1e-5, atol=1e-5)
