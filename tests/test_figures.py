"""render/figures.py: the PNGs exist, are valid images, and draw what they claim."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from run_fixtures import write_run

from losscmp.render import figures
from losscmp.summary import imbalance_frame, load_run, summarize

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


def test_panel_has_image_truth_and_one_column_per_loss(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY)
    panel = figures.prediction_panel(load_run(run_dir), "synthetic")
    figure = panel.figure
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles == ["image", "ground truth", "dice", "focal", "tversky"]
    assert len(figure.axes) == 4 * 5  # four validation images


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
    figure = figures._figure(2, 2)
    axis = figure.subplots()
    image = np.zeros((8, 8, 3), np.uint8)
    figures._show_prediction(axis, image, mask, prediction, "multiclass", classes=4)
    logits = torch.nn.functional.one_hot(torch.from_numpy(prediction).long(), 4)
    counts = metrics.confusion_counts(
        logits.permute(2, 0, 1)[None].float(),
        torch.from_numpy(mask).long()[None],
        mode="multiclass",
        ignore_index=255,
    )
    expected = metrics.per_image_scores(counts, mode="multiclass")["dice"].item()
    assert expected == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert axis.get_xlabel() == f"Dice {expected:.2f}" == "Dice 0.89"


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
    dice_column = 2 + sorted(results.trials["loss"].unique()).index("dice")
    columns = panel.figure.axes[dice_column :: 2 + results.trials["loss"].nunique()]
    assert [axis.get_xlabel() for axis in columns] == [f"Dice {score:.2f}" for score in scores]


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
    stderr), and the ten colours of the cycle drew three losses alike."""
    run_dir = write_run(tmp_path, quality=MANY, seeds=(0,), panel=False)
    figure = figures.learning_curves(load_run(run_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures.png_bytes(figure)
    (axis,) = figure.axes
    styles = [(line.get_color(), line.get_linestyle()) for line in axis.get_lines()]
    assert len(styles) == len(set(styles)) == 26
    figure.draw_without_rendering()  # lays it out, as png_bytes does
    plot, legend = axis.get_window_extent(), axis.get_legend().get_window_extent()
    assert legend.x0 > plot.x1  # beside the lines, not over them
    assert plot.width > 0.45 * figure.bbox.width and plot.height > 0.6 * figure.bbox.height
    assert axis.get_legend()._ncols == 2


def test_a_panel_of_26_losses_is_cut_into_bands_in_the_losses_order(tmp_path):
    """26 losses made one row of 28 pictures, 5300 pixels wide: a page shrank it to
    thumbnails with unreadable titles; and its columns came in a scrambled order."""
    run_dir = write_run(tmp_path, quality=MANY, seeds=(0, 1))
    figure = figures.prediction_panel(load_run(run_dir), "synthetic").figure
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    bands = [
        [f"loss{index:02d}" for index in range(start, min(start + 7, 26))]
        for start in range(0, 26, 7)
    ]
    assert titles == [name for band in bands for name in ["image", "ground truth", *band]]
    assert len(figure.axes) == 4 * 4 * 9  # 4 bands of 4 images, 9 columns
    assert sum(axis.get_visible() for axis in figure.axes) == 4 * (4 * 2 + 26)
    assert figure.get_size_inches()[0] == pytest.approx(1.9 * 9)


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
