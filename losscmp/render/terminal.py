"""The comparison as Rich tables: what ``losscmp run`` and ``losscmp report`` print."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass

import pandas as pd
from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.constrain import Constrain
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from losscmp.render.cells import (
    Column,
    Row,
    all_diverged,
    best_at_each_fraction,
    class_caption,
    class_columns,
    leave_out_order,
    mean_sd,
    ordered_rows,
    over_seeds,
    table_columns,
    table_extras,
)
from losscmp.selection import chosen_rows, higher_is_better
from losscmp.summary import (
    METRIC_TITLES,
    ONE_SEED_ADVICE,
    Report,
    check_metric,
    headline_caption,
    imbalance_frame,
    split_word,
)

# Where a table's left-out columns are when no file holds them (cli._all_columns_at names files).
WIDER_TERMINAL = "a wider terminal"


def render(report: Report, all_columns: str = WIDER_TERMINAL) -> list:
    """Every table of the report, in print order (the HTML page's); ``all_columns``: where
    the columns a narrow terminal leaves out are (see ``render_table``)."""
    comparison = render_table(
        report.summary,
        metric=report.metric,
        seed_advice=report.seed_advice,
        all_columns=all_columns,
        every_rate_in=report.every_rate_in,
    )
    tables = [
        comparison,
        render_imbalance_table(report.summary, metric=report.metric),
        *render_class_tables(report.summary),
    ]
    return [Trimmed(table) for table in tables if table is not None]


class Trimmed:
    """A renderable's lines without the spaces Rich pads them with to the table's width
    (after a centred title, a short caption line, the status column): written to a file,
    every line ended in a run of spaces, which diffs and editors flag."""

    def __init__(self, renderable) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        for line in console.render_lines(self.renderable, options, pad=False):
            yield from _without_trailing_spaces(line)
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


def _without_trailing_spaces(line: list[Segment]) -> list[Segment]:
    line = list(line)
    while line and not line[-1].control and not line[-1].text.rstrip(" "):
        line.pop()
    if line and not line[-1].control:
        last = line[-1]
        line[-1] = Segment(last.text.rstrip(" "), last.style)
    return line


def render_table(
    summary: pd.DataFrame,
    metric: str = "dice",
    seed_advice: str = ONE_SEED_ADVICE,
    all_columns: str = WIDER_TERMINAL,
    every_rate_in: str = "summary.csv",
) -> Comparison:
    """The comparison as Rich tables, best first, best row highlighted.

    One dataset gives one table; several (e.g. the imbalance dial) give a grid
    holding one table per dataset, under one caption (``seed_advice``: see
    ``summary.headline_caption``). ``all_columns``: where to find the columns a narrow
    terminal leaves out, for the line under the table (``'summary.csv, a wider terminal'``):
    the caller knows which files this report has; ``every_rate_in`` likewise, the file
    that lists every learning rate (``summary.every_rate_file``).
    """
    metric = check_metric(metric)
    summary = chosen_rows(summary)  # each loss at its chosen learning rate
    datasets = list(dict.fromkeys(summary["dataset"]))
    parts = []
    for dataset in datasets:
        rows = summary[summary["dataset"] == dataset]
        columns = table_columns(metric, table_extras(rows, metric))
        parts.append(_DatasetPart(f"losscmp — {dataset}", ordered_rows(rows), columns))
    caption = functools.partial(
        headline_caption, metric, summary, seed_advice=seed_advice, every_rate_in=every_rate_in
    )
    return Comparison(parts, caption, all_columns)


@dataclass(frozen=True)
class _DatasetPart:
    """One dataset's table, before it is drawn at a width."""

    title: str
    rows: list[Row]
    columns: list[Column]


class Comparison:
    """The comparison's tables, fitted to the width they are drawn at.

    Rich squeezes every column of a table wider than the console, cutting numbers and names
    ('tvers…', '0.0…', '-0.0…') and dropping the columns it has no room for. Here whole
    columns are left out instead, in :func:`cells.leave_out_order` (the same ones from every
    dataset's table), until every table fits, and a dim line under them names those left
    out; the caption explains the abbreviations of the columns shown only. A table that fits
    (a wide terminal; a pipe, at its natural width) is drawn whole, as before. When even the
    columns always shown do not fit, the loss names fold onto more lines; narrower still,
    Rich squeezes what is left. ``caption`` gives the caption without the summary columns
    (``Column.key``) it is given.
    """

    def __init__(
        self,
        parts: list[_DatasetPart],
        caption: Callable[[Collection[str]], str],
        all_columns: str = WIDER_TERMINAL,
    ) -> None:
        self.parts, self.caption, self.all_columns = parts, caption, all_columns

    def tables(self, left_out: Collection[str] = (), fold: bool = False) -> list[Table]:
        """One table per dataset, without the columns titled in ``left_out``; with ``fold``,
        the columns that may fold (the loss name) do."""
        return [_dataset_table(part, left_out, fold) for part in self.parts]

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        left_out = self.left_out(console, options)
        tables = self.tables(left_out)
        if not _fit(tables, console, options):
            tables = self.tables(left_out, fold=True)
        caption = self.caption(self.keys(left_out))
        if len(tables) == 1:
            tables[0].caption = caption
            drawn = tables[0]
        else:
            drawn = Table.grid(padding=(1, 0))
            drawn.add_column()
            for table in tables:
                drawn.add_row(table)
            drawn.add_row(Text(caption, style="dim"))
        yield drawn
        if left_out:
            names = ", ".join(title.replace("\n", " ") for title in left_out)
            note = Text(
                f"not shown at this width ({options.max_width} columns): {names}; "
                f"all columns: {self.all_columns}",
                style="dim",
            )
            # wrapped as the caption above it is, at the table's width
            yield Constrain(note, Measurement.get(console, options, drawn).maximum)

    def keys(self, titles: Collection[str]) -> set[str]:
        """The summary columns shown under ``titles``."""
        columns = [column for part in self.parts for column in part.columns]
        return {column.key for column in columns if column.title in titles and column.key}

    def left_out(self, console: Console, options: ConsoleOptions) -> list[str]:
        """The titles of the columns to leave out at ``options.max_width``: the fewest, in
        order, that make every table fit (a column is never left out while a less important
        one is shown); all that may be left out when nothing fits."""
        order = leave_out_order([part.columns for part in self.parts])

        def fits(count: int) -> bool:
            return _fit(self.tables(order[:count]), console, options)

        if fits(0):  # the usual case: a wide terminal, a pipe
            return []
        # Leaving out more never widens a table: bisect rather than try every count.
        return order[: bisect.bisect_left(range(1, len(order)), True, key=fits) + 1]


def _fit(tables: list[Table], console: Console, options: ConsoleOptions) -> bool:
    return all(_width(table, console, options) <= options.max_width for table in tables)


def _width(table: Table, console: Console, options: ConsoleOptions) -> int:
    """The table's width with every cell whole, those that may wrap (status) at their least."""
    for column in table.columns:
        if not column.no_wrap:
            column.max_width = column.min_width
    width = Measurement.get(console, options.update_width(UNBOUNDED), table).maximum
    for column in table.columns:
        if not column.no_wrap:
            column.max_width = None
    return width


UNBOUNDED = 10_000  # columns: wider than any table


def _dataset_table(part: _DatasetPart, left_out: Collection[str] = (), fold: bool = False) -> Table:
    # Titles and cells are Text: labels and paths may hold [...], which is not Rich markup.
    table = Table(
        title=Text(part.title, style="table.title"),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    columns = [column for column in part.columns if column.title not in left_out]
    for column in columns:
        folds = fold and column.fold
        table.add_column(
            column.title,
            justify="right" if column.numeric else "left",
            no_wrap=not (column.wrap or folds),
            overflow="fold" if folds else "ellipsis",
            min_width=column.min_width,
        )
    for row in part.rows:
        cells = [Text(column.text(row)) for column in columns]
        cells[-1].stylize("red" if row["n_diverged"] else "")  # status, always shown
        table.add_row(*cells, style=_row_style(row))
    return table


def _row_style(row: dict) -> str:
    if row["is_best"]:
        return "bold green"
    if all_diverged(row):
        return "dim red"
    return ""


def render_imbalance_table(summary: pd.DataFrame, metric: str = "dice") -> LossGrid | None:
    """Each loss's headline score against the foreground fraction, or None without a dial."""
    dial = imbalance_frame(summary)
    if dial is None:
        return None
    fractions = sorted(dial["fg_fraction"].unique())
    best_pairs = best_at_each_fraction(dial)
    rows, best = [], set()
    for loss, entries in dial.groupby("loss", sort=True):
        by_fraction = entries.set_index("fg_fraction")
        cells = []
        for fraction in fractions:
            if fraction not in by_fraction.index:
                cells.append(Text("–"))
                continue
            entry = by_fraction.loc[fraction]
            style = ""
            if (loss, fraction) in best_pairs:
                style = "bold green"
                best.add((len(rows), len(cells)))
            cells.append(Text(mean_sd(entry["score_mean"], entry["score_std"]), style=style))
        rows.append((loss, cells))
    return LossGrid(
        f"Imbalance dial — {dial['dial_group'].iloc[0]}",
        [f"fg {fraction:g}" for fraction in fractions],
        rows,
        caption=f"{METRIC_TITLES[metric]} ({split_word(summary)}{_lower_is_better(metric)}, "
        f"at the epoch chosen on validation, {over_seeds(summary)}) by foreground fraction; "
        f"{BOLD_BEST} at that fraction.",
        best=best,
    )


def _lower_is_better(metric: str) -> str:
    """ECE's best is its lowest: said where the dial marks a best."""
    return "" if higher_is_better(metric) else ", lower is better"


BOLD_BEST = "bold = best"
# Without styles (a pipe, a file, TERM=dumb) bold does not show: the best cells are starred.
PLAIN_BEST = "* = best"


def render_class_tables(summary: pd.DataFrame) -> list[LossGrid]:
    """Dice per class of each multiclass dataset, the losses in the comparison's order, the
    caption under the last; none for binary datasets."""
    summary = chosen_rows(summary)
    grids = []
    for dataset in dict.fromkeys(summary["dataset"]):
        rows = summary[summary["dataset"] == dataset]
        columns = class_columns(rows)
        if not columns:  # binary
            continue
        cells = [
            (row["loss"], [Text(column.text(row)) for column in columns])
            for row in ordered_rows(rows)
        ]
        titles = [column.title for column in columns]
        grids.append(LossGrid(f"Dice per class — {dataset}", titles, cells, caption=None))
    if grids:
        grids[-1].caption = class_caption(summary)
    return grids


class LossGrid:
    """A table of losses against columns read across (the imbalance dial's fractions, a
    multiclass dataset's classes), fitted to the width it is drawn at.

    Rich squeezed the columns of a table wider than the terminal, breaking each
    'mean ± sd' over two or three lines, then cutting it ('0…'). A grid is read across its
    columns, so none is left out: where one table does not fit, the columns are drawn
    in order in as few tables as fit, each as wide as the others and with the loss names,
    the caption (if any) under the last. A table that fits (a pipe, a wide terminal) is drawn
    as before. When even one column beside the loss names does not fit, the names fold onto
    more lines; narrower still, Rich squeezes what is left.
    """

    def __init__(
        self,
        title: str,
        columns: list[str],
        rows: list[tuple[str, list[Text]]],
        caption: str | None,
        best: Collection[tuple[int, int]] = (),
    ) -> None:
        """``best``: the (row, column) positions of cells drawn in bold, which the caption
        calls the best; starred where the output has no styles."""
        self.title, self.columns, self.rows, self.caption = title, columns, rows, caption
        self.best = set(best)

    def tables(self, count: int, fold: bool = False) -> list[Table]:
        """The grid in ``count`` tables of consecutive columns, as even as can be."""
        size, extra = divmod(len(self.columns), count)
        tables, first = [], 0
        for index in range(count):
            last = first + size + (index < extra)
            title = self.title if index == 0 else f"{self.title} (continued)"
            tables.append(self._table(title, range(first, last), fold))
            first = last
        return tables

    def _table(self, title: str, columns: range, fold: bool) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title=Text(title, style="table.title"))
        table.add_column("loss", no_wrap=not fold, overflow="fold" if fold else "ellipsis")
        for column in columns:
            table.add_column(self.columns[column], justify="right", no_wrap=True)
        for index, (loss, cells) in enumerate(self.rows):
            table.add_row(Text(loss), *(self._cell(cells, index, column) for column in columns))
        return table

    def _cell(self, cells: list[Text], row: int, column: int) -> Text:
        if self._plain and (row, column) in self.best:
            return Text("*") + cells[column]  # before the number: the column stays aligned
        return cells[column]

    _plain = False  # set while drawn on a console without styles

    def __rich_console__(self, console: Console, options: ConsoleOptions):
        self._plain = bool(self.best) and console.color_system is None
        caption = self.caption
        if self._plain and caption:
            caption = caption.replace(BOLD_BEST, PLAIN_BEST)
        counts = range(1, len(self.columns) + 1)
        count = next(
            (count for count in counts if _fit(self.tables(count), console, options)), None
        )
        tables = self.tables(count) if count else self.tables(len(self.columns), fold=True)
        for table in tables:
            _title_on_one_line(table, options.max_width)
        if len(tables) == 1:
            tables[0].caption, tables[0].caption_justify = caption, "left"
            yield tables[0]
            return
        drawn = Table.grid(padding=(1, 0))
        # As wide as the titles, which a grid's cell would otherwise crop to its table's.
        drawn.min_width = min(max(map(_title_width, tables)), options.max_width)
        drawn.add_column()
        for table in tables:
            drawn.add_row(table)
        if caption:
            drawn.add_row(Text(caption, style="table.caption"))
        yield drawn


def _title_on_one_line(table: Table, room: int) -> None:
    """Draw the title whole where ``room`` (the terminal's width) holds it, past the table's
    right edge where the table is narrower: a dial's or a class table's spec (no spaces in
    it) broke anywhere to fit a narrow table, 'n_val=' on one line and '16' on the next."""
    if isinstance(table.title, Text) and _title_width(table) <= room:
        table.title.no_wrap, table.title.overflow = True, "ignore"


def _title_width(table: Table) -> int:
    return cell_len(str(table.title or ""))
