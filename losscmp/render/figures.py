"""Figures for ``losscmp report --plots``: learning curves, prediction panels, imbalance dial.

Reads the run folder only (through ``losscmp.summary`` and the store); the HTML
page (``losscmp.render.html``) embeds the same figures. Uses matplotlib's
object-oriented API (``matplotlib.figure.Figure``, no pyplot), which renders
with Agg without touching the user's backend; matplotlib is imported only when
a figure is drawn. PNGs go to ``<run>/plots/`` and are written atomically.

- ``learning_curves.png``: validation score per epoch, one line per loss (the
  mean over its finished seeds, at the rate the table chose) and a band of ± one
  sd across them, a ring on each epoch a seed chose; one panel per dataset (more than
  10 losses: the prediction panel's bands of them, one panel each), each legend in its
  table's order, each loss in one colour throughout.
- ``predictions__<dataset>.png``: a few test images (``panel/test__<dataset>.npz``;
  validation ones, ``panel/val__<dataset>.npz`` or ``panel/val.npz``, for a run
  without a test split) with their ground truth and each loss's final-epoch
  prediction (``panel/<trial-id>.npz``, first seed, which names its split).
  Binary predictions are coloured by outcome: green hit, red false positive,
  blue miss; multiclass ones by class.
- ``imbalance.png``: each loss's headline score against the foreground fraction,
  when the run has an imbalance dial.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from losscmp import selection, summary
from losscmp.errors import LosscmpError
from losscmp.metric_names import score_range
from losscmp.results import RunStore, slug

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HIT, FALSE_POSITIVE, MISS = (0.2, 0.8, 0.2), (0.9, 0.15, 0.15), (0.2, 0.4, 1.0)
TRUTH = (1.0, 1.0, 1.0)
IGNORED = (0.6, 0.6, 0.6)
MAX_PANEL_IMAGES = 4
# Loss columns per band of the prediction panel: 26 losses in one row made a figure 5300
# pixels wide, which a page shrinks to thumbnails with unreadable titles.
MAX_PANEL_LOSSES = 8
# Learning curves: the colour cycle has ten colours, so losses 11 to 30 repeat them with
# these line styles; a legend of more losses than fit beside the lines goes outside them
# (inside, 26 entries squashed the axes to nothing).
LINE_STYLES = ("-", "--", ":")
LEGEND_INSIDE_MAX = 10
# A dataset's learning curves share one axes up to this many losses (each a colour of its
# own); more are drawn in bands of MAX_PANEL_LOSSES: 23 losses' lines and ± sd bands in one
# axes were a mud nobody could follow.
MAX_LOSSES_IN_ONE_AXES = 10
# ... as does one with a label longer than this: 'tversky(alpha=0.7,beta=0.3)' and its like
# made a legend inside as wide as half the axes, over the lines.
LEGEND_INSIDE_CHARS = 26
LEGEND_ROWS = 16
LEGEND_COLUMN_WIDTH = 2.0  # inches the figure widens by for each column of such a legend,
LEGEND_CHAR_INCHES, LEGEND_HANDLE_INCHES = 0.068, 0.6  # or more, for its longest label (8 pt)
# Each loss's epochs chosen on validation (where the table reads its scores): rings of this
# diameter (points) around the curve's markers; CHOSEN_EPOCH_GID names them.
RING_SIZE, RING_WIDTH = 9.0, 1.3
CHOSEN_EPOCH_GID = "chosen epochs"
NO_CURVES = "no epoch validated:\nevery trial diverged in its first"


def write_plots(run_dir: Path | str, *, metric: str = "dice") -> list[Path]:
    """Draw every figure the run supports; return the PNG paths written."""
    metric = summary.check_metric(metric)
    require_matplotlib()
    store = RunStore(run_dir)
    results = summary.load_run(store.run_dir, damaged_ok=True)  # as the report read it
    table = summary.summarize(results, metric)
    shown = summary.at_chosen_rates(results, table)  # each loss at the table's rate
    curves = learning_curves(shown, metric, table)
    written = [store.write_figure("learning_curves.png", png_bytes(curves))]
    for dataset in summary.dataset_order(shown):
        panel = prediction_panel(shown, dataset, table)
        if panel is not None:
            name = f"predictions__{slug(dataset)}.png"
            written.append(store.write_figure(name, png_bytes(panel.figure)))
    dial = summary.imbalance_frame(table)
    if dial is not None:
        written.append(
            store.write_figure(
                "imbalance.png",
                png_bytes(imbalance_figure(dial, metric, split=summary.split_word(table))),
            )
        )
    return written


def require_matplotlib() -> None:
    """Import matplotlib, or say in one line why it cannot be: on its first import it
    refuses an MPLBACKEND that names no backend (a traceback at the end of a whole run,
    its report.html unwritten), though these figures use none (they draw with Agg)."""
    try:
        import matplotlib  # noqa: F401
    except ValueError as error:
        backend = os.environ.get("MPLBACKEND")
        if not backend or "backend" not in str(error):
            raise
        raise LosscmpError(
            f"MPLBACKEND={backend!r} names no matplotlib backend, so matplotlib cannot be "
            "imported to draw the figures; unset it, losscmp needs none "
            "(env -u MPLBACKEND losscmp ...)"
        ) from None


def png_bytes(figure: Figure, dpi: int = 110, *, compress_level: int = 6) -> bytes:
    """The figure as a PNG cropped to what it draws. savefig's 'tight' draws the figure
    twice (once to measure); a figure placed by hand (no layout engine: the prediction
    panel) is measured without that draw, which would resample its image once more.
    ``compress_level`` 0: stored, for a PNG that is decoded at once (the page's)."""
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    bbox = "tight"
    if figure.get_layout_engine() is None:
        figure.set_dpi(dpi)  # text is measured at the dpi it is drawn at
        renderer = FigureCanvasAgg(figure).get_renderer()
        bbox = figure.get_tightbbox(renderer).padded(rcParams["savefig.pad_inches"])
    figure.savefig(
        buffer,
        format="png",
        dpi=dpi,
        bbox_inches=bbox,
        pil_kwargs={"compress_level": compress_level},
    )
    return buffer.getvalue()


def plain(label: str) -> str:
    """A label as matplotlib text: a folder dataset's path may hold '$', and matplotlib reads
    the text between two of them as math (a parse error for 'cost_$a_$'); '\\$' is a dollar."""
    return str(label).replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# --------------------------------------------------------------------------- learning curves


def learning_curves(
    results: summary.RunResults, metric: str = "dice", table: pd.DataFrame | None = None
) -> Figure:
    """Validation score per epoch: mean over a loss's finished seeds (as the table's), band
    = ± one sd across them, a ring on each epoch one chose. ``table`` (``summary.summarize``
    of ``results``, summarized here when not given) orders the legend as its ranking."""
    table = summary.summarize(results, metric) if table is None else table
    results = summary.at_chosen_rates(results, table)  # a grid's other rates: not drawn
    datasets = summary.dataset_order(results)
    columns = min(3, len(datasets))
    looks = _loss_looks(table, results.epochs["loss"])
    bands = {
        dataset: _curve_bands(
            _dataset_curves(results, dataset, metric, table[table["dataset"] == dataset])
        )
        for dataset in datasets
    }
    legends = {
        (dataset, index): _legend_place(_legend_labels(band), inside=len(of_dataset) == 1)
        for dataset, of_dataset in bands.items()
        for index, band in enumerate(of_dataset)
    }
    widest = max((legend.inches for legend in legends.values()), default=0.0)
    tallest = max(len(of_dataset) for of_dataset in bands.values()) if bands else 1
    rows = math.ceil(len(datasets) / columns) * tallest
    figure = _figure((5.0 + widest) * columns, 3.6 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    used = set()
    for position, dataset in enumerate(datasets):
        # A dataset's bands one under another, in its column of the grid.
        first_row, column = position // columns * tallest, position % columns
        axes = [grid[first_row + index, column] for index in range(len(bands[dataset]))]
        for index, (axis, band) in enumerate(zip(axes, bands[dataset], strict=True)):
            _draw_curves(axis, band, looks, metric, legends[dataset, index])
            axis.set_title(_band_title(dataset, bands[dataset], index), fontsize=10)
        _same_scores_axis(axes)
        used.update(map(id, axes))
    for axis in grid.ravel():
        if id(axis) not in used:
            axis.set_visible(False)
    figure.suptitle(curves_title(results, metric))
    return figure


def _curve_bands(curves: list[Curve]) -> list[list[Curve]]:
    """A dataset's curves in the axes they are drawn in: one for up to
    MAX_LOSSES_IN_ONE_AXES, else bands of up to MAX_PANEL_LOSSES in the table's order, the
    prediction panel's bands."""
    if len(curves) <= MAX_LOSSES_IN_ONE_AXES:
        return [curves]
    by_loss = {curve.loss: curve for curve in curves}
    return [[by_loss[loss] for loss in band] for band in _bands(list(by_loss))]


def _band_title(dataset: str, bands: list[list[Curve]], index: int) -> str:
    """The dataset, and which of its losses a band draws: 'synthetic: 9–16 of 23 in the
    table's order'."""
    if len(bands) == 1:
        return plain(dataset)
    first = sum(len(band) for band in bands[:index]) + 1
    last, total = first + len(bands[index]) - 1, sum(map(len, bands))
    return f"{plain(dataset)}: {first}–{last} of {total} in the table's order"


def _same_scores_axis(axes: list[Axes]) -> None:
    """A dataset's bands on one score scale, so that a line reads the same in each."""
    limits = [axis.get_ylim() for axis in axes]
    bottom, top = min(low for low, _ in limits), max(high for _, high in limits)
    for axis in axes:
        axis.set_ylim(bottom, top)


def curves_title(results: summary.RunResults, metric: str) -> str:
    """What the lines and bands are: a band only where a loss has several seeds."""
    seeds = results.trials.groupby(["dataset", "loss"])["seed"].nunique()
    what = f"Validation {summary.METRIC_TITLES[metric]} per epoch"
    if len(seeds) and seeds.max() > 1:
        return f"{what}: mean over seeds, band ± 1 sd"
    return f"{what} (one seed)"


@dataclass(frozen=True)
class LegendPlace:
    """Where a legend goes: inside the axes (0 columns) or in columns beside them."""

    columns: int
    column_inches: float = 0.0

    @property
    def inches(self) -> float:
        """How much wider the figure is for it."""
        return self.columns * self.column_inches


def _legend_place(labels: list[str], inside: bool = True) -> LegendPlace:
    """Inside the axes for a few short labels; else (or where not ``inside``: the bands of
    one dataset's curves, each legend beside its lines as the others) beside them, in
    columns of 16."""
    longest = max(map(len, labels), default=0)
    if inside and len(labels) <= LEGEND_INSIDE_MAX and longest <= LEGEND_INSIDE_CHARS:
        return LegendPlace(0)
    width = max(LEGEND_COLUMN_WIDTH, LEGEND_HANDLE_INCHES + LEGEND_CHAR_INCHES * longest)
    return LegendPlace(math.ceil(len(labels) / LEGEND_ROWS), width)


CHOSEN_EPOCH_LABEL = "epoch chosen on validation"


def _legend_labels(curves: list[Curve]) -> list[str]:
    """The learning curves' legend: a line per loss, then the rings' entry."""
    return [curve.label for curve in curves] + ([CHOSEN_EPOCH_LABEL] if curves else [])


def score_label(metric: str, where: str = "") -> str:
    """A score's axis label: its title, where it was read, and, for a score lower is better
    of (ECE), that: every other line climbing to the top is the better one."""
    notes = [where] if where else []
    if not selection.higher_is_better(metric):
        notes.append("lower is better")
    title = summary.METRIC_TITLES[metric]
    return f"{title} ({'; '.join(notes)})" if notes else title


@dataclass(frozen=True)
class Curve:
    """One loss's line: its legend label, the mean and sd over seeds by epoch, and the
    epochs its seeds chose on validation."""

    loss: str
    label: str
    mean: pd.Series
    spread: pd.Series
    chosen: list[int]


def _dataset_curves(
    results: summary.RunResults, dataset: str, metric: str, ranking: pd.DataFrame
) -> list[Curve]:
    """Each loss's curve, in the table's order (best first, losses without a rank last).
    Over its finished seeds only, as the table's means: a seed that diverged at epoch 3
    made the mean jump there, and the band narrow. A loss whose every seed diverged keeps
    their epochs before it did, labelled so. Where the losses' lines are over different
    numbers of seeds (some diverged; a stopped run), each label says its number."""
    column = f"val_{metric}"
    epochs = results.epochs[results.epochs["dataset"] == dataset]
    epochs = epochs[np.isfinite(epochs[column].astype(float))]  # a diverged epoch: NaN
    trials = results.trials[results.trials["dataset"] == dataset]
    diverged = trials[trials["status"] == "diverged"][["loss", "seed"]]
    diverged_pairs = set(diverged.itertuples(index=False, name=None))
    curves, seeds = [], {}
    for loss, label in _ranked_losses(epochs, ranking):
        rows = epochs[epochs["loss"] == loss]
        finished = rows[[(loss, seed) not in diverged_pairs for seed in rows["seed"]]]
        if finished.empty:
            label, chosen = f"{label} (diverged)", []
        else:
            rows, chosen = finished, _chosen_epochs(finished, column, metric)
            seeds[loss] = finished["seed"].nunique()
        by_epoch = rows.groupby("epoch")[column]
        spread = by_epoch.std(ddof=1).fillna(0.0)
        curves.append(Curve(loss, label, by_epoch.mean(), spread, chosen))
    if len(set(seeds.values())) > 1:
        curves = [
            dataclasses.replace(curve, label=f"{curve.label} ({_seeds(seeds[curve.loss])})")
            if curve.loss in seeds
            else curve
            for curve in curves
        ]
    return curves


def _seeds(count: int) -> str:
    return f"{count} seed" + ("" if count == 1 else "s")


def _ranked_losses(epochs: pd.DataFrame, ranking: pd.DataFrame) -> list[tuple[str, str]]:
    """(loss, legend label) of the losses drawn, in the table's order (best first, losses
    without a rank last); the label names the rate where losses were trained at several."""
    chosen = selection.chosen_rows(ranking).sort_values("rank", na_position="last", kind="stable")
    order = list(dict.fromkeys([*chosen["loss"], *epochs["loss"]]))
    rates = dict(zip(chosen["loss"], chosen["lr"], strict=True)) if "lr" in chosen else {}
    several = selection.several_rates(ranking)
    drawn = set(epochs["loss"])
    return [
        (loss, plain(loss) + (f" (lr {rates[loss]:g})" if several and loss in rates else ""))
        for loss in order
        if loss in drawn
    ]


def _chosen_epochs(rows: pd.DataFrame, column: str, metric: str) -> list[int]:
    """The epochs the seeds of ``rows`` chose on validation, as the table reads them."""
    chosen = set()
    for _, trial in rows.groupby("seed", sort=True):
        trial = trial.sort_values("epoch")
        scores = trial[column].to_numpy(dtype=float)
        chosen.add(int(trial["epoch"].iloc[selection.chosen_epoch(scores, metric)]))
    return sorted(chosen)


def _loss_looks(table: pd.DataFrame, losses: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each loss's (colour, line style), the same in every panel: in the order of the
    losses' mean rank over the datasets (the table's order for one), colours of the cycle
    then dashed and dotted lines past ten. Ranked per panel, the colours changed places
    between the panels of a run with an imbalance dial."""
    chosen = selection.chosen_rows(table)
    ranks = chosen.groupby("loss", sort=False)["rank"].mean()
    ranked = ranks.sort_values(na_position="last", kind="stable").index
    order = list(dict.fromkeys([*ranked, *losses]))
    return {
        loss: (f"C{index % 10}", LINE_STYLES[index // 10 % len(LINE_STYLES)])
        for index, loss in enumerate(order)
    }


def _draw_curves(
    axis: Axes,
    curves: list[Curve],
    looks: dict[str, tuple[str, str]],
    metric: str,
    legend: LegendPlace,
) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    low, high = score_range(metric)
    handles = []
    for curve in curves:
        colour, style = looks[curve.loss]
        epochs = curve.mean.index
        (line,) = axis.plot(
            epochs, curve.mean.to_numpy(), style, color=colour, marker="o", markersize=3
        )
        line.set_label(curve.label)
        # A band past the score's range (a Dice above 1) is no score a seed could have had.
        axis.fill_between(
            epochs,
            np.clip(curve.mean - curve.spread, low, high),
            np.clip(curve.mean + curve.spread, low, high),
            color=line.get_color(),
            alpha=0.2,
            lw=0,
        )
        # A scatter, not a line: one line per loss stays the axes' lines.
        axis.scatter(
            curve.chosen,
            curve.mean.loc[curve.chosen].to_numpy(),
            s=RING_SIZE**2,
            facecolors="none",
            edgecolors=line.get_color(),
            linewidths=RING_WIDTH,
            gid=CHOSEN_EPOCH_GID,
            zorder=line.get_zorder() + 0.1,
        )
        handles.append(line)
    # Whole epochs only, even where one fits in the view (a one-epoch run): by default
    # MaxNLocator falls back to fractions below two.
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axis.set_xlabel("epoch")
    axis.set_ylabel(score_label(metric))
    _within(axis, low, high)
    axis.grid(alpha=0.3)
    if handles:
        ring = Line2D([], [], **_ring("0.2"), label=CHOSEN_EPOCH_LABEL)
        _legend(axis, [*handles, ring], legend)
    else:  # every trial diverged before validating an epoch: empty axes, said so
        axis.set_xticks([])
        axis.text(0.5, 0.5, NO_CURVES, transform=axis.transAxes, ha="center", va="center")


def _within(axis: Axes, low: float, high: float) -> None:
    """The y view as matplotlib's margins make it, within the score's range [low, high]."""
    bottom, top = axis.get_ylim()
    axis.set_ylim(max(low, bottom), min(high, top))


def _ring(colour) -> dict:
    """A legend entry's look of a chosen epoch's ring."""
    return dict(
        color=colour,
        linestyle="none",
        marker="o",
        markersize=RING_SIZE,
        markerfacecolor="none",
        markeredgecolor=colour,
        markeredgewidth=RING_WIDTH,
    )


def _legend(axis: Axes, handles: list | None, place: LegendPlace) -> None:
    """The legend (of ``handles``, or every labelled line) inside the axes, or in
    columns beside them."""
    extra = {} if handles is None else {"handles": handles}
    if place.columns:
        axis.legend(
            **extra,
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            ncols=place.columns,
        )
    else:
        axis.legend(**extra, fontsize=8)


# --------------------------------------------------------------------------- prediction panel


@dataclass(frozen=True)
class PredictionPanel:
    figure: Figure
    split: str  # whose images: "test", or "val" for a run without a test split

    @property
    def images_of(self) -> str:
        return _split_name(self.split)


def _split_name(split: str) -> str:
    return "test" if split == "test" else "validation"


def _reference_panel(run_dir: Path, dataset: str, single: bool, split: str):
    """The images and masks the trials' panel predictions are of, and their file; None
    when absent."""
    store = RunStore(run_dir)
    name = f"{split}__{slug(dataset)}"
    arrays = store.read_panel(name)
    if arrays is None and single and split == "val":
        name = "val"  # single-dataset runs of the first version
        arrays = store.read_panel(name)
    if arrays is None or not {"images", "masks"} <= arrays.keys():
        return None
    return {"images": arrays["images"], "masks": arrays["masks"], "file": store.panel_file(name)}


def _loss_predictions(results: summary.RunResults, dataset: str) -> tuple[str, dict]:
    """Each loss's final prediction from its lowest seed that has a panel file (as
    (file, array)), and their split: the first one's (a run resumed across versions may
    hold validation and test panels; the others are left out)."""
    split, predictions = None, {}
    # Stable: the losses stay in the trials' order (by name); numpy's default sort keeps
    # it only for a few rows, and scrambled the columns of a panel of 26 losses.
    trials = results.trials[results.trials["dataset"] == dataset]
    trials = trials.sort_values("seed", kind="stable")
    for trial in trials.itertuples(index=False):
        if trial.loss in predictions:
            continue
        for run_dir in results.run_dirs:
            store = RunStore(run_dir)
            arrays = store.read_panel(trial.trial_id)
            if arrays is None or "pred" not in arrays:
                continue
            own = str(arrays["split"]) if "split" in arrays else "val"  # older panels: val
            split = split or own
            if own == split:
                predictions[trial.loss] = (store.panel_file(trial.trial_id), arrays["pred"])
                break
    return split or "val", predictions


def prediction_panel(
    results: summary.RunResults, dataset: str, table: pd.DataFrame | None = None
) -> PredictionPanel | None:
    """Rows: test images (validation without a test split); columns: image, ground truth,
    one per loss, in the order of ``table`` (``summary.summarize`` of ``results``,
    summarized here when not given), as the learning curves' legend. None without data,
    or where no trial left a prediction (each diverged)."""
    single = len(results.datasets) <= 1
    split, predictions = _loss_predictions(results, dataset)
    if not predictions:
        return None
    table = summary.summarize(results) if table is None else table
    drawn = pd.DataFrame({"loss": list(predictions)})
    ranked = _ranked_losses(drawn, table[table["dataset"] == dataset])
    predictions = {loss: predictions[loss] for loss, _ in ranked}
    panel = next(
        (
            found
            for run_dir in results.run_dirs
            if (found := _reference_panel(run_dir, dataset, single, split)) is not None
        ),
        None,
    )
    if panel is None:
        return None
    mode = results.datasets.get(dataset, {}).get("mode", "binary")
    images, masks = panel["images"][:MAX_PANEL_IMAGES], panel["masks"][:MAX_PANEL_IMAGES]
    predictions = {
        loss: _fitting(prediction, where, masks, panel["file"])
        for loss, (where, prediction) in predictions.items()
    }
    classes = _class_count(results, dataset, masks, predictions.values())
    titles = {loss: _column_title(loss) for loss in predictions}
    lines = max(title.count("\n") + 1 for title in titles.values())
    grid = _Grid(images.shape[1:3], len(images), _bands(list(predictions)), lines)
    figure = _montage_figure(grid)
    axis = figure.axes[0]
    canvas = grid.blank()
    for band, losses in enumerate(grid.bands):
        for row, (image, mask) in enumerate(zip(images, masks, strict=True)):
            # A large image's tiles are coloured from the pixels the panel keeps (the
            # colours are per pixel: the same tile); its Dice from all of them.
            shown, shown_mask = grid.reduced(image), grid.reduced(mask)
            tiles = [_image_tile(shown), _truth_tile(shown, shown_mask, mode)]
            labels = [None, None]
            for loss in losses:
                prediction = predictions[loss][row]
                tiles.append(_outcome_tile(shown, shown_mask, grid.reduced(prediction), mode))
                labels.append(f"Dice {_prediction_dice(mask, prediction, mode, classes):.2f}")
            for column, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
                grid.paste(canvas, tile, band, row, column)
                if label is not None:
                    _tile_text(axis, grid, label, (band, row, column), below=True)
        for column, title in enumerate(["image", "ground truth", *map(titles.get, losses)]):
            _tile_text(axis, grid, title, (band, 0, column), below=False)
    _show_pixels(axis, canvas)
    _frame_tiles(axis, grid)
    # At a fixed distance from the top, in the room _montage_figure leaves above the tiles'
    # titles: matplotlib's 98 % of the height put it over them in a panel of several bands.
    figure.suptitle(
        f"{plain(dataset)}: final-epoch predictions on {_split_name(split)} images (first seed)",
        fontsize=10,
        y=1 - PANEL_TITLE_INCHES / figure.get_size_inches()[1],
    )
    _add_legend(figure, results, dataset, mode)
    return PredictionPanel(figure, split)


def _column_title(loss: str) -> str:
    """A loss's column title in lines that fit above its tile, broken after a '(' or ','
    where it can be (a word longer than a line, anywhere): a spec such as
    'focal_tversky(alpha=0.7,beta=0.3,gamma=0.75)' ran over its neighbours' titles."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[(,])", loss):
        if line and len(line) + len(piece) > TITLE_CHARS:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    parts = [
        line[start : start + TITLE_CHARS]
        for line in lines
        for start in range(0, max(1, len(line)), TITLE_CHARS)
    ]
    return "\n".join(plain(part) for part in parts)


def _bands(losses: list[str]) -> list[list[str]]:
    """The losses in bands of at most MAX_PANEL_LOSSES, as even as they go (26: 7, 7, 7, 5)."""
    count = max(1, math.ceil(len(losses) / MAX_PANEL_LOSSES))
    size = math.ceil(len(losses) / count)
    return [losses[start : start + size] for start in range(0, len(losses), size)] or [[]]


def _class_count(results: summary.RunResults, dataset: str, masks, predictions) -> int:
    """The dataset's classes (background included); for a run that did not record them,
    one more than the highest label drawn."""
    names = results.datasets.get(dataset, {}).get("class_names") or []
    if len(names) >= 2:
        return len(names)
    labelled = masks[masks != summary.IGNORE_LABEL]
    labels = [int(labelled.max(initial=1)), *(int(p.max()) for p in predictions)]
    return max(labels) + 1


# The panel is one picture: every tile pasted into one array, shown on one Axes (each of
# its pixels drawn as a block of output pixels: masks stay crisp and the PNGs compress
# twice as well), with the titles, Dice labels and frames drawn over it. One Axes per tile
# (120 for 23 losses) cost seconds per dataset to create, lay out and draw. Sizes in
# inches, as the Axes grid had them: a 1.6-inch tile in a 1.9-inch cell.
TILE_INCHES = 1.6
COLUMN_GAP_INCHES = 0.3
LABEL_INCHES = 0.24  # below each row of tiles: the Dice labels
TITLE_INCHES = 0.24  # above each band: the column titles (one line of them)
TITLE_LINE_INCHES = 0.15  # each further line of a column title (9 pt, spaced 1.2)
TITLE_CHARS = 22  # characters in a line of a column title: 1.7 inch of 9 pt text at most
MIN_TILE_PIXELS = 160  # small images are enlarged (nearest) so that gaps are fine-grained
# Large images are reduced (nearest) to tiles of at most this many pixels a side: a tile
# is drawn 160 (report.html, 100 dpi) or 176 pixels (--plots, 110 dpi) wide, so pixels
# past that were never shown, and a 512-pixel image's panel of 23 losses was an array of
# 130 MB. 192: a 64-pixel image's enlarged tile; no panel's array is larger than its.
MAX_TILE_PIXELS = 192
TITLE_PAD_POINTS, LABEL_PAD_POINTS = 6.0, 4.0  # matplotlib's title and xlabel pads
PANEL_TOP_INCHES = 0.45  # above the tiles: their column titles, and the panel's title
PANEL_TITLE_INCHES = 0.06  # from the figure's top edge to the top of the panel's title


@dataclass(frozen=True)
class _Grid:
    """Where each tile of the panel goes in its one array (pixels, y down)."""

    image_shape: tuple[int, int]  # H, W of an image
    rows: int  # images per band
    bands: list[list[str]]  # the losses of each band
    title_lines: int = 1  # the most lines of a column title

    @property
    def scale(self) -> int:
        return max(1, math.ceil(MIN_TILE_PIXELS / max(self.image_shape)))

    @property
    def kept(self) -> tuple[int, int]:
        """H, W of the pixels kept of an image: all of them, or those of a reduced one."""
        longest = max(self.image_shape)
        if longest <= MAX_TILE_PIXELS:
            return self.image_shape
        return tuple(max(1, round(side * MAX_TILE_PIXELS / longest)) for side in self.image_shape)

    @property
    def tile(self) -> tuple[int, int]:
        return self.kept[0] * self.scale, self.kept[1] * self.scale

    def reduced(self, pixels: np.ndarray) -> np.ndarray:
        """An image (or mask) of ``image_shape`` as its kept pixels: each the one nearest
        the centre of its cell, as the lookup picks them."""
        if self.kept == tuple(self.image_shape):
            return pixels
        rows, columns = (
            ((np.arange(kept) + 0.5) * side / kept).astype(np.intp)
            for kept, side in zip(self.kept, self.image_shape, strict=True)
        )
        return pixels[rows[:, None], columns]

    @property
    def pixels_per_inch(self) -> float:
        return max(self.tile) / TILE_INCHES

    def _pixels(self, inches: float) -> int:
        return round(inches * self.pixels_per_inch)

    @property
    def columns(self) -> int:
        return 2 + max(map(len, self.bands))

    @property
    def title_height(self) -> int:
        return self._pixels(TITLE_INCHES + (self.title_lines - 1) * TITLE_LINE_INCHES)

    @property
    def band_height(self) -> int:
        return self.title_height + self.rows * (self.tile[0] + self._pixels(LABEL_INCHES))

    def shape(self) -> tuple[int, int]:
        width = self.columns * self.tile[1] + (self.columns - 1) * self._pixels(COLUMN_GAP_INCHES)
        return len(self.bands) * self.band_height, width

    def corner(self, band: int, row: int, column: int) -> tuple[int, int]:
        """The tile's top left pixel (y, x)."""
        y = band * self.band_height + self.title_height
        y += row * (self.tile[0] + self._pixels(LABEL_INCHES))
        return y, column * (self.tile[1] + self._pixels(COLUMN_GAP_INCHES))

    def places(self) -> list[tuple[int, int, int]]:
        """(band, row, column) of every tile drawn."""
        return [
            (band, row, column)
            for band, losses in enumerate(self.bands)
            for row in range(self.rows)
            for column in range(2 + len(losses))
        ]

    def blank(self) -> np.ndarray:
        return np.full((*self.shape(), 3), 255, np.uint8)

    def paste(self, canvas: np.ndarray, tile: np.ndarray, *place: int) -> None:
        y, x = self.corner(*place)
        enlarged = tile.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        canvas[y : y + self.tile[0], x : x + self.tile[1]] = enlarged


def _montage_figure(grid: _Grid) -> Figure:
    """A figure holding one Axes the size of the panel's array, placed by hand: with
    room for the suptitle above and the legend below (no layout engine: nothing to lay
    out; savefig's tight bounding box trims the rest)."""
    from matplotlib.figure import Figure

    height, width = (pixels / grid.pixels_per_inch for pixels in grid.shape())
    top, bottom, side = PANEL_TOP_INCHES, 0.3, 0.1
    figure = Figure(figsize=(width + 2 * side, height + top + bottom))
    size = figure.get_size_inches()
    axis = figure.add_axes((side / size[0], bottom / size[1], width / size[0], height / size[1]))
    axis.set_axis_off()
    return figure


def _show_pixels(axis: Axes, canvas: np.ndarray) -> None:
    """``canvas`` (8-bit RGB) over the whole Axes, each of its pixels a block of the
    output's pixels, as imshow's 'nearest' draws it, but picked out by numpy: Agg's
    resampling took a second or more for a panel of 23 losses (3.6 million pixels)."""
    height, width = canvas.shape[:2]
    image = _pixel_image_class()(axis, extent=(-0.5, width - 0.5, height - 0.5, -0.5))
    image.set_data(canvas)
    axis.add_image(image)
    axis.set_xlim(-0.5, width - 0.5)
    axis.set_ylim(height - 0.5, -0.5)
    axis.set_aspect("equal")


@functools.cache
def _pixel_image_class():
    from matplotlib.image import AxesImage
    from matplotlib.transforms import IdentityTransform

    class PixelImage(AxesImage):
        """An RGB image drawn by nearest-neighbour lookup in numpy."""

        def make_image(self, renderer, magnification=1.0, unsampled=False):
            # Every output pixel whose centre is on the picture takes the picture's pixel
            # under that centre, so its blocks end where the frames' vector lines are.
            box = self.get_window_extent(renderer)
            left, bottom = math.floor(box.x0), math.floor(box.y0)
            centres_x = np.arange(left, math.ceil(box.x1)) + 0.5
            centres_y = np.arange(bottom, math.ceil(box.y1)) + 0.5  # upwards, as Agg's rows
            source = np.asarray(self.get_array())
            height, width = source.shape[:2]
            columns = np.floor((centres_x - box.x0) / box.width * width).astype(np.intp)
            rows = np.floor((box.y1 - centres_y) / box.height * height).astype(np.intp)
            pixels = np.empty((len(rows), len(columns), 4), np.uint8)
            pixels[..., :3] = source[
                np.clip(rows, 0, height - 1)[:, None], np.clip(columns, 0, width - 1)
            ]
            pixels[..., 3] = 255
            return pixels, left, bottom, IdentityTransform()

    return PixelImage


def _tile_text(axis: Axes, grid: _Grid, text: str, place, *, below: bool) -> None:
    """A tile's title (above it, 9 pt) or its Dice label (below it, 8 pt)."""
    from matplotlib.transforms import ScaledTranslation

    y, x = grid.corner(*place)
    pad = -LABEL_PAD_POINTS if below else TITLE_PAD_POINTS
    offset = ScaledTranslation(0, pad / 72, axis.get_figure().dpi_scale_trans)
    axis.text(
        x - 0.5 + grid.tile[1] / 2,
        y - 0.5 + (grid.tile[0] if below else 0),
        text,
        fontsize=8 if below else 9,
        ha="center",
        va="top" if below else "baseline",
        transform=axis.transData + offset,
    )


def _frame_tiles(axis: Axes, grid: _Grid) -> None:
    """A thin black frame around every tile, as an Axes' spines drew."""
    from matplotlib import rcParams
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    height, width = grid.tile
    frames = []
    for place in grid.places():
        y, x = grid.corner(*place)
        frames.append(Rectangle((x - 0.5, y - 0.5), width, height))
    axis.add_collection(
        PatchCollection(
            frames,
            facecolor="none",
            edgecolor=rcParams["axes.edgecolor"],
            linewidth=rcParams["axes.linewidth"],
            clip_on=False,
        ),
        autolim=False,
    )


def _fitting(prediction: np.ndarray, where: Path, masks: np.ndarray, reference: Path):
    """``prediction`` (of ``where``) when it covers the masks of ``reference``; a panel
    file copied from another run (other images, another size) would be drawn over them,
    or index past their end."""
    if len(prediction) < len(masks) or prediction.shape[1:] != masks.shape[1:]:
        raise LosscmpError(
            f"{where} is damaged ('pred' has shape {prediction.shape}, the masks of "
            f"{reference.name} {masks.shape}); delete it to draw the other figures"
        )
    return prediction


def _image_tile(image: np.ndarray) -> np.ndarray:
    """The image as imshow shows it: 8-bit RGB, values outside the range clipped."""
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f":
        return _bytes(np.clip(image, 0.0, 1.0))
    return np.clip(image, 0, 255).astype(np.uint8)


def _truth_tile(image: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    colours = {TRUTH: mask == 1} if mode == "binary" else _class_colours(mask)
    return _bytes(_overlay(image, colours, ignored=mask == summary.IGNORE_LABEL))


def _prediction_tile(
    image: np.ndarray,
    mask: np.ndarray,
    prediction: np.ndarray,
    mode: str,
    classes: int = 2,
) -> tuple[np.ndarray, float]:
    """The prediction over the image, and its Dice."""
    tile = _outcome_tile(image, mask, prediction, mode)
    return tile, _prediction_dice(mask, prediction, mode, classes)


def _outcome_tile(image: np.ndarray, mask: np.ndarray, prediction: np.ndarray, mode: str):
    """The prediction over the image: binary, each pixel's outcome (hit, false positive,
    miss); multiclass, the predicted classes' colours."""
    valid = mask != summary.IGNORE_LABEL
    if mode == "binary":
        truth, predicted = mask == 1, prediction == 1
        outcome = {
            HIT: truth & predicted,
            FALSE_POSITIVE: ~truth & predicted,
            MISS: truth & ~predicted,
        }
        return _bytes(_overlay(image, outcome, ignored=~valid))
    return _bytes(_overlay(image, _class_colours(prediction), ignored=~valid))


def _prediction_dice(mask: np.ndarray, prediction: np.ndarray, mode: str, classes: int) -> float:
    """The prediction's Dice as images.csv has it: binary, the foreground's; multiclass,
    the mean over every foreground class 1..``classes``-1, a class in neither the mask
    nor the prediction counting 1 (losscmp.metrics)."""
    valid = mask != summary.IGNORE_LABEL
    if mode == "binary":
        return _dice(prediction == 1, mask == 1, valid)
    # Every foreground class, as metrics.per_image_scores averages them: only those in
    # the mask or the prediction gave a panel label other than the image's Dice.
    scores = [_dice(prediction == k, mask == k, valid) for k in range(1, classes)]
    return float(np.mean(scores)) if scores else 1.0


def _bytes(canvas: np.ndarray) -> np.ndarray:
    """Colours in [0, 1] as 8-bit, truncated as imshow converts them."""
    return (canvas * 255).astype(np.uint8)


def _add_legend(figure: Figure, results: summary.RunResults, dataset: str, mode: str) -> None:
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    if mode == "binary":
        entries = {"truth": TRUTH, "hit": HIT, "false positive": FALSE_POSITIVE, "miss": MISS}
    else:
        names = results.datasets.get(dataset, {}).get("class_names") or []
        palette = colormaps["tab10"]
        entries = {name: palette(k % 10)[:3] for k, name in enumerate(names[1:], start=1)}
    handles = [
        Patch(facecolor=c, edgecolor="0.3", label=plain(name)) for name, c in entries.items()
    ]
    if handles:
        figure.legend(handles=handles, loc="lower center", ncols=len(handles), fontsize=8)


def _class_colours(labels: np.ndarray) -> dict[tuple, np.ndarray]:
    """Foreground classes 1..9 painted in tab10 colours; background stays the image."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    classes = [k for k in np.unique(labels) if 0 < k < summary.IGNORE_LABEL]
    return {tuple(palette(k % 10)[:3]): labels == k for k in classes}


def _overlay(
    image: np.ndarray, colours: dict[tuple, np.ndarray], ignored: np.ndarray | None = None
) -> np.ndarray:
    """The image dimmed to grey, with each boolean mask painted in its colour."""
    base = image.astype(np.float32) / 255.0
    grey = base.mean(axis=-1, keepdims=True) if base.ndim == 3 else base[..., None]
    canvas = np.repeat(0.35 * grey, 3, axis=-1)
    for colour, where in colours.items():
        canvas[where] = colour
    if ignored is not None:
        canvas[ignored] = IGNORED
    return canvas


def _dice(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    predicted, truth = predicted & valid, truth & valid
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * float((predicted & truth).sum()) / float(total)


# --------------------------------------------------------------------------- imbalance dial


def dial_spread(dial: pd.DataFrame) -> str:
    """What a dial's points and bars are: one seed has no sd, so no bars to speak of."""
    return "mean ± sd over seeds" if dial["score_std"].notna().any() else "one seed, no bars"


def imbalance_figure(dial: pd.DataFrame, metric: str = "dice", *, split: str) -> Figure:
    """Headline score against foreground fraction (log scale), one line per loss, ± sd bars;
    ``split`` (``summary.split_word``) is where it was measured, as the dial table says."""
    # Past ten losses, as the learning curves: line styles apart from the colours, and the
    # legend beside the axes (inside, 23 losses covered every line).
    legend = _legend_place([plain(loss) for loss in dial["loss"].unique()])
    figure = _figure(5.5 + legend.inches, 3.8)
    axis = figure.subplots()
    low, high = score_range(metric)
    # Each loss in the colour and line style of its learning curves, in their legend's order.
    for loss, (colour, style) in _loss_looks(dial, dial["loss"]).items():
        rows = dial[dial["loss"] == loss].sort_values("fg_fraction")
        mean, spread = rows["score_mean"], rows["score_std"].fillna(0.0)
        axis.errorbar(
            rows["fg_fraction"],
            mean,
            # within the score's range, as the curves' bands
            yerr=[
                mean - np.clip(mean - spread, low, high),
                np.clip(mean + spread, low, high) - mean,
            ],
            marker="o",
            capsize=3,
            color=colour,
            linestyle=style,
            label=plain(loss),
        )
    axis.set_xscale("log")
    fractions = sorted(dial["fg_fraction"].unique())
    axis.set_xticks(fractions, [f"{f:g}" for f in fractions])
    axis.minorticks_off()
    axis.set_xlabel("foreground fraction")
    axis.set_ylabel(score_label(metric, f"{split}, at the epoch chosen on validation"))
    axis.set_title(f"Imbalance dial — {plain(dial['dial_group'].iloc[0])} ({dial_spread(dial)})")
    _within(axis, low, high)
    axis.grid(alpha=0.3)
    _legend(axis, None, legend)
    return figure
