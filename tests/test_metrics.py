"""Metrics on hand-computed cases: every number below is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from losscmp import metrics
from losscmp.errors import ParameterError
from losscmp.metrics import (
    confusion_counts,
    hd95,
    normalized_surface_dice,
    per_image_scores,
    scores,
    summarize_epoch,
)

POSITIVE, NEGATIVE = 5.0, -5.0


def binary_logits(predicted: list[list[int]]) -> torch.Tensor:
    """(1,1,H,W) logits whose hard prediction is ``predicted``."""
    mask = torch.tensor(predicted, dtype=torch.bool)
    return torch.where(mask, POSITIVE, NEGATIVE).reshape(1, 1, *mask.shape)


def binary_target(truth: list[list[int]]) -> torch.Tensor:
    return torch.tensor(truth, dtype=torch.float32).reshape(1, 1, len(truth), len(truth[0]))


def multiclass_logits(predicted: list[list[int]], num_classes: int) -> torch.Tensor:
    labels = torch.tensor(predicted)
    return torch.nn.functional.one_hot(labels, num_classes).permute(2, 0, 1)[None].float()


# A 4x4 case: gt is the top-left 2x2 block, the prediction the first three pixels of row 0.
# tp = (0,0),(0,1) = 2; fp = (0,2) = 1; fn = (1,0),(1,1) = 2; tn = 16 - 5 = 11.
TRUTH = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
PREDICTION = [[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
EMPTY = [[0] * 4 for _ in range(4)]


def test_binary_counts_by_hand():
    counts = confusion_counts(binary_logits(PREDICTION), binary_target(TRUTH), mode="binary")
    assert counts.dtype == torch.int64
    assert counts.shape == (1, 1, 4)
    assert counts.tolist() == [[[2, 1, 2, 11]]]


def test_binary_threshold_is_probability_one_half():
    # logit 0 <=> sigmoid 0.5, which counts as foreground; a hair below does not.
    logits = torch.tensor([0.0, -1e-6]).reshape(1, 1, 1, 2)
    target = torch.tensor([1.0, 1.0]).reshape(1, 1, 1, 2)
    assert confusion_counts(logits, target, mode="binary").tolist() == [[[1, 0, 1, 0]]]


def test_binary_target_without_channel_dimension():
    target = binary_target(TRUTH)[:, 0]
    counts = confusion_counts(binary_logits(PREDICTION), target, mode="binary")
    assert counts.tolist() == [[[2, 1, 2, 11]]]


def test_binary_scores_by_hand():
    got = scores(torch.tensor([2, 1, 2, 11]))
    assert got["dice"].item() == pytest.approx(4 / 7)  # 2tp / (2tp + fp + fn)
    assert got["iou"].item() == pytest.approx(2 / 5)  # tp / (tp + fp + fn)
    assert got["precision"].item() == pytest.approx(2 / 3)
    assert got["recall"].item() == pytest.approx(1 / 2)
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (22 - 2) / sqrt(3*4*12*13)
    assert got["mcc"].item() == pytest.approx(20 / math.sqrt(1872))


def test_scores_keep_image_and_class_axes():
    counts = torch.tensor([[[2, 1, 2, 11], [0, 0, 0, 16]], [[4, 0, 0, 12], [0, 4, 0, 12]]])
    got = scores(counts)
    assert got["dice"].shape == (2, 2)
    assert got["dice"].flatten().tolist() == pytest.approx([4 / 7, 1.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("truth", "prediction", "expected"),
    [
        # nothing to find, nothing found: perfect by convention
        (EMPTY, EMPTY, {"dice": 1, "iou": 1, "mcc": 1, "precision": 1, "recall": 1}),
        # nothing to find, something claimed: every ratio fails, mcc "no information"
        (EMPTY, PREDICTION, {"dice": 0, "iou": 0, "mcc": 0, "precision": 0, "recall": 0}),
        # something to find, nothing claimed
        (TRUTH, EMPTY, {"dice": 0, "iou": 0, "mcc": 0, "precision": 0, "recall": 0}),
    ],
    ids=["both-empty", "empty-truth", "empty-prediction"],
)
def test_empty_mask_conventions(truth, prediction, expected):
    counts = confusion_counts(binary_logits(prediction), binary_target(truth), mode="binary")
    got = {name: value.item() for name, value in scores(counts[0, 0]).items()}
    # A new score states its empty conventions here, as its formula's docstring does.
    assert set(got) == set(expected), "a score without a stated empty convention"
    assert got == pytest.approx(expected)


def test_mcc_all_foreground_predicted_perfectly_is_one():
    full = [[1] * 4 for _ in range(4)]
    counts = confusion_counts(binary_logits(full), binary_target(full), mode="binary")
    assert scores(counts)["mcc"].item() == 1.0


def test_mcc_does_not_overflow_on_large_counts():
    tp, fp, fn, tn = 10**9, 10**8, 2 * 10**8, 10**10
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    got = scores(torch.tensor([tp, fp, fn, tn]))["mcc"].item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_binary_ignore_index_excludes_pixels():
    # Mark the wrongly predicted (0,2) and the missed (1,0) pixels as ignored (255):
    # tp 2, fp 0, fn 1 ((1,1) only), tn 16 - 2 ignored - 3 = 11.
    target = binary_target(TRUTH)
    target[0, 0, 0, 2] = 255
    target[0, 0, 1, 0] = 255
    counts = confusion_counts(binary_logits(PREDICTION), target, mode="binary", ignore_index=255)
    assert counts.tolist() == [[[2, 0, 1, 11]]]


# Multiclass, 2x3 image, classes 0 (background), 1, 2:
#   truth      prediction
#   0 1 1      0 1 2
#   2 2 0      2 1 0
# class 0: tp 2 ((0,0),(1,2)), fp 0, fn 0, tn 4
# class 1: tp 1 ((0,1)), fp 1 ((1,1)), fn 1 ((0,2)), tn 3
# class 2: tp 1 ((1,0)), fp 1 ((0,2)), fn 1 ((1,1)), tn 3
MC_TRUTH = [[0, 1, 1], [2, 2, 0]]
MC_PREDICTION = [[0, 1, 2], [2, 1, 0]]


def test_multiclass_counts_by_hand():
    counts = confusion_counts(
        multiclass_logits(MC_PREDICTION, 3), torch.tensor([MC_TRUTH]), mode="multiclass"
    )
    assert counts.shape == (1, 3, 4)
    assert counts.tolist() == [[[2, 0, 0, 4], [1, 1, 1, 3], [1, 1, 1, 3]]]


def test_multiclass_ignore_index():
    # Ignoring (1,1) (truth 2, predicted 1) removes class 1's fp and class 2's fn.
    truth = torch.tensor([[[0, 1, 1], [2, 255, 0]]])
    counts = confusion_counts(
        multiclass_logits(MC_PREDICTION, 3), truth, mode="multiclass", ignore_index=255
    )
    assert counts.tolist() == [[[2, 0, 0, 3], [1, 0, 1, 3], [1, 1, 0, 3]]]


def test_multiclass_summary_averages_foreground_and_names_classes():
    counts = confusion_counts(
        multiclass_logits(MC_PREDICTION, 3), torch.tensor([MC_TRUTH]), mode="multiclass"
    )
    summary = summarize_epoch(counts, mode="multiclass", class_names=["bg", "pet", "border"])
    # class 1 and 2 each: dice 2/4 = 0.5, iou 1/3; background dice 1 is not in the mean.
    assert summary["val_dice"] == pytest.approx(0.5)
    assert summary["val_iou"] == pytest.approx(1 / 3)
    assert summary["val_dice_bg"] == pytest.approx(1.0)
    assert summary["val_dice_pet"] == pytest.approx(0.5)
    assert summary["val_dice_border"] == pytest.approx(0.5)
    # mcc of class 1 (and 2): (1*3 - 1*1) / sqrt(2*2*4*4) = 2/8
    assert summary["val_mcc"] == pytest.approx(0.25)


def test_multiclass_default_class_names_are_indices():
    counts = torch.tensor([[[2, 0, 0, 4], [1, 1, 1, 3]]])
    summary = summarize_epoch(counts, mode="multiclass")
    assert set(summary) >= {"val_dice_0", "val_dice_1"}


def test_summarize_epoch_binary_dataset_and_image_level():
    # image A perfect (tp 4, tn 12); image B has no object but 4 false positives.
    counts = torch.tensor([[[4, 0, 0, 12]], [[0, 4, 0, 12]]])
    summary = summarize_epoch(counts, mode="binary")
    # dataset level: tp 4, fp 4, fn 0, tn 24
    assert summary["val_dice"] == pytest.approx(8 / 12)
    assert summary["val_iou"] == pytest.approx(4 / 8)
    assert summary["val_precision"] == pytest.approx(0.5)
    assert summary["val_recall"] == pytest.approx(1.0)
    assert summary["val_mcc"] == pytest.approx(96 / math.sqrt(8 * 4 * 24 * 28))
    # image level: mean of dice 1 and dice 0
    assert summary["val_image_dice"] == pytest.approx(0.5)
    assert summary["val_image_iou"] == pytest.approx(0.5)
    assert all(isinstance(value, float) for value in summary.values())
    assert not any(name.startswith("val_dice_") for name in summary)


def test_per_image_scores_average_foreground_classes():
    counts = torch.tensor([[[2, 0, 0, 4], [1, 1, 1, 3], [0, 0, 0, 6]]])
    # class 1 dice 0.5, class 2 absent from both -> 1; mean 0.75 (background excluded)
    assert per_image_scores(counts, mode="multiclass")["dice"].tolist() == pytest.approx([0.75])


def test_unknown_mode_is_a_parameter_error():
    with pytest.raises(ParameterError, match="mode"):
        confusion_counts(binary_logits(PREDICTION), binary_target(TRUTH), mode="multilabel")


def test_counts_stay_on_device_and_cover_every_valid_pixel():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 8, 8, generator=generator)
    target = torch.randint(0, 4, (3, 8, 8), generator=generator)
    target[0, 0, :5] = 255
    counts = confusion_counts(logits, target, mode="multiclass", ignore_index=255)
    assert counts.device == logits.device
    assert counts.sum(dim=-1)[0].tolist() == [64 - 5] * 4
    assert counts.sum(dim=-1)[1:].unique().tolist() == [64]


# ------------------------------------------------------------------ boundary metrics


def single_pixel(row: int, col: int, shape=(8, 8)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[row, col] = True
    return mask


def test_hd95_single_pixels_is_their_distance():
    assert hd95(single_pixel(0, 0), single_pixel(0, 3)) == pytest.approx(3.0)
    assert hd95(single_pixel(1, 1), single_pixel(4, 5)) == pytest.approx(5.0)  # 3-4-5


def test_hd95_identical_masks_is_zero():
    square = np.zeros((10, 10), dtype=bool)
    square[2:7, 3:8] = True
    assert hd95(square, square) == 0.0


def test_hd95_empty_conventions():
    empty = np.zeros((6, 8), dtype=bool)
    assert hd95(empty, empty) == 0.0
    assert hd95(single_pixel(1, 1, (6, 8)), empty) == pytest.approx(10.0)  # diagonal of 6x8
    assert hd95(empty, single_pixel(1, 1, (6, 8))) == pytest.approx(10.0)


def test_hd95_shifted_square():
    # a 4x4 square moved 2 px right: every boundary pixel is at most 2 px from the other's
    gt = np.zeros((12, 12), dtype=bool)
    gt[4:8, 2:6] = True
    pred = np.roll(gt, 2, axis=1)
    assert hd95(pred, gt) == pytest.approx(2.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hd95_matches_monai_on_random_blobs():
    monai_metrics = pytest.importorskip("monai.metrics")
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(5):
        pred = ndimage.gaussian_filter(rng.random((32, 32)), 3) > 0.5
        gt = ndimage.gaussian_filter(rng.random((32, 32)), 3) > 0.5
        if not pred.any() or not gt.any():
            continue
        reference = monai_metrics.compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None], percentile=95
        ).item()
        assert hd95(pred, gt) == pytest.approx(reference, abs=1e-6)


def test_normalized_surface_dice_by_hand():
    assert normalized_surface_dice(single_pixel(0, 0), single_pixel(0, 2)) == 1.0  # 2 <= 2
    assert normalized_surface_dice(single_pixel(0, 0), single_pixel(0, 3)) == 0.0
    empty = np.zeros((8, 8), dtype=bool)
    assert normalized_surface_dice(empty, empty) == 1.0
    assert normalized_surface_dice(single_pixel(0, 0), empty) == 0.0


def test_boundary_metrics_reject_mismatched_shapes():
    with pytest.raises(ParameterError):
        hd95(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


# ---------------------------------------------------------------- threshold, AP, ECE

# Seven pixels, foreground probability and label, highest first:
#   0.905 P, 0.81 P, 0.805 N, 0.605 P, 0.305 P, 0.205 N, 0.105 N   (4 positives)
RANKED = [(0.905, 1), (0.81, 1), (0.805, 0), (0.605, 1), (0.305, 1), (0.205, 0), (0.105, 0)]


def ranked_histogram(pairs=RANKED, ignore_index=None, ignored=()):
    probabilities = torch.tensor([p for p, _ in pairs], dtype=torch.float64)
    labels = torch.tensor([float(y) for _, y in pairs])
    for position in ignored:
        labels[position] = ignore_index
    logits = torch.logit(probabilities).float().reshape(1, 1, 1, -1)
    return metrics.probability_histogram(
        logits, labels.reshape(1, 1, 1, -1), ignore_index=ignore_index
    )


def test_average_precision_by_hand():
    # precision at each positive, walking down the ranking: 1/1, 2/2, 3/4, 4/5
    # AP = (1 + 1 + 0.75 + 0.8) / 4 = 0.8875 (scikit-learn's definition, no interpolation)
    assert metrics.average_precision(ranked_histogram()) == pytest.approx(0.8875)


def test_average_precision_ties_share_a_bin_and_no_positive_is_nan():
    # 0.5 and 0.501 fall in one 1/300 bin: tied scores, one point of the curve;
    # with the positive and the negative tied, precision there is 1/2, so AP = 1/2.
    tied = ranked_histogram([(0.5, 1), (0.501, 0)])
    assert metrics.average_precision(tied) == pytest.approx(0.5)
    assert math.isnan(metrics.average_precision(ranked_histogram([(0.3, 0), (0.6, 0)])))


def test_expected_calibration_error_by_hand():
    # 15 bins of width 1/15. Bin 13 [0.867, 0.933): 0.905 P -> |0.905 - 1| = 0.095;
    # bin 12 [0.8, 0.867): 0.81 P + 0.805 N -> |1.615 - 1| = 0.615; bin 9: |0.605 - 1| = 0.395;
    # bin 4: |0.305 - 1| = 0.695; bin 3: 0.205; bin 1: 0.105. Sum 2.11 over 7 pixels.
    assert metrics.expected_calibration_error(ranked_histogram()) == pytest.approx(2.11 / 7)


def test_threshold_choice_by_hand():
    # Dice of "p >= t": t <= 0.105: 8/11; (0.105, 0.205]: 8/10; (0.205, 0.305]: tp 4 fp 1
    # -> 8/9 (the best); (0.305, 0.605]: 6/8 ... The grid points 0.21 ... 0.30 tie at 8/9:
    # the one nearest 0.5 wins, 0.30. At 0.5 the Dice is 6/8.
    counts = metrics.threshold_counts(ranked_histogram())
    index = metrics.choose_threshold(counts)
    assert metrics.THRESHOLDS[index] == pytest.approx(0.30)
    assert counts[index].tolist() == [4, 1, 0, 2]
    columns, used = metrics.histogram_scores(ranked_histogram(), "val_")
    assert used == index
    assert columns["val_dice_t"] == pytest.approx(8 / 9)
    assert columns["val_iou_t"] == pytest.approx(4 / 5)
    half = metrics.threshold_counts(ranked_histogram())[metrics.THRESHOLDS.index(0.5)]
    assert half.tolist() == [3, 1, 1, 2]


def test_threshold_tie_equally_far_from_one_half_goes_to_the_lower():
    # 0.9 P, 0.565 N, 0.5 N, 0.435 P. Dice of "p >= t": t <= 0.43: tp 2 fp 2 -> 2/3;
    # 0.44 ... 0.50: tp 1 fp 2 fn 1 -> 2/5; 0.51 ... 0.56: 2/4; 0.57 ... 0.90: tp 1 fn 1 -> 2/3.
    # 0.43 and 0.57 tie, both 0.07 from 0.5: the lower wins (in floats 0.57 looks nearer).
    pairs = [(0.9, 1), (0.565, 0), (0.5, 0), (0.435, 1)]
    counts = metrics.threshold_counts(ranked_histogram(pairs))
    index = metrics.choose_threshold(counts)
    assert metrics.THRESHOLDS[index] == pytest.approx(0.43)
    assert counts[index].tolist() == [2, 2, 0, 0]


def test_the_test_split_is_scored_at_the_validation_threshold():
    # On this "test" histogram alone 0.4 ... 0.65 would give Dice 1; at the validation's 0.3,
    # 0.65 P and 0.35 N are foreground, 0.25 N is not: tp 1, fp 1, Dice 2/3.
    test = ranked_histogram([(0.65, 1), (0.35, 0), (0.25, 0)])
    chosen = metrics.THRESHOLDS.index(0.3)
    columns, used = metrics.histogram_scores(test, "test_", chosen)
    assert used == chosen
    assert columns["test_dice_t"] == pytest.approx(2 / 3)


def test_a_nan_logit_is_background_at_every_threshold_as_at_one_half():
    # A model whose outputs overflowed (finite weights, NaN logits) was scored background
    # by confusion_counts but put in the histogram's top bin: at the same 0.5 the epoch row
    # had Dice 0 and Dice@thr. 2/3. NaN, 2.0 (P) and -2.0 (N); labels P, P, N.
    logits = torch.tensor([math.nan, 2.0, -2.0]).reshape(1, 1, 1, 3)
    target = torch.tensor([1.0, 1.0, 0.0]).reshape(1, 1, 1, 3)
    histogram = metrics.probability_histogram(logits, target)
    counts = metrics.confusion_counts(logits, target, mode="binary")[0, 0]
    assert counts.tolist() == [1, 0, 1, 1]  # tp: 2.0; fn: the NaN pixel; tn: -2.0
    by_threshold = metrics.threshold_counts(histogram)
    assert by_threshold[metrics.THRESHOLDS.index(0.5)].tolist() == [1, 0, 1, 1]
    assert by_threshold[0].tolist() == [1, 1, 1, 0]  # at 0.01 only the NaN pixel stays out
    assert math.isnan(metrics.expected_calibration_error(histogram))  # no probability


def test_histogram_at_one_half_agrees_with_confusion_counts_and_skips_ignored():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=generator)
    logits[0, 0, 0, :4] = 0.0  # exactly p = 0.5: foreground for both
    target = (torch.rand(3, 1, 8, 8, generator=generator) > 0.7).float()
    target[:, :, 7] = 255
    histogram = metrics.probability_histogram(logits, target, ignore_index=255)
    counts = confusion_counts(logits, target, mode="binary", ignore_index=255).sum(dim=(0, 1))
    half = metrics.threshold_counts(histogram)[metrics.THRESHOLDS.index(0.5)]
    assert half.tolist() == counts.tolist()
    assert histogram[:, :2].sum() == 3 * 7 * 8  # the ignored row left out
    grouped = metrics.grouped_probability_histogram(
        torch.stack([logits, -logits]), target, ignore_index=255
    )
    assert torch.equal(grouped[0], histogram)
    assert torch.equal(grouped[1], metrics.probability_histogram(-logits, target, ignore_index=255))


def _edges_and_neighbours() -> torch.Tensor:
    """Every inner edge (as the float32 logit it is) and its 3 float32 neighbours either side,
    where float32 rounding of sigmoid could put floor(300·p) in the next bin."""
    edges = torch.tensor(metrics._logit_edge_values())
    around = [edges]
    for direction in (math.inf, -math.inf):
        step = edges
        for _ in range(3):
            step = torch.nextafter(step, torch.tensor(direction))
            around.append(step)
    return torch.cat(around)


SPECIAL_LOGITS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 3e38, -3e38, 1e-40, 17.0, -17.0, 40.0]


def test_bins_are_those_of_a_binary_search_over_the_edges():
    # The bin is guessed from floor(300·sigmoid(x)) and settled against the two edges beside
    # the guess; the definition is bucketize over the 299 logit edges (right: an edge value
    # opens its bin), NaN in bin 0 as confusion_counts reads it (background).
    logits = torch.cat(
        [_edges_and_neighbours(), torch.linspace(-30, 30, 20001), torch.tensor(SPECIAL_LOGITS)]
    )
    edges = torch.tensor(metrics._logit_edge_values())
    expected = torch.bucketize(torch.where(logits.isnan(), -math.inf, logits), edges, right=True)
    found = metrics._bin_indices(logits, torch.sigmoid(logits))
    assert torch.equal(found, expected.float())
    # NaN, +inf, -inf, then 0 and -0: p = 0.5 opens bin 150 (the hard prediction's p >= 0.5)
    assert found[-len(SPECIAL_LOGITS) :][:5].tolist() == [0.0, 299.0, 0.0, 150.0, 150.0]


def _searched_histogram(logits, target, ignore_index=None, probabilities=None):
    """The histogram by its definition: a binary search per pixel, scatter-adds in float64.
    ``probabilities``: the sigmoid of ``logits`` as a device computed it (default: the CPU's)."""
    flat = logits[:, 0].reshape(-1).float()
    if probabilities is None:
        probabilities = torch.sigmoid(flat)
    edges = torch.tensor(metrics._logit_edge_values())
    bins = torch.bucketize(torch.where(flat.isnan(), -math.inf, flat), edges, right=True)
    labels = target.reshape(-1)
    weight = (labels != ignore_index if ignore_index is not None else labels == labels).double()
    counts = torch.zeros(600, dtype=torch.float64)
    counts.index_add_(0, bins * 2 + (labels > 0.5).long(), weight)
    sums = torch.zeros(300, dtype=torch.float64)
    sums.index_add_(0, bins, probabilities.reshape(-1).double() * weight)
    return torch.cat([counts.view(300, 2), sums.view(300, 1)], dim=1)


@pytest.mark.parametrize("ignore_index", [None, 255])
def test_histogram_equals_its_binary_search_definition_bit_for_bit(ignore_index):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 1, 32, 32, generator=generator) * 6
    planted = torch.cat([_edges_and_neighbours(), torch.tensor(SPECIAL_LOGITS[1:])])
    logits.view(-1)[: len(planted)] = planted  # no NaN: its sum is NaN either way
    target = (torch.rand(4, 1, 32, 32, generator=generator) > 0.7).float()
    if ignore_index is not None:
        target[:, :, :5] = ignore_index
    histogram = metrics.probability_histogram(logits, target, ignore_index=ignore_index)
    assert torch.equal(histogram, _searched_histogram(logits, target, ignore_index))
    grouped = metrics.grouped_probability_histogram(
        torch.stack([logits, logits.flip(0)]), target, ignore_index=ignore_index
    )
    assert torch.equal(grouped[0], histogram)
    assert torch.equal(grouped[1], _searched_histogram(logits.flip(0), target, ignore_index))


def _full_image_boundary_scores(pred, gt, tolerance=2.0):
    """HD95 and NSD with distance transforms over the whole image (no crop)."""
    from scipy import ndimage

    def surface(mask):
        return mask & ~ndimage.binary_erosion(mask, border_value=0)

    pred_surface, gt_surface = surface(pred), surface(gt)
    to_gt = ndimage.distance_transform_edt(~gt_surface)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface)[gt_surface]
    distance = max(np.percentile(to_gt, 95), np.percentile(to_pred, 95))
    within = (to_gt <= tolerance).sum() + (to_pred <= tolerance).sum()
    return distance, within / (to_gt.size + to_pred.size)


@pytest.mark.parametrize(
    ("pred_box", "gt_box"),
    [
        ((10, 20, 30, 45), (12, 22, 28, 40)),  # small, in the interior: a tight crop
        ((0, 0, 8, 5), (3, 50, 9, 64)),  # at two image edges, far apart
        ((40, 0, 64, 64), (45, 10, 60, 30)),  # along a whole edge
    ],
)
def test_boundary_scores_on_the_crop_equal_the_whole_image(pred_box, gt_box):
    """The distance transforms run on the box around both masks; boundary pixels on the
    image edge and objects far apart must give exactly the whole image's numbers."""

    def box(top, left, bottom, right):
        mask = np.zeros((64, 64), dtype=bool)
        mask[top:bottom, left:right] = True
        return mask

    pred, gt = box(*pred_box), box(*gt_box)
    distance, surface_dice = metrics.boundary_scores(pred, gt)
    expected = _full_image_boundary_scores(pred, gt)
    assert distance == pytest.approx(expected[0], abs=1e-12)
    assert surface_dice == pytest.approx(expected[1], abs=1e-12)
    assert (hd95(pred, gt), normalized_surface_dice(pred, gt)) == (distance, surface_dice)


def test_boundary_scores_on_the_crop_equal_the_whole_image_on_random_blobs():
    from scipy import ndimage

    rng = np.random.default_rng(1)
    compared = 0
    for _ in range(60):
        masks = [
            ndimage.gaussian_filter(rng.random((48, 48)), rng.uniform(1, 4))
            > rng.uniform(0.5, 0.56)
            for _ in range(2)
        ]
        if all(mask.any() for mask in masks):
            assert metrics.boundary_scores(*masks) == _full_image_boundary_scores(*masks)
            compared += 1
    assert compared >= 30


def _whole_image_distances(pred, gt):
    """The two distance lists as the first implementation had them: SciPy's erosion and
    two distance transforms of the whole image, read at the boundary pixels."""
    from scipy import ndimage

    def surface(mask):
        return mask & ~ndimage.binary_erosion(mask, border_value=0)

    pred_surface, gt_surface = surface(pred), surface(gt)
    return (
        ndimage.distance_transform_edt(~gt_surface)[pred_surface],
        ndimage.distance_transform_edt(~pred_surface)[gt_surface],
    )


def _mask_pair(rng):
    """Two masks of a random size (1 px to 200 px a side) of one of the shapes a
    segmentation gives and a few it should not: blobs, rectangles (often at the image's
    edge), one-pixel lines, single pixels, salt noise, the whole image; the second one
    often inside the first, equal to it or shifted."""
    from scipy import ndimage

    height, width = rng.integers(1, 200 if rng.random() < 0.2 else 60, size=2)

    def mask(kind):
        drawn = np.zeros((height, width), dtype=bool)
        if kind == "blob":
            field = ndimage.gaussian_filter(rng.random((height, width)), rng.uniform(0.5, 5))
            return field > rng.uniform(0.46, 0.54)
        if kind == "rectangles":
            for _ in range(rng.integers(1, 4)):
                top, bottom = sorted(rng.integers(0, height + 1, 2))
                left, right = sorted(rng.integers(0, width + 1, 2))
                drawn[top : bottom + 1, left : right + 1] = True
        elif kind == "lines":
            for _ in range(rng.integers(1, 4)):
                steps = 2 * max(height, width)
                rows = np.linspace(*rng.integers(0, height, 2), steps).round().astype(int)
                cols = np.linspace(*rng.integers(0, width, 2), steps).round().astype(int)
                drawn[rows, cols] = True
        elif kind == "pixels":
            count = rng.integers(1, 4)
            drawn[rng.integers(0, height, count), rng.integers(0, width, count)] = True
        elif kind == "salt":
            return rng.random((height, width)) < rng.uniform(0.02, 0.6)
        else:
            drawn[:] = True
        return drawn

    kinds = ["blob", "rectangles", "lines", "pixels", "salt", "whole"]
    first = mask(kinds[rng.integers(len(kinds))])
    relation = rng.integers(4)
    if relation == 0:
        second = ndimage.binary_erosion(first, iterations=int(rng.integers(1, 4)))
    elif relation == 1:
        second = first.copy()
    elif relation == 2:
        second = np.roll(first, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
    else:
        second = mask(kinds[rng.integers(len(kinds))])
    return (first, second) if rng.random() < 0.5 else (second, first)


@pytest.mark.parametrize("path", ["chosen", "tree", "distance transform"])
def test_surface_distances_are_exactly_the_whole_image_distance_transforms(monkeypatch, path):
    """The distances come from a k-d tree of boundary points, or a distance transform of the
    box for a ragged boundary; images.csv's HD95 and NSD are compared between runs, so
    every distance must be the whole image's transform's float, in its order, on either
    path: 400 random pairs of each kind of shape, thin lines and the image's edge included."""
    cut = {"chosen": metrics.EDT_POINTS_PER_PIXEL, "tree": math.inf, "distance transform": 0}
    monkeypatch.setattr(metrics, "EDT_POINTS_PER_PIXEL", cut[path])
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(400):
        pred, gt = _mask_pair(rng)
        if not (pred.any() and gt.any()):
            continue
        found, expected = metrics._surface_distances(pred, gt), _whole_image_distances(pred, gt)
        for ours, theirs in zip(found, expected, strict=True):
            assert ours.dtype == theirs.dtype == np.float64
            np.testing.assert_array_equal(ours, theirs)
        assert metrics.boundary_scores(pred, gt) == _full_image_boundary_scores(pred, gt)
        compared += 1
    assert compared >= 300


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    arrays(bool, array_shapes(min_dims=2, max_dims=2, max_side=9)),
    st.integers(-2, 2),
    st.integers(-2, 2),
    st.booleans(),
)
def test_surface_distances_equal_the_distance_transforms_on_small_masks(mask, down, right, flip):
    """Every small mask against a shifted copy (or another mask): single pixels, lines and
    pixels on the edge are where a k-d tree and a distance transform could part."""
    other = np.roll(mask, (down, right), axis=(0, 1))
    other = ~other if flip else other
    if not (mask.any() and other.any()):
        return
    expected = _whole_image_distances(mask, other)
    for cut in (math.inf, 0):  # the tree, then the distance transform (most boxes this small)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(metrics, "EDT_POINTS_PER_PIXEL", cut)
            found = metrics._surface_distances(mask, other)
        for ours, theirs in zip(found, expected, strict=True):
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("threads", [1, 3])
def test_boundary_scores_of_many_images_report_each_image_in_order(threads):
    """The last epoch's boundary scores of a large split took minutes with nothing to show:
    ``on_image(done, images)`` now follows each image, in order, on one thread or several."""
    from types import SimpleNamespace

    from losscmp.train import all_boundary_scores
    from losscmp.worker import torch_threads

    rng = np.random.default_rng(3)
    masks = (rng.random((9, 12, 12)) > 0.5).astype(np.uint8)
    data = SimpleNamespace(mode="binary", num_classes=2, ignore_index=None)
    told = []
    with torch_threads(threads):
        rows = all_boundary_scores(masks[::-1], masks, data, lambda *done: told.append(done))
    assert told == [(image, 9) for image in range(1, 10)]
    assert len(rows) == 9 and rows[4] == {"hd95": 0.0, "nsd": 1.0}  # the middle: itself


def test_boundary_scores_of_many_images_on_several_threads_are_the_serial_ones():
    """A trial shares its images' distance transforms among its torch threads: same values,
    same order as one image after another, empty and ignored pixels included."""
    from types import SimpleNamespace

    from scipy import ndimage

    from losscmp.train import all_boundary_scores, boundary_scores
    from losscmp.worker import torch_threads

    rng = np.random.default_rng(2)
    masks = (ndimage.gaussian_filter(rng.random((40, 32, 32)), (0, 2, 2)) > 0.5).astype(np.uint8)
    masks[3] = 0  # nothing to find
    masks[5, :2] = 255  # an ignored band
    predictions = (ndimage.gaussian_filter(rng.random((40, 32, 32)), (0, 2, 2)) > 0.5).astype(
        np.uint8
    )
    predictions[3] = 0  # and nothing predicted
    data = SimpleNamespace(mode="binary", num_classes=2, ignore_index=255)
    serial = [boundary_scores(p, m, data) for p, m in zip(predictions, masks, strict=True)]
    with torch_threads(3):
        shared = all_boundary_scores(predictions, masks, data)
    assert shared == serial
    assert serial[3] == {"hd95": 0.0, "nsd": 1.0}
    assert len({row["hd95"] for row in serial}) > 10 and len(serial) == 40


def test_the_metric_names_are_listed_once():
    """metric_names.py lists the scores: what summarize_epoch computes is what epochs.csv orders,
    report --metric offers and the tables title, with no second list to keep in step."""
    from losscmp import metric_names, report_args, results, summary

    assert {"dice", "iou", "mcc", "precision", "recall"} <= set(metric_names.SCORE_NAMES)
    assert {"dice_t", "iou_t", "mcc_t", "ap", "ece"} <= set(metric_names.BINARY_SCORE_NAMES)
    assert metrics.SCORE_NAMES is metric_names.SCORE_NAMES
    assert [*metric_names.SCORE_NAMES, *metric_names.IMAGE_SCORE_NAMES] == results.SPLIT_SCORES
    assert list(metric_names.BINARY_SCORE_NAMES) == results.BINARY_SCORES
    assert summary.METRIC_TITLES is metric_names.METRIC_TITLES
    assert {"dice", "iou", "mcc", "image_dice", "image_iou"} <= set(metric_names.PLAIN_METRICS)
    assert metric_names.BINARY_METRICS == metric_names.BINARY_SCORE_NAMES
    assert report_args.METRICS is summary.METRICS is metric_names.METRICS
    counts = torch.tensor([[[4, 0, 0, 12]], [[0, 4, 0, 12]]])
    columns = list(summarize_epoch(counts, mode="binary", prefix="test_"))
    assert columns == [f"test_{name}" for name in results.SPLIT_SCORES]


def test_a_mode_is_checked_by_the_modes_one_owner():
    """metrics.py kept its own copy of the modes and their check (worded otherwise)."""
    from losscmp.losses import catalogue

    assert metrics.check_mode is catalogue.check_mode
    with pytest.raises(ParameterError, match="one of binary, multiclass, not 'multilabel'"):
        summarize_epoch(torch.zeros(1, 1, 4, dtype=torch.long), mode="multilabel")
