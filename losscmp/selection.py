"""Choose on validation, report on test: a trial's epoch, a loss's learning rate.

Three choices are made for every loss, and all three look at the validation
split only; the test split is read where they land and never decides anything:

- **the epoch**: each trial's epoch with the best validation headline metric
  (``val_<metric>``: the highest, the lowest for ECE; ties go to the earlier epoch);
- **the threshold** (binary tasks): chosen by the trainer on validation at every
  epoch (``threshold`` in epochs.csv; see ``losscmp.metrics``); the chosen
  epoch's threshold is the one applied to test (``test_dice_t`` ...);
- **the learning rate** (``--lr-grid``): per loss, the rate whose trials have the
  best validation score (at their chosen epochs) averaged over seeds. A rate at
  which any seed diverged ranks after every rate at which none did (a mean over
  the surviving seeds would reward instability); ties go to the lower rate.

Runs without a test split (schema 1 run folders, datasets built without one)
report the validation score at the validation-chosen epoch, and say so: the
``headline_split`` column is ``validation`` and the caption warns that the
figure is optimistic.

Only numbers and pandas here: ``losscmp.summary`` calls these while summarising; the
renderers ask ``chosen_rows`` for the rows a table shows.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd

from losscmp.metric_names import higher_is_better

TEST, VALIDATION = "test", "validation"


# Scored on every split every epoch evaluates (metrics.summarize_epoch): whether a run has
# a test split is read from it, not from the headline, which a split may lack (AP where
# the split has no foreground pixel).
EVERY_SPLIT_SCORE = "dice"


def reported_split(epochs: pd.DataFrame, metric: str) -> str:
    """``test`` when the run scored a test split and has ``metric``'s test column, else
    ``validation``. A test split where ``metric`` has no value is still the one reported:
    its missing scores are said as such, not replaced by validation's. A run that scored
    nothing at all (every trial diverged in its first epoch) has a test split when its
    table has the column."""
    if f"test_{metric}" not in epochs.columns:
        return VALIDATION
    score = EVERY_SPLIT_SCORE
    scored = _any_value(epochs, f"test_{score}") or not _any_value(epochs, f"val_{score}")
    return TEST if scored else VALIDATION


def _any_value(epochs: pd.DataFrame, column: str) -> bool:
    return column in epochs.columns and bool(epochs[column].notna().any())


def prefix(split: str) -> str:
    return "test_" if split == TEST else "val_"


def chosen_epoch(scores: np.ndarray, metric: str) -> int:
    """The position of the epoch with the best ``val_<metric>`` among a trial's validated
    epochs' ``scores`` (no NaN; the first epoch among equals)."""
    return int(np.argmax(scores) if higher_is_better(metric) else np.argmin(scores))


def reported_column(columns: Collection[str], name: str, split: str) -> str:
    """The column ``name`` is reported from: the test one where the run has it, else
    validation's."""
    column = f"{prefix(split)}{name}"
    return column if split == TEST and column in columns else f"val_{name}"


def choose_rates(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (loss, lr): ``val_score_mean`` (mean over finished seeds of the validation score
    at their chosen epochs), ``n_diverged``, ``lr_chosen`` (one rate per loss).

    ``trials`` has columns ``loss, lr, seed, status, val_score``. The test columns are not
    read: the choice cannot depend on the test split.
    """
    frame = trials[["loss", "lr", "status", "val_score"]].copy()
    frame["diverged"] = frame["status"] == "diverged"
    frame["score"] = frame["val_score"].where(~frame["diverged"]).astype(float)
    rates = (
        frame.groupby(["loss", "lr"], sort=False, dropna=False)
        .agg(val_score_mean=("score", "mean"), n_diverged=("diverged", "sum"))
        .reset_index()
    )
    rates["lr_chosen"] = False
    sign = -1.0 if higher_is_better(metric) else 1.0

    def rank(row) -> tuple:  # fewest diverged seeds, then the best mean; no mean comes last
        missing = math.isnan(row.val_score_mean)
        return (int(row.n_diverged), missing, 0.0 if missing else sign * row.val_score_mean)

    for _, group in rates.groupby("loss", sort=False):
        ordered = group.sort_values("lr", kind="stable")  # equal ranks: the lower rate
        best = min(ordered.itertuples(), key=rank)
        rates.loc[best.Index, "lr_chosen"] = True
    return rates


def several_rates(summary: pd.DataFrame) -> bool:
    """Whether any loss of the summary was trained at more than one learning rate
    (``n_rates``, so that the chosen rows alone still tell)."""
    if "n_rates" not in summary.columns or summary.empty:
        return False
    return bool((summary["n_rates"] > 1).any())


def chosen_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows the table shows: each loss at its chosen rate."""
    if "lr_chosen" not in summary.columns:
        return summary
    return summary[summary["lr_chosen"].astype(bool)]


def _ranked_with_diverged_seeds(summary: pd.DataFrame) -> bool:
    if "n_diverged" not in summary.columns or "rank" not in summary.columns:
        return False
    return bool(((summary["n_diverged"] > 0) & summary["rank"].notna()).any())


def caption_text(
    summary: pd.DataFrame,
    metric: str,
    title: str | None = None,
    hidden: Collection[str] = (),
    every_rate_in: str = "summary.csv",
) -> str:
    """What the caption must say about where the headline is read and what was chosen how;
    ``hidden``: the summary columns the table leaves out, not explained; ``every_rate_in``:
    the file that lists every rate (``summary.every_rate_file``)."""
    title = title or metric
    splits = set(summary.get("headline_split", pd.Series([VALIDATION])).dropna())
    if splits == {TEST}:
        text = (
            "Scores are on the held-out test split, each trial read at the epoch chosen on "
            f"validation (best validation {title}); the test split chose nothing."
        )
    elif TEST in splits:
        text = (
            "Some runs have no test split: their scores are validation scores at the epoch "
            "chosen on that same split (optimistic)."
        )
    else:
        text = (
            "VALIDATION ONLY (a run without a test split, e.g. made by losscmp before schema "
            "2): scores are read on the split that chose the epoch, an optimistic figure."
        )
    if several_rates(summary):
        rate = "learning rate" if "lr" in hidden else "learning rate (lr)"
        text += f" Each loss is shown at the {rate} with the best mean validation "
        text += f"score over seeds; {every_rate_in} lists every rate."
    if _ranked_with_diverged_seeds(summary):
        text += (
            " A loss ranks after every loss with fewer diverged seeds: its mean is over the "
            "seeds that finished."
        )
    if "threshold_mean" in summary.columns and summary["threshold_mean"].notna().any():
        text += _threshold_text(metric, hidden)
    return text


def _threshold_text(metric: str, hidden: Collection[str]) -> str:
    """The binary threshold columns shown: thr., Dice@thr., AP, ECE (a headline among them
    always is)."""

    def shown(name: str) -> bool:
        return name == metric or f"best_{name}_mean" not in hidden

    chosen = "the probability threshold chosen on validation (best Dice) at that epoch"
    parts = []
    if "threshold_mean" not in hidden:
        parts.append(f"thr. = {chosen}")
        if shown("dice_t"):
            parts.append("Dice@thr. applies it to the reported split")
    elif shown("dice_t"):
        parts.append(f"Dice@thr. applies {chosen} to the reported split")
    free = [
        text
        for name, text in (
            ("ap", "AP (average precision over pixels)"),
            ("ece", "ECE (15 equal-width bins)"),
        )
        if shown(name)
    ]
    if free:
        parts.append(f"{' and '.join(free)} {'need' if len(free) > 1 else 'needs'} no threshold")
    return f" {'; '.join(parts)}." if parts else ""
