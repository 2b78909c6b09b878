"""The scores, each registered once with what it means: computed, stored (epochs.csv's
``<split>_<name>`` columns in this order, results.py), offered to ``report --metric``
(report_args.py checks it, cli.py's help lists them), titled (summary.py, render/) and
read the right way round (a range other than [0, 1], lower is better).

A new score of the hard prediction is its formula, a function of the confusion counts
``(tp, fp, fn, tn)`` in a module of ``losscmp/scores/`` (see ``scores/overlap.py``), plus
one ``register_score`` line below. Everything else here is derived from those lines.
Plain names only: ``report``'s checks import this before torch, numpy or pandas; the
formulas are imported by their path when the trainer computes them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

COUNTS = "counts"  # a function of the confusion counts (tp, fp, fn, tn): every run
# A function of a split's probability histogram (metrics.probability_histogram): binary
# runs only, as they need a probability to threshold.
HISTOGRAM = "histogram"
UNIT_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Score:
    """One registered score and what its numbers mean."""

    name: str  # epochs.csv's val_<name> / test_<name>; report --metric <name>
    formula: str  # "module:function", imported when computed
    title: str  # as the tables title it
    of: str = COUNTS  # what the formula is given: COUNTS or HISTOGRAM
    headline: bool = True  # offered to report --metric (with summary columns) or recorded only
    range: tuple[float, float] = UNIT_RANGE  # the values it can take (intervals are clipped)
    lower_is_better: bool = False  # choosing the epoch and the rate, ranking the losses
    per_image: bool = False  # also image_<name>: the mean over images of per-image scores
    at_threshold: bool = False  # binary runs also score it at the chosen threshold: <name>_t

    def load(self) -> Callable:
        module, function = self.formula.split(":")
        return getattr(importlib.import_module(module), function)


SCORES: dict[str, Score] = {}


def register_score(name: str, formula: str, title: str, **meaning) -> Score:
    """Register the score ``name`` computed by ``formula`` ("losscmp.scores.<module>:<f>");
    ``meaning``: the other fields of :class:`Score`."""
    if name in SCORES:  # a registration's mistake: no user can cause it
        raise ValueError(f"score '{name}' is registered twice")
    SCORES[name] = Score(name, formula, title, **meaning)
    return SCORES[name]


# The scores, in the order of epochs.csv's columns. Their empty conventions (a zero
# denominator) are in each formula's docstring.
register_score("dice", "losscmp.scores.overlap:dice", "Dice", per_image=True, at_threshold=True)
register_score("iou", "losscmp.scores.overlap:iou", "IoU", per_image=True, at_threshold=True)
register_score("mcc", "losscmp.scores.correlation:mcc", "MCC", range=(-1.0, 1.0), at_threshold=True)
register_score("precision", "losscmp.scores.retrieval:precision", "precision", headline=False)
register_score("recall", "losscmp.scores.retrieval:recall", "recall", headline=False)
register_score("ap", "losscmp.metrics:average_precision", "AP", of=HISTOGRAM)
register_score(
    "ece", "losscmp.metrics:expected_calibration_error", "ECE", of=HISTOGRAM, lower_is_better=True
)

# ---------------------------------------------------------------- derived from SCORES

# Dataset-level scores of the hard prediction (p >= 0.5; multiclass: argmax): every run.
SCORE_NAMES = tuple(name for name, score in SCORES.items() if score.of == COUNTS)
# Means of per-image scores: every run.
IMAGE_SCORE_NAMES = tuple(f"image_{name}" for name, s in SCORES.items() if s.per_image)
# Binary runs only: these scores again at the threshold chosen on validation (<name>_t) ...
THRESHOLD_SCORE_NAMES = tuple(name for name, score in SCORES.items() if score.at_threshold)
# ... and the scores that need no threshold.
THRESHOLD_FREE_SCORE_NAMES = tuple(name for name, s in SCORES.items() if s.of == HISTOGRAM)
BINARY_SCORE_NAMES = (*(f"{name}_t" for name in THRESHOLD_SCORE_NAMES), *THRESHOLD_FREE_SCORE_NAMES)


def _variants(score: Score) -> dict[str, str]:
    """Each column name a score gives, with its title: itself, image_<name>, <name>_t."""
    variants = {score.name: score.title}
    if score.per_image:
        variants[f"image_{score.name}"] = f"image {score.title}"
    if score.at_threshold:
        variants[f"{score.name}_t"] = f"{score.title}@thr."
    return variants


_HEADLINES = [score for score in SCORES.values() if score.headline]
_TITLED = {name: title for score in _HEADLINES for name, title in _variants(score).items()}
# The headlines report --metric may choose, as the tables title them: the plain scores,
# then the per-image ones, then the binary ones, as epochs.csv orders them.
METRIC_TITLES = {
    name: _TITLED[name]
    for name in (*SCORE_NAMES, *IMAGE_SCORE_NAMES, *BINARY_SCORE_NAMES)
    if name in _TITLED
}
METRICS = tuple(METRIC_TITLES)
# Headlines of binary runs only (at the chosen threshold, and threshold-free); the rest: every run.
BINARY_METRICS = tuple(name for name in METRICS if name in BINARY_SCORE_NAMES)
PLAIN_METRICS = tuple(name for name in METRICS if name not in BINARY_METRICS)  # every run
# What a headline's numbers mean, read by the report (summary.py, selection.py): each
# score's range where it is not [0, 1] (the seeds' confidence intervals are clipped to it;
# image_<name> and <name>_t have their score's) ...
SCORE_RANGES = {
    name: score.range
    for score in SCORES.values()
    if score.range != UNIT_RANGE
    for name in _variants(score)
}
# ... and the scores where lower is better (choosing the epoch and the rate, ranking losses).
LOWER_IS_BETTER = frozenset(
    name for score in SCORES.values() if score.lower_is_better for name in _variants(score)
)


def score_range(metric: str) -> tuple[float, float]:
    """The values ``metric`` can take."""
    return SCORE_RANGES.get(metric, UNIT_RANGE)


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER
