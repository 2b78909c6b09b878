"""Parity within 1e-5 with smp and MONAI where they define the same loss.

Each test writes down the option mapping. Targets have every class present in every
image: smp zeroes the loss of an empty channel (LOSSES.md prefers a smooth term), so
the two conventions only differ on empty channels.
"""

from __future__ import annotations

import pytest
import torch
from losses_helpers import blob_target, random_logits

from losscmp.losses import create_loss
from losscmp.losses.distance import batch_target_maps

smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")
monai_losses = pytest.importorskip("monai.losses")

TOL = {"atol": 1e-5, "rtol": 1e-5}
MODES = ["binary", "multiclass"]


def batch(mode: str, seed: int = 0, size: int = 16):
    return random_logits(mode, size=size, seed=seed) * 2, blob_target(mode, size=size)


def monai_target(target: torch.Tensor, mode: str) -> torch.Tensor:
    """MONAI wants a channel dim: (N, 1, H, W) for both modes (with to_onehot_y)."""
    return target if mode == "binary" else target.unsqueeze(1)


def assert_close(ours, theirs):
    torch.testing.assert_close(ours, theirs.to(ours.dtype), **TOL)


# ------------------------------------------------------------------------- smp
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_dice_and_jaccard_match_smp(mode, ignore_index):
    # smp: counts summed over the batch -> ours reduction="batch". smp's Dice is its
    # Tversky score with alpha = beta = 0.5: (TP + s)/(TP + FP/2 + FN/2 + s), i.e. Dice
    # with smooth 2s -> ours smooth = 2 * smp smooth for dice, = smp smooth for jaccard.
    logits, target = batch(mode)
    if ignore_index is not None:
        target = target.clone()
        target[..., :3] = ignore_index
    for ours_name, theirs_cls in (
        ("dice", smp_losses.DiceLoss),
        ("jaccard", smp_losses.JaccardLoss),
    ):
        for smooth in (0.0, 1.0):
            theirs = theirs_cls(mode, smooth=smooth, ignore_index=ignore_index)
            ours_smooth = 2 * smooth if ours_name == "dice" else smooth
            ours = create_loss(ours_name, mode=mode, smooth=ours_smooth, ignore_index=ignore_index)
            assert_close(ours(logits, target), theirs(logits, target))


@pytest.mark.parametrize("mode", MODES)
def test_tversky_matches_smp(mode):
    # smp TverskyLoss(alpha=FP weight, beta=FN weight, gamma=1) == ours; smp's gamma
    # raises the *class mean* to gamma, so it is not our focal_tversky for gamma != 1.
    logits, target = batch(mode)
    theirs = smp_losses.TverskyLoss(mode, alpha=0.3, beta=0.7, gamma=1.0, smooth=0.0)
    ours = create_loss("tversky", mode=mode, alpha=0.3, beta=0.7, smooth=0.0)
    assert_close(ours(logits, target), theirs(logits, target))


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_smp_binary(alpha):
    # smp binary focal: mean over pixels of -alpha_t (1-p_t)^gamma log p_t. smp's multiclass
    # focal is a one-vs-rest *sigmoid* focal summed over classes: a different loss.
    logits, target = batch("binary")
    theirs = smp_losses.FocalLoss("binary", alpha=alpha, gamma=2.0)
    ours = create_loss("focal", gamma=2.0, alpha=alpha)
    assert_close(ours(logits, target), theirs(logits, target))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_lovasz_matches_smp(mode, per_image, ignore_index):
    # smp LovaszLoss: hinge (binary) / softmax over present classes (multiclass).
    logits, target = batch(mode)
    if ignore_index is not None:
        target = target.clone()
        target[..., 5:8, :] = ignore_index
    theirs = smp_losses.LovaszLoss(mode, per_image=per_image, ignore_index=ignore_index)
    ours = create_loss("lovasz", mode=mode, per_image=per_image, ignore_index=ignore_index)
    assert_close(ours(logits, target), theirs(logits, target))


def test_lovasz_matches_smp_on_a_mostly_right_prediction():
    # Few positive hinge errors: our CPU path sorts only those.
    logits, target = batch("binary")
    logits = (2 * target - 1) * 2.5 + logits / 2
    theirs = smp_losses.LovaszLoss("binary")(logits, target)
    assert_close(create_loss("lovasz")(logits, target), theirs)


def test_soft_bce_matches_smp():
    # smp smooth_factor f: y(1 - 2f) + f  ->  ours epsilon = 2f.
    logits, target = batch("binary")
    theirs = smp_losses.SoftBCEWithLogitsLoss(smooth_factor=0.05)
    ours = create_loss("soft_bce", epsilon=0.1)
    assert_close(ours(logits, target), theirs(logits, target))


def test_mcc_matches_smp_on_probabilities():
    # smp MCCLoss takes probabilities and sums over the whole batch (ours: batch reduction);
    # it adds eps=1e-5 to every count, ours 1e-7 inside the square root: negligible here.
    logits, target = batch("binary")
    theirs = smp_losses.MCCLoss()(torch.sigmoid(logits), target)
    assert_close(create_loss("mcc")(logits, target), theirs)


# ----------------------------------------------------------------------- MONAI
def activation(mode: str) -> dict:
    if mode == "binary":
        return {"sigmoid": True}
    return {"softmax": True, "to_onehot_y": True}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", ["image", "batch"])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_matches_monai(mode, reduction, include_background):
    # MONAI batch=False scores per image (ours "image"), batch=True sums first ("batch");
    # smooth_nr = smooth_dr = ours smooth.
    if mode == "binary" and not include_background:
        pytest.skip("binary has one channel")
    logits, target = batch(mode)
    theirs = monai_losses.DiceLoss(
        **activation(mode),
        include_background=include_background,
        smooth_nr=1.0,
        smooth_dr=1.0,
        batch=reduction == "batch",
    )
    ours = create_loss(
        "dice", mode=mode, smooth=1.0, reduction=reduction, include_background=include_background
    )
    assert_close(ours(logits, target), theirs(logits, monai_target(target, mode)))


@pytest.mark.parametrize("mode", MODES)
def test_squared_dice_matches_monai(mode):
    logits, target = batch(mode)
    theirs = monai_losses.DiceLoss(
        **activation(mode), squared_pred=True, smooth_nr=1.0, smooth_dr=1.0, batch=True
    )
    ours = create_loss("dice", mode=mode, squared=True)
    assert_close(ours(logits, target), theirs(logits, monai_target(target, mode)))


@pytest.mark.parametrize("mode", MODES)
def test_tversky_matches_monai(mode):
    # MONAI TverskyLoss: alpha weighs FP, beta FN, like ours.
    logits, target = batch(mode)
    theirs = monai_losses.TverskyLoss(
        **activation(mode), alpha=0.3, beta=0.7, smooth_nr=1.0, smooth_dr=1.0
    )
    ours = create_loss("tversky", mode=mode, reduction="image")
    assert_close(ours(logits, target), theirs(logits, monai_target(target, mode)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", ["image", "batch"])
def test_generalized_dice_matches_monai(mode, reduction):
    # Binary: ours scores [background, foreground] = MONAI softmax over logits [0, x].
    # Smooth 0 on both sides (ours divides the weights by their max, MONAI does not;
    # the ratio is the same, the smooth terms would not be).
    logits, target = batch(mode)
    theirs_logits = logits
    if mode == "binary":
        theirs_logits = torch.cat([torch.zeros_like(logits), logits], 1)
        theirs_target = target
    else:
        theirs_target = target.unsqueeze(1)
    theirs = monai_losses.GeneralizedDiceLoss(
        softmax=True,
        to_onehot_y=True,
        smooth_nr=0.0,
        smooth_dr=1e-12,
        batch=reduction == "batch",
    )
    ours = create_loss("generalized_dice", mode=mode, smooth=0.0, reduction=reduction)
    assert_close(ours(logits, target), theirs(theirs_logits, theirs_target))


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_matches_monai(alpha):
    # Binary: MONAI's sigmoid focal, mean over pixels == ours.
    logits, target = batch("binary")
    theirs = monai_losses.FocalLoss(gamma=2.0, alpha=alpha)(logits, target)
    assert_close(create_loss("focal", alpha=alpha)(logits, target), theirs)
    # Multiclass: MONAI use_softmax=True gives the same per-pixel values but its mean also
    # divides by the number of classes C (it averages over the class dim): ours = C·theirs.
    logits, target = batch("multiclass")
    theirs = monai_losses.FocalLoss(gamma=2.0, alpha=alpha, use_softmax=True, to_onehot_y=True)
    ours = create_loss("focal", mode="multiclass", alpha=alpha)
    assert_close(ours(logits, target), 3 * theirs(logits, target.unsqueeze(1)))


@pytest.mark.parametrize("mode", MODES)
def test_dice_ce_matches_monai(mode):
    # DiceCELoss: BCE-with-logits for one channel, CE otherwise; lambda_ce, lambda_dice
    # map one to one; batch=True is our default batch reduction.
    logits, target = batch(mode)
    theirs = monai_losses.DiceCELoss(
        **activation(mode), smooth_nr=1.0, smooth_dr=1.0, batch=True, lambda_ce=0.7, lambda_dice=1.3
    )
    name = "bce_dice" if mode == "binary" else "ce_dice"
    ours = create_loss(name, mode=mode, lambda_ce=0.7, lambda_dice=1.3)
    assert_close(ours(logits, target), theirs(logits, monai_target(target, mode)))


def test_dice_focal_matches_monai_binary():
    # DiceFocalLoss(lambda_dice=λ, lambda_focal=1-λ) == ours dice_focal(lambda_dice=λ).
    logits, target = batch("binary")
    theirs = monai_losses.DiceFocalLoss(
        sigmoid=True,
        smooth_nr=1.0,
        smooth_dr=1.0,
        batch=True,
        gamma=2.0,
        lambda_dice=0.3,
        lambda_focal=0.7,
    )
    ours = create_loss("dice_focal", lambda_dice=0.3, gamma=2.0)
    assert_close(ours(logits, target), theirs(logits, target))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("include_background", [True, False])
def test_hausdorff_dt_matches_monai(mode, include_background):
    # HausdorffDTLoss(alpha=2): MONAI's distance field (fg_dist + bg_dist, zeros for an
    # empty channel) is |signed_distance|; prediction thresholded at p > 0.5 per channel.
    # MONAI's include_background defaults to False here, ours to True: pass it explicitly.
    if mode == "binary" and not include_background:
        pytest.skip("binary has one channel")
    logits, target = batch(mode, size=24)
    theirs = monai_losses.HausdorffDTLoss(
        **activation(mode), alpha=2.0, include_background=include_background
    )
    ours = create_loss("hausdorff_dt", mode=mode, alpha=2.0, include_background=include_background)
    maps = batch_target_maps(
        target, mode=mode, num_classes=logits.shape[1], ignore_index=None, names=ours.needs
    )
    assert_close(ours(logits, target, **maps), theirs(logits, monai_target(target, mode)))
