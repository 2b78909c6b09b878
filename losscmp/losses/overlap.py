"""Overlap (region) losses computed from soft counts TP, FP, FN (and TN).

Shared options: ``reduction="batch"`` sums the counts over the batch before
scoring (smp), ``"image"`` scores each image then averages (MONAI) over the images
that have a valid pixel (an all-ignored image is left out, not counted as a 0);
``include_background`` (multiclass: drop class 0; binary's single channel is
the foreground and always scored); ``class_weights`` (weighted mean
Σ w·l / Σ w over the scored classes, given for all C classes); ``ignore_index``;
``smooth``.

Empty-target convention: ``smooth`` is added to numerator and denominator, so
on an image (or batch) without foreground an all-background prediction scores
1 (loss ~0) and an all-foreground prediction scores ~0 (loss ~1). smp instead
zeroes the loss of an empty channel, which hides false positives. The default
``smooth = 1`` (one pixel) is negligible next to the counts of a real object.

Soft targets (binary y in [0, 1]): TP = Σ min(p, y) = (Σ p + Σ y - |p - y|_1)/2,
FP = Σ p - TP, FN = Σ y - TP (Wang & Blaschko 2023, as MONAI's ``soft_label=True``
and smp). With Σ p·y instead, y = 0.5 everywhere makes p -> 1 score better than
p = 0.5; with the min every score is perfect exactly at p = y. On hard targets
min(p, y) = p·y exactly, so values are bit-for-bit the classic ones. Multiclass
targets are class indices (one-hot), where Σ p·y is kept.
"""

from __future__ import annotations

from typing import Literal

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
    binary_target,
    image_mean,
    multiclass_target,
    one_hot,
    probabilities_and_target,
    soft_counts_from_logits,
    sum_dims,
    valid_count,
    weighted_class_mean,
)

Reduction = Literal["batch", "image"]


def safe_pow(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """base**exponent for base >= 0 whose gradient stays finite at 0 when exponent < 1.

    Below EPS the power is replaced by the chord EPS**(exponent-1)·base (continuous at
    EPS, 0 at 0), so a perfect prediction gives 0 and a finite gradient, not NaN.
    """
    if exponent >= 1:
        return base.pow(exponent)
    above = base > EPS
    powered = torch.where(above, base, 1.0).pow(exponent)
    return torch.where(above, powered, base * EPS ** (exponent - 1))


class OverlapLoss(SegLoss):
    """Soft counts -> per-class loss -> class mean -> image mean."""

    needs_true_negatives = False

    def __init__(
        self,
        mode: str,
        params: dict,
        *,
        smooth: float,
        reduction: str,
        include_background: bool,
        ignore_index: int | None,
        class_weights: list[float] | None,
    ) -> None:
        super().__init__(mode, params)
        self.smooth = check_range("smooth", smooth, 0.0)
        if reduction not in ("batch", "image"):
            raise ParameterError(f"reduction must be 'batch' or 'image', got {reduction!r}")
        self.reduction = reduction
        self.include_background = include_background
        self.ignore_index = ignore_index
        self.class_weights = check_class_weights(class_weights)
        if self.class_weights and not sum(self.class_weights[self.first_class :]) > 0:
            # Σ w·l / Σ w over the scored classes would be 0/0: a NaN loss every step.
            raise ParameterError(
                f"class_weights {class_weights} give every scored class weight 0 "
                "(include_background=False leaves out class 0's weight)"
            )

    @property
    def first_class(self) -> int:
        """Channels before this one are not scored (the background in multiclass)."""
        return 0 if self.binary or self.include_background else 1

    def probabilities(self, logits, target):
        probs, y, valid = probabilities_and_target(logits, target, self.binary, self.ignore_index)
        if self.first_class:
            probs, y = probs[:, self.first_class :], y[:, self.first_class :]
        return probs, y, valid

    def targets(self, logits, target):
        """Target as (N, K, H, W) float (one-hot for multiclass) and the valid mask."""
        if self.binary:
            return binary_target(target, self.ignore_index)
        labels, valid = multiclass_target(target, self.ignore_index)
        return one_hot(labels, logits.shape[1], valid), valid

    def count_dims(self, logits) -> tuple[int, ...]:
        return sum_dims(self.reduction, logits.dim())

    def counts(self, logits, target):
        """(TP, FP, FN, TN or None), each (K,) for batch reduction or (N, K) for image,
        and the valid mask (or None)."""
        y, valid = self.targets(logits, target)
        dims = self.count_dims(logits)
        tp, fp, fn = soft_counts_from_logits(logits, y, valid, self.binary, dims)
        if self.first_class:  # background dropped after the softmax, which needs it
            tp, fp, fn = (count[..., self.first_class :] for count in (tp, fp, fn))
        tn = None
        if self.needs_true_negatives:
            tn = (valid_count(valid, logits, dims) - tp - fp - fn).clamp_min(0)
        return tp, fp, fn, tn, valid

    def compute(self, logits, target, maps):
        return self.loss_from_counts(*self.counts(logits, target))

    def loss_from_counts(self, tp, fp, fn, tn=None, valid=None) -> torch.Tensor:
        """The loss from ``counts``' output (a binary compound loss computes the counts
        together with its pixel-wise half)."""
        return self.reduce(self.per_class_loss(tp, fp, fn, tn), valid)

    def reduce(self, per_class: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """Class mean, then (image reduction) the mean over images with a valid pixel."""
        per_image = weighted_class_mean(per_class, self.class_weights, self.first_class)
        return image_mean(per_image, valid)

    def per_class_loss(self, tp, fp, fn, tn) -> torch.Tensor:
        raise NotImplementedError


def ratio_loss(numerator, denominator, smooth):
    """1 - (numerator + s) / (denominator + s), safe when both are 0 and s is 0."""
    return 1 - (numerator + smooth) / (denominator + smooth).clamp_min(EPS)


def dice_loss(tp, fp, fn, smooth):
    return ratio_loss(2 * tp, 2 * tp + fp + fn, smooth)


def tversky_loss(tp, fp, fn, alpha, beta, smooth):
    return ratio_loss(tp, tp + alpha * fp + beta * fn, smooth)


OVERLAP_DEFAULTS = "smooth (default 1), reduction, include_background, class_weights, ignore_index"


class DiceLoss(OverlapLoss):
    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        smooth: float = 1.0,
        squared: bool = False,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
            class_weights=class_weights,
        )
        self.squared = squared

    def compute(self, logits, target, maps):
        if not self.squared:
            return super().compute(logits, target, maps)
        # 1 - (2 Σ p·y + s)/(Σ p² + Σ y² + s) = Σ (p - y)²/(Σ p² + Σ y² + s) for s = 0:
        # minimal at p = y for soft targets as it stands (the L2 form of Wang & Blaschko
        # 2023, MONAI's squared_pred with soft_label). Σ y² is Σ y for hard targets.
        probs, y, valid = self.probabilities(logits, target)
        dims = sum_dims(self.reduction, probs.dim())
        tp = (probs * y).sum(dims)
        denominator = (probs * probs).sum(dims) + (y * y).sum(dims)
        return self.reduce(ratio_loss(2 * tp, denominator, self.smooth), valid)

    def per_class_loss(self, tp, fp, fn, tn):
        return dice_loss(tp, fp, fn, self.smooth)


class JaccardLoss(OverlapLoss):
    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
            class_weights=class_weights,
        )

    def per_class_loss(self, tp, fp, fn, tn):
        return ratio_loss(tp, tp + fp + fn, self.smooth)


class TverskyLoss(OverlapLoss):
    """alpha = beta = 0.5 is Dice (with smooth s/2); alpha = beta = 1 is Jaccard."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
            class_weights=class_weights,
        )
        self.alpha = check_range("alpha", alpha, 0.0)
        self.beta = check_range("beta", beta, 0.0)
        if alpha + beta == 0:
            raise ParameterError("tversky: alpha and beta cannot both be 0")

    def per_class_loss(self, tp, fp, fn, tn):
        return tversky_loss(tp, fp, fn, self.alpha, self.beta, self.smooth)


class FocalTverskyLoss(TverskyLoss):
    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            alpha=alpha,
            beta=beta,
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
        )
        self.params["gamma"] = gamma
        self.gamma = check_range("gamma", gamma, 0.0)
        if gamma == 0:
            raise ParameterError("focal_tversky: gamma must be > 0")

    def per_class_loss(self, tp, fp, fn, tn):
        return safe_pow(super().per_class_loss(tp, fp, fn, tn), self.gamma)


class LogCoshDiceLoss(DiceLoss):
    """Applied to the reduced Dice loss, as in Jadon's code."""

    def compute(self, logits, target, maps):
        return torch.log(torch.cosh(super().compute(logits, target, maps)))


class GeneralizedDiceLoss(OverlapLoss):
    """Binary mode scores background and foreground (Sudre 2017; with one class the
    weights cancel and it is plain Dice). An absent class's infinite weight is replaced
    by the largest finite one (MONAI issue 371); weights are then divided by their
    maximum, which leaves the ratio unchanged and puts ``smooth`` on the scale of the
    rarest present class's pixel count."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
            class_weights=None,
        )
        self.needs_true_negatives = self.binary

    def compute(self, logits, target, maps):
        tp, fp, fn, tn, valid = self.counts(logits, target)
        if self.binary:  # background channel: its TP is TN, its FP is FN and vice versa
            tp, fp, fn = (torch.cat(pair, -1) for pair in ((tn, tp), (fn, fp), (fp, fn)))
        weights = class_weights_from_volume((tp + fn).detach())
        numerator = (weights * 2 * tp).sum(-1)
        denominator = (weights * (2 * tp + fp + fn)).sum(-1)
        return image_mean(ratio_loss(numerator, denominator, self.smooth), valid)


def class_weights_from_volume(volume: torch.Tensor) -> torch.Tensor:
    """1/volume², absent classes get the largest finite weight, divided by the maximum."""
    weights = 1 / volume.square()
    finite = torch.isfinite(weights)
    largest = torch.where(finite, weights, 0).amax(-1, keepdim=True)
    weights = torch.where(finite, weights, largest)
    return torch.where(largest > 0, weights / largest.clamp_min(1e-30), 1.0)


class MCCLoss(OverlapLoss):
    """Soft counts (not rounded predictions: rounding has zero gradient).

    MCC is 0/0 on a target without foreground (TP = FN = 0 zero the numerator and the
    product), whatever the prediction: taken as it stands it would be a constant loss with
    no gradient, blind to false positives on empty images (smp's trap, LOSSES.md) and not
    minimal at a perfect prediction. Such a channel's loss is the soft false-positive rate
    FP / (FP + TN) instead: 0 for an all-background prediction, ~1 for all-foreground, as
    the metric's convention (MCC 1 when perfect, 0 for no information). A target without
    background likewise scores FN / (TP + FN). With the default batch reduction this
    arises when the whole batch lacks a class (multiclass: any class absent from it)."""

    needs_true_negatives = True

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        eps: float = 1e-7,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            smooth=0.0,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
            class_weights=class_weights,
        )
        self.eps = check_range("eps", eps, 0.0)

    def per_class_loss(self, tp, fp, fn, tn):
        numerator = tp * tn - fp * fn
        product = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        # Floored before the sqrt, not after: with eps = 0 a channel without foreground has
        # product 0, and sqrt's backward there is 0/0 = NaN even in the torch.where branch
        # below that discards the value (NaN times a zero gradient is still NaN).
        mcc = numerator / torch.sqrt((product + self.eps).clamp_min(EPS * EPS))
        # |MCC| <= 1 exactly; the clamp only removes float32 rounding on degenerate counts.
        loss = 1 - mcc.clamp(-1.0, 1.0)
        # Exact zeros for hard targets: TP = Σ min(p, 0) = 0 and FN = Σy - TP = 0 without
        # foreground; FP = 0 and TN = n - TP - FN = 0 (the same float) without background.
        positives, negatives = tp + fn, tn + fp
        loss = torch.where(negatives > 0, loss, fn / positives.clamp_min(EPS))
        return torch.where(positives > 0, loss, fp / negatives.clamp_min(EPS))


class F1Loss(OverlapLoss):
    """Algebraically F1 with smooth s equals Dice with smooth 2s; the default s = 0.5
    makes ``f1`` match ``dice`` up to ``eps``."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        smooth: float = 0.5,
        eps: float = 1e-7,
        reduction: Reduction = "batch",
        include_background: bool = True,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            locals(),
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
            class_weights=class_weights,
        )
        self.eps = check_range("eps", eps, 0.0)

    def per_class_loss(self, tp, fp, fn, tn):
        # Denominators floored (as in ``ratio_loss``): with smooth = eps = 0 a channel without
        # foreground is 0/0; it scores F1 0 then, as ``dice`` with smooth 0 does.
        precision = (tp + self.smooth) / (tp + fp + self.smooth + self.eps).clamp_min(EPS)
        recall = (tp + self.smooth) / (tp + fn + self.smooth + self.eps).clamp_min(EPS)
        f1 = 2 * precision * recall / (precision + recall + self.eps).clamp_min(EPS)
        return 1 - f1.clamp(0.0, 1.0)


def lovasz_gradient(fg_sorted: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """Increments of the Jaccard loss along each row of sorted ground truth (Berman alg. 1).

    ``total``: the row's foreground count when ``fg_sorted`` is only a sorted prefix."""
    if total is None:
        total = fg_sorted.sum(-1, keepdim=True)
    cumulative_fg = fg_sorted.cumsum(-1)
    positions = torch.arange(1, fg_sorted.shape[-1] + 1, device=fg_sorted.device)
    intersection = total - cumulative_fg
    union = total + (positions - cumulative_fg)  # >= position >= 1: no division by 0
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], -1)


def lovasz_rows(errors: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Lovász extension per row: sort errors descending, dot with the Jaccard increments."""
    errors_sorted, order = errors.sort(dim=-1, descending=True)
    return (errors_sorted * lovasz_gradient(fg.gather(-1, order))).sum(-1)


class LovaszLoss(SegLoss):
    """All rows (images, or one row for the batch; times classes) are sorted in one call.
    Ignored pixels get an error that sorts last and contributes nothing, so no
    variable-size filtering (and no host sync) is needed."""

    def __init__(
        self, mode: str = BINARY_MODE, *, per_image: bool = False, ignore_index: int | None = None
    ) -> None:
        super().__init__(mode, locals())
        self.per_image = per_image
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        if self.binary:
            return self.hinge(logits, target)
        return self.softmax(logits, target)

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) -> (N·K, H·W) per image, or (K, N·H·W) for the batch."""
        n, k = tensor.shape[:2]
        if self.per_image:
            return tensor.reshape(n * k, -1)
        return tensor.transpose(0, 1).reshape(k, -1)

    def hinge(self, logits, target):
        y, valid = binary_target(target, self.ignore_index)
        errors = 1 - logits * (2 * y - 1)
        if valid is not None:
            errors = torch.where(valid > 0, errors, -1.0)
        if not self.per_image and logits.device.type == "cpu":
            positive = ~(errors <= 0)  # NaN errors kept: a NaN model must show as NaN loss
            if int(positive.sum()) < errors.numel() // 2:
                return self.hinge_of_positive_errors(errors, y, positive)
        # relu before the sort keeps the order (monotone) and the value of the dot product.
        per_row = lovasz_rows(torch.relu(self.rows(errors)), self.rows(y))
        return image_mean(per_row, valid) if self.per_image else per_row.mean()

    @staticmethod
    def hinge_of_positive_errors(errors, fg, positive) -> torch.Tensor:
        """Sort only the positive errors: the others come last in the full order and add 0,
        and the Jaccard increments of the prefix depend only on the prefix and the total
        foreground count. Once a model is half trained most errors are negative and this is
        2-3x faster than sorting everything; for early, mostly wrong predictions the boolean
        indexing costs more than it saves, hence the 1/2 threshold. CPU only: on a GPU the
        count and the indexing would wait for the device every step."""
        errors_sorted, order = errors[positive].sort(descending=True)
        gradient = lovasz_gradient(fg[positive].gather(0, order), total=fg.sum())
        return (errors_sorted * gradient).sum()

    def softmax(self, logits, target):
        labels, valid = multiclass_target(target, self.ignore_index)
        probs = torch.softmax(logits, dim=1)
        fg = one_hot(labels, logits.shape[1], valid)
        errors = (fg - probs).abs()
        if valid is not None:
            errors = errors * valid
        fg_rows = self.rows(fg)
        per_row = lovasz_rows(self.rows(errors), fg_rows)
        present = (fg_rows.sum(-1) > 0).float()
        if not self.per_image:
            return (per_row * present).sum() / present.sum().clamp_min(1)
        per_image = (per_row * present).view(logits.shape[0], -1).sum(-1)
        present_per_image = present.view(logits.shape[0], -1).sum(-1)
        return image_mean(per_image / present_per_image.clamp_min(1), valid)
