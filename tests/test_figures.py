"""render/figures.py: the PNGs exist, are valid images, and draw what they claim."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import warnings

import numpy as np
import pytest
from run_fixtures import write_run

from losscmp.render import figures
from losscmp.summary import at_chosen_rates, imbalance_frame, load_run, summarize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUALITY = {"dice": 0.8, "focal": 0.6, "tversky": 0.75}


def read_png(path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return imread(path)


def test_binary_run_writes_curves_and_panel(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY, diverged={("focal", 1): 3})
    written = figures.write_plots(run_dir)
    assert [path.name for path in written] == ["learning_curves.png", "predictions__synthetic.png"]
    for path in written:
        assert path.parent == run_dir / "plots"
        image = read_png(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not a blank canvas


def test_learning_curves_have_one_line_per_loss_with_the_seed_mean(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    results = load_run(run_dir)
    axis = figures.learning_curves(results).axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert set(lines) == set(QUALITY)
    dice = results.epochs[results.epochs["loss"] == "dice"]
    expected = dice.groupby("epoch")["val_dice"].mean()
    assert lines["dice"].get_ydata() == pytest.approx(expected.to_numpy())


def test_a_one_epoch_run_numbers_its_epoch_axis_in_whole_epochs(tmp_path):
    """One epoch: the axis read 0.945, 0.960, ..., 1.050 (integer ticks were asked for
    only where two whole numbers fit in the view)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for epochs, expected in ((1, [1.0]), (4, [1.0, 2.0, 3.0, 4.0])):
        run_dir = write_run(tmp_path / str(epochs), quality=QUALITY, epochs=epochs, panel=False)
        axis = figures.learning_curves(load_run(run_dir)).axes[0]
        FigureCanvasAgg(axis.figure).draw()
        low, high = axis.get_xlim()
        shown = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert shown == expected, (epochs, shown)


def panel_titles(figure) -> list[str]:
    """The panel's column titles, band by band, left to right (9 pt: the labels are 8)."""
    texts = [text for text in figure.axes[0].texts if text.get_fontsize() == 9]
    return [text.get_text() for text in texts]


def panel_labels(figure) -> list[str]:
    """The Dice labels under the predictions: band by band, row by row, left to right."""
    return [text.get_text() for text in figure.axes[0].texts if text.get_fontsize() == 8]


def test_panel_has_image_truth_and_one_column_per_loss(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    panel = figures.prediction_panel(load_run(run_dir), "synthetic")
    figure = panel.figure
    # the table's order (dice 0.8, tversky 0.75, focal 0.6), as the curves' legend
    assert panel_titles(figure) == ["image", "ground truth", "dice", "tversky", "focal"]
    assert len(panel_labels(figure)) == 4 * 3  # four validation images, three losses
    (axis,) = figure.axes  # one picture of every tile
    (frames,) = axis.collections
    assert len(frames.get_paths()) == 4 * 5


def test_the_panel_is_one_picture_of_its_tiles(tmp_path):
    """Its tiles are the image, its truth and each loss's outcome, pasted whole (enlarged
    by a whole factor) where each frame, title and label says."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), image_size=48)
    results = load_run(run_dir)
    figure = figures.prediction_panel(results, "synthetic").figure
    (axis,) = figure.axes
    (image,) = axis.get_images()
    canvas = image.get_array()
    arrays = np.load(_reference(run_dir))
    prediction = np.load(_one_prediction(run_dir))["pred"]
    grid = figures._Grid((48, 48), 4, [["dice"]])
    assert canvas.shape == (*grid.shape(), 3) and grid.scale == 4
    for row in range(4):
        picture, mask = arrays["images"][row], arrays["masks"][row]
        tile, dice = figures._prediction_tile(picture, mask, prediction[row], "binary")
        hits = (mask == 1) & (prediction[row] == 1)
        assert hits.any() and (tile[hits] == [51, 204, 51]).all()  # HIT's green, 8-bit
        expected = [picture, figures._truth_tile(picture, mask, "binary"), tile]
        for column, pixels in enumerate(expected):
            y, x = grid.corner(0, row, column)
            enlarged = pixels.repeat(4, axis=0).repeat(4, axis=1)  # 48 px -> 192
            assert np.array_equal(canvas[y : y + 192, x : x + 192], enlarged)
        label = panel_labels(figure)[row]
        assert label == f"Dice {dice:.2f}"
    assert canvas[grid.corner(0, 0, 1)[0] - 1].min() == 255  # white between the tiles


def test_a_panel_of_large_images_keeps_only_the_pixels_a_tile_can_show(tmp_path):
    """512-pixel images were pasted whole: the panel's array of 23 losses held 130 MB
    (this one, of one loss, 12.6 MB), though a tile is drawn 160-176 pixels wide. Each
    is now reduced (nearest) to 192 pixels, as large as a 64-pixel image's enlarged
    tile; its Dice is still the whole image's."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), n_images=4, image_size=512)
    figure = figures.prediction_panel(load_run(run_dir), "synthetic").figure
    canvas = figure.axes[0].get_images()[0].get_array()
    as_64_pixels = figures._Grid((64, 64), 4, [["dice"]])
    assert canvas.shape == (*as_64_pixels.shape(), 3) == (913, 648, 3)
    arrays = np.load(_reference(run_dir))
    prediction = np.load(_one_prediction(run_dir))["pred"]
    picks = ((np.arange(192) + 0.5) * 512 / 192).astype(int)  # each cell's centre pixel
    assert list(picks[:4]) == [1, 4, 6, 9] and picks[-1] == 510
    for row in range(4):
        picture, mask = arrays["images"][row], arrays["masks"][row]
        tile, dice = figures._prediction_tile(picture, mask, prediction[row], "binary")
        expected = [picture, figures._truth_tile(picture, mask, "binary"), tile]
        for column, pixels in enumerate(expected):
            y, x = as_64_pixels.corner(0, row, column)
            assert np.array_equal(canvas[y : y + 192, x : x + 192], pixels[np.ix_(picks, picks)])
        assert panel_labels(figure)[row] == f"Dice {dice:.2f}"


def test_the_panel_draws_its_pixels_as_imshow_does(tmp_path):
    """The panel's picture is drawn by a numpy lookup, not Agg's resampling: each of its
    pixels becomes the block of output pixels that imshow(interpolation='nearest') makes
    of it, but for a block edge moved by one output pixel here and there."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    canvas = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    drawn = []
    for draw in (figures._show_pixels, lambda axis, c: axis.imshow(c, interpolation="nearest")):
        figure = Figure(figsize=(3.1, 2.3), dpi=110)
        axis = figure.add_axes((0.05, 0.05, 0.9, 0.9))
        axis.set_axis_off()
        draw(axis, canvas)
        agg = FigureCanvasAgg(figure)
        agg.draw()
        drawn.append(np.asarray(agg.buffer_rgba())[..., :3].copy())
    ours, imshow = drawn
    same = (ours == imshow).all(axis=-1)
    assert same.mean() > 0.9
    near = np.zeros_like(same)  # a differing pixel matches imshow's one pixel away
    for dy, dx in [(-1, 0), (1, 0), (0, -1), (0, 1)]:
        shifted = np.roll(imshow, (dy, dx), axis=(0, 1))
        near |= (ours == shifted).all(axis=-1)
    assert (same | near).all()


def test_a_label_holding_dollar_signs_is_drawn_as_typed(tmp_path):
    """matplotlib reads text between two '$' as math: a folder dataset at 'cost_$a_$' made
    every figure (and the run's report.html) fail with a mathtext parse error."""
    label = "folder(path='/data/cost_$a_$')"
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=[label])
    written = figures.write_plots(run_dir)
    assert len(written) == 2
    panel = figures.prediction_panel(load_run(run_dir), label)
    assert panel.figure.get_suptitle().startswith(r"folder(path='/data/cost_\$a_\$'): ")


def test_a_run_with_no_epoch_row_draws_curves_without_a_warning(tmp_path):
    """Trial records that diverged before any epoch row leave the curves empty: matplotlib's
    'No artists with labels found to put in legend' reached stderr, with a source line."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), panel=False)
    for path in (run_dir / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        record.update(status="diverged", diverged_epoch=1, best_epoch=None, epochs=[])
        path.write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (written,) = figures.write_plots(run_dir)
    assert written.name == "learning_curves.png"


def test_imbalance_figure_when_the_run_has_a_dial(tmp_path):
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=datasets, panel=False)
    names = [path.name for path in figures.write_plots(run_dir)]
    assert names == ["learning_curves.png", "imbalance.png"]
    read_png(run_dir / "plots" / "imbalance.png")


@pytest.mark.parametrize(("schema", "split"), [(None, "test"), (1, "val.")])
def test_the_imbalance_figure_says_where_it_was_measured(tmp_path, monkeypatch, schema, split):
    """Its y axis said 'Dice (chosen epoch)'; the dial table says on which split."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    version = {} if schema is None else {"schema_version": schema}
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=datasets, panel=False, **version)
    drawn = []
    draw = figures.png_bytes
    monkeypatch.setattr(figures, "png_bytes", lambda figure: drawn.append(figure) or draw(figure))
    figures.write_plots(run_dir)
    assert drawn[-1].axes[0].get_ylabel() == f"Dice ({split}, at the epoch chosen on validation)"


def test_multiclass_panel(tmp_path):
    run_dir = write_run(tmp_path, class_names=("background", "pet", "border"))
    written = figures.write_plots(run_dir)
    assert "predictions__synthetic.png" in [path.name for path in written]
    read_png(written[-1])


def test_a_multiclass_panel_labels_each_prediction_with_its_images_csv_dice(tmp_path):
    """The label averaged the classes in the mask or the prediction only, images.csv (and
    image_dice) every foreground class, one in neither counting 1: a prediction that half
    covers the only object, of class 1 of 3, was labelled 'Dice 0.67' beside 0.89 there."""
    import torch

    from losscmp import metrics

    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 1
    mask[0, :] = 255  # ignored: never judged
    prediction = np.zeros((8, 8), np.uint8)
    prediction[2:4, 2:6] = 1
    prediction[0, :] = 2
    image = np.zeros((8, 8, 3), np.uint8)
    _, dice = figures._prediction_tile(image, mask, prediction, "multiclass", classes=4)
    logits = torch.nn.functional.one_hot(torch.from_numpy(prediction).long(), 4)
    counts = metrics.confusion_counts(
        logits.permute(2, 0, 1)[None].float(),
        torch.from_numpy(mask).long()[None],
        mode="multiclass",
        ignore_index=255,
    )
    expected = metrics.per_image_scores(counts, mode="multiclass")["dice"].item()
    assert expected == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert f"Dice {dice:.2f}" == f"Dice {expected:.2f}" == "Dice 0.89"


def test_the_panel_of_a_run_labels_predictions_as_its_metrics_score_them(tmp_path):
    """The fixture's three classes: discs of class 1, no class 2 in masks or predictions."""
    import torch

    from losscmp import metrics

    run_dir = write_run(tmp_path, class_names=("background", "pet", "border"))
    results = load_run(run_dir)
    panel = figures.prediction_panel(results, "synthetic")
    masks = np.load(next((run_dir / "panel").glob("val__*.npz")))["masks"]
    prediction = np.load(_one_prediction(run_dir))["pred"]
    logits = torch.nn.functional.one_hot(torch.from_numpy(prediction).long(), 3)
    counts = metrics.confusion_counts(
        logits.permute(0, 3, 1, 2).float(), torch.from_numpy(masks).long(), mode="multiclass"
    )
    scores = metrics.per_image_scores(counts, mode="multiclass")["dice"].tolist()
    losses = panel_titles(panel.figure)[2:]
    labels = panel_labels(panel.figure)[losses.index("dice") :: len(losses)]
    assert labels == [f"Dice {score:.2f}" for score in scores]


def test_missing_panel_files_skip_only_the_panel(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    shutil.rmtree(run_dir / "panel")
    assert [path.name for path in figures.write_plots(run_dir)] == ["learning_curves.png"]


def test_plotting_does_not_switch_the_pyplot_backend(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    figures.write_plots(write_run(tmp_path, quality=QUALITY, panel=False))
    assert matplotlib.get_backend() == before


def _one_prediction(run_dir):
    return sorted((run_dir / "panel").glob("*__dice__*.npz"))[0]


def _reference(run_dir):
    (path,) = (run_dir / "panel").glob("val__*.npz")
    return path


def _savez(path, **arrays):
    with path.open("wb") as stream:
        np.savez(stream, **arrays)


@pytest.mark.parametrize(
    "damage, which, said",
    [
        # numpy read these as pickles and advised 'allow_pickle=' (trusting the file)
        (lambda path: path.write_bytes(b"not an archive"), _one_prediction, "not an .npz archive"),
        (lambda path: np.save(path.open("wb"), np.zeros(3)), _one_prediction, "not an .npz"),
        (
            lambda path: _savez(path, pred=np.array([{"a": 1}], dtype=object)),
            _one_prediction,
            "it holds Python objects, not plain arrays",
        ),
        # these were IndexError / ValueError / TypeError tracebacks while drawing
        (
            lambda path: _savez(path, pred=np.zeros((1, 64, 64), np.uint8)),
            _one_prediction,
            "'pred' has shape (1, 64, 64), the masks of val__synthetic.npz (4, 64, 64)",
        ),
        (
            lambda path: _savez(path, pred=np.zeros((4, 32, 32), np.uint8)),
            _one_prediction,
            "'pred' has shape (4, 32, 32), the masks of val__synthetic.npz (4, 64, 64)",
        ),
        (lambda path: _savez(path, pred=np.array(3)), _one_prediction, "'pred' has shape ()"),
        (
            lambda path: _savez(path, pred=np.zeros((4, 64, 64)), split=np.array(["test", "val"])),
            _one_prediction,
            "'split' is array(['test', 'val']",
        ),
        (
            lambda path: _savez(
                path, images=np.zeros((4, 64, 64, 3), np.uint8), masks=np.zeros((2, 64, 64))
            ),
            _reference,
            "'masks' has shape (2, 64, 64) where 'images' has (4, 64, 64, 3)",
        ),
        (
            lambda path: _savez(path, images=np.zeros((0, 64, 64, 3)), masks=np.zeros((0, 64, 64))),
            _reference,
            "'images' has shape (0, 64, 64, 3), not (k, H, W, 3)",
        ),
        (
            lambda path: _savez(path, images=np.array(["a"]), masks=np.array(["b"])),
            _reference,
            "'images' holds <U1 values, not numbers",
        ),
    ],
)
def test_a_damaged_panel_file_is_named_in_one_line(tmp_path, damage, which, said):
    from losscmp.errors import LosscmpError

    run_dir = write_run(tmp_path, quality=QUALITY, image_size=64)
    path = which(run_dir)
    damage(path)
    with pytest.raises(LosscmpError) as raised:
        figures.write_plots(run_dir)
    message = str(raised.value)
    assert message.startswith(f"{path} is damaged (")
    assert said in message
    assert message.endswith("delete it to draw the other figures")
    assert "allow_pickle" not in message


MANY = {f"loss{index:02d}": 0.5 + index / 100 for index in range(26)}


def test_learning_curves_of_26_losses_keep_their_axes_and_tell_every_line_apart(tmp_path):
    """26 losses: the legend inside the axes squashed them to nothing (matplotlib's
    'constrained_layout not applied because axes sizes collapsed to zero' on the run's
    stderr), and the ten colours of the cycle drew three losses alike. All 26 lines and
    their ± sd bands in one axes were then a mud no line could be followed through: they
    are drawn in the prediction panel's bands, in the table's order, on one score scale."""
    run_dir = write_run(tmp_path, quality=MANY, seeds=(0, 1), panel=False)
    results = load_run(run_dir)
    figure = figures.learning_curves(results)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures.png_bytes(figure)
    ranked = list(summarize(results).sort_values("rank")["loss"])
    bands = [ranked[start : start + 7] for start in range(0, 26, 7)]  # 7, 7, 7, 5
    axes = figure.axes
    assert [[line.get_label() for line in axis.get_lines()] for axis in axes] == bands
    assert [axis.get_title().rsplit(": ", 1)[1] for axis in axes] == [
        f"{first}–{last} of 26 in the table's order"
        for first, last in ((1, 7), (8, 14), (15, 21), (22, 26))
    ]
    lines = [line for axis in axes for line in axis.get_lines()]
    styles = [(line.get_color(), line.get_linestyle()) for line in lines]
    assert len(styles) == len(set(styles)) == 26
    assert len({axis.get_ylim() for axis in axes}) == 1  # one scale: a line reads the same
    figure.draw_without_rendering()  # lays it out, as png_bytes does
    for axis in axes:
        plot, legend = axis.get_window_extent(), axis.get_legend().get_window_extent()
        assert legend.x0 > plot.x1  # beside the lines, not over them
        assert plot.width > 0.45 * figure.bbox.width and plot.height > 0.15 * figure.bbox.height
        assert axis.get_legend()._ncols == 1


def test_a_panel_of_26_losses_is_cut_into_bands_in_the_tables_order(tmp_path):
    """26 losses made one row of 28 pictures, 5300 pixels wide: a page shrank it to
    thumbnails with unreadable titles; and its columns came in a scrambled order, then
    by name. They follow the table's ranking, as the curves' legend."""
    run_dir = write_run(tmp_path, quality=MANY, seeds=(0, 1))
    results = load_run(run_dir)
    figure = figures.prediction_panel(results, "synthetic").figure
    ranked = list(summarize(results).sort_values("rank")["loss"])
    assert ranked[:3] == ["loss25", "loss23", "loss24"] and sorted(ranked) != ranked
    bands = [ranked[start : start + 7] for start in range(0, 26, 7)]
    titles = [name for band in bands for name in ["image", "ground truth", *band]]
    assert panel_titles(figure) == titles
    (axis,) = figure.axes
    assert len(axis.collections[0].get_paths()) == 4 * (4 * 2 + 26)  # a frame per tile
    assert len(panel_labels(figure)) == 4 * 26
    # 9 columns of 1.6-inch tiles 0.3 inch apart (an Axes grid of 1.9-inch cells before)
    grid = figures._Grid((64, 64), 4, bands)
    assert grid.shape()[1] / grid.pixels_per_inch == pytest.approx(1.6 * 9 + 0.3 * 8, abs=0.02)
    png = figures.png_bytes(figure, dpi=100)
    from PIL import Image

    width = Image.open(io.BytesIO(png)).size[0]
    assert 100 * (1.6 * 9 + 0.3 * 8) < width < 100 * 1.9 * 9


def test_the_title_of_a_panel_in_bands_stays_above_its_column_titles(tmp_path):
    """The title sat at 98 % of the figure's height: the 0.45 inch above the tiles in a
    one-band panel, but over the first band's column titles in a taller one (26 losses:
    4 bands; the HTML report of --losses all)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for quality in (QUALITY, MANY):
        run_dir = write_run(tmp_path / str(len(quality)), quality=quality, seeds=(0,))
        figure = figures.prediction_panel(load_run(run_dir), "synthetic").figure
        renderer = FigureCanvasAgg(figure).get_renderer()
        title = figure._suptitle.get_window_extent(renderer)
        top_row = max(text.get_window_extent(renderer).y1 for text in figure.axes[0].texts)
        assert title.y0 > top_row, (len(quality), title.y0, top_row)
        assert title.y1 <= figure.bbox.y1


def test_the_imbalance_figure_of_23_losses_keeps_its_lines_visible_and_apart(tmp_path):
    """23 losses (--losses all): the legend inside the axes covered every line, and the
    ten colours of the cycle drew three losses alike."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    quality = dict(list(MANY.items())[:23])
    run_dir = write_run(tmp_path, quality=quality, datasets=datasets, seeds=(0, 1), panel=False)
    results = load_run(run_dir)
    dial = imbalance_frame(summarize(results))
    figure = figures.imbalance_figure(dial, split="test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures.png_bytes(figure)
    (axis,) = figure.axes
    lines = [container.lines[0] for container in axis.containers]  # each loss's errorbar
    styles = [(line.get_color(), line.get_linestyle()) for line in lines]
    assert len(styles) == len(set(styles)) == 23
    figure.draw_without_rendering()
    plot, legend = axis.get_window_extent(), axis.get_legend().get_window_extent()
    assert legend.x0 > plot.x1  # beside the lines, not over them
    assert plot.width > 0.45 * figure.bbox.width
    assert axis.get_legend()._ncols == 2


def test_a_stored_png_holds_the_pixels_of_a_compressed_one(tmp_path):
    """report.html decodes each figure's PNG at once to make it a palette PNG: drawn stored
    (compress_level 0) it is the same picture, made without a third of a panel's time."""
    from PIL import Image

    results = load_run(write_run(tmp_path, quality=QUALITY))
    pictures = []
    for level in (0, 6):
        png = figures.png_bytes(figures.prediction_panel(results, "synthetic").figure, 100,
                                compress_level=level)  # fmt: skip
        pictures.append((len(png), np.asarray(Image.open(io.BytesIO(png)))))
    (stored_size, stored), (compressed_size, compressed) = pictures
    assert np.array_equal(stored, compressed)
    assert stored_size > 3 * compressed_size


def test_the_panel_ignores_the_label_the_summary_names(monkeypatch):
    """figures.py wrote 255 five times over; it reads summary.IGNORE_LABEL, which is the
    data's own IGNORE_INDEX. With 7 as that label, the pixel (0, 1) predicted 1 is ignored:
    Dice 2·1/(2·1 + 0 + 1) = 2/3, not 2/(2 + 1 + 1) = 0.5."""
    from losscmp import summary
    from losscmp.data.base import IGNORE_INDEX

    assert summary.IGNORE_LABEL == IGNORE_INDEX == 255
    mask, prediction = np.array([[1, 7], [0, 1]]), np.array([[1, 1], [0, 0]])
    assert figures._prediction_dice(mask, prediction, "binary", 2) == pytest.approx(0.5)
    monkeypatch.setattr(summary, "IGNORE_LABEL", 7)
    assert figures._prediction_dice(mask, prediction, "binary", 2) == pytest.approx(2 / 3)
    assert len(figures._class_colours(np.array([[1, 7], [2, 0]]))) == 2  # classes 1 and 2


def _curve_lines(figure) -> dict:
    """The learning curves' lines by legend label (the first panel)."""
    return {line.get_label(): line for line in figure.axes[0].get_lines()}


def _rings(axis) -> list:
    """The chosen-epoch rings, one collection per loss in the legend's order."""
    return [c for c in axis.collections if c.get_gid() == figures.CHOSEN_EPOCH_GID]


def _with_scores(results, loss: str, column: str, change):
    """``results`` with ``change`` applied to ``column`` of ``loss``'s epoch rows."""
    epochs = results.epochs.copy()
    rows = epochs["loss"] == loss
    epochs.loc[rows, column] = change(epochs.loc[rows, column])
    return dataclasses.replace(results, epochs=epochs)


def test_the_mcc_curves_keep_their_negative_scores_in_view(tmp_path):
    """The y axis began at 0 for every metric: MCC below 0 (a loss worse than chance) was
    cut off at the bottom edge. Each score's view stays within its own range instead."""
    run_dir = write_run(tmp_path, quality=QUALITY, seeds=(0,), panel=False)
    results = _with_scores(load_run(run_dir), "focal", "val_mcc", lambda mcc: mcc - 0.7)
    lowest = results.epochs["val_mcc"].min()
    assert -1 < lowest < -0.2
    axis = figures.learning_curves(results, "mcc").axes[0]
    low, high = axis.get_ylim()
    assert -1.0 <= low <= lowest and high <= 1.0
    assert _curve_lines(axis.figure)["focal"].get_ydata().min() == pytest.approx(lowest)


def test_a_dice_band_past_1_is_cut_at_1_and_so_is_the_view(tmp_path):
    """Seeds near a perfect Dice: mean + sd passed 1, and the band (and the axis) with it."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8}, epochs=1, panel=False)
    near_perfect = np.array([0.9, 1.0, 1.0])  # seeds 0, 1, 2: mean + sd = 1.024
    results = _with_scores(load_run(run_dir), "dice", "val_dice", lambda _: near_perfect)
    axis = figures.learning_curves(results).axes[0]
    (band,) = [c for c in axis.collections if c.get_gid() != figures.CHOSEN_EPOCH_GID]
    assert band.get_paths()[0].vertices[:, 1].max() == pytest.approx(1.0)
    assert band.get_paths()[0].vertices[:, 1].min() == pytest.approx(0.96667 - 0.05774, abs=1e-4)
    assert axis.get_ylim()[1] == 1.0


def test_the_legend_lists_the_losses_in_the_tables_order(tmp_path):
    """It listed them by name (focal, tversky, dice): a reader matched colours against a
    table ranked dice, tversky, focal."""
    run_dir = write_run(tmp_path, quality={"focal": 0.6, "tversky": 0.75, "dice": 0.8})
    results = load_run(run_dir)
    table = summarize(results)
    assert list(table["loss"]) == ["dice", "tversky", "focal"]
    axis = figures.learning_curves(results, table=table).axes[0]
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert labels == ["dice", "tversky", "focal", "epoch chosen on validation"]
    assert [line.get_label() for line in axis.get_lines()] == labels[:3]


def test_the_legend_of_a_learning_rate_grid_names_each_loss_at_its_chosen_rate(tmp_path):
    """Each line is the loss at the rate the table chose; the legend did not say which."""
    run_dir = write_run(
        tmp_path,
        quality={"dice": 0.8, "focal": 0.6},
        lrs=(1e-3, 1e-2),
        rate_quality={1e-3: 0.0, 1e-2: 0.05},
        panel=False,
    )
    results = load_run(run_dir)
    table = summarize(results)
    shown = at_chosen_rates(results, table)
    dice = shown.epochs[shown.epochs["loss"] == "dice"].groupby("epoch")["val_dice"].mean()
    for drawn in (results, shown):  # the other rate's trials left out, given or not
        lines = _curve_lines(figures.learning_curves(drawn, table=table))
        assert list(lines) == ["dice (lr 0.01)", "focal (lr 0.01)"]
        assert lines["dice (lr 0.01)"].get_ydata() == pytest.approx(dice.to_numpy())


def test_a_ring_marks_the_epoch_each_seed_chose_on_validation(tmp_path):
    """The table reads each trial at its epoch chosen on validation, not the last one;
    nothing on the curves said which. The fixture peaks at the second-to-last epoch."""
    from matplotlib.colors import to_rgb

    run_dir = write_run(tmp_path, quality=QUALITY, epochs=5, panel=False)
    results = load_run(run_dir)
    table = summarize(results)
    axis = figures.learning_curves(results, table=table).axes[0]
    rings = _rings(axis)
    assert len(rings) == 3
    for ring, line, (_, row) in zip(rings, axis.get_lines(), table.iterrows(), strict=True):
        assert row["best_epoch"] == 4
        points = ring.get_offsets()
        assert points.tolist() == [[4.0, line.get_ydata()[3]]]
        assert tuple(ring.get_edgecolor()[0][:3]) == pytest.approx(to_rgb(line.get_color()))


def test_a_seed_that_diverged_is_left_out_of_its_losss_curve(tmp_path):
    """The table leaves a diverged trial out of every mean; the curve averaged its epochs
    before it diverged with the others', so the mean jumped where it dropped out. A loss
    whose every seed diverged keeps its early epochs, labelled so, and has no ring."""
    run_dir = write_run(
        tmp_path,
        quality={"dice": 0.8, "focal": 0.6},
        diverged={("focal", 1): 4, ("dice", 0): 3, ("dice", 1): 2, ("dice", 2): 3},
        epochs=5,
        panel=False,
    )
    results = load_run(run_dir)
    axis = figures.learning_curves(results).axes[0]
    lines = _curve_lines(axis.figure)
    assert list(lines) == ["focal", "dice (diverged)"]
    focal = results.epochs[(results.epochs["loss"] == "focal") & (results.epochs["seed"] != 1)]
    assert lines["focal"].get_ydata() == pytest.approx(
        focal.groupby("epoch")["val_dice"].mean().to_numpy()
    )
    assert list(lines["dice (diverged)"].get_xdata()) == [1, 2]
    assert [len(ring.get_offsets()) for ring in _rings(axis)] == [1, 0]


def test_the_title_says_what_a_line_and_a_band_are(tmp_path):
    """'(band: ± sd over seeds)' over one seed's lines, which have none."""
    one = load_run(write_run(tmp_path / "one", quality=QUALITY, seeds=(0,), panel=False))
    three = load_run(write_run(tmp_path / "three", quality=QUALITY, panel=False))
    assert figures.learning_curves(one).get_suptitle() == "Validation Dice per epoch (one seed)"
    assert (
        figures.learning_curves(three, "iou").get_suptitle()
        == "Validation IoU per epoch: mean over seeds, band ± 1 sd"
    )


def test_curves_of_a_run_whose_every_trial_diverged_at_once_say_so(tmp_path):
    run_dir = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), panel=False)
    for path in (run_dir / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        record.update(status="diverged", diverged_epoch=1, best_epoch=None, epochs=[])
        path.write_text(json.dumps(record))
    (axis,) = figures.learning_curves(load_run(run_dir)).axes
    assert [text.get_text() for text in axis.texts] == [figures.NO_CURVES]
    assert axis.get_legend() is None


LONG_SPECS = {
    "combo(alpha=0.5,ce_ratio=0.5)": 0.6,
    "dice": 0.8,
    "focal_tversky(alpha=0.7,beta=0.3,gamma=0.75)": 0.72,
    "tversky(alpha=0.7,beta=0.3)": 0.7,
}


def test_long_loss_specs_title_their_panel_columns_without_running_into_each_other(tmp_path):
    """'focal_tversky(alpha=0.7,beta=0.3,gamma=0.75)' was one line 3 inches wide over a
    1.9-inch column: it ran into its neighbour's title. Titles now break after '(' or ','
    and the band above the tiles is as tall as the longest needs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    run_dir = write_run(tmp_path, quality=LONG_SPECS, seeds=(0,))
    figure = figures.prediction_panel(load_run(run_dir), "synthetic").figure
    titles = [text for text in figure.axes[0].texts if text.get_fontsize() == 9]
    assert [text.get_text() for text in titles][2:] == [  # the table's order
        "dice",
        "focal_tversky(\nalpha=0.7,beta=0.3,\ngamma=0.75)",
        "tversky(alpha=0.7,\nbeta=0.3)",
        "combo(alpha=0.5,\nce_ratio=0.5)",
    ]
    renderer = FigureCanvasAgg(figure).get_renderer()
    boxes = [text.get_window_extent(renderer) for text in titles]
    for left, right in zip(boxes, boxes[1:], strict=False):
        assert left.x1 < right.x0  # side by side, apart
    axis = figure.axes[0]
    tile_top = axis.transData.transform((0, figures._Grid((32, 32), 4, [[]], 3).corner(0, 0, 0)[0]))
    assert min(box.y0 for box in boxes) > tile_top[1]  # every line above the tiles
    title = figure._suptitle.get_window_extent(renderer)
    assert title.y0 > max(box.y1 for box in boxes)


def test_a_legend_of_long_specs_goes_beside_the_curves(tmp_path):
    """Four losses with parameters made a legend inside half as wide as the axes, over
    the lines of the last-ranked loss."""
    run_dir = write_run(tmp_path, quality=LONG_SPECS, seeds=(0,), panel=False)
    figure = figures.learning_curves(load_run(run_dir))
    figure.draw_without_rendering()
    (axis,) = figure.axes
    plot, legend = axis.get_window_extent(), axis.get_legend().get_window_extent()
    assert legend.x0 > plot.x1
    assert legend.x1 <= figure.bbox.x1 and plot.width > 0.45 * figure.bbox.width
    short = figures.learning_curves(load_run(write_run(tmp_path / "short", panel=False)))
    short.draw_without_rendering()
    inside = short.axes[0].get_legend().get_window_extent()
    assert short.axes[0].get_window_extent().contains(inside.x0 + 1, inside.y0 + 1)


def test_lines_over_different_numbers_of_seeds_say_how_many(tmp_path):
    """A stopped run (or seeds that diverged) leaves losses with 1, 2 and 3 seeds: the
    lines looked alike, a band or none the only hint."""
    run_dir = write_run(tmp_path, quality=QUALITY, panel=False)
    results = load_run(run_dir)
    stopped = (results.epochs["loss"] == "dice") | (results.epochs["seed"] == 0)
    trials = results.trials
    kept = trials[(trials["loss"] == "dice") | (trials["seed"] == 0)]
    partial = dataclasses.replace(results, epochs=results.epochs[stopped], trials=kept)
    lines = _curve_lines(figures.learning_curves(partial))
    assert list(lines) == ["dice (3 seeds)", "tversky (1 seed)", "focal (1 seed)"]


def test_a_loss_keeps_its_colour_in_every_panel(tmp_path):
    """Each panel's lines took the colours of the cycle in that dataset's ranking: with an
    imbalance dial, the best loss at each fraction was blue, a different loss each time.
    Each loss's colour now follows its mean rank over the datasets; each legend still
    lists its own dataset's ranking."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    ranked = {  # focal is best at 0.01, then worst; dice best at the other two fractions
        "synthetic(fg_fraction=0.01)": {"dice": 0.6, "focal": 0.8, "tversky": 0.7},
        "synthetic(fg_fraction=0.05)": {"dice": 0.8, "focal": 0.5, "tversky": 0.7},
        "synthetic(fg_fraction=0.2)": {"dice": 0.8, "focal": 0.5, "tversky": 0.7},
    }
    run_dir = write_run(
        tmp_path,
        quality=lambda loss, dataset: ranked[dataset][loss],
        losses=["dice", "focal", "tversky"],
        datasets=datasets,
        panel=False,
    )
    figure = figures.learning_curves(load_run(run_dir))
    colours = {"dice": "C0", "tversky": "C1", "focal": "C2"}  # mean ranks 1.33, 2, 2.67
    first, *others = figure.axes[:3]
    assert [line.get_label() for line in first.get_lines()] == ["focal", "tversky", "dice"]
    for axis in [first, *others]:
        assert {line.get_label(): line.get_color() for line in axis.get_lines()} == colours
    assert [line.get_label() for line in others[0].get_lines()] == ["dice", "tversky", "focal"]


def test_the_imbalance_figure_draws_each_loss_as_its_learning_curves_do(tmp_path):
    """Its colours went by loss name, the curves' by rank: dice was blue in one figure and
    orange in the other. Its error bars now stop at the score's range, as the bands do."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    quality = {"dice": 0.7, "focal": 0.6, "tversky": 0.9}
    run_dir = write_run(tmp_path, quality=quality, datasets=datasets, panel=False)
    results = load_run(run_dir)
    table = summarize(results)
    dial = imbalance_frame(table)
    dial.loc[dial["loss"] == "tversky", "score_std"] = 0.2  # seeds far apart
    assert (dial["score_mean"] + dial["score_std"]).max() > 1.0  # the case at hand
    (axis,) = figures.imbalance_figure(dial, split="test").axes
    drawn = {c.get_label(): c.lines[0].get_color() for c in axis.containers}
    curves = figures.learning_curves(results, table=table).axes[0]
    assert drawn == {line.get_label(): line.get_color() for line in curves.get_lines()}
    assert list(drawn) == ["tversky", "dice", "focal"]  # their legend's order
    bars = [c.lines[2][0] for c in axis.containers]  # each loss's vertical error bars
    assert max(segment[:, 1].max() for bar in bars for segment in bar.get_segments()) == 1.0
    assert axis.get_ylim()[1] == 1.0


def test_an_mplbackend_that_names_no_backend_is_one_line_not_a_traceback(tmp_path):
    """matplotlib refuses such an MPLBACKEND when first imported: a whole run ended in its
    ValueError traceback, report.html unwritten, though the figures need no backend."""
    import os
    import subprocess
    import sys

    run_dir = write_run(tmp_path, quality=QUALITY, seeds=(0,), panel=False)
    page = tmp_path / "page.html"
    environment = {**os.environ, "MPLBACKEND": "nonsense"}
    for option in (["--plots"], ["--html", str(page)]):
        done = subprocess.run(
            [sys.executable, "-m", "losscmp", "report", str(run_dir), *option],
            capture_output=True,
            text=True,
            env=environment,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            "losscmp: error: MPLBACKEND='nonsense' names no matplotlib backend, so matplotlib "
            "cannot be imported to draw the figures; unset it, losscmp needs none "
            "(env -u MPLBACKEND losscmp ...)"
        ]
    assert not page.exists() and not (run_dir / "plots").exists()


def test_a_run_refuses_an_mplbackend_that_names_no_backend_before_it_trains(tmp_path):
    """Its report.html draws the figures: found only after the whole run had trained."""
    import os
    import subprocess
    import sys

    from conftest import SMOKE

    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "losscmp", "run", "--config", SMOKE, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "nonsense"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("losscmp: error: MPLBACKEND='nonsense' names no matplotlib")
    assert not out.exists()


@pytest.mark.parametrize(
    ("metric", "curves", "dial"),
    [
        ("dice", "Dice", "Dice (test, at the epoch chosen on validation)"),
        (
            "ece",
            "ECE (lower is better)",
            "ECE (test, at the epoch chosen on validation; lower is better)",
        ),
    ],
)
def test_a_score_that_is_better_low_says_so_on_its_axis(tmp_path, metric, curves, dial):
    """ECE's best loss is the lowest line, every other score's the highest; nothing said so."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    results = load_run(write_run(tmp_path, quality=QUALITY, datasets=datasets, panel=False))
    table = summarize(results, metric)
    assert figures.learning_curves(results, metric, table).axes[0].get_ylabel() == curves
    figure = figures.imbalance_figure(imbalance_frame(table), metric, split="test")
    assert figure.axes[0].get_ylabel() == dial


def test_a_score_that_is_not_finite_is_left_out_of_the_curve_and_its_view(tmp_path):
    """A diverged epoch's scores are NaN; an infinite one (a damaged epochs.csv) would have
    stretched the view to nothing."""
    run_dir = write_run(tmp_path, quality=QUALITY, seeds=(0,), panel=False)
    results = load_run(run_dir)
    epochs = results.epochs.copy()
    epochs.loc[(epochs["loss"] == "dice") & (epochs["epoch"] == 2), "val_dice"] = np.inf
    results = dataclasses.replace(results, epochs=epochs)
    axis = figures.learning_curves(results).axes[0]
    assert list(_curve_lines(axis.figure)["dice"].get_xdata()) == [1, 3, 4]
    low, high = axis.get_ylim()
    assert 0.0 <= low < high <= 1.0


@pytest.mark.parametrize(("seeds", "said"), [((0, 1), "mean ± sd over seeds"), ((0,), "one seed")])
def test_the_imbalance_figure_of_one_seed_promises_no_sd(tmp_path, seeds, said):
    """Its title said '(mean ± sd over seeds)' over one seed's points, which have no bars."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.2)]
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=datasets, seeds=seeds, panel=False)
    dial = imbalance_frame(summarize(load_run(run_dir)))
    (axis,) = figures.imbalance_figure(dial, split="test").axes
    title = axis.get_title()
    assert title.startswith("Imbalance dial — synthetic (") and said in title
    assert ("sd" in title) == (len(seeds) > 1)
