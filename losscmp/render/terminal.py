"""The comparison as Rich tables: what ``losscmp run`` and ``losscmp report`` print."""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.table import Table
from rich.text import Text

from losscmp.render.cells import (
    all_diverged,
    best_at_each_fraction,
    foreground_class_columns,
    mean_sd,
    ordered_rows,
    table_columns,
    table_extras,
)
from losscmp.selection import chosen_rows
from losscmp.summary import (
    METRIC_TITLES,
    Report,
    check_metric,
    headline_caption,
    imbalance_frame,
    split_word,
)


def render(report: Report) -> list:
    """Every table of the report, in print order."""
    tables = [
        render_table(report.summary, metric=report.metric),
        render_imbalance_table(report.summary, metric=report.metric),
    ]
    return [table for table in tables if table is not None]


def render_table(summary: pd.DataFrame, metric: str = "dice") -> Table:
    """The comparison as a Rich table, best first, best row highlighted.

    One dataset gives one table; several (e.g. the imbalance dial) give a grid
    holding one table per dataset, under one caption.
    """
    check_metric(metric)
    summary = chosen_rows(summary)  # each loss at its chosen learning rate
    datasets = list(dict.fromkeys(summary["dataset"]))
    caption = headline_caption(metric, summary)
    if len(datasets) == 1:
        return _dataset_table(summary, metric, f"losscmp — {datasets[0]}", caption)
    grid = Table.grid(padding=(1, 0))
    grid.add_column()
    for dataset in datasets:
        rows = summary[summary["dataset"] == dataset]
        grid.add_row(_dataset_table(rows, metric, f"losscmp — {dataset}", None))
    grid.add_row(Text(caption, style="dim"))
    return grid


def _dataset_table(rows: pd.DataFrame, metric: str, title: str, caption: str | None) -> Table:
    # Titles and cells are Text: labels and paths may hold [...], which is not Rich markup.
    table = Table(
        title=Text(title, style="table.title"),
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    columns = table_columns(metric, foreground_class_columns(rows), table_extras(rows, metric))
    for column in columns:
        table.add_column(
            column.title,
            justify="right" if column.numeric else "left",
            no_wrap=not column.wrap,
            min_width=column.min_width,
        )
    for row in ordered_rows(rows):
        cells = [Text(column.text(row)) for column in columns]
        cells[-1].stylize("red" if row["n_diverged"] else "")  # status
        table.add_row(*cells, style=_row_style(row))
    return table


def _row_style(row: dict) -> str:
    if row["is_best"]:
        return "bold green"
    if all_diverged(row):
        return "dim red"
    return ""


def render_imbalance_table(summary: pd.DataFrame, metric: str = "dice") -> Table | None:
    """Each loss's headline score against the foreground fraction, or None without a dial."""
    dial = imbalance_frame(summary)
    if dial is None:
        return None
    fractions = sorted(dial["fg_fraction"].unique())
    table = Table(
        box=box.SIMPLE_HEAD,
        title=Text(f"Imbalance dial — {dial['dial_group'].iloc[0]}", style="table.title"),
        caption=f"{METRIC_TITLES[metric]} ({split_word(summary)}, at the epoch chosen on "
        "validation, mean ± sd over seeds) by foreground fraction; bold = best at that fraction.",
        caption_justify="left",
    )
    table.add_column("loss", no_wrap=True)
    for fraction in fractions:
        table.add_column(f"fg {fraction:g}", justify="right")
    best_pairs = best_at_each_fraction(dial)
    for loss, rows in dial.groupby("loss", sort=True):
        by_fraction = rows.set_index("fg_fraction")
        cells = []
        for fraction in fractions:
            if fraction not in by_fraction.index:
                cells.append("–")
                continue
            entry = by_fraction.loc[fraction]
            style = "bold green" if (loss, fraction) in best_pairs else ""
            cells.append(Text(mean_sd(entry["score_mean"], entry["score_std"]), style=style))
        table.add_row(Text(loss), *cells)
    return table
