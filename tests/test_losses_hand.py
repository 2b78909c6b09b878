"""Hand-computed values for loss, mode and edge combinations the other files do not pin:
multiclass focal's alpha forms, weighted label smoothing, multiclass Combo, Generalized
Dice with an absent class, and the binary pixel losses next to ignored pixels.

Expected values come from LOSSES.md's formulas written out in numpy, never from the code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from losscmp.losses import create_loss

IGNORE = 255

# One image of four pixels (2x2), three classes; the last pixel is ignored.
MULTICLASS_LOGITS = np.array(
    [[2.0, 0.5, -1.0, 0.3], [0.1, 1.5, 0.2, -0.4], [-0.5, 0.0, 1.0, 2.0]]
)  # (C, pixels)
LABELS = np.array([0, 1, 2, IGNORE])
SCORED = LABELS != IGNORE


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(0))
    return exp / exp.sum(0)


PROBS = softmax(MULTICLASS_LOGITS)
ONE_HOT = np.eye(3)[:, np.minimum(LABELS, 2)] * SCORED  # (C, pixels), 0 where ignored
P_TRUE = PROBS[LABELS[SCORED], np.flatnonzero(SCORED)]


def multiclass_loss(name: str, labels: np.ndarray = LABELS, **params) -> float:
    logits = torch.tensor(MULTICLASS_LOGITS, dtype=torch.float32).view(1, 3, 2, 2)
    target = torch.tensor(labels).view(1, 2, 2)
    loss = create_loss(name, mode="multiclass", ignore_index=IGNORE, **params)
    return loss(logits, target).item()


@pytest.mark.parametrize(
    ("alpha", "gamma", "per_class"),
    [
        ([0.2, 0.3, 0.5], 2.0, [0.2, 0.3, 0.5]),
        (0.25, 2.0, [0.75, 0.25, 0.25]),  # one number: 1 - alpha for the background
        (None, 0.5, [1.0, 1.0, 1.0]),
    ],
)
def test_multiclass_focal_by_hand(alpha, gamma, per_class):
    weights = np.array(per_class)[LABELS[SCORED]]
    expected = np.mean(-weights * (1 - P_TRUE) ** gamma * np.log(P_TRUE))
    value = multiclass_loss("focal", alpha=alpha, gamma=gamma)
    assert value == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_ce_with_class_weights_by_hand():
    # torch's convention: per pixel (1-eps)·w_y·(-log p_y) + eps/K·Σ_c w_c·(-log p_c),
    # summed over valid pixels and divided by Σ w_y.
    weights, epsilon = np.array([0.5, 1.0, 2.0]), 0.1
    neg_log = -np.log(PROBS[:, SCORED])
    labels = LABELS[SCORED]
    true_term = (1 - epsilon) * weights[labels] * neg_log[labels, np.arange(3)]
    smooth_term = epsilon / 3 * (weights[:, None] * neg_log).sum(0)
    expected = (true_term + smooth_term).sum() / weights[labels].sum()
    value = multiclass_loss("label_smoothing_ce", class_weights=[0.5, 1.0, 2.0])
    assert value == pytest.approx(expected, rel=1e-5)


def test_multiclass_combo_by_hand():
    # WCE one-vs-rest per class channel, mean over classes and valid pixels; Dice per class.
    beta = 0.5
    wce = -(beta * ONE_HOT * np.log(PROBS) + (1 - beta) * (1 - ONE_HOT) * np.log(1 - PROBS))
    wce = wce.mean(0)[SCORED].mean()
    probs = PROBS * SCORED
    tp = (probs * ONE_HOT).sum(1)
    fp, fn = probs.sum(1) - tp, ONE_HOT.sum(1) - tp
    dice = np.mean(1 - 2 * tp / (2 * tp + fp + fn))
    assert multiclass_loss("combo", smooth=0.0) == pytest.approx(0.5 * wce + 0.5 * dice, rel=1e-5)


def test_generalized_dice_with_an_absent_class_by_hand():
    # Labels [0, 0, 1, ignored]: class 2 is absent; its infinite weight 1/0² becomes the
    # largest finite one, 1/1² (class 1's).
    labels = np.array([0, 0, 1, IGNORE])
    one_hot = np.stack([(labels == c) for c in range(3)]).astype(float)
    probs = PROBS * (labels != IGNORE)
    tp = (probs * one_hot).sum(1)
    fp, fn = probs.sum(1) - tp, one_hot.sum(1) - tp
    weights = np.array([1 / 4, 1.0, 1.0])
    expected = 1 - 2 * (weights * tp).sum() / (weights * (2 * tp + fp + fn)).sum()
    assert multiclass_loss("generalized_dice", labels, smooth=0.0) == pytest.approx(
        expected, rel=1e-5
    )


# Binary: logits [0.3, -0.2, 1.0, 5.0], target [1, 0, 0, ignored].
BINARY_LOGITS = torch.tensor([0.3, -0.2, 1.0, 5.0]).view(1, 1, 2, 2)
BINARY_TARGET = torch.tensor([1.0, 0.0, 0.0, IGNORE]).view(1, 1, 2, 2)
P = 1 / (1 + np.exp(-np.array([0.3, -0.2, 1.0])))  # the three valid pixels
Y = np.array([1.0, 0.0, 0.0])


def binary_loss(name: str, **params) -> float:
    loss = create_loss(name, ignore_index=IGNORE, **params)
    return loss(BINARY_LOGITS, BINARY_TARGET).item()


def weighted_bce(positive: float, negative: float, y: np.ndarray = Y) -> float:
    return float(np.mean(-(positive * y * np.log(P) + negative * (1 - y) * np.log(1 - P))))


def test_binary_pixel_losses_next_to_ignored_pixels_by_hand():
    # Counts over the 3 valid pixels only: 1 positive, 2 negatives.
    assert binary_loss("weighted_bce") == pytest.approx(weighted_bce(2.0, 1.0), rel=1e-5)
    assert binary_loss("balanced_bce") == pytest.approx(weighted_bce(2 / 3, 1 / 3), rel=1e-5)
    smoothed = Y * 0.9 + 0.05
    assert binary_loss("soft_bce") == pytest.approx(weighted_bce(1, 1, smoothed), rel=1e-5)
    p_true = np.where(Y == 1, P, 1 - P)
    alpha_t = np.where(Y == 1, 0.25, 0.75)
    focal = np.mean(-alpha_t * (1 - p_true) ** 2 * np.log(p_true))
    assert binary_loss("focal", alpha=0.25) == pytest.approx(focal, rel=1e-5)
