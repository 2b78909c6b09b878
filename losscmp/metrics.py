"""Segmentation metrics: confusion counts -> Dice / IoU / MCC / precision / recall; HD95, NSD.

Everything starts from hard predictions (sigmoid >= 0.5, i.e. logit >= 0, for
binary; argmax for multiclass) turned into per-image, per-class confusion
counts ``[tp, fp, fn, tn]`` (int64, on the logits' device, no host sync). The
trainer sums nothing itself: it concatenates the per-image counts of an epoch
and calls :func:`summarize_epoch` once, which is the only place that moves
numbers to the host.

Class layout: binary -> K = 1 (the foreground); multiclass -> K = C, class 0
is the background (the data contract puts it first) and the headline scores
average the foreground classes 1..C-1.

Empty conventions (the ratio has a zero denominator): dice, iou, precision, recall and
mcc keep theirs in the docstrings of their formulas, functions of the counts in
``losscmp/scores/`` (registered in ``metric_names.py``); MCC is reported from
dataset-level counts, where its empty case almost never arises. The distances':

- hd95: both masks empty -> 0.0; exactly one empty -> the image diagonal
  (the largest distance possible on the image) so that a missed object is
  penalised instead of silently dropped from the mean.
- nsd (normalised surface Dice at a tolerance): both empty -> 1.0, one
  empty -> 0.0.

Ignored pixels (``ignore_index``) count in none of tp/fp/fn/tn.

Binary tasks also get scores that do not fix the threshold at 0.5, all from one
**probability histogram** per split and epoch (:func:`probability_histogram`:
per equal-width bin of the foreground probability, the negative and positive
pixel counts and the sum of the probabilities; accumulated on the device, no
per-pixel array kept, no host sync):

- **threshold choice** (:func:`choose_threshold`): among ``THRESHOLDS`` (0.01,
  0.02, ..., 0.99, all bin edges), the one with the highest dataset-level Dice on
  the validation split (IoU is a monotone function of Dice, so it is IoU's best
  too); ties go to the threshold nearest 0.5, then the lower one. The test split
  is then scored at that threshold (``dice_t``, ``iou_t``, ``mcc_t``).
- **average precision** (:func:`average_precision`): the area under the
  pixel-level precision-recall curve, sum over thresholds of (R_n - R_{n-1}) P_n
  as scikit-learn defines it, with the pixels of one bin taken as tied scores
  (so probabilities are resolved to 1/``HISTOGRAM_BINS``). NaN without a
  positive pixel.
- **expected calibration error** (:func:`expected_calibration_error`): ``ECE_BINS``
  (15) equal-width bins of the foreground probability, sum over bins of
  (pixels in bin / all pixels) * |mean probability - share of foreground|; the
  reliability of the foreground probability, which a threshold of 0.5 presumes.

Multiclass tasks decide by argmax over the classes: no single threshold to move,
so these three are not computed for them (a one-vs-rest version per class would
be a different question: how well each class is ranked, not how the argmax decides).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from losscmp.errors import ParameterError
from losscmp.losses.catalogue import check_mode  # the modes' one owner (no torch)
from losscmp.metric_names import (
    IMAGE_SCORE_NAMES,
    SCORE_NAMES,
    SCORES,
    THRESHOLD_FREE_SCORE_NAMES,
    THRESHOLD_SCORE_NAMES,
)

if TYPE_CHECKING:  # torch is imported lazily so numpy-only users (hd95) stay light
    import torch

TP, FP, FN, TN = 0, 1, 2, 3
HISTOGRAM_BINS = 300  # equal-width bins of the foreground probability
THRESHOLD_STEP_BINS = 3  # thresholds every 3 bins: 0.01, 0.02, ..., 0.99
THRESHOLDS = tuple(
    k / HISTOGRAM_BINS for k in range(THRESHOLD_STEP_BINS, HISTOGRAM_BINS, THRESHOLD_STEP_BINS)
)
ECE_BINS = 15
NEGATIVES, POSITIVES, PROBABILITY_SUM = 0, 1, 2  # the histogram's columns


def confusion_counts(
    logits: torch.Tensor, target: torch.Tensor, *, mode: str, ignore_index: int | None = None
) -> torch.Tensor:
    """Per-image, per-class ``[tp, fp, fn, tn]`` of hard predictions.

    ``logits``: binary ``(B,1,H,W)``, multiclass ``(B,C,H,W)``, raw (no
    activation). ``target``: binary ``(B,1,H,W)`` or ``(B,H,W)`` with values
    in {0, 1} (or ``ignore_index``); multiclass ``(B,H,W)`` class indices.
    Returns int64 ``(B, K, 4)`` on the logits' device (K = 1 binary, C multiclass).
    """
    import torch

    check_mode(mode)
    if mode == "binary":
        labels = target.reshape(target.shape[0], *target.shape[-2:])
        # sigmoid(x) >= 0.5 <=> x >= 0; comparing logits avoids a sigmoid pass.
        predicted = (logits[:, 0] >= 0).unsqueeze(1)
        actual = (labels > 0.5).unsqueeze(1)
    else:
        labels = target.long()
        classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        predicted = logits.argmax(dim=1, keepdim=True) == classes
        actual = labels.unsqueeze(1) == classes
    if ignore_index is None:  # every pixel counts: no mask to apply
        pixels = labels.shape[-2] * labels.shape[-1]
    else:
        valid = (labels != ignore_index).unsqueeze(1)
        predicted, actual = predicted & valid, actual & valid
        pixels = valid.sum(dim=(2, 3))
    # fp and fn as differences of whole counts: one mask and three sums, no negations.
    tp = (predicted & actual).sum(dim=(2, 3))
    fp = predicted.sum(dim=(2, 3)) - tp
    fn = actual.sum(dim=(2, 3)) - tp
    tn = pixels - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=-1).to(torch.int64)


def scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every score of ``metric_names.SCORE_NAMES`` (dice, iou, mcc, precision, recall) from
    counts ``(..., 4)``, by its registered formula (``losscmp/scores/``).

    ``(K,4)`` gives per-class scores ``(K,)``; ``(B,K,4)`` per image and class
    ``(B,K)``. Float64 (float32 on MPS, which lacks float64), same device.
    Zero denominators follow the conventions in the module docstring.
    """
    import torch

    dtype = torch.float32 if counts.device.type == "mps" else torch.float64
    # Dividing by the pixel total keeps MCC's product of four counts in range.
    total = counts.sum(dim=-1, keepdim=True).clamp(min=1).to(dtype)
    tp, fp, fn, tn = (counts.to(dtype) / total).unbind(dim=-1)
    return {name: _formula(name)(tp, fp, fn, tn) for name in SCORE_NAMES}


@functools.cache
def _formula(name: str):
    return SCORES[name].load()


def foreground_classes(num_classes: int, mode: str) -> slice:
    """The class columns the headline averages: the one binary column, or 1..C-1."""
    check_mode(mode)
    if mode == "binary" or num_classes == 1:
        return slice(0, num_classes)
    return slice(1, num_classes)


def per_image_scores(per_image_counts: torch.Tensor, *, mode: str) -> dict[str, torch.Tensor]:
    """Each image's scores ``(N,)``, averaged over foreground classes (images.csv)."""
    per_class = scores(per_image_counts)
    foreground = foreground_classes(per_image_counts.shape[1], mode)
    return {name: values[:, foreground].mean(dim=1) for name, values in per_class.items()}


def summarize_epoch(
    per_image_counts: torch.Tensor,
    *,
    mode: str,
    class_names: Sequence[str] | None = None,
    prefix: str = "val_",
) -> dict[str, float]:
    """One validation epoch's numbers, the epochs.csv columns.

    ``val_dice, val_iou, val_mcc, val_precision, val_recall`` come from the
    counts summed over the whole split (dataset level), averaged over the
    foreground classes; ``val_image_dice, val_image_iou`` are the mean over
    images of per-image scores. Multiclass adds ``val_dice_<class>`` for every
    class, background included, named by ``class_names`` (default: the index).
    ``prefix`` names the split (``val_``, ``test_``). One host sync.
    """
    import torch

    check_mode(mode)
    num_classes = per_image_counts.shape[1]
    foreground = foreground_classes(num_classes, mode)
    dataset_scores = scores(per_image_counts.sum(dim=0))
    image_scores = per_image_scores(per_image_counts, mode=mode)
    columns = {f"{prefix}{name}": dataset_scores[name][foreground].mean() for name in SCORE_NAMES}
    for name in IMAGE_SCORE_NAMES:  # image_dice: the mean of the images' dice
        columns[f"{prefix}{name}"] = image_scores[name.removeprefix("image_")].mean()
    if mode == "multiclass":
        names = _class_column_names(class_names, num_classes)
        per_class_dice = dataset_scores["dice"]
        columns.update({f"{prefix}dice_{name}": per_class_dice[k] for k, name in enumerate(names)})
    # One stack, one transfer: a single host sync per epoch.
    values = torch.stack(list(columns.values())).tolist()
    return dict(zip(columns, values, strict=True))


def _class_column_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ParameterError(f"{len(class_names)} class names given for {num_classes} classes")
    return list(class_names)


# ---------------------------------------------------------------- probability histograms


def probability_histogram(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int | None = None
) -> torch.Tensor:
    """Binary only: ``(HISTOGRAM_BINS, 3)`` per bin of sigmoid(logit), the negative and
    positive pixel counts and the sum of the probabilities; ignored pixels left out.

    Bins are cut in logit space (logit(k/B)), so the bin edge at 0.5 is exactly
    ``logit >= 0`` as :func:`confusion_counts` decides. Float64 (float32 on MPS),
    on the logits' device; scatter-adds into a fixed-size tensor: no host sync.
    Sum the histograms of a split's batches.
    """
    return grouped_probability_histogram(logits.unsqueeze(0), target, ignore_index=ignore_index)[0]


def grouped_probability_histogram(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int | None = None
) -> torch.Tensor:
    """:func:`probability_histogram` for G models at once: logits ``(G, B, 1, H, W)``, one
    target for all; returns ``(G, HISTOGRAM_BINS, 3)`` (the fused trainer's copies)."""
    import torch

    groups = logits.shape[0]
    device = logits.device
    dtype = torch.float32 if device.type == "mps" else torch.float64
    labels = target.reshape(1, -1)
    flat = logits[:, :, 0].reshape(groups, -1).float()
    probabilities = torch.sigmoid(flat)
    # Bin numbers and labels as float32 (whole numbers, exact): cheaper than integer and
    # bool tensors on a CPU; one conversion to int32 indices each at the end.
    bins = _bin_indices(flat, probabilities)
    if groups > 1:  # copy g's bins come after those of copies 0..g-1
        bins += torch.arange(0, groups * HISTOGRAM_BINS, HISTOGRAM_BINS, device=device).view(-1, 1)
    positive = torch.gt(labels, 0.5, out=torch.empty(labels.shape, device=device, dtype=flat.dtype))
    count_index = bins.mul(2).add_(positive).int().reshape(-1)
    sum_index = bins.int().reshape(-1)
    probabilities = probabilities.reshape(-1).to(dtype)
    if ignore_index is None:
        weight = torch.ones((), dtype=dtype, device=device).expand(count_index.shape)
    else:
        weight = (labels != ignore_index).expand(groups, -1).reshape(-1).to(dtype)
        probabilities = probabilities * weight
    counts = torch.zeros(groups * HISTOGRAM_BINS * 2, dtype=dtype, device=device)
    counts.index_add_(0, count_index, weight)
    sums = torch.zeros(groups * HISTOGRAM_BINS, dtype=dtype, device=device)
    sums.index_add_(0, sum_index, probabilities)
    return torch.cat(
        [counts.view(groups, HISTOGRAM_BINS, 2), sums.view(groups, HISTOGRAM_BINS, 1)], dim=2
    )


def _bin_indices(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Each logit's bin, as float32 whole numbers of the logits' shape: the number of inner
    edges (as logits) at or below it, i.e. ``torch.bucketize(logits, edges, right=True)``,
    with NaN in bin 0.

    A binary search over 299 edges per pixel was ~3 ms per 16 images of 64 px on a CPU core,
    most of an evaluation batch's extra cost. The bin of p = sigmoid(x) is floor(B·p) but
    for rounding next to an edge (float32 p; float32 edges), so it is off by at most one
    there, which the comparisons with the edges either side of that guess settle exactly
    (checked against ``bucketize`` for every float32 in [-18, 18]; beyond, p rounds to 0 or
    1). NaN: guessed 0, and compares false with both edges. ``bucketize`` would put it
    above every edge, where ``confusion_counts`` reads NaN >= 0 as background: bin 0 keeps
    every threshold in agreement with the hard prediction (its probability stays NaN: no
    ECE). The comparisons write float32: a bool result is ~5x slower on a CPU."""
    import torch

    below, above = _bin_edges(logits.device)  # edge k-1 and k of bin k; -inf, NaN at the ends
    guess = probabilities.mul(HISTOGRAM_BINS).nan_to_num_(0.0).clamp_(0, HISTOGRAM_BINS - 1)
    guess = guess.floor_().reshape(-1)
    rows = guess.int()
    flat = logits.reshape(-1)
    up = torch.ge(flat, above.index_select(0, rows), out=torch.empty_like(flat))
    down = torch.lt(flat, below.index_select(0, rows), out=torch.empty_like(flat))
    return guess.add_(up.sub_(down)).view(logits.shape)


def _bin_edges(device) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) logit edge of every bin, made once per device
    (``devices.device_constant``: a tensor copied from the host every batch would make the
    host wait for the GPU). The bottom bin has no lower edge (-inf) and the top one no upper
    edge (NaN: ``>=`` it is false even for +inf)."""
    from losscmp.devices import device_constant

    lower, upper = _bin_edge_values()
    return device_constant(lower, device), device_constant(upper, device)


@functools.cache
def _bin_edge_values() -> tuple[tuple[float, ...], tuple[float, ...]]:
    inner = _logit_edge_values()
    return (-math.inf, *inner), (*inner, math.nan)  # one NaN object: a stable cache key


@functools.cache
def _logit_edge_values() -> tuple[float, ...]:
    import torch

    inner = torch.arange(1, HISTOGRAM_BINS, dtype=torch.float64) / HISTOGRAM_BINS
    return tuple(torch.logit(inner).to(torch.float32).tolist())  # float32 values, exactly


def threshold_counts(histogram) -> np.ndarray:
    """``(len(THRESHOLDS), 4)`` dataset-level ``[tp, fp, fn, tn]`` at each threshold
    (probability >= t is foreground), from a histogram ``(HISTOGRAM_BINS, 3)``."""
    hist = np.asarray(histogram, dtype=np.float64)
    # at_least[k]: counts in bins k..B-1, i.e. probability >= k/B.
    at_least = np.cumsum(hist[::-1, :2], axis=0)[::-1]
    totals = hist[:, :2].sum(axis=0)
    index = np.arange(THRESHOLD_STEP_BINS, HISTOGRAM_BINS, THRESHOLD_STEP_BINS)
    fp, tp = at_least[index, NEGATIVES], at_least[index, POSITIVES]
    return np.stack([tp, fp, totals[POSITIVES] - tp, totals[NEGATIVES] - fp], axis=1)


def choose_threshold(counts_by_threshold: np.ndarray) -> int:
    """The index into THRESHOLDS of the highest Dice; ties: nearest 0.5, then the lower."""
    tp, fp, fn = (counts_by_threshold[:, k] for k in (TP, FP, FN))
    denominator = 2 * tp + fp + fn
    dice = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 1.0)
    best = np.flatnonzero(np.isclose(dice, dice.max(), rtol=0, atol=1e-12))
    # Distance to 0.5 in whole histogram bins (THRESHOLDS[i] = (i + 1) * step / B): in
    # floats |0.57 - 0.5| < |0.43 - 0.5|, which would send such a tie to the higher one.
    distance = np.abs((best + 1) * THRESHOLD_STEP_BINS - HISTOGRAM_BINS // 2)
    return int(best[np.lexsort((best, distance))[0]])


def counts_scores(counts: np.ndarray) -> dict[str, float]:
    """Dice, IoU, MCC of one ``[tp, fp, fn, tn]`` row, as :func:`scores` defines them."""
    import torch

    values = scores(torch.as_tensor(np.asarray(counts, dtype=np.float64)).reshape(1, 4))
    return {name: float(values[name][0]) for name in THRESHOLD_SCORE_NAMES}


def average_precision(histogram) -> float:
    """Pixel-level average precision, sum over bins from the top of (R_n - R_{n-1}) P_n;
    the pixels of a bin are tied scores. NaN when there is no positive pixel."""
    hist = np.asarray(histogram, dtype=np.float64)
    positives = hist[::-1, POSITIVES]
    total = positives.sum()
    if total <= 0:
        return math.nan
    tp = np.cumsum(positives)
    predicted = np.cumsum(hist[::-1, :2].sum(axis=1))
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    return float(np.sum(positives / total * precision))


def expected_calibration_error(histogram, bins: int = ECE_BINS) -> float:
    """ECE over ``bins`` equal-width bins of the foreground probability: sum over bins of
    |sum of probabilities - positives| / all pixels. NaN for an empty histogram."""
    hist = np.asarray(histogram, dtype=np.float64)
    if HISTOGRAM_BINS % bins:
        raise ParameterError(f"{bins} calibration bins do not divide {HISTOGRAM_BINS} bins")
    grouped = hist.reshape(bins, HISTOGRAM_BINS // bins, 3).sum(axis=1)
    pixels = grouped[:, :2].sum()
    if pixels <= 0:
        return math.nan
    return float(np.abs(grouped[:, PROBABILITY_SUM] - grouped[:, POSITIVES]).sum() / pixels)


def histogram_scores(
    histogram, prefix: str, threshold_index: int | None = None
) -> tuple[dict[str, float], int]:
    """A split's ``<prefix>{dice,iou,mcc}_t`` at the threshold ``threshold_index`` (None:
    chosen here, as on the validation split) and its threshold-free scores
    (``<prefix>ap``, ``<prefix>ece``: ``metric_names.THRESHOLD_FREE_SCORE_NAMES``);
    returns the columns and the threshold index used."""
    by_threshold = threshold_counts(histogram)
    if threshold_index is None:
        threshold_index = choose_threshold(by_threshold)
    at_threshold = counts_scores(by_threshold[threshold_index])
    columns = {f"{prefix}{name}_t": value for name, value in at_threshold.items()}
    for name in THRESHOLD_FREE_SCORE_NAMES:  # ap, ece
        columns[f"{prefix}{name}"] = _formula(name)(histogram)
    return columns, threshold_index


# ---------------------------------------------------------------- boundary metrics (numpy)


# Each direction's distances come from whichever is cheaper (measured on 64 to 512 px
# masks, benchmarks/README.md): a k-d tree of the other boundary, about 0.5 us per
# queried point, or a distance transform of the whole box, about 40 ns per box pixel. The
# tree, unless the queried boundary holds more than 1/12 of the box's pixels (a ragged or
# speckled prediction, where the tree was up to 6x slower). Both give the exact distances.
EDT_POINTS_PER_PIXEL = 1 / 12


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its erosion by the 4-neighbour cross, with
    background beyond the array's edge (so pixels on the edge count): SciPy's
    ``binary_erosion(mask, border_value=0)``, by slicing, ten times faster."""
    core = mask[1:-1, 1:-1] & mask[:-2, 1:-1]
    core &= mask[2:, 1:-1]
    core &= mask[1:-1, :-2]
    core &= mask[1:-1, 2:]
    surface = mask.copy()
    surface[1:-1, 1:-1] &= ~core
    return surface


def _points(surface: np.ndarray) -> np.ndarray:
    """``(n, 2)`` row, column of the true pixels, row-major (``np.argwhere``, faster)."""
    return np.stack(np.divmod(np.flatnonzero(surface), surface.shape[1]), axis=1)


def _surface_distances(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (px) from each predicted boundary pixel to the gt boundary, and back,
    each in row-major order of its pixels.

    Computed on the tight box around both masks, with exactly the whole image's result: a
    mask pixel on the box's edge has background beyond it, so it is a boundary pixel either
    way, and the distances between boundary pixels are Euclidean, whatever lies outside
    the box. Every distance is the square root of a whole number of squared pixels, so the
    k-d tree and the distance transform give the same floats (tests/test_metrics.py).
    """
    union = pred | gt
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred_surface, gt_surface = _surface(pred[box]), _surface(gt[box])
    pred_points, gt_points = _points(pred_surface), _points(gt_surface)
    return (
        _nearest(pred_points, pred_surface, gt_points, gt_surface),
        _nearest(gt_points, gt_surface, pred_points, pred_surface),
    )


def _nearest(points, surface, to_points, to_surface) -> np.ndarray:
    """The distance from each of ``points`` (the pixels of ``surface``) to the nearest of
    ``to_points`` (those of ``to_surface``)."""
    if len(points) > surface.size * EDT_POINTS_PER_PIXEL:
        from scipy import ndimage

        return ndimage.distance_transform_edt(~to_surface)[surface]
    from scipy.spatial import cKDTree

    # Sliding-midpoint splits build the tree in half the time; the answer is the same.
    tree = cKDTree(to_points, balanced_tree=False, compact_nodes=False)
    return tree.query(points)[0]


def _as_masks(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ParameterError(f"expected two (H,W) masks, got {pred.shape} and {gt.shape}")
    return pred, gt


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels between two boolean masks.

    The larger of the two directed 95th percentiles (as MONAI computes it).
    Both empty -> 0.0; one empty -> the image diagonal.
    """
    return boundary_scores(pred, gt)[0]


def normalized_surface_dice(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0) -> float:
    """Share of both boundaries lying within ``tolerance`` px of the other (NSD).

    Both empty -> 1.0; one empty -> 0.0.
    """
    return boundary_scores(pred, gt, tolerance)[1]


def boundary_scores(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0):
    """``(hd95, nsd)`` from one pass over the two boundaries (see ``hd95`` and
    ``normalized_surface_dice`` for the conventions)."""
    pred, gt = _as_masks(pred, gt)
    predicted, present = pred.any(), gt.any()
    if not predicted and not present:
        return 0.0, 1.0
    if not predicted or not present:
        return math.hypot(*pred.shape), 0.0
    pred_to_gt, gt_to_pred = _surface_distances(pred, gt)
    distance = float(max(np.percentile(pred_to_gt, 95), np.percentile(gt_to_pred, 95)))
    within = np.count_nonzero(pred_to_gt <= tolerance) + np.count_nonzero(gt_to_pred <= tolerance)
    return distance, within / (pred_to_gt.size + gt_to_pred.size)
