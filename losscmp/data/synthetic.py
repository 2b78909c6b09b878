"""A generated, class-imbalanced segmentation set: no download, deterministic per seed.

Each image holds a few objects (ellipses, polygons, lobed blobs, thin wavy
curves) of varied size on a shaded, textured, noisy background. Objects differ
from their surroundings by a local contrast of random sign, a fine stripe
texture and a faint tint, never by absolute brightness: a single intensity
threshold cannot separate them, a small CNN can.

The requested foreground fraction is met exactly over each split: every object
is the upper level set of a smooth "shape field", and each image's threshold is
chosen so that it keeps exactly its allotted number of foreground pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from losscmp.data.base import LoadContext, SegmentationData, describe
from losscmp.data.memory import check_dataset_fits
from losscmp.errors import ParameterError

MAX_FG_FRACTION = 0.9  # fg_fraction must lie in (0, MAX_FG_FRACTION)
MAX_OBJECTS = 5
CHUNK_PIXELS = 1 << 21  # images per generation chunk x pixels: bounds the (n, M, H, W) temporaries
ELLIPSE, POLYGON, BLOB, CURVE = range(4)


def load_synthetic(
    *,
    fg_fraction: float = 0.1,
    n_train: int = 256,
    n_val: int = 64,
    n_test: int = 64,
    num_classes: int = 2,
    **context,
) -> SegmentationData:
    ctx = LoadContext(**context)
    n_train, n_val, n_test = precheck_synthetic(
        fg_fraction=fg_fraction,
        n_train=n_train,
        n_val=n_val,
        n_test=n_test,
        num_classes=num_classes,
        image_size=ctx.image_size,
        limit=ctx.limit,
    )
    # Separate streams: changing n_val or n_test never changes the other splits' images.
    train = generate(n_train, ctx.image_size, fg_fraction, num_classes, seed=(ctx.seed, 0))
    val = generate(n_val, ctx.image_size, fg_fraction, num_classes, seed=(ctx.seed, 1))
    test = generate(n_test, ctx.image_size, fg_fraction, num_classes, seed=(ctx.seed, 2))
    binary = num_classes == 2
    data = SegmentationData(
        name="synthetic",
        spec="",
        mode=synthetic_mode(num_classes=num_classes),
        class_names=("background", "object")
        if binary
        else ("background", *(f"class{k}" for k in range(1, num_classes))),
        train_images=train[0],
        train_masks=train[1],
        val_images=val[0],
        val_masks=val[1],
        test_images=test[0],
        test_masks=test[1],
        ignore_index=None,
        augmentation="dihedral",
    )
    data.info = describe(data, source="generated", requested_fg_fraction=fg_fraction)
    return data


def synthetic_mode(*, num_classes: int = 2, **_: object) -> str:
    return "binary" if num_classes == 2 else "multiclass"


def precheck_synthetic(
    *,
    fg_fraction: float = 0.1,
    n_train: int = 256,
    n_val: int = 64,
    n_test: int = 64,
    num_classes: int = 2,
    image_size: int,
    limit: int | None,
    **_: object,
) -> tuple[int, int, int]:
    """Every check that needs no generating; returns (n_train, n_val, n_test) after ``limit``.

    ``limit`` caps the three splits together; validation and test shrink in proportion
    (at least one image each), training takes the rest.
    """
    check_parameters(fg_fraction, n_train, n_val, n_test, num_classes, image_size)
    if limit is not None:
        scale = min(1.0, limit / (n_train + n_val + n_test))
        n_val = max(1, round(n_val * scale))
        n_test = max(1, round(n_test * scale))
        n_train = max(1, min(n_train, limit - n_val - n_test))
    check_dataset_fits(
        "dataset 'synthetic'",
        n_train + n_val + n_test,
        image_size,
        "lower n_train / n_val / n_test, --limit or --image-size",
    )
    return n_train, n_val, n_test


def check_parameters(
    fg_fraction: float, n_train: int, n_val: int, n_test: int, num_classes: int, image_size: int
) -> None:
    if not 0.0 < fg_fraction < MAX_FG_FRACTION:
        raise ParameterError(
            f"dataset 'synthetic': fg_fraction={fg_fraction} must be in (0, {MAX_FG_FRACTION:g})"
        )
    if n_train < 1 or n_val < 1 or n_test < 1:
        raise ParameterError("dataset 'synthetic': n_train, n_val and n_test must be at least 1")
    if not 2 <= num_classes <= 8:
        raise ParameterError(
            f"dataset 'synthetic': num_classes={num_classes} must be 2 (binary) to 8"
        )
    if image_size < 16:
        raise ParameterError(f"dataset 'synthetic': image size {image_size} is below 16 pixels")


def generate(
    count: int, size: int, fg_fraction: float, num_classes: int, seed: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (N, S, S, 3) uint8 and masks (N, S, S) uint8 for one split."""
    rng = np.random.default_rng(seed)
    pixel_budget = allocate_foreground(count, size * size, fg_fraction, rng)
    images = np.empty((count, size, size, 3), np.uint8)
    masks = np.empty((count, size, size), np.uint8)
    chunk = max(1, CHUNK_PIXELS // (MAX_OBJECTS * size * size))
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        images[start:stop], masks[start:stop] = generate_chunk(
            pixel_budget[start:stop], size, num_classes, rng
        )
    return images, masks


def allocate_foreground(
    count: int, pixels: int, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Foreground pixels per image: varied, summing exactly to round(fraction * total)."""
    spread = min(0.8, MAX_FG_FRACTION / fraction - 1.0)  # every image below ~90 % foreground
    weights = rng.uniform(1.0 - spread, 1.0 + spread, count)
    wanted = fraction * pixels * count * weights / weights.sum()
    budget = np.floor(wanted).astype(np.int64)
    shortfall = round(fraction * pixels * count) - int(budget.sum())
    # Largest remainders get the leftover pixels, so the total is exact.
    budget[np.argsort(budget - wanted)[:shortfall]] += 1
    return np.minimum(budget, pixels)


def generate_chunk(
    budget: np.ndarray, size: int, num_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    count = len(budget)
    objects = draw_objects(count, num_classes, rng)
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    ys, xs = axis[:, None], axis[None, :]
    along, across = object_frames(objects, ys, xs)
    field = shape_field(objects, along, across)
    winner = field.argmax(axis=1)  # (n, H, W): the object each pixel would belong to
    best = np.take_along_axis(field, winner[:, None], axis=1)[:, 0]
    foreground = keep_top_pixels(best, budget)
    labels = np.take_along_axis(objects["label"], winner.reshape(count, -1), axis=1)
    masks = np.where(foreground, labels.reshape(winner.shape), 0).astype(np.uint8)
    local_along = np.take_along_axis(along, winner[:, None], axis=1)[:, 0]
    images = render(objects, winner, foreground, local_along, num_classes, ys, xs, rng)
    return images, masks


def draw_objects(count: int, num_classes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random parameters for MAX_OBJECTS slots per image; unused slots are inactive."""
    shape = (count, MAX_OBJECTS)
    active = np.arange(MAX_OBJECTS) < rng.integers(1, MAX_OBJECTS + 1, count)[:, None]

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, shape).astype(np.float32)

    return {
        "active": active,
        "kind": rng.integers(0, 4, shape),
        "label": rng.integers(1, num_classes, shape),
        "cx": uniform(-0.75, 0.75),
        "cy": uniform(-0.75, 0.75),
        "angle": uniform(0.0, np.pi),
        "radius": uniform(0.12, 0.4),
        "aspect": uniform(0.45, 1.0),
        "strength": uniform(0.6, 1.4),  # larger: the object grows faster as the threshold drops
        "sides": rng.integers(3, 7, shape).astype(np.float32),
        "lobe2": uniform(0.0, 0.25),
        "lobe3": uniform(0.0, 0.2),
        "phase": uniform(0.0, 2 * np.pi),
        "wave_amplitude": uniform(0.03, 0.15),
        "wave_frequency": uniform(4.0, 12.0),
        "width": uniform(0.025, 0.05),
        "contrast": uniform(0.1, 0.2) * rng.choice([-1.0, 1.0], shape).astype(np.float32),
        "stripe_frequency": uniform(20.0, 40.0),
    }


def object_frames(
    objects: dict[str, np.ndarray], ys: np.ndarray, xs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in each object's rotated frame, (n, M, H, W) each."""

    def per_object(name: str) -> np.ndarray:
        return objects[name][:, :, None, None]

    dx, dy = xs - per_object("cx"), ys - per_object("cy")
    cos, sin = np.cos(per_object("angle")), np.sin(per_object("angle"))
    return dx * cos + dy * sin, dy * cos - dx * sin


def shape_field(
    objects: dict[str, np.ndarray], along: np.ndarray, across: np.ndarray
) -> np.ndarray:
    """strength * (1 - r) where r = 1 on each object's nominal outline; -inf for unused slots.

    Each kind's formula runs only on the objects of that kind (the costly part).
    """
    field = np.full(along.shape, -np.inf, np.float32)
    outline = {ELLIPSE: ellipse_radius, POLYGON: polygon_radius, BLOB: blob_radius}
    for kind in (ELLIPSE, POLYGON, BLOB, CURVE):
        chosen = objects["active"] & (objects["kind"] == kind)
        if not chosen.any():
            continue
        params = {name: values[chosen][:, None, None] for name, values in objects.items()}
        if kind == CURVE:
            normalised = curve_distance(params, along[chosen], across[chosen])
        else:
            squeezed = across[chosen] / params["aspect"]
            rho = np.sqrt(along[chosen] ** 2 + squeezed**2) / params["radius"]
            theta = np.arctan2(squeezed, along[chosen])
            normalised = outline[kind](params, rho, theta)
        field[chosen] = params["strength"] * (1.0 - normalised)
    return field


def ellipse_radius(params: dict, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return rho


def polygon_radius(params: dict, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Regular polygon: 1 on the outline of a polygon with circumradius ``radius``."""
    sector = 2 * np.pi / params["sides"]
    return rho * np.cos(np.mod(theta, sector) - sector / 2) / np.cos(sector / 2)


def blob_radius(params: dict, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """A circle whose radius wobbles with two and three lobes."""
    phase = params["phase"]
    lobes = (
        1
        + params["lobe2"] * np.cos(2 * theta + phase)
        + params["lobe3"] * np.cos(3 * theta - phase)
    )
    return rho / lobes


def curve_distance(params: dict, along: np.ndarray, across: np.ndarray) -> np.ndarray:
    """Distance (in half-widths) to a sine-wave segment four radii long."""
    wave = params["wave_amplitude"] * np.sin(params["wave_frequency"] * along + params["phase"])
    overhang = np.maximum(np.abs(along) - 2 * params["radius"], 0)
    return (np.abs(across - wave) + overhang) / params["width"]


def keep_top_pixels(field: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Boolean (n, H, W): the ``budget[i]`` pixels of highest field value in image i."""
    flat = field.reshape(len(field), -1)
    pixels = flat.shape[1]
    # The budget-th largest value is each image's threshold; the field is continuous,
    # so ties (which would add pixels) practically never happen.
    kth = np.clip(pixels - budget, 0, pixels - 1)
    threshold = np.take_along_axis(np.partition(flat, kth, axis=1), kth[:, None], axis=1)
    keep = (flat >= threshold) & (budget[:, None] > 0)
    return keep.reshape(field.shape)


def render(
    objects: dict[str, np.ndarray],
    winner: np.ndarray,
    foreground: np.ndarray,
    local_along: np.ndarray,
    num_classes: int,
    ys: np.ndarray,
    xs: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Shaded textured background, objects by local contrast + stripes + tint, then noise."""
    count, size = winner.shape[0], winner.shape[1]
    luminance = background(count, ys, xs, rng)

    def at_winner(name: str) -> np.ndarray:
        return np.take_along_axis(objects[name], winner.reshape(count, -1), axis=1).reshape(
            winner.shape
        )

    stripes = 0.05 * np.sin(at_winner("stripe_frequency") * local_along)
    luminance += np.where(foreground, at_winner("contrast") + stripes, 0.0)
    tint = object_tints(objects, num_classes, rng)
    winner_tint = np.take_along_axis(tint, winner.reshape(count, -1, 1), axis=1).reshape(
        count, size, size, 3
    )
    image = luminance[..., None] + np.where(foreground[..., None], winner_tint, 0.0)
    image += rng.normal(0.0, 0.05, image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def background(count: int, ys: np.ndarray, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth shading (a few broad waves) plus a blurred-noise texture, (n, H, W) float32."""
    waves = 3
    fy, fx = (rng.uniform(-2.5, 2.5, (count, waves, 1, 1)) for _ in range(2))
    phase = rng.uniform(0, 2 * np.pi, (count, waves, 1, 1))
    amplitude = rng.uniform(0.05, 0.12, (count, waves, 1, 1))
    shading = (amplitude * np.cos(fx * xs + fy * ys + phase)).sum(axis=1)
    base = rng.uniform(0.35, 0.65, (count, 1, 1))
    from scipy import ndimage

    noise = rng.normal(0.0, 1.0, (count, ys.shape[0], xs.shape[1]))
    texture = ndimage.gaussian_filter(noise, sigma=(0, 1.0, 1.0)) * 0.12
    return (base + shading + texture).astype(np.float32)


def object_tints(
    objects: dict[str, np.ndarray], num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, M, 3) colour offsets: one hue per class (multiclass) or a random hue (binary)."""
    if num_classes > 2:
        hue = 2 * np.pi * (objects["label"] - 1) / (num_classes - 1)
        strength = 0.12
    else:
        hue = rng.uniform(0, 2 * np.pi, objects["label"].shape)
        strength = 0.05
    offsets = np.stack([np.cos(hue + k * 2 * np.pi / 3) for k in range(3)], axis=-1)
    return (strength * offsets).astype(np.float32)


def synthetic_status(datasets_root) -> dict[str, Any]:
    """``losscmp datasets``: nothing to fetch."""
    return {"present": True, "path": "", "how_to_get": "built in: generated on the fly"}


def synthetic_foreground_hint(data: SegmentationData) -> str:
    """Why generated masks can hold no foreground pixel, and what to raise."""
    pixels = data.size("train") * data.image_size**2
    return (
        f"fg_fraction={data.info.get('requested_fg_fraction')} is too small for "
        f"{data.size('train')} training image(s) of {data.image_size}x{data.image_size} "
        f"pixels (less than one foreground pixel in {pixels}): raise fg_fraction, "
        "n_train or the image size"
    )
