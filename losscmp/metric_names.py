"""Metric names, listed once: metrics.py computes them, epochs.csv stores each split's as
``<split>_<name>`` in this order (results.py), ``report --metric`` offers those
METRIC_TITLES titles (report_args.py checks it, cli.py's help lists them) and the tables
write those titles (summary.py).

A new score is its formula in metrics.py plus its name here (and its title, to offer it as
a headline; its range, if not [0, 1], and whether lower is better, if it is). Plain names
only: ``report``'s checks import this before numpy or pandas.
"""

from __future__ import annotations

# Dataset-level scores of the hard prediction (p >= 0.5; multiclass: argmax): every run.
SCORE_NAMES = ("dice", "iou", "mcc", "precision", "recall")
IMAGE_SCORE_NAMES = ("image_dice", "image_iou")  # means of per-image scores: every run
# Binary runs only: these scores again at the threshold chosen on validation (<name>_t) ...
THRESHOLD_SCORE_NAMES = ("dice", "iou", "mcc")
# ... and the scores that need no threshold.
THRESHOLD_FREE_SCORE_NAMES = ("ap", "ece")
BINARY_SCORE_NAMES = (*(f"{name}_t" for name in THRESHOLD_SCORE_NAMES), *THRESHOLD_FREE_SCORE_NAMES)
# The headlines report --metric may choose, as the tables title them (precision and recall
# are recorded in epochs.csv, not offered as headlines).
METRIC_TITLES = {
    "dice": "Dice",
    "iou": "IoU",
    "mcc": "MCC",
    "image_dice": "image Dice",
    "image_iou": "image IoU",
    "dice_t": "Dice@thr.",
    "iou_t": "IoU@thr.",
    "mcc_t": "MCC@thr.",
    "ap": "AP",
    "ece": "ECE",
}
METRICS = tuple(METRIC_TITLES)
# Headlines of binary runs only (at the chosen threshold, and threshold-free); the rest: every run.
BINARY_METRICS = tuple(name for name in METRICS if name in BINARY_SCORE_NAMES)
PLAIN_METRICS = tuple(name for name in METRICS if name not in BINARY_METRICS)  # every run
# What a headline's numbers mean, read by the report (summary.py, selection.py): each score's
# range where it is not [0, 1] (the seeds' confidence intervals are clipped to it) ...
SCORE_RANGES = {"mcc": (-1.0, 1.0)}
# ... and the scores where lower is better (choosing the epoch and the rate, ranking losses).
LOWER_IS_BETTER = frozenset({"ece"})


def score_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take; ``<name>_t``, a score at the chosen threshold, has
    its score's."""
    score = metric.removesuffix("_t") if metric in BINARY_SCORE_NAMES else metric
    return SCORE_RANGES.get(score, (0.0, 1.0))


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER
