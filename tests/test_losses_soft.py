"""Soft targets (binary y in [0, 1]): the overlap terms use TP = Σ min(p, y) (Wang &
Blaschko 2023), so every loss whose registry entry says ``soft_targets`` is minimal at
p = y; on hard targets the values are bit-for-bit the classic Σ p·y ones; and they match
MONAI's ``soft_label=True`` and smp's (always soft) scores.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from losses_helpers import blob_target, random_logits

from losscmp.losses import create_loss, get_loss_entry, list_losses
from losscmp.losses.functional import (
    sigmoid_focal_sum_and_counts,
    soft_counts_from_logits,
    soft_intersection,
    sum_dims,
)
from losscmp.losses.overlap import dice_loss, ratio_loss, tversky_loss

SHAPE = (2, 1, 16, 16)
PIXELS = 2 * 16 * 16
# A hard pixel's "p = y" is this confident logit (logit(0) = -inf would make BCE nan).
CONFIDENT = 20.0
TOL = {"atol": 1e-5, "rtol": 1e-5}

SOFT_LOSSES = [name for name in list_losses() if get_loss_entry(name).soft_targets]
# Overlap losses and the compounds built on them (all binary overlap terms share the
# counts): the y = 0.5 case and the direction of their gradients.
OVERLAP_AND_COMPOUNDS = [
    name for name in SOFT_LOSSES if get_loss_entry(name).family in ("overlap", "compound")
]
# Parameters under which a loss whose optimum a weight or smoothing moves on purpose has
# it at p = y: weighted/balanced BCE with equal class weights, no label smoothing, the
# unified focal loss without its asymmetry. At the defaults these optima are elsewhere
# (e.g. p = beta·y/(beta·y + 1 - y) for weighted BCE), as their definitions say.
NEUTRAL_PARAMS = {
    "weighted_bce": {"beta": 1.0},
    "balanced_bce": {"epsilon": 0.5},
    "soft_bce": {"epsilon": 0.0},
    "unified_focal": {"delta": 0.5, "gamma": 0.0},
}


def soft_targets() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    uniform = torch.rand(SHAPE, generator=generator) * 0.9 + 0.05
    hard = blob_target("binary")
    mixed = torch.where(torch.rand(SHAPE, generator=generator) > 0.5, uniform, hard)
    return {
        "half": torch.full(SHAPE, 0.5),
        "uniform": uniform,
        "smoothed_hard": hard * 0.9 + 0.05,
        "mixed_soft_and_hard": mixed,
        "sparse_soft": hard * uniform,
    }


def logits_of(y: torch.Tensor) -> torch.Tensor:
    """The prediction p = y as logits (hard pixels: a confident logit)."""
    return torch.logit(y).clamp(-CONFIDENT, CONFIDENT)


def perturbations(y: torch.Tensor) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return {
        "all_up": torch.full_like(y, 0.5),
        "all_down": torch.full_like(y, -0.5),
        "random": torch.randn(y.shape, generator=generator) * 0.5,
        "few_pixels": (torch.rand(y.shape, generator=generator) > 0.9).float() * 1.0,
    }


def constant_logits(p: float) -> torch.Tensor:
    return torch.full(SHAPE, float(torch.logit(torch.tensor(p))))


# --------------------------------------------------------------- (a) minimum at p = y
@pytest.mark.parametrize("name", SOFT_LOSSES)
@pytest.mark.parametrize("target_name", list(soft_targets()))
def test_soft_target_is_the_minimum(name, target_name):
    y = soft_targets()[target_name]
    loss = create_loss(name, **NEUTRAL_PARAMS.get(name, {}))
    at_target = loss(logits_of(y), y)
    for how, delta in perturbations(y).items():
        perturbed = loss(logits_of(y) + delta, y)
        assert at_target < perturbed, f"{name}, y {target_name}, p moved {how}"


@pytest.mark.parametrize("name", OVERLAP_AND_COMPOUNDS)
def test_half_target_prefers_half_to_confident(name):
    # The case: y = 0.5 everywhere. Σ p·y gave dice 0.331 at p = 0.99, 0.492 at 0.5.
    y = torch.full(SHAPE, 0.5)
    loss = create_loss(name, **NEUTRAL_PARAMS.get(name, {}))
    assert loss(constant_logits(0.5), y) < loss(constant_logits(0.99), y)


@pytest.mark.parametrize("name", OVERLAP_AND_COMPOUNDS)
@pytest.mark.parametrize(("p", "direction"), [(0.99, 1.0), (0.2, -1.0)])
def test_gradient_moves_p_towards_a_soft_target(name, p, direction):
    # Gradient descent on the logits must lower p = 0.99 and raise p = 0.2 towards y = 0.5.
    y = torch.full(SHAPE, 0.5)
    logits = constant_logits(p).requires_grad_(True)
    create_loss(name, **NEUTRAL_PARAMS.get(name, {}))(logits, y).backward()
    assert (logits.grad * direction > 0).all()


def test_soft_values_by_hand():
    # n = 512 pixels of y = 0.5, smooth s = 1, batch reduction. p = 0.99: TP = Σ min = 0.5n,
    # FP = 0.49n, FN = 0; p = 0.2: TP = 0.2n, FP = 0, FN = 0.3n.
    n, s = PIXELS, 1.0
    y = torch.full(SHAPE, 0.5)
    high, low = constant_logits(0.99), constant_logits(0.2)
    cases = {
        ("dice", high): 1 - (n + s) / (n + 0.49 * n + s),
        ("dice", low): 1 - (0.4 * n + s) / (0.4 * n + 0.3 * n + s),
        ("jaccard", high): 1 - (0.5 * n + s) / (0.99 * n + s),
        ("tversky", high): 1 - (0.5 * n + s) / (0.5 * n + 0.3 * 0.49 * n + s),
        ("tversky", low): 1 - (0.2 * n + s) / (0.2 * n + 0.7 * 0.3 * n + s),
    }
    for (name, logits), expected in cases.items():
        assert float(create_loss(name)(logits, y)) == pytest.approx(expected, rel=1e-5)
    # The perfect soft prediction scores a loss of 0 (up to float32 rounding of σ(logit y)).
    for name in ("dice", "jaccard", "tversky", "focal_tversky", "log_cosh_dice", "mcc"):
        assert float(create_loss(name)(constant_logits(0.5), y)) == pytest.approx(0, abs=1e-6)


# ------------------------------------------------------ (b) hard labels: as before
def product_counts(logits, y, valid, binary, dims):
    """The classic soft counts TP = Σ p·y, written out as the old code computed them."""
    probs = torch.sigmoid(logits) if binary else torch.softmax(logits, 1)
    masked = probs if valid is None else probs * valid
    tp = (masked * y).sum(dims)
    return tp, (masked.sum(dims) - tp).clamp_min(0), (y.sum(dims) - tp).clamp_min(0)


def hard_batch(mode: str, ignore: bool):
    logits = random_logits(mode, seed=3) * 3
    target = blob_target(mode)
    if mode == "binary":
        y = target.clone()
        valid = torch.ones_like(y)
        if ignore:
            valid[..., :2] = 0
            y = y * valid
        return logits, y, (valid if ignore else None)
    y = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    valid = None
    if ignore:
        valid = torch.ones_like(y[:, :1])
        valid[..., :2] = 0
        y = y * valid
    return logits, y, valid


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("reduction", ["batch", "image"])
@pytest.mark.parametrize("ignore", [False, True])
def test_hard_label_counts_are_bit_for_bit_the_product_form(mode, reduction, ignore):
    logits, y, valid = hard_batch(mode, ignore)
    dims = sum_dims(reduction, logits.dim())
    binary = mode == "binary"
    ours = soft_counts_from_logits(logits, y, valid, binary, dims)
    for new, old in zip(ours, product_counts(logits, y, valid, binary, dims), strict=True):
        assert torch.equal(new, old)
    if binary:  # the compound losses' fused pass (BCE/focal + counts)
        _, *fused = sigmoid_focal_sum_and_counts(logits, y, valid, 2.0, valid, dims)
        for new, old in zip(fused, product_counts(logits, y, valid, True, dims), strict=True):
            assert torch.equal(new, old)


def test_min_is_the_product_on_hard_labels_elementwise():
    p = torch.sigmoid(torch.randn(4, 1, 8, 8) * 8)
    y = (torch.rand(4, 1, 8, 8) > 0.5).float()
    assert torch.equal(torch.minimum(p, y), p * y)
    assert torch.equal(soft_intersection(p, y, (0, 2, 3)), (p * y).sum((0, 2, 3)))


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize(
    ("name", "per_class"),
    [
        ("dice", lambda tp, fp, fn: dice_loss(tp, fp, fn, 1.0)),
        ("jaccard", lambda tp, fp, fn: ratio_loss(tp, tp + fp + fn, 1.0)),
        ("tversky", lambda tp, fp, fn: tversky_loss(tp, fp, fn, 0.3, 0.7, 1.0)),
    ],
)
def test_hard_label_loss_and_gradient_match_the_product_formula(mode, name, per_class):
    # Value: bit-for-bit. Gradient: the analytic backward against autograd through Σ p·y.
    logits, y, _ = hard_batch(mode, ignore=False)
    target = blob_target(mode)
    ours_logits = logits.clone().requires_grad_(True)
    ours = create_loss(name, mode=mode)(ours_logits, target)
    ours.backward()
    old_logits = logits.clone().requires_grad_(True)
    counts = product_counts(old_logits, y, None, mode == "binary", sum_dims("batch", 4))
    old = per_class(*counts).mean()
    old.backward()
    assert torch.equal(ours.detach(), old.detach())
    torch.testing.assert_close(ours_logits.grad, old_logits.grad, atol=1e-9, rtol=1e-6)


def test_hard_label_values_by_hand():
    # Four pixels, p = (0.9, 0.2, 0.6, 0.1), y = (1, 0, 1, 0), smooth 1:
    # TP = 1.5, FP = 0.3, FN = 0.5.
    p = torch.tensor([0.9, 0.2, 0.6, 0.1]).reshape(1, 1, 2, 2)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 2, 2)
    logits = torch.logit(p)
    tp, fp, fn = 1.5, 0.3, 0.5
    expected = {
        "dice": 1 - (2 * tp + 1) / (2 * tp + fp + fn + 1),
        "jaccard": 1 - (tp + 1) / (tp + fp + fn + 1),
        "tversky": 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1),
    }
    for name, value in expected.items():
        assert float(create_loss(name)(logits, y)) == pytest.approx(value, rel=1e-6)


def test_unified_focal_tversky_part_is_unchanged_on_hard_labels():
    loss = create_loss("unified_focal")
    logits, target = random_logits("binary", seed=5) * 3, blob_target("binary")
    log_probs, y, _ = loss.log_probs_and_target(logits, target)
    probs = log_probs.exp()
    tp = (probs * y).sum((0, 2, 3))
    fp, fn = probs.sum((0, 2, 3)) - tp, y.sum((0, 2, 3)) - tp
    old = ratio_loss(tp, tp + 0.6 * fn + 0.4 * fp, 1.0)
    old = torch.cat([old[:1], old[1:].pow(0.5)]).mean()
    assert torch.equal(loss.asymmetric_focal_tversky(probs, y), old)


def test_soft_counts_gradient_is_exact_for_soft_targets():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 1, 4, 5, dtype=torch.float64, generator=generator) * 2
    y = torch.rand(2, 1, 4, 5, dtype=torch.float64, generator=generator)
    assert (torch.sigmoid(logits) - y).abs().min() > 1e-3  # away from the kink at p = y
    for dims in ((0, 2, 3), (2, 3)):

        def counts(x, dims=dims):
            return soft_counts_from_logits(x, y, None, True, dims)

        assert torch.autograd.gradcheck(counts, (logits.clone().requires_grad_(True),))


# ------------------------------------------------------------ (c) MONAI and smp
monai_losses = pytest.importorskip("monai.losses")
smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")
# MONAI's losses take soft labels (soft_label=True) from monai 1.5 on; the comparisons
# with them skip, saying why, on an older one (the test extra allows monai 1.3).
needs_monai_soft_labels = pytest.mark.skipif(
    "soft_label" not in inspect.signature(monai_losses.DiceLoss).parameters,
    reason="this monai's losses take no soft_label (monai 1.5 or later)",
)


def soft_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(SHAPE, generator=generator) * 2
    return logits, torch.rand(SHAPE, generator=generator)


def assert_close(ours, theirs):
    torch.testing.assert_close(ours, theirs.to(ours.dtype), **TOL)


@needs_monai_soft_labels
@pytest.mark.parametrize("reduction", ["batch", "image"])
@pytest.mark.parametrize("squared", [False, True])
def test_dice_matches_monai_soft_label(reduction, squared):
    # MONAI 1.6: DiceLoss(soft_label=True) takes |p ∩ y| from L1 norms (L2 when squared);
    # batch=True is ours "batch"; smooth_nr = smooth_dr = ours smooth. Gradients too.
    logits, y = soft_batch()
    theirs_logits = logits.clone().requires_grad_(True)
    theirs = monai_losses.DiceLoss(
        sigmoid=True,
        soft_label=True,
        squared_pred=squared,
        smooth_nr=1.0,
        smooth_dr=1.0,
        batch=reduction == "batch",
    )(theirs_logits, y)
    ours_logits = logits.clone().requires_grad_(True)
    ours = create_loss("dice", smooth=1.0, squared=squared, reduction=reduction)(ours_logits, y)
    assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_logits.grad, theirs_logits.grad, atol=1e-7, rtol=1e-4)


@needs_monai_soft_labels
def test_jaccard_matches_monai_soft_label():
    # MONAI jaccard=True: 1 - (2TP + s)/(2(TP + FP + FN) + s) = ours with smooth s/2.
    logits, y = soft_batch(1)
    theirs = monai_losses.DiceLoss(
        sigmoid=True, soft_label=True, jaccard=True, smooth_nr=1.0, smooth_dr=1.0, batch=True
    )(logits, y)
    assert_close(create_loss("jaccard", smooth=0.5)(logits, y), theirs)


@needs_monai_soft_labels
@pytest.mark.parametrize("reduction", ["batch", "image"])
def test_tversky_matches_monai_soft_label(reduction):
    logits, y = soft_batch(2)
    theirs = monai_losses.TverskyLoss(
        sigmoid=True,
        soft_label=True,
        alpha=0.3,
        beta=0.7,
        smooth_nr=1.0,
        smooth_dr=1.0,
        batch=reduction == "batch",
    )(logits, y)
    assert_close(create_loss("tversky", reduction=reduction)(logits, y), theirs)


@needs_monai_soft_labels
def test_generalized_dice_matches_monai_soft_label():
    # Binary: ours scores [background, foreground] = MONAI softmax over logits [0, x] with
    # the target [1 - y, y]; smooth 0 as in test_losses_parity.
    logits, y = soft_batch(3)
    theirs = monai_losses.GeneralizedDiceLoss(
        softmax=True, soft_label=True, smooth_nr=0.0, smooth_dr=1e-12, batch=True
    )(torch.cat([torch.zeros_like(logits), logits], 1), torch.cat([1 - y, y], 1))
    assert_close(create_loss("generalized_dice", smooth=0.0)(logits, y), theirs)


@needs_monai_soft_labels
def test_bce_dice_matches_bce_plus_monai_soft_dice():
    # MONAI 1.6's DiceCELoss does not pass soft_label on; its two halves are composed here.
    logits, y = soft_batch(4)
    dice = monai_losses.DiceLoss(
        sigmoid=True, soft_label=True, smooth_nr=1.0, smooth_dr=1.0, batch=True
    )(logits, y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    ours = create_loss("bce_dice", lambda_ce=0.7, lambda_dice=1.3)(logits, y)
    assert_close(ours, 0.7 * bce + 1.3 * dice)


def test_dice_jaccard_tversky_match_smp_soft_scores():
    # smp 0.6 scores with |p ∩ y| = (Σp + Σy - |p - y|_1)/2 always; batch-summed counts.
    # Its Dice is Tversky(0.5, 0.5): ours dice with smooth 2s (see test_losses_parity).
    logits, y = soft_batch(5)
    pairs = [
        (create_loss("dice", smooth=2.0), smp_losses.DiceLoss("binary", smooth=1.0)),
        (create_loss("jaccard", smooth=1.0), smp_losses.JaccardLoss("binary", smooth=1.0)),
        (
            create_loss("tversky", smooth=1.0),
            smp_losses.TverskyLoss("binary", alpha=0.3, beta=0.7, gamma=1.0, smooth=1.0),
        ),
    ]
    for ours, theirs in pairs:
        assert_close(ours(logits, y), theirs(logits, y))


# ---------------------------------------------------------------- registry flag
def test_flag_is_on_the_entry_and_false_where_hard_targets_are_needed():
    for name in list_losses():
        entry = get_loss_entry(name)
        if entry.needs or "binary" not in entry.modes:
            assert not entry.soft_targets, name  # distance maps of a mask; class indices
    assert not get_loss_entry("lovasz").soft_targets  # sorts by 0/1 membership
    for name in ("dice", "jaccard", "tversky", "focal_tversky", "log_cosh_dice", "bce_dice"):
        assert get_loss_entry(name).soft_targets


def test_cli_listing_shows_the_flag(cli):
    listing = cli("losses", "*dice*").output
    assert "soft y" in listing
    assert "soft targets: yes" in cli("losses", "--show", "dice").output
    assert "soft targets: no" in cli("losses", "--show", "boundary").output
    assert "class indices" in cli("losses", "--show", "ce").output
