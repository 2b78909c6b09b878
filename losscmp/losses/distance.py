"""Target distance maps (numpy/scipy), computed once per sample by the data pipeline.

``target_maps(mask, mode=..., num_classes=..., ignore_index=..., names=...)`` returns,
for one (H, W) mask, the maps a loss declares in ``needs``:

- ``signed_distance`` (K, H, W) float32, K = 1 binary / C multiclass: for each class,
  minus the distance to the nearest non-class pixel inside the class, plus the distance
  to the nearest class pixel outside it (|value| >= 1 everywhere, so |map| is the
  unsigned distance field of MONAI's HausdorffDTLoss). Zeros for a class that is absent
  or fills the whole image (no boundary).
- ``object_distance`` (1, H, W) float32: d1 + d2, the distances to the nearest and the
  second-nearest connected foreground object (U-Net weight map); ``inf`` where the image
  has fewer than two objects. Ignored pixels count as background.

``batch_target_maps`` does the same for a torch batch (slow path for the Python API and
tests); ``prediction_distance`` is the per-step distance field of a predicted mask.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from losscmp.losses.catalogue import OBJECT_DISTANCE, SIGNED_DISTANCE, TARGET_MAPS


def class_masks(mask: np.ndarray, mode: str, num_classes: int, ignore_index: int | None):
    """Boolean (K, H, W): the foreground (binary) or one mask per class (multiclass)."""
    mask = np.asarray(mask)
    valid = np.ones(mask.shape, bool) if ignore_index is None else mask != ignore_index
    if mode == "binary":
        return ((mask > 0) & valid)[None]
    return np.stack([(mask == c) & valid for c in range(num_classes)])


def signed_distance(inside: np.ndarray) -> np.ndarray:
    """Negative inside, positive outside, zeros when there is no boundary. (H, W) float32."""
    if not inside.any() or inside.all():
        return np.zeros(inside.shape, np.float32)
    outside_distance = ndimage.distance_transform_edt(~inside)  # 0 inside
    inside_distance = ndimage.distance_transform_edt(inside)  # 0 outside
    return (outside_distance - inside_distance).astype(np.float32)


def object_distance(foreground: np.ndarray) -> np.ndarray:
    """d1 + d2 to the two nearest connected components; inf with fewer than two. (1, H, W)."""
    labels, count = ndimage.label(foreground)
    if count < 2:
        return np.full((1, *foreground.shape), np.inf, np.float32)
    distances = np.stack([ndimage.distance_transform_edt(labels != k) for k in range(1, count + 1)])
    nearest_two = np.partition(distances, 1, axis=0)[:2]
    return nearest_two.sum(0, keepdims=True).astype(np.float32)


def target_maps(
    mask: np.ndarray,
    *,
    mode: str,
    num_classes: int,
    ignore_index: int | None = None,
    names: Iterable[str] = TARGET_MAPS,
) -> dict[str, np.ndarray]:
    """The requested maps for one (H, W) mask, without the batch dimension."""
    names = set(names)
    unknown = names - set(TARGET_MAPS)
    if unknown:
        raise ValueError(f"unknown target map(s) {sorted(unknown)}; known: {TARGET_MAPS}")
    masks = class_masks(mask, mode, num_classes, ignore_index)
    maps: dict[str, np.ndarray] = {}
    if SIGNED_DISTANCE in names:
        maps[SIGNED_DISTANCE] = np.stack([signed_distance(m) for m in masks])
    if OBJECT_DISTANCE in names:
        foreground = masks[0] if mode == "binary" else masks[1:].any(0)
        maps[OBJECT_DISTANCE] = object_distance(foreground)
    return maps


def batch_target_maps(target, *, mode: str, num_classes: int, ignore_index, names):
    """Torch batch version: target (N, 1, H, W) float or (N, H, W) long -> (N, K, H, W)."""
    import torch

    masks = target.detach().cpu().numpy()
    if masks.ndim == 4:
        masks = masks[:, 0]
    per_sample = [
        target_maps(m, mode=mode, num_classes=num_classes, ignore_index=ignore_index, names=names)
        for m in masks
    ]
    return {
        name: torch.from_numpy(np.stack([maps[name] for maps in per_sample])).to(target.device)
        for name in names
    }


def prediction_distance(foreground: np.ndarray) -> np.ndarray:
    """Unsigned distance to the predicted boundary for a boolean (B, H, W) stack.

    Per image: distance to the nearest background pixel inside, to the nearest foreground
    pixel outside (MONAI's field). Images without foreground, or without background, get
    zeros (no boundary, no weight). A 2-D scipy call per image and direction is about 3x
    faster than one 3-D call over the stack with a huge step on the stack axis.
    """
    field = np.zeros(foreground.shape, np.float32)
    for index, image in enumerate(foreground):
        if image.any() and not image.all():
            field[index] = ndimage.distance_transform_edt(image)
            field[index] += ndimage.distance_transform_edt(~image)
    return field


def torch_prediction_distance(foreground, chunk_pixels: int = 1 << 26):
    """``prediction_distance`` in torch, for a CUDA batch (no host round trip).

    Exact separable EDT: along rows, the distance to the nearest feature pixel comes from
    running maxima of indices; along columns, D²(i, j) = min over i' of
    (i - i')² + d_row(i', j)², done by brute force (O(H²·W) per image, in chunks of
    ``chunk_pixels`` elements). On a CPU scipy is faster; this is for GPUs.
    """
    import torch

    images = foreground.bool()
    inside = _squared_edt(~images, chunk_pixels).sqrt()  # fg pixels: distance to background
    outside = _squared_edt(images, chunk_pixels).sqrt()  # bg pixels: distance to foreground
    field = torch.where(images, inside, outside)
    has_boundary = images.flatten(1).any(1) & ~images.flatten(1).all(1)
    return field * has_boundary.view(-1, 1, 1)


def _squared_edt(features, chunk_pixels: int):
    """Squared distance to the nearest True pixel of ``features`` (B, H, W); inf if none."""
    import torch

    batch, height, width = features.shape
    columns = torch.arange(width, device=features.device, dtype=torch.float32)
    far = float(height + width) * 4
    left = torch.where(features, columns, -far).cummax(-1).values
    right = -torch.where(features, -columns, -far).flip(-1).cummax(-1).values.flip(-1)
    along_row = torch.minimum(columns - left, right - columns)  # >= far where none
    rows = torch.arange(height, device=features.device, dtype=torch.float32)
    row_gap = (rows.view(-1, 1) - rows.view(1, -1)).square()  # (i, i')
    squared = along_row.square()
    # Several images per chunk while one fits; else blocks of output rows of one image
    # (one image is H²·W elements: 512 MiB of float32 at 512 px).
    images_per_chunk = max(1, chunk_pixels // (height * height * width))
    rows_per_chunk = min(height, max(1, chunk_pixels // (height * width)))
    result = torch.empty(batch, height, width, device=features.device)
    for start in range(0, batch, images_per_chunk):
        images = squared[start : start + images_per_chunk].unsqueeze(1)  # (b, 1, i', W)
        for top in range(0, height, rows_per_chunk):
            gaps = row_gap[top : top + rows_per_chunk]  # (r, i')
            summed = images + gaps.view(1, len(gaps), height, 1)  # (b, r, i', W)
            result[start : start + images_per_chunk, top : top + len(gaps)] = summed.amin(2)
    return result
