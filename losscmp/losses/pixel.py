"""Pixel-wise (distribution) losses: cross-entropy and its weighted/focused variants.

Every value is a mean over valid pixels (ignored pixels are excluded from the
sum and from the count); an all-ignored batch gives 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from losscmp.devices import device_constant
from losscmp.errors import ParameterError
from losscmp.losses.base import (
    BINARY_MODE,
    OBJECT_DISTANCE,
    SegLoss,
    check_class_weights,
    check_positive,
    check_range,
)
from losscmp.losses.functional import (
    binary_cross_entropy,
    binary_target,
    log_prob_of_target,
    masked_mean,
    multiclass_target,
    one_minus_exp,
    pixel_cross_entropy,
    sigmoid_focal_sum,
    valid_pixels,
)


class BCELoss(SegLoss):
    def __init__(self, mode: str = BINARY_MODE, *, ignore_index: int | None = None) -> None:
        super().__init__(mode, locals())
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        y, valid = binary_target(target, self.ignore_index)
        return sigmoid_focal_sum(logits, y, valid) / valid_pixels(valid, logits)


def cross_entropy_mean(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int | None,
    class_weights: list[float] | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multiclass CE: weighted mean Σ w_y·l / Σ w_y over valid pixels; 0 if all are ignored."""
    weight = None
    if class_weights is not None:
        if len(class_weights) != logits.shape[1]:
            raise ParameterError(
                f"class_weights has {len(class_weights)} values but the model predicts "
                f"{logits.shape[1]} classes"
            )
        weight = device_constant(class_weights, logits.device)
    total = F.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=-100 if ignore_index is None else ignore_index,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    labels, valid = multiclass_target(target, ignore_index)
    if weight is None:
        pixels = torch.full((), float(target.numel()), device=logits.device)  # no host copy
        count = pixels if valid is None else valid.sum()
    else:
        pixel_weight = weight[labels]
        count = pixel_weight.sum() if valid is None else (pixel_weight * valid[:, 0]).sum()
    return total / count.clamp_min(1e-12)


class CELoss(SegLoss):
    def __init__(
        self,
        mode: str = "multiclass",
        *,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.class_weights = check_class_weights(class_weights)
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        return cross_entropy_mean(
            logits, target, ignore_index=self.ignore_index, class_weights=self.class_weights
        )


class WeightedBCELoss(SegLoss):
    """``beta="auto"`` takes N_neg / N_pos from ``fit(class_pixel_counts)``; until ``fit``
    is called it uses the current batch's ratio (so the Python API works without it)."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        beta: float | Literal["auto"] = "auto",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        if beta != "auto":
            check_positive("beta", beta)
        self.beta = beta
        self.fitted_beta: float | None = None
        self.ignore_index = ignore_index

    def fit(self, class_pixel_counts: torch.Tensor) -> None:
        if self.beta == "auto":
            negatives, positives = (float(c) for c in class_pixel_counts[:2])
            self.fitted_beta = negatives / positives if positives > 0 else 1.0
            self.params["fitted_beta"] = self.fitted_beta

    def current_beta(self, y: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor | float:
        if self.beta != "auto":
            return self.beta
        if self.fitted_beta is not None:
            return self.fitted_beta
        count = y.numel() if valid is None else valid.sum()
        positives = y.sum()
        return torch.where(positives > 0, (count - positives) / positives.clamp_min(1), 1.0)

    def compute(self, logits, target, maps):
        y, valid = binary_target(target, self.ignore_index)
        loss = binary_cross_entropy(logits, y, positive_weight=self.current_beta(y, valid))
        return masked_mean(loss, valid)


class BalancedBCELoss(SegLoss):
    def __init__(
        self, mode: str = BINARY_MODE, *, epsilon: float = 1e-6, ignore_index: int | None = None
    ) -> None:
        super().__init__(mode, locals())
        if not 0 < epsilon <= 0.5:
            # 0 lets beta reach 1 (LOSSES.md, seed 002's trap): an all-negative batch then
            # weighs its negatives by 0, a loss of 0 whatever the prediction.
            raise ParameterError(f"epsilon must be > 0 and <= 0.5, got {epsilon}")
        self.epsilon = epsilon
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        y, valid = binary_target(target, self.ignore_index)
        count = y.numel() if valid is None else valid.sum().clamp_min(1)
        # beta = share of negatives; clipped because an all-negative batch gives beta = 1.
        beta = (1 - y.sum() / count).clamp(self.epsilon, 1 - self.epsilon).detach()
        return masked_mean(binary_cross_entropy(logits, y, beta, 1 - beta), valid)


class SoftBCELoss(SegLoss):
    """Its minimum is at p = y', not at a confident prediction (that is the point)."""

    def __init__(
        self, mode: str = BINARY_MODE, *, epsilon: float = 0.1, ignore_index: int | None = None
    ) -> None:
        super().__init__(mode, locals())
        self.epsilon = check_range("epsilon", epsilon, 0.0, 1.0)
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        y, valid = binary_target(target, self.ignore_index)
        smoothed = y * (1 - self.epsilon) + self.epsilon / 2
        return masked_mean(binary_cross_entropy(logits, smoothed), valid)


class LabelSmoothingCELoss(SegLoss):
    """eps/K on every class, the true one included (torch); not eps/(K-1) on the others."""

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        epsilon: float = 0.1,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.epsilon = check_range("epsilon", epsilon, 0.0, 1.0)
        self.class_weights = check_class_weights(class_weights)
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        return cross_entropy_mean(
            logits,
            target,
            ignore_index=self.ignore_index,
            class_weights=self.class_weights,
            label_smoothing=self.epsilon,
        )


class FocalLoss(SegLoss):
    """Binary: ``alpha`` weighs positives (1-alpha the negatives); None disables it.
    Multiclass: softmax p_t of the true class; ``alpha`` a list of per-class weights,
    or one number meaning 1-alpha for the background and alpha for every other class."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        gamma: float = 2.0,
        alpha: float | list[float] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.gamma = check_range("gamma", gamma, 0.0)
        if isinstance(alpha, list):
            if self.binary:
                raise ParameterError("focal: binary mode takes one alpha, not a list")
            for value in alpha:
                check_range("alpha", value, 0.0, 1.0)
        elif alpha is not None:
            check_range("alpha", alpha, 0.0, 1.0)
        self.alpha = alpha
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        if self.binary:
            # -log p_t = BCE and 1 - p_t = |y - p|: one fused pass, analytic backward.
            y, valid = binary_target(target, self.ignore_index)
            total = sigmoid_focal_sum(logits, y, self.binary_weight(y, valid), self.gamma)
            return total / valid_pixels(valid, logits)
        logpt, labels, valid = log_prob_of_target(logits, target, False, self.ignore_index)
        loss, not_pt = -logpt, one_minus_exp(logpt)
        if self.gamma:
            loss = loss * (not_pt.square() if self.gamma == 2 else not_pt.pow(self.gamma))
        if self.alpha is not None:
            loss = loss * self.alpha_of_target(labels, logits.shape[1])
        return masked_mean(loss, valid)

    def binary_weight(self, y: torch.Tensor, valid: torch.Tensor | None):
        """Per-pixel weight of the binary focal sum: alpha_t times the valid mask, or None."""
        if self.alpha is None:
            return valid
        weight = self.alpha_of_target(y, 1)
        return weight if valid is None else weight.mul_(valid)

    def alpha_of_target(self, labels: torch.Tensor, num_channels: int) -> torch.Tensor:
        if self.binary:
            return self.alpha * labels + (1 - self.alpha) * (1 - labels)
        if isinstance(self.alpha, list):
            if len(self.alpha) != num_channels:
                raise ParameterError(
                    f"focal: alpha has {len(self.alpha)} values for {num_channels} classes"
                )
            per_class = device_constant(self.alpha, labels.device)
        else:
            per_class = torch.full((num_channels,), self.alpha, device=labels.device)
            per_class[0] = 1 - self.alpha
        return per_class[labels].unsqueeze(1)


def top_fraction_mean(per_pixel: torch.Tensor, valid: torch.Tensor | None, percent: float):
    """Mean of the ``percent`` % largest values among valid pixels (whole batch)."""
    flat = per_pixel.flatten()
    if valid is None:
        return flat.topk(top_count(flat.numel(), percent), sorted=False).values.mean()
    # Losses are >= 0, so ignored pixels set to -1 are never among the top.
    flat = torch.where(valid.expand_as(per_pixel).flatten() > 0, flat, -1.0)
    if flat.device.type != "cpu":
        return top_fraction_mean_on_device(flat, valid, percent)
    count = int(valid.sum())
    if count == 0:
        return per_pixel.sum() * 0.0
    return flat.topk(top_count(count, percent), sorted=False).values.mean()


def top_count(count: int, percent: float) -> int:
    return max(1, math.ceil(count * percent / 100))


def top_fraction_mean_on_device(flat: torch.Tensor, valid: torch.Tensor, percent: float):
    """``top_fraction_mean`` without reading the number of valid pixels back to the host,
    which would wait for the device every step: take the sorted top of the most pixels k
    can be (all valid) and average its first k, k staying a tensor. Same k (the same
    float64 arithmetic, but float32 on MPS), same values; on the CPU the sort costs more
    than the sync, so the CPU counts on the host."""
    precision = torch.float32 if flat.device.type == "mps" else torch.float64
    count = valid.sum(dtype=precision)
    wanted = torch.ceil(count * percent / 100).clamp_min(1).to(flat.dtype)
    top = flat.topk(top_count(flat.numel(), percent), sorted=True).values
    kept = torch.arange(top.numel(), device=top.device) < wanted
    return torch.where(kept, top, 0.0).sum() / wanted * (count > 0)


class TopKCELoss(SegLoss):
    def __init__(
        self, mode: str = BINARY_MODE, *, k: float = 10.0, ignore_index: int | None = None
    ) -> None:
        super().__init__(mode, locals())
        if not 0 < k <= 100:
            raise ParameterError(f"k is a percentage in (0, 100], got {k}")
        self.k = k
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        loss, valid = pixel_cross_entropy(logits, target, self.binary, self.ignore_index)
        return top_fraction_mean(loss, valid, self.k)


class DistanceWeightedBCELoss(SegLoss):
    """d1 + d2 is the ``object_distance`` map (distances to the nearest and second-nearest
    connected component; inf with fewer than two objects, so the term vanishes).
    w_c(x) = n / (K·n_{y(x)}) over the batch's valid pixels, K the number of classes
    present in the batch (so a batch of one class weighs 1), i.e. sklearn's "balanced"
    class weights; 1 everywhere with ``class_balance=False``."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        w0: float = 10.0,
        sigma: float = 5.0,
        class_balance: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.w0 = check_range("w0", w0, 0.0)
        self.sigma = check_positive("sigma", sigma)
        self.class_balance = class_balance
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        distance = self.target_map(OBJECT_DISTANCE, logits, target, maps)
        # 2σ² as two divisions: it overflows a float for a (silly but accepted) huge σ.
        weight = self.w0 * torch.exp(-(distance**2) / (2 * self.sigma) / self.sigma)
        loss, valid = pixel_cross_entropy(logits, target, self.binary, self.ignore_index)
        weight = weight + self.class_weight_map(target, logits.shape[1])
        return masked_mean(loss * weight, valid)

    def class_weight_map(self, target: torch.Tensor, num_channels: int):
        if not self.class_balance:
            return 1.0
        if self.binary:
            y, valid = binary_target(target, self.ignore_index)
            labels = y.long()
            num_classes = 2
        else:
            labels, valid = multiclass_target(target, self.ignore_index)
            labels = labels.unsqueeze(1)
            num_classes = num_channels
        counted = torch.ones_like(labels, dtype=torch.float32) if valid is None else valid
        counts = torch.zeros(num_classes, device=labels.device).scatter_add_(
            0, labels.flatten(), counted.flatten()
        )
        present = (counts > 0).sum()
        per_class = counts.sum() / (present * counts).clamp_min(1)
        return per_class[labels]
