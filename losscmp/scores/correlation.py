"""Matthews correlation coefficient of prediction and ground truth."""

from __future__ import annotations

from losscmp.scores import agrees, ratio


def mcc(tp, fp, fn, tn):
    """(tp tn - fp fn) / sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn)); a zero denominator:
    +1.0 when the prediction is perfect (fp == fn == 0, e.g. an all-background image
    predicted all background), else 0.0 (the "no information" value, as scikit-learn uses)."""
    denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).sqrt()
    return ratio(tp * tn - fp * fn, denominator, agrees(fp, fn))
