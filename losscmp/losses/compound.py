"""Compound losses: weighted sums of a pixel-wise and an overlap loss.

They reuse the family modules' losses as sub-modules and call their
``compute`` directly (inputs are already checked and in float32).
"""

from __future__ import annotations

import torch

from losscmp.errors import ParameterError
from losscmp.losses.base import (
    BINARY_MODE,
    SegLoss,
    check_class_weights,
    check_range,
)
from losscmp.losses.functional import (
    EPS,
    binary_cross_entropy,
    binary_target,
    image_mean,
    log_sigmoid,
    masked_mean,
    multiclass_target,
    one_hot,
    sigmoid_focal_sum_and_counts,
    soft_intersection,
    sum_dims,
    valid_pixels,
)
from losscmp.losses.overlap import DiceLoss, Reduction, ratio_loss, safe_pow
from losscmp.losses.pixel import BCELoss, CELoss, FocalLoss, TopKCELoss


def dice_part(mode, smooth, reduction, include_background, class_weights, ignore_index):
    return DiceLoss(
        mode,
        smooth=smooth,
        reduction=reduction,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
    )


class CrossEntropyDiceLoss(SegLoss):
    """λ_ce·(B)CE + λ_dice·Dice; shared by ``bce_dice`` (binary) and ``ce_dice``."""

    def __init__(
        self,
        mode,
        params,
        *,
        lambda_ce,
        lambda_dice,
        smooth,
        reduction,
        include_background,
        class_weights,
        ignore_index,
    ) -> None:
        super().__init__(mode, params)
        self.lambda_ce = check_range("lambda_ce", lambda_ce, 0.0)
        self.lambda_dice = check_range("lambda_dice", lambda_dice, 0.0)
        if lambda_ce + lambda_dice == 0:  # a loss of 0 always: nothing would train
            raise ParameterError("lambda_ce and lambda_dice cannot both be 0")
        if self.binary:
            self.cross_entropy: SegLoss = BCELoss(mode, ignore_index=ignore_index)
        else:
            self.cross_entropy = CELoss(
                mode, class_weights=class_weights, ignore_index=ignore_index
            )
        self.dice = dice_part(
            mode, smooth, reduction, include_background, class_weights, ignore_index
        )

    def compute(self, logits, target, maps):
        if self.binary:
            # Both halves from one sigmoid, in one fused pass with one backward.
            y, valid = binary_target(target, self.dice.ignore_index)
            dims = self.dice.count_dims(logits)
            total, *counts = sigmoid_focal_sum_and_counts(logits, y, valid, 0.0, valid, dims)
            cross_entropy = total / valid_pixels(valid, logits)
            dice = self.dice.loss_from_counts(*counts, valid=valid)
        else:
            cross_entropy = self.cross_entropy.compute(logits, target, maps)
            dice = self.dice.compute(logits, target, maps)
        return self.lambda_ce * cross_entropy + self.lambda_dice * dice


class BCEDiceLoss(CrossEntropyDiceLoss):
    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        lambda_ce: float = 1.0,
        lambda_dice: float = 1.0,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            lambda_ce=lambda_ce,
            lambda_dice=lambda_dice,
            smooth=smooth,
            reduction=reduction,
            include_background=True,
            class_weights=None,
            ignore_index=ignore_index,
        )


class CEDiceLoss(CrossEntropyDiceLoss):
    """``class_weights`` weigh both terms (CE's weighted mean and Dice's class mean)."""

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        lambda_ce: float = 1.0,
        lambda_dice: float = 1.0,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            lambda_ce=lambda_ce,
            lambda_dice=lambda_dice,
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            class_weights=check_class_weights(class_weights),
            ignore_index=ignore_index,
        )


class DiceFocalLoss(SegLoss):
    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        lambda_dice: float = 0.5,
        gamma: float = 2.0,
        alpha: float | list[float] | None = None,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.lambda_dice = check_range("lambda_dice", lambda_dice, 0.0, 1.0)
        self.dice = dice_part(mode, smooth, reduction, include_background, None, ignore_index)
        self.focal = FocalLoss(mode, gamma=gamma, alpha=alpha, ignore_index=ignore_index)

    def compute(self, logits, target, maps):
        if self.binary:
            # Both halves from one sigmoid, in one fused pass with one backward.
            y, valid = binary_target(target, self.dice.ignore_index)
            weight = self.focal.binary_weight(y, valid)
            total, *counts = sigmoid_focal_sum_and_counts(
                logits, y, weight, self.focal.gamma, valid, self.dice.count_dims(logits)
            )
            focal = total / valid_pixels(valid, logits)
            dice = self.dice.loss_from_counts(*counts, valid=valid)
        else:
            dice = self.dice.compute(logits, target, maps)
            focal = self.focal.compute(logits, target, maps)
        return self.lambda_dice * dice + (1 - self.lambda_dice) * focal


class DiceTopKLoss(SegLoss):
    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        k: float = 10.0,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.dice = dice_part(mode, smooth, reduction, include_background, None, ignore_index)
        self.topk = TopKCELoss(mode, k=k, ignore_index=ignore_index)

    def compute(self, logits, target, maps):
        return self.dice.compute(logits, target, maps) + self.topk.compute(logits, target, maps)


def log_one_minus_softmax(log_probs: torch.Tensor) -> torch.Tensor:
    """log(1 - p_c) for every class without the cancellation of 1 - p_c near p_c = 1.

    Only a class with p_c > 1/2 can suffer from it, and there 1 - p_c is exactly the sum
    of the other probabilities, all <= 1/2. Floored at 1e-38 (a logit margin above 87),
    where the value is capped and the term's gradient vanishes. Channel reductions other
    than sum (argmax, logsumexp) are avoided: they are 5-30x slower on CPU.
    """
    probs = log_probs.exp()
    # 0/1 float mask: boolean masks and torch.where are several times slower here.
    dominant = (probs - 0.5).sign_().relu_()
    others = (probs - probs * dominant).sum(1, keepdim=True)
    one_minus = torch.lerp(1 - probs, others.expand_as(probs), dominant)
    return one_minus.clamp_min(1e-38).log()


class ComboLoss(SegLoss):
    """The paper's α·WCE − (1−α)·DSC plus the constant (1−α): same gradients, >= 0,
    0 at a perfect prediction. Multiclass: WCE per class channel (one-vs-rest on the
    softmax probabilities), mean over pixels and classes."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        self.beta = check_range("beta", beta, 0.0, 1.0)
        self.ignore_index = ignore_index
        self.dice = dice_part(mode, smooth, reduction, include_background, None, ignore_index)

    def weighted_cross_entropy(self, logits, target):
        if self.binary:
            y, valid = binary_target(target, self.ignore_index)
            loss = binary_cross_entropy(logits, y, self.beta, 1 - self.beta)
            return masked_mean(loss, valid)
        labels, valid = multiclass_target(target, self.ignore_index)
        y = one_hot(labels, logits.shape[1], None)
        log_probs = torch.log_softmax(logits, 1)
        per_pixel = -(
            self.beta * y * log_probs + (1 - self.beta) * (1 - y) * log_one_minus_softmax(log_probs)
        ).mean(1, keepdim=True)
        return masked_mean(per_pixel, valid)

    def compute(self, logits, target, maps):
        dice = self.dice.compute(logits, target, maps)
        return self.alpha * self.weighted_cross_entropy(logits, target) + (1 - self.alpha) * dice


class UnifiedFocalLoss(SegLoss):
    """Following the authors' code (channel 0 = background; binary uses [1-p, p]):

    L_maF = mean over pixels of -(1-δ)(1-p_0)^γ y_0 log p_0 - δ Σ_{c>=1} y_c log p_c
    L_maFTL = mean over classes of (1 - mTI_0) and (1 - mTI_c)^(1-γ) for c >= 1,
    mTI_c = (TP + s)/(TP + δ FN + (1-δ) FP + s).
    """

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        lambda_focal: float = 0.5,
        delta: float = 0.6,
        gamma: float = 0.5,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.lambda_focal = check_range("lambda_focal", lambda_focal, 0.0, 1.0)
        self.delta = check_range("delta", delta, 0.0, 1.0)
        self.gamma = check_range("gamma", gamma, 0.0, 1.0)
        self.smooth = check_range("smooth", smooth, 0.0)
        if reduction not in ("batch", "image"):
            raise ParameterError(f"reduction must be 'batch' or 'image', got {reduction!r}")
        self.reduction = reduction
        self.ignore_index = ignore_index

    def log_probs_and_target(self, logits, target):
        """(N, K, H, W) log-probabilities and one-hot target with K >= 2, and the mask."""
        if self.binary:
            y, valid = binary_target(target, self.ignore_index)
            log_p = log_sigmoid(logits)
            log_probs = torch.cat([log_p - logits, log_p], 1)
            y = torch.cat([1 - y, y], 1)
            if valid is not None:
                y = y * valid
            return log_probs, y, valid
        labels, valid = multiclass_target(target, self.ignore_index)
        return torch.log_softmax(logits, 1), one_hot(labels, logits.shape[1], valid), valid

    def compute(self, logits, target, maps):
        log_probs, y, valid = self.log_probs_and_target(logits, target)
        probs = log_probs.exp()
        if valid is not None:
            probs = probs * valid
        focal = self.asymmetric_focal(log_probs, probs, y, valid)
        tversky = self.asymmetric_focal_tversky(probs, y, valid)
        return self.lambda_focal * focal + (1 - self.lambda_focal) * tversky

    def asymmetric_focal(self, log_probs, probs, y, valid):
        # (1 - p_0)^γ, floored so that γ < 1 keeps a finite gradient; it multiplies
        # y_0 log p_0, which vanishes where the floor applies.
        background_factor = (1 - probs[:, :1]).clamp_min(EPS).pow(self.gamma)
        background = (1 - self.delta) * background_factor * y[:, :1] * log_probs[:, :1]
        foreground = self.delta * (y[:, 1:] * log_probs[:, 1:]).sum(1, keepdim=True)
        return masked_mean(-(background + foreground), valid)

    def asymmetric_focal_tversky(self, probs, y, valid=None):
        dims = sum_dims(self.reduction, probs.dim())
        # Binary: y = [1 - y, y] may be soft; multiclass: one-hot, where p·y is the same.
        tp = soft_intersection(probs, y, dims) if self.binary else (probs * y).sum(dims)
        fp = probs.sum(dims) - tp
        fn = y.sum(dims) - tp
        # Tversky-index loss with delta on FN, 1 - delta on FP.
        loss = ratio_loss(tp, tp + self.delta * fn + (1 - self.delta) * fp, self.smooth)
        enhanced = torch.cat([loss[..., :1], safe_pow(loss[..., 1:], 1 - self.gamma)], -1)
        return image_mean(enhanced.mean(-1), valid)
