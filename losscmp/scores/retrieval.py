"""Precision and recall of the foreground. A zero denominator (no predicted, or no actual,
positives): 1.0 when the other error count is also zero (the prediction agrees with the
ground truth), else 0.0."""

from __future__ import annotations

from losscmp.scores import ratio


def precision(tp, fp, fn, tn):
    """tp / (tp + fp)."""
    return ratio(tp, tp + fp, (fn == 0).to(tp.dtype))


def recall(tp, fp, fn, tn):
    """tp / (tp + fn)."""
    return ratio(tp, tp + fn, (fp == 0).to(tp.dtype))
