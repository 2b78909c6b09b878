"""Overlap of prediction and ground truth: Dice and IoU. No ground truth and no
prediction -> 1.0 (nothing to find and nothing claimed is a perfect answer)."""

from __future__ import annotations

from losscmp.scores import ratio


def dice(tp, fp, fn, tn):
    """2 tp / (2 tp + fp + fn)."""
    return ratio(2 * tp, 2 * tp + fp + fn, 1.0)


def iou(tp, fp, fn, tn):
    """tp / (tp + fp + fn), the Jaccard index."""
    return ratio(tp, tp + fp + fn, 1.0)
