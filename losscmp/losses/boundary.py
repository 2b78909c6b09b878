"""Boundary losses: they need the target's signed distance map (``signed_distance``).

The data pipeline computes it once per sample (``distance.target_maps``); when a
caller does not pass it, it is computed here from the target on the CPU (slow).
"""

from __future__ import annotations

import numpy as np
import torch

from losscmp.losses.base import (
    BINARY_MODE,
    SIGNED_DISTANCE,
    SegLoss,
    check_range,
)
from losscmp.losses.distance import (
    prediction_distance,
    torch_prediction_distance,
)
from losscmp.losses.functional import masked_mean, probabilities_and_target
from losscmp.losses.overlap import DiceLoss, Reduction


class BoundaryLoss(SegLoss):
    """Schedule: ``alpha = alpha_start + (alpha_end - alpha_start)·f``, f = the fraction
    given to ``set_progress`` (the trainer passes (epoch - 1) / (epochs - 1), so the first
    epoch uses 0.01 and the last 1) clipped to [0, 1]; f = 0 until ``set_progress`` is
    called.

    Boundary term: mean over pixels (and, multiclass, over the foreground classes 1..C-1,
    as in Kervadec's code) of φ_G·(p − y). φ_G is in pixels; the − y term is a constant
    that makes the term >= 0 with 0 at p = y without changing the paper's gradient.
    """

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        alpha_start: float = 0.01,
        alpha_end: float = 1.0,
        smooth: float = 1.0,
        reduction: Reduction = "batch",
        include_background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.alpha_start = check_range("alpha_start", alpha_start, 0.0)
        self.alpha_end = check_range("alpha_end", alpha_end, 0.0)
        self.ignore_index = ignore_index
        self.dice = DiceLoss(
            mode,
            smooth=smooth,
            reduction=reduction,
            include_background=include_background,
            ignore_index=ignore_index,
        )
        self.progress = 0.0

    @property
    def alpha(self) -> float:
        return self.alpha_start + (self.alpha_end - self.alpha_start) * self.progress

    def set_progress(self, fraction: float) -> None:
        self.progress = min(max(float(fraction), 0.0), 1.0)

    def compute(self, logits, target, maps):
        distance = self.target_map(SIGNED_DISTANCE, logits, target, maps)
        probs, y, valid = probabilities_and_target(logits, target, self.binary, self.ignore_index)
        if not self.binary:  # foreground classes only
            probs, y, distance = probs[:, 1:], y[:, 1:], distance[:, 1:]
        boundary = masked_mean(distance * (probs - y), valid)
        return self.dice.compute(logits, target, maps) + self.alpha * boundary


class HausdorffDTLoss(SegLoss):
    """d_G = |signed_distance| (distance to the target boundary), d_P the same for the
    thresholded prediction (p > 0.5 per channel, as MONAI), recomputed every step and
    detached. Channels without a boundary get d = 0 (MONAI's field), except where neither
    the target nor the prediction has one and they disagree (an empty target predicted all
    foreground, a full one all background): d_G is then the distance to the image's frame,
    as if the missing boundary lay just outside it (``frame_distance``). With d = 0 there
    such a wholly wrong image scored 0, below one with a single pixel right, and had no
    gradient (LOSSES.md: an empty target must not hide false positives). d_P is exact:
    scipy per image on the CPU, a torch transform on a GPU (see
    ``predicted_boundary_distance``); its cost is part of the timings in
    ``benchmarks/losses.py``."""

    def __init__(
        self,
        mode: str = BINARY_MODE,
        *,
        alpha: float = 2.0,
        include_background: bool = True,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(mode, locals())
        self.alpha = check_range("alpha", alpha, 0.0)
        self.include_background = include_background
        self.ignore_index = ignore_index

    def compute(self, logits, target, maps):
        target_distance = self.target_map(SIGNED_DISTANCE, logits, target, maps).abs()
        probs, y, valid = probabilities_and_target(logits, target, self.binary, self.ignore_index)
        if not (self.binary or self.include_background):
            probs, y, target_distance = probs[:, 1:], y[:, 1:], target_distance[:, 1:]
        predicted_distance = predicted_boundary_distance(probs.detach())
        target_distance = with_frame_where_wholly_wrong(
            target_distance, predicted_distance, probs.detach(), y
        )
        weight = target_distance.pow(self.alpha) + predicted_distance.pow(self.alpha)
        return masked_mean((probs - y).square() * weight, valid)


def with_frame_where_wholly_wrong(target_distance, predicted_distance, probs, y):
    """``target_distance`` with ``frame_distance`` in each (image, channel) where neither
    distance field has a boundary (all zero) and the thresholded prediction differs from
    the target: both masks are then constant, so it is wrong at every pixel."""
    spatial = (-2, -1)
    no_boundary = (target_distance.amax(spatial) == 0) & (predicted_distance.amax(spatial) == 0)
    wrong = ((probs > 0.5) != (y > 0.5)).any(-1).any(-1)
    frame = frame_distance(*target_distance.shape[-2:], device=target_distance.device)
    return torch.where((no_boundary & wrong)[..., None, None], frame, target_distance)


def frame_distance(height: int, width: int, device) -> torch.Tensor:
    """(H, W): each pixel's distance to the nearest pixel outside the image (>= 1), the
    exact EDT of a mask framed by one pixel of the other class."""
    rows = torch.arange(height, device=device, dtype=torch.float32)
    columns = torch.arange(width, device=device, dtype=torch.float32)
    to_row_edge = torch.minimum(rows + 1, height - rows).view(-1, 1)
    to_column_edge = torch.minimum(columns + 1, width - columns).view(1, -1)
    return torch.minimum(to_row_edge, to_column_edge)


def predicted_boundary_distance(probs: torch.Tensor) -> torch.Tensor:
    """Unsigned distance to the boundary of ``probs > 0.5`` per image and channel.

    CPU tensors: scipy, one exact 2-D transform per image and direction. Accelerators
    (CUDA, MPS): an exact brute-force transform in torch on the device
    (``torch_prediction_distance``), which avoids copying the batch to the host and back,
    and waiting for the device, every step."""
    foreground = (probs > 0.5).flatten(0, 1)
    if probs.device.type != "cpu":
        return torch_prediction_distance(foreground).view(probs.shape)
    field = prediction_distance(np.ascontiguousarray(foreground.numpy()))
    return torch.from_numpy(field).view(probs.shape)
