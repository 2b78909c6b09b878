"""One self-contained HTML page of a report: ``report --html FILE`` and ``<run>/report.html``.

The page opens offline and fetches nothing: the CSS and the small sorting
script are inline, figures are embedded as palette PNGs (base64 data URIs) and
a Content-Security-Policy forbids every other source. The comparison table has
the terminal's columns, numbers and caption (``losscmp.render.cells``): in rank
order without JavaScript, sortable by any column with it (each numeric cell
carries its full-precision value in ``data-sort``). Print CSS lays it out for
paper. Sections: what went wrong (diverged, failed, unfinished trials, notes),
the comparison, each rate of a learning-rate grid, the imbalance dial, per-class
scores (multiclass), learning curves, predictions, and what was run (command,
config, datasets, model, device, versions, git commit, times).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from losscmp import selection
from losscmp.render.cells import (
    Column,
    Row,
    all_diverged,
    best_at_each_fraction,
    class_caption,
    class_columns,
    mean_sd,
    missing,
    number,
    ordered_rows,
    table_columns,
    table_extras,
)
from losscmp.render.terminal import render_imbalance_table
from losscmp.results import RunStore
from losscmp.selection import chosen_rows
from losscmp.summary import (
    METRIC_TITLES,
    Report,
    at_chosen_rates,
    dataset_order,
    imbalance_frame,
    split_word,
)

FIGURE_DPI = 100
# Tables of more rows keep their headers in view (23 losses: the column titles of the
# comparison scrolled away before its last rows, 20 columns of numbers with no name).
TALL_TABLE_ROWS = 15
# Keys of a dataset's info that are long lists of file names; the notes already count them.
LONG_INFO_KEYS = frozenset({"unreadable", "truncated"})


def content(report: Report) -> str:
    """The page of ``report --html FILE`` (``Renderer.write`` writes it)."""
    return page(report)


def write_run_page(report: Report) -> Path:
    """``<run>/report.html`` of a one-run report, through the run folder's store."""
    (run_dir,) = report.results.run_dirs
    return RunStore(run_dir).write_report_page(page(report))


def page(report: Report) -> str:
    """The whole page as one string."""
    title = f"losscmp — {', '.join(report.results.run_ids)}"
    sections = [
        _header(report),
        _problems(report),
        _comparison(report),
        _learning_rates(report),
        _imbalance(report),
        _per_class(report),
        _figures(report),
        _setup(report),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- sections


def _header(report: Report) -> str:
    results = report.results
    datasets = ", ".join(dataset_order(results))
    runs = ("runs " if len(results.run_ids) > 1 else "run ") + ", ".join(results.run_ids)
    headline = METRIC_TITLES[report.metric]
    lead = f"{_grid(results)} on {datasets}{_progress(results)}; headline: {headline}; {runs}."
    return f'<header><h1>losscmp report</h1><p class="lead">{_e(lead)}</p></header>'


def _grid(results) -> str:
    """'3 loss(es) × 3 seed(s)' as planned (run.json), not as finished: a stopped run's grid
    was counted from its finished trials alone."""
    trials = results.trials
    losses = _planned(results.metas, "losses", trials["loss"])
    seeds = _planned(results.metas, "seeds", trials["seed"])
    rates = _planned(results.metas, "learning_rates", trials.get("base_lr", pd.Series()))
    grid = f"{len(losses)} loss(es) × {len(seeds)} seed(s)"
    if len(rates) > 1:
        grid += f" × {len(rates)} learning rates ({_planned_count(results)} trials)"
    return grid


def _progress(results) -> str:
    """'; 7 of 9 planned trials finished' where not all did (a stopped run), else ''."""
    planned, finished = _planned_count(results), len(results.trials)
    return f"; {finished} of {planned} planned trials finished" if finished < planned else ""


def _planned_count(results) -> int:
    return sum(len(meta.get("trials") or []) for meta in results.metas) or len(results.trials)


def _planned(metas: list[dict[str, Any]], key: str, recorded: pd.Series) -> set:
    """The losses, seeds or rates every run planned (run.json's ``key``); those the
    trials recorded where a run.json does not list them."""
    values = set()
    for meta in metas:
        listed = meta.get(key)
        if not listed:
            return set(recorded.dropna())
        values.update(listed)
    return values


def _problems(report: Report) -> str:
    """Diverged, failed and unfinished trials and every note, stated plainly; or that none."""
    results = report.results
    lines = []
    for meta, run_dir in zip(results.metas, results.run_dirs, strict=True):
        if not meta.get("finished_at"):
            lines.append(
                f"Run {meta.get('run_id', run_dir.name)} has no end time: it is still running "
                "or was interrupted."
            )
    lines += _diverged(results.trials)
    lines += report.notes
    planned = sum(len(meta.get("trials") or []) for meta in results.metas)
    if not lines:
        counted = f"All {planned} planned trials" if planned else "All trials"
        return f'<section class="ok"><p>{counted} finished; none diverged.</p></section>'
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<section class="problems"><h2>What went wrong</h2><ul>{items}</ul></section>'


def _diverged(trials: pd.DataFrame) -> list[str]:
    """One line per loss and dataset with diverged trials, by rate where there are several.
    It was a line per trial, the rate unsaid: a 345-trial run whose 8 losses diverged at
    every rate opened on 120 lines, each of them three times."""
    several_rates = "base_lr" in trials and trials["base_lr"].nunique() > 1
    lines = []
    for (dataset, loss), of_loss in trials.groupby(["dataset", "loss"], sort=True):
        if not of_loss["status"].eq("diverged").any():
            continue
        if several_rates:
            parts = [
                f"lr {'not recorded' if missing(rate) else f'{rate:g}'}: {seeds}"
                for rate, at_rate in of_loss.groupby("base_lr", sort=True, dropna=False)
                if (seeds := _diverged_seeds(at_rate))
            ]
            which = "; ".join(parts)
        else:
            which = _diverged_seeds(of_loss)
        lines.append(
            f"{loss} on {dataset} diverged (non-finite loss; left out of every mean): {which}."
        )
    return lines


def _diverged_seeds(trials: pd.DataFrame) -> str:
    """'seed 1 at epoch 3', 'all 5 seeds at epoch 2', 'seeds 0, 2 at epoch 2 and seed 1 at
    epoch 4' of ``trials`` (one loss at one rate); '' when none diverged."""
    diverged = trials[trials["status"] == "diverged"].sort_values("seed")
    by_epoch: dict[int | None, list[str]] = {}
    for trial in diverged.itertuples(index=False):
        epoch = None if missing(trial.diverged_epoch) else int(trial.diverged_epoch)
        by_epoch.setdefault(epoch, []).append(str(trial.seed))
    parts = []
    for epoch, seeds in sorted(by_epoch.items(), key=lambda item: (item[0] is None, item[0])):
        if len(seeds) == len(trials) > 1:
            who = f"all {len(seeds)} seeds"
        else:
            who = ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(seeds)
        parts.append(who + ("" if epoch is None else f" at epoch {epoch}"))
    return " and ".join(parts)


def _comparison(report: Report) -> str:
    summary = chosen_rows(report.summary)  # each loss at its chosen learning rate
    parts = ["<section><h2>Comparison</h2>"]
    for dataset in dict.fromkeys(summary["dataset"]):
        rows = summary[summary["dataset"] == dataset]
        extras = table_extras(rows, report.metric)
        columns = table_columns(report.metric, extras)
        parts.append(f"<h3>{_e(dataset)}</h3>")
        parts.append(
            _table(
                columns,
                ordered_rows(rows),
                row_class=_row_class,
                cell_class=lambda row, column: (
                    "bad" if column.title == "status" and row["n_diverged"] else ""
                ),
                label=f"Comparison on {dataset}",
                comparison=True,
            )
        )
    parts.append(f'<p class="caption">{_e(report.caption)}</p></section>')
    return "\n".join(parts)


def _row_class(row: Row) -> str:
    if row["is_best"]:
        return "best"
    return "diverged" if all_diverged(row) else ""


def _learning_rates(report: Report) -> str:
    """Each loss's validation score at every rate of a --lr-grid, the chosen one bold: the
    table shows the chosen rate alone, and a page mailed without summary.csv did not say
    whether a loss was close at another rate or chose an end of the grid."""
    summary = report.summary
    if not selection.several_rates(summary):
        return ""
    rates = sorted(summary["lr"].dropna().unique())
    title = METRIC_TITLES[report.metric]
    parts = ["<section><h2>Learning rates</h2>"]
    several_datasets = summary["dataset"].nunique() > 1
    columns = [Column("loss", lambda row: row["loss"], lambda row: row["loss"], numeric=False)]
    rate_columns = [(rate, _rate_column(rate)) for rate in rates]
    columns += [column for _, column in rate_columns]

    def bold_if_chosen(row: Row, column: Column) -> str:
        # The column's own rate, not one read back from its title: rates that print alike
        # (1e-3 and 1.0000001e-3, both 'lr 0.001') had their titles' one.
        rate = next((rate for rate, own in rate_columns if own is column), None)
        entry = _rate_entry(row, rate)
        return "strong" if entry is not None and bool(entry["lr_chosen"]) else ""

    for dataset in dict.fromkeys(summary["dataset"]):
        rows = summary[summary["dataset"] == dataset]
        by_loss = {loss: entries.set_index("lr") for loss, entries in rows.groupby("loss")}
        order = [row["loss"] for row in ordered_rows(chosen_rows(rows))]
        table_rows = [{"loss": loss, "rates": by_loss[loss]} for loss in order]
        if several_datasets:
            parts.append(f"<h3>{_e(dataset)}</h3>")
        label = f"Validation {title} by learning rate on {dataset}"
        parts.append(_table(columns, table_rows, cell_class=bold_if_chosen, label=label))
    caption = (
        f"Validation {title} at the epoch each seed chose, mean over the finished seeds, by "
        "learning rate; bold = the rate the comparison reads each loss at (the fewest "
        "diverged seeds, then the best mean). "
        f"{_at_grid_edge(chosen_rows(summary), rates)}"
    )
    parts.append(f'<p class="caption">{_e(caption.strip())}</p></section>')
    return "\n".join(parts)


def _rate_column(rate: float) -> Column:
    def text(row: Row) -> str:
        entry = _rate_entry(row, rate)
        if entry is None:
            return "–"
        diverged, seeds = int(entry["n_diverged"]), int(entry["n_seeds"])
        if diverged and diverged == seeds:
            return "diverged"
        # what a rate with the better mean lost to: fewer diverged seeds come first
        return number(entry["val_score_mean"]) + (f" ({diverged} diverged)" if diverged else "")

    def sort(row: Row) -> Any:
        entry = _rate_entry(row, rate)
        return None if entry is None else entry["val_score_mean"]

    return Column(_rate_title(rate), text, sort)


def _rate_title(rate: float) -> str:
    return f"lr {rate:g}"


def _rate_entry(row: Row, rate: float | None) -> pd.Series | None:
    """The loss's summary row at ``rate`` (one of the same frame's values), if trained there."""
    rates = row.get("rates")
    return None if rates is None or rate not in rates.index else rates.loc[rate]


def _at_grid_edge(chosen: pd.DataFrame, rates: list[float]) -> str:
    """How many losses chose the grid's lowest or highest rate: their best may lie beyond."""
    if len(rates) < 2:
        return ""
    edges = chosen["lr"].isin([rates[0], rates[-1]])
    count = int(edges.sum())
    if not count:
        return "Every loss chose a rate inside the grid."
    return (
        f"{count} of the {len(chosen)} chosen rates are an end of the grid ({rates[0]:g} or "
        f"{rates[-1]:g}): there a loss's best rate may lie beyond it."
    )


def _imbalance(report: Report) -> str:
    dial = imbalance_frame(report.summary)
    if dial is None:
        return ""
    fractions = sorted(dial["fg_fraction"].unique())
    best = best_at_each_fraction(dial)
    rows = []
    for loss, entries in dial.groupby("loss", sort=True):
        row: Row = {"loss": loss}
        for fraction, entry in entries.set_index("fg_fraction").iterrows():
            row[fraction] = entry
        rows.append(row)
    columns = [Column("loss", lambda row: row["loss"], lambda row: row["loss"], numeric=False)]
    columns += [_fraction_column(fraction) for fraction in fractions]
    fraction_of = {_fraction_title(fraction): fraction for fraction in fractions}

    def strong_if_best(row: Row, column: Column) -> str:
        return "strong" if (row["loss"], fraction_of.get(column.title)) in best else ""

    table = _table(columns, rows, cell_class=strong_if_best, label="Imbalance dial")
    # The terminal's caption, word for word ('lower is better' for ECE; 'bold = best': the
    # page draws the best cells bold, td.strong), not a copy of it that fell behind.
    caption = render_imbalance_table(report.summary, metric=report.metric).caption
    return (
        f"<section><h2>Imbalance dial — {_e(dial['dial_group'].iloc[0])}</h2>{table}"
        f'<p class="caption">{_e(caption)}</p></section>'
    )


def _fraction_column(fraction: float) -> Column:
    def text(row: Row) -> str:
        entry = row.get(fraction)
        return "–" if entry is None else mean_sd(entry["score_mean"], entry["score_std"])

    def sort(row: Row) -> Any:
        entry = row.get(fraction)
        return None if entry is None else entry["score_mean"]

    return Column(_fraction_title(fraction), text, sort)


def _fraction_title(fraction: float) -> str:
    return f"fg {fraction:g}"


def _per_class(report: Report) -> str:
    """Dice per class at the chosen epoch, every class (background too), for multiclass
    datasets."""
    summary = chosen_rows(report.summary)
    parts = []
    for dataset in dict.fromkeys(summary["dataset"]):
        rows = summary[summary["dataset"] == dataset]
        classes = class_columns(rows)
        if not classes:  # binary
            continue
        columns = [Column("loss", lambda row: row["loss"], lambda row: row["loss"], numeric=False)]
        columns += classes
        parts.append(f"<h3>{_e(dataset)}</h3>")
        parts.append(_table(columns, ordered_rows(rows), label=f"Dice per class on {dataset}"))
    if not parts:
        return ""
    return (
        "<section><h2>Scores per class</h2>"
        + "\n".join(parts)
        + f'<p class="caption">{_e(class_caption(summary))}</p></section>'
    )


def _figures(report: Report) -> str:
    from losscmp.render import figures

    figures.require_matplotlib()
    results = at_chosen_rates(report.results, report.summary)  # each loss at the table's rate
    parts = ["<section><h2>Figures</h2>"]
    parts.append(
        _figure(
            figures.learning_curves(results, report.metric, report.summary),
            _curves_caption(report, results),
        )
    )
    for dataset in dataset_order(results):
        panel = figures.prediction_panel(results, dataset, report.summary)
        if panel is not None:
            binary = results.datasets.get(dataset, {}).get("mode", "binary") == "binary"
            colours = (
                "green hit, red false positive, blue miss"
                if binary
                else "each class in its colour, grey ignored"
            )
            caption = (
                f"{dataset}: the same {panel.images_of} images, their ground truth and each loss's "
                f"final-epoch prediction (first seed{_at_chosen_rate(report)}); {colours}."
            )
            parts.append(_figure(panel.figure, caption))
    dial = imbalance_frame(report.summary)
    if dial is not None:
        parts.append(
            _figure(
                figures.imbalance_figure(dial, report.metric, split=split_word(report.summary)),
                f"{METRIC_TITLES[report.metric]} against the foreground fraction, "
                f"{figures.dial_spread(dial)}.",
            )
        )
    parts.append("</section>")
    return "\n".join(parts)


def _curves_caption(report: Report, results) -> str:
    """What the learning curves show, as their title says it, and what the rings are."""
    from losscmp.render.figures import curves_title

    return (
        f"{curves_title(results, report.metric)}{_at_chosen_rate(report)}; a ring marks each "
        "epoch a seed chose on validation, where the table reads its scores; the legend in the "
        "table's order."
    )


def _at_chosen_rate(report: Report) -> str:
    """Where the runs tried several learning rates, which one a figure draws: the table's."""
    rates = report.results.trials.get("base_lr", pd.Series()).nunique()
    return ", each loss at the table's learning rate" if rates > 1 else ""


def _figure(figure, caption: str) -> str:
    """A matplotlib figure as an embedded 256-colour PNG (a third of the RGBA PNG's size)."""
    from PIL import Image

    from losscmp.render.figures import png_bytes

    # Compressing the RGBA PNG only to decode it here took a third of a panel's time.
    drawn = png_bytes(figure, dpi=FIGURE_DPI, compress_level=0)
    image = Image.open(io.BytesIO(drawn)).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        buffer, format="PNG", optimize=True
    )
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    width, height = image.size
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _setup(report: Report) -> str:
    parts = ["<section><h2>What was run</h2>"]
    for meta, run_dir in zip(report.results.metas, report.results.run_dirs, strict=True):
        parts.append(_run_setup(meta, run_dir, len(report.results.metas) > 1))
    parts.append("</section>")
    return "\n".join(parts)


def _commit(meta: dict[str, Any]) -> str:
    if not meta.get("git_commit"):
        return "none (losscmp was not run from a git checkout)"
    edited = " with uncommitted changes to losscmp/" if meta.get("git_dirty") else ""
    return _code(meta["git_commit"]) + edited


def _run_setup(meta: dict[str, Any], run_dir: Path, several: bool) -> str:
    run_id = meta.get("run_id", run_dir.name)
    facts = {
        "command": _code(meta.get("command")) if meta.get("command") else "not recorded",
        # where it ran: the command's relative paths (--config configs/x.yaml) are from there
        "working folder": _code(meta["working_dir"]) if meta.get("working_dir") else "not recorded",
        "run folder": _code(str(run_dir)),
        "started": _e(_time(meta.get("started_at"))),
        "finished": _e(_finished(meta)),
        "device": _e(meta.get("device") or "not recorded"),
        "model": _e(_inline(meta.get("model"))),
        "execution": _e(_inline(meta.get("execution"))),
        "git commit": _commit(meta),
        "versions": _e(_inline(meta.get("versions"))),
    }
    if meta.get("resumed_at"):
        resumed = _time(meta["resumed_at"])
        command = meta.get("resume_command")
        facts["resumed"] = _e(resumed) + (f" with {_code(command)}" if command else "")
    failed = meta.get("failed_trials") or {}
    if failed:
        facts["failed trials"] = "<br>".join(
            f"{_code(trial)}: {_e(reason)}" for trial, reason in failed.items()
        )
    heading = f"<h3>Run {_e(run_id)}</h3>" if several else ""
    config = {key: _e(_inline(value)) for key, value in (meta.get("config") or {}).items()}
    losses = {label: _e(_loss_text(info)) for label, info in (meta.get("losses") or {}).items()}
    blocks = [
        _block("Config", _facts(config)),
        _block("Losses", _facts(losses)),
        *_dataset_blocks(meta.get("datasets") or {}),
    ]
    return "\n".join([heading, _facts(facts), f'<div class="blocks">{"".join(blocks)}</div>'])


def _block(title: str, content: str) -> str:
    return f"<div><h4>{_e(title)}</h4>{content}</div>"


def _dataset_blocks(datasets: dict[str, Any]) -> Iterable[str]:
    for label, info in datasets.items():
        if not isinstance(info, dict):
            info = {"info": info}
        shown = {
            key: _e(_inline(value)) for key, value in info.items() if key not in LONG_INFO_KEYS
        }
        yield _block(f"Dataset {label}", _facts(shown))


def _loss_text(info: Any) -> str:
    if not isinstance(info, dict):
        return _inline(info)
    params = info.get("params") or {}
    inside = ", ".join(f"{key}={_inline(value)}" for key, value in params.items())
    return f"{info.get('name', '?')}({inside})"


def _finished(meta: dict[str, Any]) -> str:
    end = meta.get("finished_at")
    if not end:
        return "not finished (still running, or interrupted)"
    start = meta.get("started_at")
    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return _time(end)
    return f"{_time(end)} ({_duration(seconds)})"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _time(value: Any) -> str:
    return str(value).replace("T", " ") if value else "not recorded"


# --------------------------------------------------------------------------- building blocks


def _table(
    columns: Sequence[Column],
    rows: Sequence[Row],
    *,
    row_class: Callable[[Row], str] | None = None,
    cell_class: Callable[[Row, Column], str] | None = None,
    label: str,
    comparison: bool = False,
) -> str:
    """A sortable table: headers from the columns, one body row per row, ``data-sort`` values."""
    headers = "".join(
        f'<th scope="col"{_class("num" if column.numeric else "")}>'
        f"{_e(column.title).replace(chr(10), '<br>')}</th>"
        for column in columns
    )
    body = []
    for row in rows:
        cells = []
        for column in columns:
            classes = [
                "num" if column.numeric else "",
                cell_class(row, column) if cell_class else "",
            ]
            text = _e(column.text(row)).replace("\n", "<br>")
            cells.append(
                f'<td{_class(*classes)} data-sort="{_e(_sort_value(column.sort(row)))}">{text}</td>'
            )
        loss = f' data-loss="{_e(row["loss"])}"' if "loss" in row else ""
        body.append(f"<tr{_class(row_class(row) if row_class else '')}{loss}>{''.join(cells)}</tr>")
    kind = " comparison" if comparison else ""
    # A long table scrolls in a box of its own, under headers that stay in view there
    # (a sticky header sticks to the nearest scrolling box: the page's is not it).
    tall = " tall" if len(rows) > TALL_TABLE_ROWS else ""
    return (
        f'<div class="scroll{tall}"><table class="sortable{kind}" aria-label="{_e(label)}">'
        f"<thead><tr>{headers}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _sort_value(value: Any) -> str:
    """Full precision for numbers (repr round-trips), text as is, '' for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(float(value))
    try:
        return repr(float(value))  # numpy scalars
    except (TypeError, ValueError):
        return str(value)


def _facts(facts: dict[str, str]) -> str:
    """A definition list; values are HTML already."""
    items = "".join(f"<dt>{_e(key)}</dt><dd>{value}</dd>" for key, value in facts.items())
    return f"<dl>{items}</dl>"


def _inline(value: Any) -> str:
    """A run.json value on one line: lists joined, mappings as key=value, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_inline(item)}" for key, item in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_inline(item) for item in value) or "none"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _code(text: str) -> str:
    return f"<code>{_e(text)}</code>"


def _class(*names: str) -> str:
    joined = " ".join(name for name in names if name)
    return f' class="{joined}"' if joined else ""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


STYLE = """
:root { color-scheme: light; --ink: #1d2327; --muted: #5f6b73; --line: #d5dadd;
  --best: #e3f4e1; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0 auto; padding: 1.2rem 1rem 3rem; max-width: 80rem; color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
h4 { font-size: .95rem; margin: 1rem 0 .3rem; color: var(--muted); }
/* A dataset spec is one long word: break it anywhere rather than widen the page. */
h1, h2, h3, h4 { overflow-wrap: anywhere; }
.lead { color: var(--muted); margin: 0; }
.scroll { overflow-x: auto; }
.scroll.tall { max-height: 85vh; overflow-y: auto; }
.scroll.tall thead th { position: sticky; top: 0; z-index: 1; background: #fff; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: .8rem; }
th, td { padding: .25rem .3rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { text-align: left; font-weight: 600; white-space: nowrap; border-bottom: 2px solid #9aa5ab; }
td { white-space: nowrap; }
.num { text-align: right; }
tr.best td { background: var(--best); font-weight: 600; }
tr.diverged td { color: var(--bad); opacity: .75; }
td.bad { color: var(--bad); }
td.strong { font-weight: 700; }
th button { all: inherit; cursor: pointer; padding: 0; border: 0; }
th button::after { content: " ↕"; color: #9aa5ab; }
th[aria-sort="ascending"] button::after { content: " ↑"; color: var(--ink); }
th[aria-sort="descending"] button::after { content: " ↓"; color: var(--ink); }
.caption, figcaption { color: var(--muted); font-size: .85rem; max-width: 60rem; }
.problems { border-left: 4px solid var(--bad); padding: .1rem 1rem; background: #fdf1f0; }
.problems h2 { border: 0; margin-top: .6rem; }
.ok { color: #2e6b30; }
figure { margin: 1.2rem 0; }
img { max-width: 100%; height: auto; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0;
  font-size: .88rem; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.blocks { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr));
  gap: 0 2rem; }
code { font: .85rem ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  table { font-size: 8.5pt; }
  th, td { padding: .15rem .35rem; }
  .scroll, .scroll.tall { overflow: visible; max-height: none; }
  .scroll.tall thead th { position: static; }
  th button::after { content: ""; }
  tr.best td { background: none; }
  tr, figure, dl { break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; }
  img { max-height: 22cm; width: auto; }
}
"""

# Sorting: each header becomes a button; numbers compare as numbers, empty cells go last.
SCRIPT = """
(() => {
  const compare = (a, b) => {
    if (a === "" || b === "") return (a === "") - (b === "");
    const x = Number(a), y = Number(b);
    return Number.isNaN(x) || Number.isNaN(y) ? a.localeCompare(b) : x - y;
  };
  const sort = (table, index, header) => {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const cell of header.parentNode.cells) cell.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const value = (row) => row.cells[index].dataset.sort;
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const [x, y] = [value(a), value(b)];
      if (x === "" || y === "") return compare(x, y);
      return ascending ? compare(x, y) : compare(y, x);
    });
    for (const row of rows) body.appendChild(row);
  };
  for (const table of document.querySelectorAll("table.sortable")) {
    Array.from(table.tHead.rows[0].cells).forEach((header, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.title = "Sort by this column";
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", () => sort(table, index, header));
    });
  }
})();
"""
