"""Hand-computed values, the identities LOSSES.md names, and the shared options."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from losses_helpers import blob_target, grad_of, perfect_logits, random_logits, random_target

from losscmp.losses import create_loss, get_loss_entry, list_losses

# Four pixels of one image: p = [0.9, 0.2, 0.6, 0.1], y = [1, 0, 1, 0]
# TP = 0.9 + 0.6 = 1.5, FP = 0.2 + 0.1 = 0.3, FN = 0.1 + 0.4 = 0.5, TN = 0.8 + 0.9 = 1.7
PROBS = torch.tensor([0.9, 0.2, 0.6, 0.1])
LOGITS = torch.logit(PROBS).view(1, 1, 2, 2)
TARGET = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("dice", {"smooth": 0.0}, 1 - 3.0 / 3.8),
        ("dice", {"smooth": 1.0}, 1 - 4.0 / 4.8),
        ("dice", {"smooth": 0.0, "squared": True}, 1 - 3.0 / (0.81 + 0.04 + 0.36 + 0.01 + 2)),
        ("jaccard", {"smooth": 0.0}, 1 - 1.5 / 2.3),
        ("tversky", {"smooth": 0.0}, 1 - 1.5 / (1.5 + 0.3 * 0.3 + 0.7 * 0.5)),
        ("focal_tversky", {"smooth": 0.0}, (1 - 1.5 / 1.94) ** 0.75),
        ("log_cosh_dice", {"smooth": 0.0}, math.log(math.cosh(1 - 3.0 / 3.8))),
        ("mcc", {}, 1 - (1.5 * 1.7 - 0.3 * 0.5) / math.sqrt(1.8 * 2.0 * 2.0 * 2.2)),
        ("f1", {"smooth": 0.0}, 1 - 2 * (1.5 / 1.8) * (1.5 / 2.0) / (1.5 / 1.8 + 1.5 / 2.0)),
        ("bce", {}, -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4),
        ("soft_bce", {"epsilon": 0.2}, None),
        (
            "balanced_bce",
            {},
            -(0.5 * (math.log(0.9) + math.log(0.6)) + 0.5 * (math.log(0.8) + math.log(0.9))) / 4,
        ),
        (
            "weighted_bce",
            {"beta": 3.0},
            -(3 * (math.log(0.9) + math.log(0.6)) + math.log(0.8) + math.log(0.9)) / 4,
        ),
        (
            "focal",
            {"gamma": 2.0},
            -(
                0.01 * math.log(0.9)
                + 0.04 * math.log(0.8)
                + 0.16 * math.log(0.6)
                + 0.01 * math.log(0.9)
            )
            / 4,
        ),
        ("topk_ce", {"k": 25.0}, -math.log(0.6)),
        ("topk_ce", {"k": 50.0}, -(math.log(0.6) + math.log(0.8)) / 2),
        (
            "combo",
            {"smooth": 0.0, "alpha": 0.4, "beta": 0.7},
            0.4
            * -(0.7 * (math.log(0.9) + math.log(0.6)) + 0.3 * (math.log(0.8) + math.log(0.9)))
            / 4
            + 0.6 * (1 - 3.0 / 3.8),
        ),
        (
            "bce_dice",
            {"smooth": 0.0, "lambda_ce": 2.0},
            -2 * (math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4 + 1 - 3 / 3.8,
        ),
    ],
)
def test_hand_computed_binary_values(name, params, expected):
    if expected is None:  # soft_bce: BCE against y' = y·0.8 + 0.1
        smoothed = TARGET.flatten() * 0.8 + 0.1
        expected = -float((smoothed * PROBS.log() + (1 - smoothed) * (1 - PROBS).log()).mean())
    value = create_loss(name, **params)(LOGITS, TARGET)
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_generalized_dice_binary_weighs_background_and_foreground_by_inverse_square_volume():
    # foreground: TP 1.5, FP 0.3, FN 0.5, volume 2; background: TP 1.7, FP 0.5, FN 0.3, volume 2
    w = 1 / 4
    expected = 1 - 2 * (w * 1.5 + w * 1.7) / (w * (3.0 + 0.8) + w * (3.4 + 0.8))
    value = create_loss("generalized_dice", smooth=0.0)(LOGITS, TARGET)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_unified_focal_binary_by_hand():
    delta, gamma = 0.6, 0.5
    # L_maF: background pixels suppressed by (1 - p_bg)^gamma, foreground plain CE.
    focal = (
        -delta * math.log(0.9)
        - (1 - delta) * math.sqrt(0.2) * math.log(0.8)
        - delta * math.log(0.6)
        - (1 - delta) * math.sqrt(0.1) * math.log(0.9)
    ) / 4
    # L_maFTL: mTI = TP / (TP + delta FN + (1 - delta) FP) per channel.
    background = 1 - 1.7 / (1.7 + delta * 0.3 + (1 - delta) * 0.5)
    foreground = (1 - 1.5 / (1.5 + delta * 0.5 + (1 - delta) * 0.3)) ** (1 - gamma)
    expected = 0.5 * focal + 0.5 * (background + foreground) / 2
    value = create_loss("unified_focal", smooth=0.0)(LOGITS, TARGET)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_distance_weighted_bce_by_hand():
    distance = torch.full_like(TARGET, 5.0)  # d1 + d2 = 5 px everywhere
    weight = 1 + 10 * math.exp(-(5.0**2) / (2 * 5.0**2))  # classes balanced: w_c = 1
    bce = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4
    value = create_loss("distance_weighted_bce")(LOGITS, TARGET, object_distance=distance)
    assert value.item() == pytest.approx(weight * bce, rel=1e-5)


def test_distance_weighted_bce_class_balance_by_hand():
    # y = [1, 0, 0, 0]: w_c = n/(K·n_c) with K = 2 classes present: 4/2 = 2 for the
    # foreground pixel, 4/6 for the background ones. One object: d1 + d2 = inf, no w0 term.
    target = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2)
    bce = [-math.log(0.9), -math.log(0.8), -math.log(0.4), -math.log(0.9)]
    expected = (2 * bce[0] + (bce[1] + bce[2] + bce[3]) * 4 / 6) / 4
    value = create_loss("distance_weighted_bce")(LOGITS, target)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # A batch of one class: K = 1, every weight n/n = 1, plain BCE (not 1/2 of it).
    empty = torch.zeros_like(target)
    plain = create_loss("bce")(LOGITS, empty)
    assert create_loss("distance_weighted_bce")(LOGITS, empty).item() == pytest.approx(plain.item())


def test_boundary_term_by_hand():
    signed = torch.tensor([-1.0, 2.0, -1.0, 3.0]).view(1, 1, 2, 2)
    boundary = (-1 * (0.9 - 1) + 2 * 0.2 - 1 * (0.6 - 1) + 3 * 0.1) / 4
    dice = 1 - 4.0 / 4.8
    value = create_loss("boundary")(LOGITS, TARGET, signed_distance=signed)
    assert value.item() == pytest.approx(dice + 0.01 * boundary, rel=1e-5)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_hausdorff_dt_scores_a_wholly_wrong_image_without_boundaries(fill):
    # An empty target predicted all foreground (or a full one all background): neither has
    # a boundary, so MONAI's d_G = d_P = 0 scored it 0, with no gradient. d_G is then the
    # distance to the image's frame; for 3x4: [[1, 1, 1, 1], [1, 2, 2, 1], [1, 1, 1, 1]],
    # mean of d_G^2 = (10 + 2·4)/12 = 1.5, and every pixel's error is sigma(3)^2.
    target = torch.full((1, 1, 3, 4), fill)
    logits = torch.full_like(target, 3.0 if fill == 0 else -3.0).requires_grad_()
    value = create_loss("hausdorff_dt")(logits, target)
    value.backward()
    sigma = 1 / (1 + math.exp(-3.0))
    assert value.item() == pytest.approx(sigma**2 * 1.5, rel=1e-5)
    assert (logits.grad.sign() == (0.5 - fill) * 2).all()  # every pixel pushed to the target
    # Right everywhere: still 0, the minimum.
    assert create_loss("hausdorff_dt")(-logits.detach(), target).item() < 1e-2


def test_multiclass_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]).T.reshape(1, 3, 1, 2)
    target = torch.tensor([[[0, 1]]])
    log_probs = torch.log_softmax(logits, 1)
    expected = -(log_probs[0, 0, 0, 0] + log_probs[0, 1, 0, 1]) / 2
    assert create_loss("ce", mode="multiclass")(logits, target) == pytest.approx(expected.item())


def lovasz_by_definition(errors: list[float], foreground: list[int]) -> float:
    """Lovász extension from its set-function definition (Berman 2018, eq. 8-9)."""
    ground_truth = {i for i, fg in enumerate(foreground) if fg}

    def jaccard_loss(mistakes: set[int]) -> float:
        union = ground_truth | mistakes
        return 1 - len(ground_truth - mistakes) / len(union) if union else 0.0

    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    total, mistakes = 0.0, set()
    for i in order:
        before = jaccard_loss(mistakes)
        mistakes.add(i)
        total += max(errors[i], 0.0) * (jaccard_loss(mistakes) - before)
    return total


def test_lovasz_hinge_matches_the_set_function_definition():
    logits = torch.tensor([2.0, -0.5, 0.3, -2.0, 1.5, 0.1]).view(1, 1, 2, 3)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 3)
    signs = 2 * target.flatten() - 1
    errors = (1 - logits.flatten() * signs).tolist()
    expected = lovasz_by_definition(errors, target.flatten().int().tolist())
    assert create_loss("lovasz")(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_lovasz_softmax_averages_present_classes_only():
    logits = random_logits("multiclass", batch=1, size=3, classes=4, seed=5)
    target = torch.tensor([[[0, 0, 1], [1, 2, 2], [0, 1, 2]]])  # class 3 absent
    probs = torch.softmax(logits, 1)
    per_class = []
    for c in range(3):
        foreground = (target == c).flatten().int().tolist()
        errors = (torch.tensor(foreground) - probs[0, c].flatten()).abs().tolist()
        per_class.append(lovasz_by_definition(errors, foreground))
    value = create_loss("lovasz", mode="multiclass")(logits, target)
    assert value.item() == pytest.approx(sum(per_class) / 3, rel=1e-5)


# ------------------------------------------------------------------ identities
@pytest.mark.parametrize(
    ("mode", "reduction"), list(itertools.product(["binary", "multiclass"], ["batch", "image"]))
)
def test_tversky_with_half_weights_is_dice(mode, reduction):
    logits, target = random_logits(mode), random_target(mode)
    dice = create_loss("dice", mode=mode, smooth=1.0, reduction=reduction)(logits, target)
    # (TP + s/2) / (TP + FP/2 + FN/2 + s/2) == (2TP + s) / (2TP + FP + FN + s)
    tversky = create_loss(
        "tversky", mode=mode, alpha=0.5, beta=0.5, smooth=0.5, reduction=reduction
    )(logits, target)
    torch.testing.assert_close(tversky, dice)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_tversky_with_unit_weights_is_jaccard(mode):
    logits, target = random_logits(mode), random_target(mode)
    jaccard = create_loss("jaccard", mode=mode)(logits, target)
    tversky = create_loss("tversky", mode=mode, alpha=1.0, beta=1.0)(logits, target)
    torch.testing.assert_close(tversky, jaccard)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_focal_tversky_with_unit_gamma_is_tversky(mode):
    logits, target = random_logits(mode), random_target(mode)
    tversky = create_loss("tversky", mode=mode)(logits, target)
    focal_tversky = create_loss("focal_tversky", mode=mode, gamma=1.0)(logits, target)
    torch.testing.assert_close(focal_tversky, tversky)


def test_focal_without_focusing_or_alpha_is_cross_entropy():
    for mode, plain in (("binary", "bce"), ("multiclass", "ce")):
        logits, target = random_logits(mode), random_target(mode)
        focal = create_loss("focal", mode=mode, gamma=0.0, alpha=None)(logits, target)
        torch.testing.assert_close(focal, create_loss(plain, mode=mode)(logits, target))


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_soft_f1_equals_dice(mode):
    logits, target = random_logits(mode), random_target(mode)
    f1 = create_loss("f1", mode=mode)(logits, target)  # smooth 0.5 == dice's 1
    torch.testing.assert_close(f1, create_loss("dice", mode=mode)(logits, target))
    f1_raw = create_loss("f1", mode=mode, smooth=0.0)(logits, target)
    dice_raw = create_loss("dice", mode=mode, smooth=0.0)(logits, target)
    torch.testing.assert_close(f1_raw, dice_raw, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_log_cosh_dice_is_below_dice(mode):
    logits, target = random_logits(mode), random_target(mode)
    assert create_loss("log_cosh_dice", mode=mode)(logits, target) < create_loss("dice", mode=mode)(
        logits, target
    )


# ------------------------------------------------------------------ shared options
OVERLAP = [
    "dice",
    "jaccard",
    "tversky",
    "focal_tversky",
    "f1",
    "log_cosh_dice",
    "generalized_dice",
    "mcc",
]


@pytest.mark.parametrize("name", OVERLAP)
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_empty_target_convention(name, reduction):
    """No foreground: all-background prediction scores ~0 loss, all-foreground ~1."""
    target = torch.zeros(2, 1, 8, 8)
    loss = create_loss(name, reduction=reduction)
    assert loss(torch.full_like(target, -20.0), target) < 1e-4
    near_one = math.log(math.cosh(0.9)) if name == "log_cosh_dice" else 0.9
    assert loss(torch.full_like(target, 20.0), target) > near_one


def test_mcc_of_a_target_without_foreground_is_the_false_positive_rate():
    # MCC is 0/0 without foreground (TP = FN = 0). Target empty, p = [0.9, 0.2, 0.6, 0.1]:
    # FP = 1.8, TN = 2.2, loss FP/(FP + TN) = 0.45 (it was 1 whatever p, with no gradient).
    target = torch.zeros_like(TARGET)
    logits = LOGITS.clone().requires_grad_()
    value = create_loss("mcc")(logits, target)
    assert value.item() == pytest.approx(1.8 / 4, rel=1e-5)
    value.backward()
    assert (logits.grad > 0).all()  # every false positive is pushed down
    # A perfect prediction of the empty target is the minimum, 0 (LOSSES.md: every loss).
    assert create_loss("mcc")(torch.full_like(target, -20.0), target).item() < 1e-6


def test_mcc_of_a_target_without_background_is_the_false_negative_rate():
    # Target all foreground: TN = FP = 0; TP = 1.8, FN = 2.2, loss FN/(TP + FN) = 0.55.
    value = create_loss("mcc")(LOGITS, torch.ones_like(TARGET))
    assert value.item() == pytest.approx(2.2 / 4, rel=1e-5)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_mcc_without_eps_keeps_a_finite_gradient_on_a_target_without_a_class(fill):
    # eps = 0 is accepted: the FP (or FN) rate branch still gives the value, and the
    # discarded MCC branch's sqrt(0) must not turn the gradient into NaN.
    logits = LOGITS.clone().requires_grad_()
    value = create_loss("mcc", eps=0.0)(logits, torch.full_like(TARGET, fill))
    value.backward()
    assert value.item() == pytest.approx(1.8 / 4 if fill == 0 else 2.2 / 4, rel=1e-5)
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad.sign() == (0.5 - fill) * 2).all()  # FP pushed down / FN up


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_f1_without_smooth_or_eps_scores_an_empty_target_as_dice_does(mode):
    # smooth = eps = 0 are accepted; on a target without foreground precision and recall
    # are 0/0. Like dice(smooth=0) the channel then scores 0 (loss 1), never NaN.
    target = torch.zeros_like(random_target(mode))
    logits = random_logits(mode).requires_grad_()
    value = create_loss("f1", mode=mode, smooth=0.0, eps=0.0)(logits, target)
    value.backward()
    dice = create_loss("dice", mode=mode, smooth=0.0)(logits, target)
    assert value.item() == pytest.approx(dice.item())
    assert torch.isfinite(logits.grad).all()


def test_mcc_multiclass_class_absent_from_the_batch_scores_its_false_positives():
    # Two pixels, classes 0 and 1 present, class 2 absent. softmax rows: pixel 0
    # [0.7, 0.2, 0.1], pixel 1 [0.1, 0.3, 0.6]. Class 2: FP = 0.7, TN = 1.3: loss 0.35.
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    logits = probs.log().T.reshape(1, 3, 1, 2)
    target = torch.tensor([[[0, 1]]])
    per_class = []
    for c in range(2):  # present classes: MCC of the soft counts
        p, y = probs[:, c], (target.flatten() == c).float()
        tp, fp, fn = (p * y).sum(), (p * (1 - y)).sum(), ((1 - p) * y).sum()
        tn = ((1 - p) * (1 - y)).sum()
        mcc = (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        per_class.append(1 - mcc.item())
    expected = (per_class[0] + per_class[1] + 0.7 / 2) / 3
    value = create_loss("mcc", mode="multiclass")(logits, target)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_image_reduction_averages_per_image_scores():
    logits, target = random_logits("binary"), random_target("binary")
    per_image = [create_loss("dice")(logits[i : i + 1], target[i : i + 1]) for i in range(2)]
    value = create_loss("dice", reduction="image")(logits, target)
    torch.testing.assert_close(value, torch.stack(per_image).mean())


def test_class_weights_give_a_weighted_mean_not_divided_by_c_again():
    logits, target = random_logits("multiclass"), random_target("multiclass")
    per_class = []
    for c in range(3):
        weights = [0.0, 0.0, 0.0]
        weights[c] = 1.0
        per_class.append(
            create_loss("dice", mode="multiclass", class_weights=weights)(logits, target)
        )
    weighted = create_loss("dice", mode="multiclass", class_weights=[1.0, 2.0, 5.0])
    expected = (per_class[0] + 2 * per_class[1] + 5 * per_class[2]) / 8
    torch.testing.assert_close(weighted(logits, target), expected)


def test_include_background_false_drops_class_zero():
    logits, target = random_logits("multiclass"), random_target("multiclass")
    without = create_loss("dice", mode="multiclass", include_background=False)(logits, target)
    per_class = [
        create_loss("dice", mode="multiclass", class_weights=[0.0, 1.0, 0.0])(logits, target),
        create_loss("dice", mode="multiclass", class_weights=[0.0, 0.0, 1.0])(logits, target),
    ]
    torch.testing.assert_close(without, sum(per_class) / 2)
    weighted = create_loss(
        "dice", mode="multiclass", include_background=False, class_weights=[9.0, 1.0, 3.0]
    )(logits, target)
    torch.testing.assert_close(weighted, (per_class[0] + 3 * per_class[1]) / 4)


def test_an_all_ignored_image_is_left_out_of_the_image_mean():
    # Image 0: p = 0.5 on 4 pixels, y = [1, 1, 0, 0]: TP = FP = FN = 1, dice loss
    # 1 - (2 + 1)/(2 + 1 + 1 + 1) = 0.4. Image 1: every pixel ignored. The image mean is
    # 0.4, not (0.4 + 0)/2 = 0.2: ignored pixels are out of every mean's denominator.
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 255, 255, 255, 255]).view(2, 1, 2, 2)
    dice = create_loss("dice", reduction="image", ignore_index=255)
    assert dice(logits, target).item() == pytest.approx(0.4)
    # Lovász per image: image 0's hinge errors are all 1, so its loss is the Jaccard loss of
    # every pixel wrong, 1; image 1 must not pull the mean down to 0.5.
    lovasz = create_loss("lovasz", per_image=True, ignore_index=255)
    assert lovasz(logits, target).item() == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("name", ["generalized_dice", "dice", "mcc", "unified_focal"])
def test_image_reduction_with_ignored_pixels_is_the_mean_of_the_images(name, mode):
    logits, target = random_logits(mode, batch=3), random_target(mode, batch=3).clone()
    target[..., :3, :] = 255
    loss = create_loss(name, mode=mode, reduction="image", ignore_index=255)
    per_image = [loss(logits[i : i + 1], target[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(loss(logits, target), torch.stack(per_image).mean())


def test_ignored_pixels_are_excluded_from_the_mean():
    logits, target = random_logits("binary"), random_target("binary")
    masked = target.clone()
    masked[:, :, :, 8:] = 255
    value = create_loss("bce", ignore_index=255)(logits, masked)
    expected = create_loss("bce")(logits[..., :8].contiguous(), target[..., :8].contiguous())
    torch.testing.assert_close(value, expected)


def test_fp16_sums_do_not_overflow_smp_issue_463():
    """16 x 256 x 256 ones: an fp16 sum overflows to inf; ours runs in float32."""
    target = torch.ones(16, 1, 256, 256)
    logits = torch.full_like(target, 5.0, dtype=torch.float16)
    value = create_loss("dice")(logits, target)
    assert torch.isfinite(value) and value < 0.01


def test_weighted_bce_auto_beta_comes_from_fit():
    loss = create_loss("weighted_bce")
    loss.fit(torch.tensor([900, 100]))
    assert loss.params["fitted_beta"] == pytest.approx(9.0)
    fixed = create_loss("weighted_bce", beta=9.0)
    logits, target = random_logits("binary"), random_target("binary")
    torch.testing.assert_close(loss(logits, target), fixed(logits, target))


def test_boundary_schedule_runs_from_001_to_1():
    loss = create_loss("boundary")
    assert loss.alpha == pytest.approx(0.01)
    loss.set_progress(0.5)
    assert loss.alpha == pytest.approx(0.505)
    loss.set_progress(1.0)
    assert loss.alpha == pytest.approx(1.0)
    target = blob_target("binary")
    logits = random_logits("binary")
    dice = create_loss("dice")(logits, target)
    boundary_only = loss(logits, target) - dice
    loss.set_progress(0.0)
    torch.testing.assert_close(loss(logits, target) - dice, boundary_only * 0.01)


def test_the_trainer_takes_the_boundary_schedule_to_1_in_the_last_epoch():
    from losscmp.train import training_progress

    loss = create_loss("boundary")
    alphas = []
    for epoch in range(1, 5):
        loss.set_progress(training_progress(epoch, 4))
        alphas.append(loss.alpha)
    # 0.01 + 0.99·(epoch - 1)/3: (epoch - 1)/4 stopped at 0.01 + 0.99·3/4 = 0.7525.
    assert alphas == pytest.approx([0.01, 0.34, 0.67, 1.0])
    assert training_progress(1, 1) == 0.0


def test_losses_accept_precomputed_maps_and_match_the_fallback():
    """Every loss whose entry ``needs`` maps (not a list of names: a new one is checked too)."""
    from losscmp.losses.distance import batch_target_maps

    with_maps = [name for name in list_losses() if get_loss_entry(name).needs]
    assert {"boundary", "hausdorff_dt", "distance_weighted_bce"} <= set(with_maps)
    for name in with_maps:
        for mode in get_loss_entry(name).modes:
            loss = create_loss(name, mode=mode)
            target, logits = blob_target(mode), random_logits(mode)
            maps = batch_target_maps(
                target, mode=mode, num_classes=logits.shape[1], ignore_index=None, names=loss.needs
            )
            torch.testing.assert_close(loss(logits, target, **maps), loss(logits, target))


def test_perfect_prediction_confidence_matches_helper():
    target = blob_target("multiclass")
    assert (perfect_logits(target, "multiclass").argmax(1) == target).all()


def test_lovasz_sorting_only_the_positive_errors_changes_nothing():
    """A mostly right prediction takes the CPU path that sorts only the positive errors."""
    from losscmp.losses.overlap import lovasz_rows

    target = random_target("binary", size=32)
    logits = (2 * target - 1) * 2.5 + random_logits("binary", size=32)
    assert ((1 - logits * (2 * target - 1)) > 0).float().mean() < 0.5

    def full_sort(x, y):
        errors = torch.relu(1 - x * (2 * y - 1))
        return lovasz_rows(errors.reshape(1, -1), y.reshape(1, -1)).mean()

    value, grad = grad_of(create_loss("lovasz"), logits, target)
    expected_value, expected_grad = grad_of(full_sort, logits, target)
    torch.testing.assert_close(value, expected_value)
    torch.testing.assert_close(grad, expected_grad)


def test_ce_class_weights_and_ignore_match_torch_weighted_mean():
    logits, target = random_logits("multiclass"), random_target("multiclass").clone()
    target[:, :3] = 255
    weights = [0.2, 1.0, 3.0]
    expected = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor(weights), ignore_index=255
    )
    loss = create_loss("ce", mode="multiclass", class_weights=weights, ignore_index=255)
    torch.testing.assert_close(loss(logits, target), expected)
