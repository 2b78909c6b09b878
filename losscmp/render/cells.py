"""The comparison table's columns and cell text, shared by the terminal and the HTML page.

Each :class:`Column` says how a summary row (a dict of one row of the summary
frame) is printed and which value sorts it, so every output shows the same
numbers with the same rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from losscmp import selection, stats
from losscmp.summary import (
    METRIC_TITLES,
    PER_CLASS_COLUMN,
    TABLE_METRICS,
    THRESHOLD_TABLE_METRICS,
    per_class_columns,
    split_word,
)

Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of the comparison table."""

    title: str  # "\n" breaks the header into lines
    text: Callable[[Row], str]  # the cell as printed
    sort: Callable[[Row], Any]  # the value the HTML page sorts by (None/NaN: last)
    numeric: bool = True  # right-aligned
    wrap: bool = False
    min_width: int | None = None
    # Folded onto more lines when even the columns always shown are too wide for the
    # terminal: a long loss name reads well enough so, cut numbers do not.
    fold: bool = False
    # Which kind of column a terminal too narrow for the table may leave out (one of
    # LEAVE_OUT_ORDER); None: always shown.
    leave_out: str | None = None
    # The summary column it shows, for the caption to explain only what is shown.
    key: str | None = None


# A terminal narrower than the table leaves out whole columns rather than cutting every cell
# ('tvers…', '0.0…'): these kinds, first to last, and within a kind the rightmost first. The
# rank, loss, headline mean ± sd, its CI, p and status are the comparison itself and always
# shown. First go the numbers the table repeats or that do not rank anything, last those that
# say what a row is or qualify its headline:
LEAVE_OUT_ORDER = (
    "other final",  # IoU/MCC at the last epoch, which nothing chose; shown at the chosen one
    "headline final",  # the headline at the last epoch: how far training drifted past its best
    "threshold",  # the chosen threshold itself: a setting, read only with Dice@thr.
    "threshold metric",  # ECE, AP, Dice@thr.: binary extras, each a question of its own
    "other metric",  # IoU/MCC at the chosen epoch: on the same masks they mostly follow Dice
    "hd95",  # a boundary distance, at the last epoch only
    "time",  # what a loss costs, not how well it segments
    "chosen epoch",  # whether a loss peaked early or needed every epoch; narrow
    "lr",  # the learning rate the row was chosen at: part of what the row is
)


@dataclass(frozen=True)
class TableExtras:
    """Columns a table shows only when its run has them."""

    split: str  # the split the headline is read on: "test", or "val." (schema-1 runs)
    lr: bool  # a learning-rate grid: the rate each loss was chosen at
    thresholds: list[str]  # binary: Dice at the validation-chosen threshold, AP, ECE
    # The most seeds a row has: a row with fewer (a trial missing, runs combined) says so.
    most_seeds: int = 0


def table_extras(rows: pd.DataFrame, metric: str) -> TableExtras:
    """What the (chosen) rows of one table have beyond the columns every table shows."""
    return TableExtras(
        split=split_word(rows),
        lr=selection.several_rates(rows),
        thresholds=[
            name
            for name in THRESHOLD_TABLE_METRICS
            if name != metric and _has_values(rows, f"best_{name}_mean")
        ],
        most_seeds=int(rows["n_seeds"].max()) if len(rows) else 0,
    )


def _has_values(rows: pd.DataFrame, column: str) -> bool:
    return column in rows.columns and bool(rows[column].notna().any())


def table_columns(metric: str, extras: TableExtras) -> list[Column]:
    """The table's columns: rank, loss (and its chosen rate), the headline with its interval
    and test, the other metrics at the chosen and final epoch, the threshold columns, chosen
    epoch, HD95, time, status. (A multiclass dataset's Dice per class is a table of its own:
    :func:`class_columns`.)"""
    headline = METRIC_TITLES[metric]
    split = extras.split
    columns = [
        Column("#", lambda row: integer(row["rank"]), lambda row: row["rank"]),
        Column("loss", loss_text, lambda row: row["loss"], numeric=False, fold=True),
    ]
    if extras.lr:
        columns.append(
            Column(
                "lr",
                lambda row: rate(row.get("lr")),
                lambda row: row.get("lr"),
                leave_out="lr",
                key="lr",
            ),
        )
    columns += [
        Column(
            f"{headline} {split}\nmean ± sd",
            lambda row: mean_sd(row["score_mean"], row["score_std"]),
            lambda row: row["score_mean"],
        ),
        Column(
            "95% CI",
            lambda row: interval(row["ci_low"], row["ci_high"]),
            lambda row: row["ci_low"],
        ),
        Column(
            "p\n(Holm)",
            lambda row: "best" if row["is_best"] else p_value(row["p_holm"]),
            lambda row: 1.0 if row["is_best"] else row["p_holm"],
        ),
        _value_column(f"{headline}\nfinal", f"final_{metric}_mean", "headline final"),
    ]
    for other in TABLE_METRICS:
        if other != metric:
            title = METRIC_TITLES[other]
            columns.append(_value_column(f"{title}\n{split}", f"best_{other}_mean", "other metric"))
            columns.append(_value_column(f"{title}\nfinal", f"final_{other}_mean", "other final"))
    if extras.thresholds:
        columns.append(_value_column("thr.\n(val.)", "threshold_mean", "threshold", digits=2))
    for name in extras.thresholds:
        title = f"{METRIC_TITLES[name]}\n{split}"
        columns.append(_value_column(title, f"best_{name}_mean", "threshold metric"))
    columns += [
        Column(
            "chosen\nep.",
            lambda row: epoch(row["best_epoch"]),
            lambda row: row["best_epoch"],
            leave_out="chosen epoch",
        ),
        _value_column("HD95\nfinal", "final_hd95_mean", "hd95", digits=1),
        _value_column("time\ns", "seconds", "time", digits=1),
    ]
    columns.append(
        Column(
            "status",
            lambda row: short_status(row, extras.most_seeds),
            lambda row: row["n_diverged"],
            numeric=False,
            wrap=True,
            min_width=8,
        )
    )
    return columns


def _value_column(title: str, key: str, leave_out: str, digits: int = 3) -> Column:
    return Column(
        title,
        lambda row: number(row.get(key), digits),
        lambda row: row.get(key),
        leave_out=leave_out,
        key=key,
    )


def leave_out_order(tables: list[list[Column]]) -> list[str]:
    """The titles of the columns a narrow terminal may leave out, the first to go first, over
    the tables drawn together (one per dataset), which then leave out the same columns."""
    first_to_go: dict[str, tuple[int, int]] = {}
    for columns in tables:
        for position, column in enumerate(columns):
            if column.leave_out is not None:
                key = (LEAVE_OUT_ORDER.index(column.leave_out), -position)
                first_to_go[column.title] = min(key, first_to_go.get(column.title, key))
    return sorted(first_to_go, key=first_to_go.__getitem__)


def ordered_rows(rows: pd.DataFrame) -> list[Row]:
    """The rows of one dataset, best first, losses without a rank last."""
    ranked = rows.sort_values("rank", na_position="last", kind="stable")
    return [row._asdict() for row in ranked.itertuples(index=False)]


def class_columns(summary: pd.DataFrame) -> list[Column]:
    """Dice per class of a multiclass dataset's rows, one column per class (background
    first, which the headline's mean leaves out), mean ± sd over seeds; none for a binary
    one. A table of its own: as cells of the comparison, one line per class, every row
    stood as many lines tall as the dataset has classes (7 with 8 classes)."""
    present = [column for column in per_class_columns(summary) if summary[column].notna().any()]
    return [_class_column(column) for column in present]


def class_caption(summary: pd.DataFrame) -> str:
    """What the Dice-per-class tables show, said once under them."""
    return (
        f"Dice per class on the {split_word(summary)} split at each trial's epoch chosen on "
        f"validation, {over_seeds(summary)}; the headline averages the foreground classes "
        "(every class but the first, the background)."
    )


def over_seeds(summary: pd.DataFrame) -> str:
    """What a 'mean ± sd' cell of ``summary``'s losses is: a one-seed run's shows one
    seed's score and no sd, which 'mean ± sd over seeds' promised."""
    several = len(summary) and summary["n_seeds"].max() > 1
    return "mean ± sd over seeds" if several else "one seed, no sd"


def _class_column(mean: str) -> Column:
    name = PER_CLASS_COLUMN.fullmatch(mean).group(1)
    sd = mean.removesuffix("_mean") + "_std"
    return Column(name, lambda row: mean_sd(row.get(mean), row.get(sd)), lambda row: row.get(mean))


def loss_text(row: Row) -> str:
    mark = " ≈" if row["indistinguishable_from_best"] is True and not row["is_best"] else ""
    return f"{row['loss']}{mark}"


def short_status(row: Row, most_seeds: int = 0) -> str:
    """The status in table width: ok, diverged ep 3, 1/3 diverged ep 3; 'ok, 3 seeds' where
    the row has fewer seeds than ``most_seeds`` (another row's): the caption's 'over 3–4
    seed(s)' named no row, and a loss short of a trial read as any other."""
    if not row["n_diverged"]:
        seeds = int(row["n_seeds"])
        return f"ok, {_seeds(seeds)}" if seeds < most_seeds else "ok"
    epoch = row["diverged_epoch"]
    at = "" if missing(epoch) else f" ep {int(epoch)}"
    if row["n_diverged"] == row["n_seeds"]:
        return f"diverged{at}"
    return f"{row['n_diverged']}/{row['n_seeds']} diverged{at}"


def _seeds(count: int) -> str:
    return f"{count} seed" + ("" if count == 1 else "s")


def all_diverged(row: Row) -> bool:
    return bool(row["n_diverged"]) and row["n_diverged"] == row["n_seeds"]


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a cell with nothing to show."""
    return value is None or bool(pd.isna(value))


def number(value: Any, digits: int = 3) -> str:
    if missing(value):
        return "–"
    return f"{round(float(value), digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.000"


def epoch(value: Any) -> str:
    """Mean best epoch over seeds: an integer when the seeds agree."""
    if missing(value):
        return "–"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def rate(value: Any) -> str:
    return "–" if missing(value) else f"{value:g}"


def integer(value: Any) -> str:
    return "–" if missing(value) else str(int(value))


def mean_sd(mean: Any, sd: Any) -> str:
    if missing(mean):
        return "–"
    return f"{mean:.3f}" if missing(sd) else f"{mean:.3f} ± {sd:.3f}"


def interval(low: Any, high: Any) -> str:
    return "–" if missing(low) or missing(high) else f"{low:.3f}–{high:.3f}"


def p_value(p: Any) -> str:
    """A p to 3 decimals; one just below alpha that would round up to it reads '<0.050', so
    that the cell never says 'p ≥ alpha' of a loss the test calls different (no ≈)."""
    if missing(p):
        return "–"
    if p < 0.001:
        return "<0.001"
    text = f"{p:.3f}"
    return f"<{stats.ALPHA:.3f}" if p < stats.ALPHA <= float(text) else text


def best_at_each_fraction(dial: pd.DataFrame) -> set[tuple[str, float]]:
    """The (loss, fg_fraction) pairs of an imbalance dial ranked first at their fraction,
    as that fraction's table ranks them (fewest diverged seeds, then the best mean; the
    lowest for ECE). A fraction where no loss has a score has no best."""
    best = dial[dial["rank"] == 1]
    return set(zip(best["loss"], best["fg_fraction"], strict=True))
