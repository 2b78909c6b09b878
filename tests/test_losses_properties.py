"""Properties every registered loss must have, in every mode it supports.

Parametrised over ``list_losses()`` so that a new loss is covered without new test code.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from losses_helpers import (
    IGNORE,
    SMOOTHED_LABELS,
    best_logits,
    blob_target,
    grad_of,
    loss_mode_pairs,
    perfect_logits,
    random_logits,
    random_target,
)

from losscmp.losses import create_loss, get_loss_entry

PAIRS = loss_mode_pairs()
IDS = [f"{name}-{mode}" for name, mode in PAIRS]


def assert_finite(value: torch.Tensor, grad: torch.Tensor) -> None:
    assert value.dim() == 0
    assert torch.isfinite(value), value
    assert torch.isfinite(grad).all(), grad[~torch.isfinite(grad)]


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_random_logits_give_finite_non_negative_value_and_gradient(name, mode):
    loss = create_loss(name, mode=mode)
    value, grad = grad_of(loss, random_logits(mode), random_target(mode))
    assert_finite(value, grad)
    assert value >= 0
    assert grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
@pytest.mark.parametrize("scale", [100.0, -100.0])
def test_extreme_logits_stay_finite(name, mode, scale):
    loss = create_loss(name, mode=mode)
    signs = torch.sign(random_logits(mode, seed=3))
    value, grad = grad_of(loss, signs * scale, random_target(mode))
    assert_finite(value, grad)
    assert value >= 0


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
@pytest.mark.parametrize("fill", ["empty", "full"])
def test_empty_and_full_masks_stay_finite(name, mode, fill):
    loss = create_loss(name, mode=mode)
    target = random_target(mode)
    if mode == "binary":
        target = torch.full_like(target, 0.0 if fill == "empty" else 1.0)
    else:
        target = torch.full_like(target, 0 if fill == "empty" else 2)
    value, grad = grad_of(loss, random_logits(mode), target)
    assert_finite(value, grad)
    assert value >= 0


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_all_ignored_pixels_give_finite_value_and_zero_gradient(name, mode):
    loss = create_loss(name, mode=mode, ignore_index=IGNORE)
    target = torch.full_like(random_target(mode), IGNORE)
    value, grad = grad_of(loss, random_logits(mode), target)
    assert_finite(value, grad)
    assert value >= 0
    assert grad.abs().max() == 0


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_ignored_pixels_do_not_change_the_value(name, mode):
    """Changing logits where the target is ignored changes nothing."""
    loss = create_loss(name, mode=mode, ignore_index=IGNORE)
    target = blob_target(mode).clone()
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[..., :, :2] = True
    target[ignored] = IGNORE
    logits = random_logits(mode)
    other = logits.clone()
    region = ignored if mode == "binary" else ignored.unsqueeze(1).expand_as(other)
    other[region] = 7.0
    torch.testing.assert_close(loss(logits, target), loss(other, target))


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_an_all_ignored_image_changes_nothing(name, mode):
    """Per-image means (reduction="image", Lovász per_image) too leave out an image whose
    pixels are all ignored, rather than average it in as a 0."""
    defaults = get_loss_entry(name).defaults
    per_image = {"reduction": "image"} if "reduction" in defaults else {}
    if "per_image" in defaults:
        per_image = {"per_image": True}
    loss = create_loss(name, mode=mode, ignore_index=IGNORE, **per_image)
    target, logits = blob_target(mode).clone(), random_logits(mode)
    target[1] = IGNORE
    torch.testing.assert_close(loss(logits, target), loss(logits[:1], target[:1]))


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_perfect_prediction_is_the_minimum(name, mode):
    loss = create_loss(name, mode=mode)
    target = blob_target(mode)
    best = best_logits(name, target, mode, loss)
    best_value = loss(best, target)
    if name not in SMOOTHED_LABELS:
        assert best_value.abs() < 1e-4, best_value
    for seed in range(3):
        noisy = best + 0.5 * random_logits(mode, seed=seed)
        assert loss(noisy, target) > best_value - 1e-6


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_moving_a_wrong_logit_toward_the_right_class_lowers_the_loss(name, mode):
    target = blob_target(mode)
    logits = perfect_logits(target, mode, scale=3.0)
    # Pixel (0, 4, 5) lies inside an object: make it wrong, then a little less wrong.
    index = (0, 0, 4, 5) if mode == "binary" else (0, 1, 4, 5)
    wrong, less_wrong = logits.clone(), logits.clone()
    wrong[index], less_wrong[index] = -3.0, -1.0
    loss = create_loss(name, mode=mode)
    assert loss(less_wrong, target) < loss(wrong, target)


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_accepts_half_precision_logits_and_returns_float32(name, mode):
    loss = create_loss(name, mode=mode)
    logits = random_logits(mode).to(torch.bfloat16)
    value = loss(logits, random_target(mode))
    assert value.dtype == torch.float32
    assert torch.isfinite(value)


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_on_the_models_bf16_output_inside_autocast_a_loss_computes_in_float32(name, mode):
    """The model's bf16 logits, the loss called inside the model's autocast block: exactly
    the value of the same logits in float32 outside it, and that gradient rounded to bf16.
    Neither the bf16 input nor autocast's casts (matmul and conv to bf16 on both devices)
    may reach the loss's sums, logs and sorts."""
    logits, target = (3 * random_logits(mode)).to(torch.bfloat16), random_target(mode)
    loss = create_loss(name, mode=mode)
    expected, expected_grad = grad_of(loss, logits.float(), target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value, grad = grad_of(loss, logits, target)
    assert value.dtype == torch.float32
    assert torch.equal(value, expected)
    assert grad.dtype == torch.bfloat16
    assert torch.equal(grad, expected_grad.to(torch.bfloat16))


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=IDS)
def test_params_record_every_default(name, mode):
    loss = create_loss(name, mode=mode)
    defaults = get_loss_entry(name).defaults
    assert {key: loss.params[key] for key in defaults} == defaults


@settings(max_examples=12, derandomize=True, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.1, 30.0),
    size=st.integers(3, 9),
)
def test_random_inputs_never_give_negative_or_nan(pair, seed, scale, size):
    name, mode = pair
    loss = create_loss(name, mode=mode)
    logits = scale * random_logits(mode, size=size, seed=seed)
    value, grad = grad_of(loss, logits, random_target(mode, size=size, seed=seed))
    assert_finite(value, grad)
    assert value >= 0
