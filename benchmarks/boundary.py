"""Time the boundary scores (HD95, NSD) of one image against the first implementation.

    python benchmarks/boundary.py                       # 64, 256 px, 375x500, 512 px
    python benchmarks/boundary.py --sizes 375x500 --images 100 --repeats 5

The last epoch scores every image of the reported split (Pets' test split: 3669 images)
on the host, after the evaluation pass. The masks here are made to look like that work:
a smooth blob covering 20-50 % of the image as ground truth and two kinds of prediction,
``good`` (its boundary moved by a few pixels, a few specks) and ``poor`` (an early
epoch's: ragged and fragmented, many boundary pixels). Both sides score the same masks
in turn (before, after, before, ...), image after image, on one thread; the best of
``--repeats`` per side is kept (noise only adds time), and every score must be the same
float on both sides.

"before" is the first implementation (commit e2369ab): SciPy's binary erosion and two
exact distance transforms of the tight box around both masks. "after" is
``losscmp.metrics.boundary_scores``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import ndimage

from losscmp import metrics


def blob(rng: np.random.Generator, shape: tuple[int, int], fill: float) -> np.ndarray:
    """A pet-like ground truth: a wobbly disc near the middle covering ``fill`` of it."""
    height, width = shape
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), min(shape) / 12)
    rows, cols = np.mgrid[:height, :width]
    centre = rng.uniform(0.35, 0.65, size=2) * shape
    score = -np.hypot((rows - centre[0]) / height, (cols - centre[1]) / width)
    score += wobble / wobble.std() * 0.08
    return score > np.quantile(score, 1 - fill)


def prediction(rng: np.random.Generator, truth: np.ndarray, kind: str) -> np.ndarray:
    side = min(truth.shape)
    if kind == "good":  # the boundary moved in and out by a few pixels, and specks
        signed = ndimage.distance_transform_edt(truth) - ndimage.distance_transform_edt(~truth)
        wobble = ndimage.gaussian_filter(rng.standard_normal(truth.shape), side / 20)
        specks = ndimage.gaussian_filter(rng.random(truth.shape), 2) > 0.62
        return (signed + wobble / wobble.std() * side / 60 > 0) | specks
    noise = ndimage.gaussian_filter(rng.standard_normal(truth.shape), 1.5)  # poor
    smooth = ndimage.gaussian_filter(truth.astype(float), side / 40)
    return smooth + noise / noise.std() * 0.35 > 0.5


def first_implementation(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2.0):
    """``metrics.boundary_scores`` as commit e2369ab computed it."""
    if not pred.any() and not gt.any():
        return 0.0, 1.0
    if not pred.any() or not gt.any():
        return math.hypot(*pred.shape), 0.0
    rows = np.flatnonzero((pred | gt).any(axis=1))
    cols = np.flatnonzero((pred | gt).any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred_surface = pred[box] & ~ndimage.binary_erosion(pred[box], border_value=0)
    gt_surface = gt[box] & ~ndimage.binary_erosion(gt[box], border_value=0)
    to_gt = ndimage.distance_transform_edt(~gt_surface)[pred_surface]
    to_pred = ndimage.distance_transform_edt(~pred_surface)[gt_surface]
    distance = float(max(np.percentile(to_gt, 95), np.percentile(to_pred, 95)))
    within = np.count_nonzero(to_gt <= tolerance) + np.count_nonzero(to_pred <= tolerance)
    return distance, within / (to_gt.size + to_pred.size)


def per_image_ms(sides: dict, pairs, repeats: int) -> dict[str, tuple[float, list]]:
    """Each side's best time per image (ms) and its scores; the sides take turns."""
    best = {name: (math.inf, []) for name in sides}
    for _ in range(repeats):
        for name, score in sides.items():
            started = time.perf_counter()
            found = [score(pred, gt) for pred, gt in pairs]
            elapsed = (time.perf_counter() - started) / len(pairs) * 1e3
            best[name] = (min(best[name][0], elapsed), found)
    return best


MIN_SIDE = 16  # room for a blob, its wobble and a few pixels' moved boundary


def image_sizes(text: str) -> list[tuple[int, int]]:
    """``--sizes 64x64,375x500`` as shapes; a size that is no HxW is argparse's error
    (``64`` alone: did you mean 64x64?), not a traceback."""
    shapes = []
    for size in text.split(","):
        sides = size.strip().lower().split("x")
        if not all(side.strip().isdigit() for side in sides) or len(sides) > 2:
            raise argparse.ArgumentTypeError(f"'{size}' is not a size HxW, such as 375x500")
        if len(sides) == 1:
            raise argparse.ArgumentTypeError(
                f"'{size}' is not a size HxW (did you mean {sides[0]}x{sides[0]}?)"
            )
        shape = (int(sides[0]), int(sides[1]))
        if min(shape) < MIN_SIDE:
            raise argparse.ArgumentTypeError(f"'{size}': each side must be at least {MIN_SIDE}")
        shapes.append(shape)
    return shapes


def positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got '{text}'")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=image_sizes, default="64x64,256x256,375x500,512x512", help="HxW,..."
    )
    parser.add_argument("--images", type=positive, default=40, help="mask pairs per size and kind")
    parser.add_argument("--repeats", type=positive, default=3)
    args = parser.parse_args(argv)
    print(f"{'size':>9} {'kind':>5} {'boundary px':>11} {'before ms':>9} {'after ms':>8} {'x':>5}")
    for shape in args.sizes:
        size = "x".join(map(str, shape))
        for kind in ("good", "poor"):
            rng = np.random.default_rng(0)
            truths = [blob(rng, shape, rng.uniform(0.2, 0.5)) for _ in range(args.images)]
            pairs = [(prediction(rng, truth, kind), truth) for truth in truths]
            surfaces = [metrics._surface(mask).sum() for pair in pairs for mask in pair]
            boundary = np.sum(surfaces) / len(pairs)
            sides = {"before": first_implementation, "after": metrics.boundary_scores}
            timed = per_image_ms(sides, pairs, args.repeats)
            (before, expected), (after, found) = timed["before"], timed["after"]
            if found != expected:
                raise SystemExit(f"{size} {kind}: the scores differ from the first implementation")
            print(
                f"{size:>9} {kind:>5} {boundary:>11.0f} {before:>9.2f} {after:>8.2f} "
                f"{before / after:>5.1f}"
            )


if __name__ == "__main__":
    main()
