"""Augmentation and normalisation, deterministic per (seed, epoch, sample).

Every random choice is drawn from a generator seeded by the triple, never from
a global or per-worker stream, so every loss sees the same augmented batches
whatever ``num_workers`` is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ImageNet statistics: right for smp encoders with ImageNet weights, harmless otherwise.
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

# Stream tags keep the generators apart: (seed, epoch, index, tag) never equals
# the shuffling or dihedral seeds, whatever the index.
_SAMPLE_STREAM = 0xA6
_DIHEDRAL_STREAM = 0xD1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample's augmentation."""
    entropy = [seed, epoch, index, _SAMPLE_STREAM]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def dihedral_ops(seed: int, epoch: int, count: int) -> np.ndarray:
    """One of the 8 flips/quarter turns per sample of a split, (count,) in 0..7."""
    return np.random.default_rng([seed, epoch, _DIHEDRAL_STREAM, 0]).integers(0, 8, count)


def apply_dihedral(batch: np.ndarray, ops: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """Turn ``op % 4`` quarter turns, then mirror if ``op >= 4``; grouped by op, so vectorised."""
    out = np.empty_like(batch)
    for op in np.unique(ops):
        chosen = ops == op
        turned = np.rot90(batch[chosen], k=int(op) % 4, axes=axes)
        out[chosen] = np.flip(turned, axis=axes[1]) if op >= 4 else turned
    return out


def train_pipeline(mask_fill: int) -> Any:
    """Flips, a small shift/scale/rotation and brightness/contrast; masks stay nearest-neighbour.

    ``mask_fill`` labels the corners a rotation uncovers: the ignore index where
    the dataset has one (they are not real pixels), else background.
    """
    import albumentations as A
    import cv2

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                translate_percent=(-0.06, 0.06),
                scale=(0.9, 1.1),
                rotate=(-15, 15),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=mask_fill,
                p=0.7,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        ],
        seed=0,
    )


def augment_sample(
    pipeline: Any, image: np.ndarray, mask: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    pipeline.set_random_seed(seed)
    result = pipeline(image=image, mask=mask)
    return result["image"], result["mask"]


def normalise_tensor(images: Any) -> Any:
    """``normalise`` in torch, on the images' device: uint8 (B, H, W, 3) -> float32
    (B, 3, H, W), in ``channels_last`` memory (the permuted pixel-major layout, kept by
    the elementwise ops). Float32 arithmetic: within one rounding of ``normalise``."""
    from losscmp.devices import device_constant

    scale = device_constant((1.0 / (255.0 * STD)).tolist(), images.device).view(1, 3, 1, 1)
    shift = device_constant((MEAN / STD).tolist(), images.device).view(1, 3, 1, 1)
    return images.permute(0, 3, 1, 2).float().mul_(scale).sub_(shift)


def normalise(images: np.ndarray) -> Any:
    """uint8 (B, H, W, 3) -> float32 tensor (B, 3, H, W), ImageNet-normalised.

    Plain numpy, one channel plane at a time: on a small, busy CPU this is faster
    and steadier than torch's threaded kernels on tensors this size.
    """
    import torch

    scale = 1.0 / (255.0 * STD)
    shift = MEAN / STD
    out = np.empty((images.shape[0], 3, *images.shape[1:3]), np.float32)
    for channel in range(3):
        np.multiply(images[..., channel], scale[channel], out=out[:, channel], casting="unsafe")
        out[:, channel] -= shift[channel]
    return torch.from_numpy(out)
