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

Empty conventions (the ratio has a zero denominator):

- dice, iou: no ground truth and no prediction -> 1.0 (nothing to find and
  nothing claimed is a perfect answer); so an empty ground truth with a
  non-empty prediction gives 0.0, as the formula does.
- precision (no predicted positives) and recall (no actual positives):
  1.0 when the other error count is also zero (fn == 0, fp == 0
  respectively: the prediction agrees with the ground truth), else 0.0.
- mcc: +1.0 when the prediction is perfect (fp == fn == 0, e.g. an all-
  background image predicted all background), else 0.0 (the "no
  information" value, as scikit-learn uses). MCC is reported from
  dataset-level counts, where this almost never arises.
- hd95: both masks empty -> 0.0; exactly one empty -> the image diagonal
  (the largest distance possible on the image) so that a missed object is
  penalised instead of silently dropped from the mean.
- nsd (normalised surface Dice at a tolerance): both empty -> 1.0, one
  empty -> 0.0.

Ignored pixels (``ignore_index``) count in none of tp/fp/fn/tn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from losscmp.errors import ParameterError

if TYPE_CHECKING:  # torch is imported lazily so numpy-only users (hd95) stay light
    import torch

MODES = ("binary", "multiclass")
SCORE_NAMES = ("dice", "iou", "mcc", "precision", "recall")
TP, FP, FN, TN = 0, 1, 2, 3


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")


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

    _check_mode(mode)
    if mode == "binary":
        labels = target.reshape(target.shape[0], *target.shape[-2:])
        valid = _valid_pixels(labels, ignore_index)
        # sigmoid(x) >= 0.5 <=> x >= 0; comparing logits avoids a sigmoid pass.
        predicted = (logits[:, 0] >= 0).unsqueeze(1)
        actual = (labels > 0.5).unsqueeze(1)
    else:
        labels = target.long()
        valid = _valid_pixels(labels, ignore_index)
        classes = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        predicted = logits.argmax(dim=1, keepdim=True) == classes
        actual = labels.unsqueeze(1) == classes
    valid = valid.unsqueeze(1)
    tp = (predicted & actual & valid).sum(dim=(2, 3))
    fp = (predicted & ~actual & valid).sum(dim=(2, 3))
    fn = (~predicted & actual & valid).sum(dim=(2, 3))
    tn = valid.sum(dim=(2, 3)) - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=-1).to(torch.int64)


def _valid_pixels(labels: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    import torch

    if ignore_index is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return labels != ignore_index


def scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice, IoU, MCC, precision, recall from counts ``(..., 4)``.

    ``(K,4)`` gives per-class scores ``(K,)``; ``(B,K,4)`` per image and class
    ``(B,K)``. Float64 (float32 on MPS, which lacks float64), same device.
    Zero denominators follow the conventions in the module docstring.
    """
    import torch

    dtype = torch.float32 if counts.device.type == "mps" else torch.float64
    # Dividing by the pixel total keeps MCC's product of four counts in range.
    total = counts.sum(dim=-1, keepdim=True).clamp(min=1).to(dtype)
    tp, fp, fn, tn = (counts.to(dtype) / total).unbind(dim=-1)
    agrees = (fp == 0) & (fn == 0)
    one = torch.ones_like(tp)

    def ratio(numerator: torch.Tensor, denominator: torch.Tensor, empty: torch.Tensor):
        safe = torch.where(denominator > 0, denominator, one)
        return torch.where(denominator > 0, numerator / safe, empty)

    agree_value = agrees.to(dtype)
    mcc_denominator = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).sqrt()
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn, one),
        "iou": ratio(tp, tp + fp + fn, one),
        "mcc": ratio(tp * tn - fp * fn, mcc_denominator, agree_value),
        "precision": ratio(tp, tp + fp, (fn == 0).to(dtype)),
        "recall": ratio(tp, tp + fn, (fp == 0).to(dtype)),
    }


def foreground_classes(num_classes: int, mode: str) -> slice:
    """The class columns the headline averages: the one binary column, or 1..C-1."""
    _check_mode(mode)
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
) -> dict[str, float]:
    """One validation epoch's numbers, the epochs.csv columns.

    ``val_dice, val_iou, val_mcc, val_precision, val_recall`` come from the
    counts summed over the whole split (dataset level), averaged over the
    foreground classes; ``val_image_dice, val_image_iou`` are the mean over
    images of per-image scores. Multiclass adds ``val_dice_<class>`` for every
    class, background included, named by ``class_names`` (default: the index).
    This is the one host sync of an epoch.
    """
    import torch

    _check_mode(mode)
    num_classes = per_image_counts.shape[1]
    foreground = foreground_classes(num_classes, mode)
    dataset_scores = scores(per_image_counts.sum(dim=0))
    image_scores = per_image_scores(per_image_counts, mode=mode)
    columns = {f"val_{name}": dataset_scores[name][foreground].mean() for name in SCORE_NAMES}
    columns["val_image_dice"] = image_scores["dice"].mean()
    columns["val_image_iou"] = image_scores["iou"].mean()
    if mode == "multiclass":
        names = _class_column_names(class_names, num_classes)
        per_class_dice = dataset_scores["dice"]
        columns.update({f"val_dice_{name}": per_class_dice[k] for k, name in enumerate(names)})
    # One stack, one transfer: a single host sync per epoch.
    values = torch.stack(list(columns.values())).tolist()
    return dict(zip(columns, values, strict=True))


def _class_column_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(k) for k in range(num_classes)]
    if len(class_names) != num_classes:
        raise ParameterError(f"{len(class_names)} class names given for {num_classes} classes")
    return list(class_names)


# ---------------------------------------------------------------- boundary metrics (numpy)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its erosion (pixels touching the image edge count)."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _surface_distances(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (px) from each predicted boundary pixel to the gt boundary, and back."""
    from scipy import ndimage

    pred_surface, gt_surface = _surface(pred), _surface(gt)
    to_gt = ndimage.distance_transform_edt(~gt_surface)
    to_pred = ndimage.distance_transform_edt(~pred_surface)
    return to_gt[pred_surface], to_pred[gt_surface]


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
    pred, gt = _as_masks(pred, gt)
    if not pred.any() and not gt.any():
        return 0.0
    if not pred.any() or not gt.any():
        return math.hypot(*pred.shape)
    pred_to_gt, gt_to_pred = _surface_distances(pred, gt)
    return float(max(np.percentile(pred_to_gt, 95), np.percentile(gt_to_pred, 95)))


def normalized_surface_dice(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0) -> float:
    """Share of both boundaries lying within ``tolerance`` px of the other (NSD).

    Both empty -> 1.0; one empty -> 0.0.
    """
    pred, gt = _as_masks(pred, gt)
    if not pred.any() and not gt.any():
        return 1.0
    if not pred.any() or not gt.any():
        return 0.0
    pred_to_gt, gt_to_pred = _surface_distances(pred, gt)
    within = np.count_nonzero(pred_to_gt <= tolerance) + np.count_nonzero(gt_to_pred <= tolerance)
    return within / (pred_to_gt.size + gt_to_pred.size)
