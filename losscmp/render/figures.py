"""Figures for ``losscmp report --plots``: learning curves, prediction panels, imbalance dial.

Reads the run folder only (through ``losscmp.summary`` and the store); the HTML
page (``losscmp.render.html``) embeds the same figures. Uses matplotlib's
object-oriented API (``matplotlib.figure.Figure``, no pyplot), which renders
with Agg without touching the user's backend; matplotlib is imported only when
a figure is drawn. PNGs go to ``<run>/plots/`` and are written atomically.

- ``learning_curves.png``: validation score per epoch, one line per loss (the
  mean over seeds) and a band of ± one sd across seeds; one panel per dataset.
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

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from losscmp import summary
from losscmp.errors import LosscmpError
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
LEGEND_ROWS = 16
LEGEND_COLUMN_WIDTH = 2.0  # inches the figure widens by for each column of such a legend

# Image pixels drawn as squares: masks stay crisp and the PNGs compress twice as well.
PIXELS = "nearest"


def write_plots(run_dir: Path | str, *, metric: str = "dice") -> list[Path]:
    """Draw every figure the run supports; return the PNG paths written."""
    summary.check_metric(metric)
    store = RunStore(run_dir)
    results = summary.load_run(store.run_dir)
    table = summary.summarize(results, metric)
    shown = summary.at_chosen_rates(results, table)  # each loss at the table's rate
    written = [store.write_figure("learning_curves.png", png_bytes(learning_curves(shown, metric)))]
    for dataset in summary.dataset_order(shown):
        panel = prediction_panel(shown, dataset)
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


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def plain(label: str) -> str:
    """A label as matplotlib text: a folder dataset's path may hold '$', and matplotlib reads
    the text between two of them as math (a parse error for 'cost_$a_$'); '\\$' is a dollar."""
    return str(label).replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# --------------------------------------------------------------------------- learning curves


def learning_curves(results: summary.RunResults, metric: str = "dice") -> Figure:
    """Validation score per epoch: mean over seeds per loss, band = ± one sd across seeds."""
    datasets = summary.dataset_order(results)
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    losses = results.epochs.groupby("dataset")["loss"].nunique()  # per dataset
    legend = _outside_legend_columns(int(losses.max()) if len(losses) else 0)
    figure = _figure((5.0 + LEGEND_COLUMN_WIDTH * legend) * columns, 3.6 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, dataset in zip(axes, datasets, strict=False):
        _curves(axis, results.epochs[results.epochs["dataset"] == dataset], metric)
        axis.set_title(plain(dataset), fontsize=10)
    for axis in axes[len(datasets) :]:
        axis.set_visible(False)
    figure.suptitle(f"Validation {summary.METRIC_TITLES[metric]} per epoch (band: ± sd over seeds)")
    return figure


def _outside_legend_columns(losses: int) -> int:
    """Columns of a legend beside the axes for ``losses`` lines; 0: it fits inside."""
    return 0 if losses <= LEGEND_INSIDE_MAX else math.ceil(losses / LEGEND_ROWS)


def _curves(axis: Axes, epochs: pd.DataFrame, metric: str) -> None:
    column = f"val_{metric}"
    for index, (loss, rows) in enumerate(epochs.groupby("loss", sort=False)):
        by_epoch = rows.dropna(subset=[column]).groupby("epoch")[column]
        mean, spread = by_epoch.mean(), by_epoch.std(ddof=1).fillna(0.0)
        style = LINE_STYLES[index // 10 % len(LINE_STYLES)]
        (line,) = axis.plot(
            mean.index, mean.to_numpy(), style, marker="o", markersize=3, label=plain(loss)
        )
        axis.fill_between(
            mean.index, mean - spread, mean + spread, color=line.get_color(), alpha=0.2, lw=0
        )
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel(summary.METRIC_TITLES[metric])
    axis.set_ylim(bottom=max(0.0, axis.get_ylim()[0]))
    axis.grid(alpha=0.3)
    lines = len(axis.get_lines())  # one per loss
    if lines:  # trials that diverged before any epoch row draw none: no legend
        _legend(axis, _outside_legend_columns(lines))


def _legend(axis: Axes, outside_columns: int) -> None:
    """The legend inside the axes, or in ``outside_columns`` columns beside them."""
    if outside_columns:
        axis.legend(
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            ncols=outside_columns,
        )
    else:
        axis.legend(fontsize=8)


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


def prediction_panel(results: summary.RunResults, dataset: str) -> PredictionPanel | None:
    """Rows: test images (validation without a test split); columns: image, ground truth,
    one per loss. None without data."""
    single = len(results.datasets) <= 1
    split, predictions = _loss_predictions(results, dataset)
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
    bands = _bands(list(predictions))
    columns = 2 + max(map(len, bands))
    figure = _figure(1.9 * columns, 1.9 * len(images) * len(bands) + 0.4)
    axes = figure.subplots(len(images) * len(bands), columns, squeeze=False)
    for band, losses in enumerate(bands):
        band_axes = axes[band * len(images) : (band + 1) * len(images)]
        band = {loss: predictions[loss] for loss in losses}
        _draw_band(band_axes, images, masks, band, mode, classes)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(
        f"{plain(dataset)}: final-epoch predictions on {_split_name(split)} images (first seed)",
        fontsize=10,
    )
    _add_legend(figure, results, dataset, mode)
    return PredictionPanel(figure, split)


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
    labels = [int(masks[masks != 255].max(initial=1)), *(int(p.max()) for p in predictions)]
    return max(labels) + 1


def _draw_band(axes, images, masks, predictions: dict, mode: str, classes: int) -> None:
    """One band of the panel: per image a row of the image, its truth and each prediction."""
    for row, (image, mask) in enumerate(zip(images, masks, strict=True)):
        axes[row, 0].imshow(image, interpolation=PIXELS)
        _show_mask(axes[row, 1], image, mask, mode)
        for column, (loss, prediction) in enumerate(predictions.items(), start=2):
            _show_prediction(axes[row, column], image, mask, prediction[row], mode, classes)
            if row == 0:
                axes[row, column].set_title(plain(loss), fontsize=9)
        for axis in axes[row, 2 + len(predictions) :]:
            axis.set_visible(False)  # the last band's empty places
    axes[0, 0].set_title("image", fontsize=9)
    axes[0, 1].set_title("ground truth", fontsize=9)


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


def _show_mask(axis: Axes, image: np.ndarray, mask: np.ndarray, mode: str) -> None:
    if mode == "binary":
        axis.imshow(_overlay(image, {TRUTH: mask == 1}, ignored=mask == 255), interpolation=PIXELS)
    else:
        axis.imshow(
            _overlay(image, _class_colours(mask), ignored=mask == 255), interpolation=PIXELS
        )


def _show_prediction(
    axis: Axes,
    image: np.ndarray,
    mask: np.ndarray,
    prediction: np.ndarray,
    mode: str,
    classes: int = 2,
) -> None:
    """The prediction over the image, labelled with its Dice as images.csv has it: binary,
    the foreground's; multiclass, the mean over every foreground class 1..``classes``-1,
    a class in neither the mask nor the prediction counting 1 (losscmp.metrics)."""
    valid = mask != 255
    if mode == "binary":
        truth, predicted = mask == 1, prediction == 1
        outcome = {
            HIT: truth & predicted,
            FALSE_POSITIVE: ~truth & predicted,
            MISS: truth & ~predicted,
        }
        axis.imshow(_overlay(image, outcome, ignored=~valid), interpolation=PIXELS)
        dice = _dice(predicted, truth, valid)
    else:
        axis.imshow(
            _overlay(image, _class_colours(prediction), ignored=~valid), interpolation=PIXELS
        )
        # Every foreground class, as metrics.per_image_scores averages them: only those in
        # the mask or the prediction gave a panel label other than the image's Dice.
        scores = [_dice(prediction == k, mask == k, valid) for k in range(1, classes)]
        dice = float(np.mean(scores)) if scores else 1.0
    axis.set_xlabel(f"Dice {dice:.2f}", fontsize=8)


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
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)


def _class_colours(labels: np.ndarray) -> dict[tuple, np.ndarray]:
    """Foreground classes 1..9 painted in tab10 colours; background stays the image."""
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {tuple(palette(k % 10)[:3]): labels == k for k in np.unique(labels) if 0 < k < 255}


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


def imbalance_figure(dial: pd.DataFrame, metric: str = "dice", *, split: str) -> Figure:
    """Headline score against foreground fraction (log scale), one line per loss, ± sd bars;
    ``split`` (``summary.split_word``) is where it was measured, as the dial table says."""
    # Past ten losses, as the learning curves: line styles apart from the colours, and the
    # legend beside the axes (inside, 23 losses covered every line).
    legend = _outside_legend_columns(dial["loss"].nunique())
    figure = _figure(5.5 + LEGEND_COLUMN_WIDTH * legend, 3.8)
    axis = figure.subplots()
    for index, (loss, rows) in enumerate(dial.groupby("loss", sort=True)):
        rows = rows.sort_values("fg_fraction")
        axis.errorbar(
            rows["fg_fraction"],
            rows["score_mean"],
            yerr=rows["score_std"].fillna(0.0),
            marker="o",
            capsize=3,
            linestyle=LINE_STYLES[index // 10 % len(LINE_STYLES)],
            label=plain(loss),
        )
    axis.set_xscale("log")
    fractions = sorted(dial["fg_fraction"].unique())
    axis.set_xticks(fractions, [f"{f:g}" for f in fractions])
    axis.minorticks_off()
    axis.set_xlabel("foreground fraction")
    axis.set_ylabel(f"{summary.METRIC_TITLES[metric]} ({split}, at the epoch chosen on validation)")
    axis.set_title(f"Imbalance dial — {plain(dial['dial_group'].iloc[0])} (mean ± sd over seeds)")
    axis.grid(alpha=0.3)
    _legend(axis, legend)
    return figure
