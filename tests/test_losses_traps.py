"""One test per row of LOSSES.md's traps table: each fails for the seed's wrong version."""

from __future__ import annotations

import math

import pytest
import torch
from losses_helpers import blob_target, grad_of, perfect_logits, random_logits, random_target

from losscmp.losses import create_loss


def test_distance_weighted_bce_takes_a_huge_sigma():
    """2σ² overflows a Python float for σ = 1e308; the weight is then flat, w0 everywhere."""
    target = blob_target("binary")
    logits = random_logits("binary")
    huge = create_loss("distance_weighted_bce", sigma=1e308)(logits, target)
    flat = create_loss("distance_weighted_bce", sigma=1e30)(logits, target)
    assert math.isfinite(huge.item()) and huge.item() == pytest.approx(flat.item(), rel=1e-6)


def test_lovasz_hinge_is_nan_on_nan_logits_in_its_cpu_shortcut_too():
    """The shortcut sorts only the positive errors; NaN is not > 0, and dropping it made a
    model with NaN weights train on as 'ok' with a loss of 0 (the GPU path gives NaN)."""
    target = blob_target("binary")
    confident = torch.where(target > 0, 10.0, -10.0)  # every error negative: the shortcut
    confident.view(-1)[0] = math.nan
    assert math.isnan(create_loss("lovasz")(confident, target).item())
    assert create_loss("lovasz")(confident.nan_to_num(10.0), target).item() >= 0


def test_a_finite_loss_over_nan_weights_counts_as_nan():
    from losscmp.train import finite_weights, nan_unless_finite_weights

    good, bad = torch.ones(2, 3), torch.tensor([[1.0, math.nan, 0.0]])
    assert finite_weights([good]).item() and not finite_weights([good, bad]).item()
    stacked = [torch.stack([good, good.clone().fill_(math.inf)]), torch.ones(2, 4)]
    assert finite_weights(stacked, stacked=True).tolist() == [True, False]
    losses = nan_unless_finite_weights(torch.tensor([0.5, 0.25]), torch.tensor([True, False]))
    assert losses[0].item() == 0.5 and math.isnan(losses[1].item())


def test_all_finite_is_isfinite_all_even_where_a_float32_sum_would_overflow():
    from losscmp.train import all_finite

    biggest = torch.finfo(torch.float32).max
    huge = torch.full((4, 1000), biggest)  # finite, though their float32 sum is inf
    huge[1] = -biggest
    assert all_finite(huge).item() and all_finite(huge, dim=1).tolist() == [True] * 4
    mixed = huge.clone()
    mixed[1, 7], mixed[2, 3], mixed[3, 0] = math.inf, math.nan, -math.inf
    assert not all_finite(mixed).item()
    assert all_finite(mixed, dim=1).tolist() == [True, False, False, False]
    both = torch.tensor([math.inf, -math.inf])  # they sum to NaN: still not finite
    assert not all_finite(both).item()
    narrow = (mixed / 4).bfloat16()  # bfloat16's largest is a little below float32's
    assert all_finite(narrow, dim=1).tolist() == [True, False, False, False]
    wide = torch.full((2,), torch.finfo(torch.float64).max, dtype=torch.float64)  # isfinite
    assert all_finite(wide).item() and not all_finite(wide.clone().fill_(math.nan)).item()


def test_000_dice_uses_the_intersection_not_the_union():
    # Disjoint confident prediction: intersection 0 -> loss 1; with the union the
    # "coefficient" would be 2|A∪B|/(|A|+|B|) = 2 -> loss -1.
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    logits = torch.tensor([-20.0, -20.0, 20.0, 20.0]).view(1, 1, 2, 2)
    assert create_loss("dice", smooth=0.0)(logits, target).item() == pytest.approx(1.0)


def test_000_mcc_loss_uses_soft_counts_so_it_has_a_gradient():
    # torch.round makes the gradient zero everywhere; the loss must train.
    for mode in ("binary", "multiclass"):
        _, grad = grad_of(create_loss("mcc", mode=mode), random_logits(mode), random_target(mode))
        assert grad.abs().sum() > 0


def test_000_focal_keeps_both_forms_with_and_without_alpha():
    logits, target = random_logits("binary"), random_target("binary")
    plain = create_loss("focal", alpha=None)(logits, target)
    balanced = create_loss("focal", alpha=0.25)(logits, target)
    assert create_loss("focal").params["alpha"] is None
    assert not torch.isclose(plain, balanced)


def test_001_intersection_is_an_element_wise_product_then_sum():
    # p = [1, 0], y = [0, 1]: element-wise TP = 0 (loss 1); a dot product of all pairs
    # (K.dot) would count 1 and give loss 0.5.
    logits = torch.tensor([20.0, -20.0]).view(1, 1, 1, 2)
    target = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert create_loss("dice", smooth=0.0)(logits, target).item() == pytest.approx(1.0)


def test_001_focal_weight_is_per_pixel_not_from_the_batch_mean():
    # One easy pixel (p_t = 0.99) and one hard pixel (p_t = 0.1).
    logits = torch.tensor([math.log(99), -math.log(9)]).view(1, 1, 1, 2)
    target = torch.ones(1, 1, 1, 2)
    per_pixel = [-((1 - p) ** 2) * math.log(p) for p in (0.99, 0.1)]
    value = create_loss("focal", gamma=2.0)(logits, target).item()
    assert value == pytest.approx(sum(per_pixel) / 2, rel=1e-5)
    mean_bce = -(math.log(0.99) + math.log(0.1)) / 2
    seed_version = (1 - math.exp(-mean_bce)) ** 2 * mean_bce
    assert value != pytest.approx(seed_version, rel=1e-2)


def test_001_tversky_defaults_are_the_papers_not_dice():
    assert create_loss("tversky").params["alpha"] == 0.3
    assert create_loss("tversky").params["beta"] == 0.7
    assert create_loss("focal_tversky").params["gamma"] == 0.75
    logits, target = random_logits("binary"), random_target("binary")
    assert not torch.isclose(
        create_loss("tversky")(logits, target), create_loss("dice", smooth=0.5)(logits, target)
    )


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_001_combo_is_non_negative_zero_when_perfect_and_weights_the_ce_terms(mode):
    target = blob_target(mode)
    combo = create_loss("combo", mode=mode)
    assert combo(perfect_logits(target, mode), target).abs() < 1e-4
    for seed in range(5):  # the seed subtracts raw Dice and goes negative
        assert combo(5 * random_logits(mode, seed=seed), target) >= 0
    # alpha weighs the whole WCE; beta only the positive term, 1 - beta the negative one.
    p, y = 0.7, 1.0
    logits = torch.full((1, 1, 1, 1), math.log(p / (1 - p)))
    value = create_loss("combo", alpha=1.0, beta=0.8)(logits, torch.full_like(logits, y))
    assert value.item() == pytest.approx(-0.8 * math.log(p), rel=1e-5)
    value = create_loss("combo", alpha=1.0, beta=0.8)(logits, torch.zeros_like(logits))
    assert value.item() == pytest.approx(-0.2 * math.log(1 - p), rel=1e-5)


def test_001_combo_applies_the_activation_itself():
    # Raw logits of +-100 would be NaN/negative if fed to log() without sigmoid.
    target = blob_target("binary")
    value = create_loss("combo")(100 * (2 * target - 1), target)
    assert torch.isfinite(value) and value.abs() < 1e-4


def test_002_dice_loss_is_one_minus_the_coefficient():
    target = blob_target("binary")
    dice = create_loss("dice")
    assert dice(perfect_logits(target, "binary"), target) < 1e-4
    assert dice(-perfect_logits(target, "binary"), target) > 0.99


def test_002_distance_term_multiplies_the_cross_entropy():
    # w0·exp(...) added to BCE would make a perfect prediction cost about w0.
    target = blob_target("binary")
    value = create_loss("distance_weighted_bce")(perfect_logits(target, "binary"), target)
    assert value < 1e-6


def test_002_balanced_bce_clips_beta_so_an_all_negative_batch_still_penalises():
    target = torch.zeros(2, 1, 8, 8)
    loss = create_loss("balanced_bce")
    value, grad = grad_of(loss, torch.full_like(target, 3.0), target)
    # beta = 1 would zero the negative term: no loss, no gradient for false positives.
    assert value > 0 and grad.abs().sum() > 0


def test_003_precision_is_tp_over_tp_plus_fp():
    # Only false positives: recall 1, precision 2/3. With precision = TP/(TP+FN) the
    # seed's F1 would be 1 (loss 0).
    target = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    logits = torch.tensor([30.0, 30.0, 30.0, -30.0]).view(1, 1, 2, 2)
    precision, recall = 2 / 3, 1.0
    expected = 1 - 2 * precision * recall / (precision + recall)
    assert create_loss("f1", smooth=0.0)(logits, target).item() == pytest.approx(expected, 1e-5)


def test_003_class_weights_are_a_weighted_mean():
    logits, target = random_logits("multiclass"), random_target("multiclass")
    equal = create_loss("dice", mode="multiclass", class_weights=[2.0, 2.0, 2.0])
    # Σ w·l / Σ w with equal weights is the plain mean (Σ w·l / C would triple it).
    torch.testing.assert_close(
        equal(logits, target), create_loss("dice", mode="multiclass")(logits, target)
    )


def test_004_focal_worked_examples_use_the_natural_log():
    target = torch.ones(1, 1, 1, 1)
    for p, expected in ((0.2, 1.0300), (0.98, 8.08e-6)):
        logits = torch.full((1, 1, 1, 1), math.log(p / (1 - p)))
        value = create_loss("focal", gamma=2.0)(logits, target).item()
        assert value == pytest.approx(expected, rel=1e-3)


def test_004_label_smoothing_puts_epsilon_over_k_on_every_class():
    logits = random_logits("multiclass", classes=4)
    target = random_target("multiclass", classes=4)
    epsilon = 0.1
    log_probs = torch.log_softmax(logits, 1)
    smoothed = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2) * (1 - epsilon)
    smoothed = smoothed + epsilon / 4
    expected = -(smoothed * log_probs).sum(1).mean()
    value = create_loss("label_smoothing_ce", mode="multiclass", epsilon=epsilon)
    torch.testing.assert_close(value(logits, target), expected)
