"""Builders for the data tests: small in-memory sets, a fake distance module,
a miniature Oxford-IIIT Pet tree with the real dataset's quirks, image/mask folders.

Imported by tests/test_data*.py (no conftest.py: the lead owns it).
"""

from __future__ import annotations

import importlib.util
import io
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from losscmp.data.base import SegmentationData

# albumentations is one of losscmp's dependencies, but a bare GPU image (where
# benchmarks/gpu.sh runs with the image's own packages) lacks it: what trains with its
# pipeline (real data, tiny_data's default) skips there, saying why, instead of failing.
needs_albumentations = pytest.mark.skipif(
    importlib.util.find_spec("albumentations") is None,
    reason="albumentations is not installed (a losscmp dependency; a bare GPU image lacks it)",
)


def best_threshold_dice(values: np.ndarray, foreground: np.ndarray) -> float:
    """Best Dice any single threshold on uint8 ``values`` reaches (either polarity)."""
    values = values.ravel().astype(np.int64)
    foreground = foreground.ravel().astype(bool)
    fg_hist = np.bincount(values[foreground], minlength=256)
    bg_hist = np.bincount(values[~foreground], minlength=256)
    best = 0.0
    for fg, bg in ((fg_hist, bg_hist), (fg_hist[::-1], bg_hist[::-1])):
        tp = np.cumsum(fg[::-1])[::-1]  # predicting foreground at values >= t
        fp = np.cumsum(bg[::-1])[::-1]
        fn = foreground.sum() - tp
        best = max(best, float((2 * tp / np.maximum(2 * tp + fp + fn, 1)).max()))
    return best


def tiny_data(
    count: int = 12,
    size: int = 32,
    *,
    mode: str = "binary",
    num_classes: int = 2,
    augmentation: str = "albumentations",
    ignore_index: int | None = None,
    seed: int = 0,
) -> SegmentationData:
    """Random images with square objects; val is a copy of train's first third."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    for index in range(count):
        top, left = rng.integers(0, size // 2, 2)
        masks[index, top : top + size // 3, left : left + size // 4] = 1 + index % (num_classes - 1)
    if ignore_index is not None:
        masks[:, 0, :] = ignore_index
    names = ("background", *(f"c{k}" for k in range(1, num_classes)))
    return SegmentationData(
        name="tiny",
        spec="tiny",
        mode=mode,
        class_names=names,
        train_images=images,
        train_masks=masks,
        val_images=images[: count // 3].copy(),
        val_masks=masks[: count // 3].copy(),
        ignore_index=ignore_index,
        augmentation=augmentation,
    )


def fake_target_maps(mask, *, mode, num_classes, ignore_index, names):
    """Stand-in for losscmp.losses.distance.target_maps: exact EDT-based maps."""
    classes = [1] if mode == "binary" else list(range(num_classes))
    signed = np.zeros((len(classes), *mask.shape), np.float32)
    for row, cls in enumerate(classes):
        inside = mask == cls
        if inside.any():
            signed[row] = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(
                inside
            )
    maps = {"signed_distance": signed, "object_distance": signed[:1] * 0 + mask.sum()}
    return {name: maps[name] for name in names}


def install_fake_distance(monkeypatch) -> list[int]:
    """Replace losscmp.losses.distance with fake_target_maps; returns a call counter."""
    calls: list[int] = []

    def counting(mask, **kwargs):
        calls.append(1)
        return fake_target_maps(mask, **kwargs)

    module = types.ModuleType("losscmp.losses.distance")
    module.target_maps = counting
    monkeypatch.setitem(sys.modules, "losscmp.losses.distance", module)
    return calls


# --- Oxford-IIIT Pet miniature --------------------------------------------------------------

BREEDS = ("Abyssinian", "beagle", "Bengal", "pug")


def pet_trimap(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """An ellipse pet (1) inside a border band (3) on background (2), like the real trimaps."""
    ys, xs = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    radius = np.hypot((ys - cy) / (0.3 * height), (xs - cx) / (0.25 * width))
    trimap = np.full((height, width), 2, np.uint8)
    trimap[radius < 1.15] = 3
    trimap[radius < 0.9] = 1
    return trimap


def pet_photo(trimap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(40, 200, 3)
    photo = np.where((trimap == 1)[..., None], 255 - base, base)
    noise = rng.integers(-20, 20, photo.shape)
    return np.clip(photo + noise, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_pets_tree(
    root: Path,
    *,
    trainval: int = 20,
    test: int = 6,
    quirks: bool = True,
    shape: tuple[int, int] = (48, 64),
    seed: int = 0,
) -> dict[str, object]:
    """A miniature Oxford-IIIT Pet tree in the official layout.

    With ``quirks``: a PNG, a GIF and an RGBA PNG under .jpg names, a greyscale
    JPEG, a truncated JPEG, an undecodable .jpg, .mat files in images/, macOS
    "._*" files in annotations/, an image in neither list and a listed id
    whose image is missing. Returns what was made, by role.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    ids = [f"{BREEDS[k % len(BREEDS)]}_{k + 1}" for k in range(trainval + test)]

    def write_pair(image_id: str, image_format: str = "JPEG", mode: str = "RGB") -> None:
        height, width = shape
        trimap = pet_trimap(height, width, rng)
        photo = pet_photo(trimap, rng)
        if mode == "L":
            photo = photo.mean(axis=-1).astype(np.uint8)
        elif mode == "RGBA":
            photo = np.dstack([photo, np.full(shape, 200, np.uint8)])
        (root / "images" / f"{image_id}.jpg").write_bytes(encode(photo, image_format))
        (root / "annotations" / "trimaps" / f"{image_id}.png").write_bytes(encode(trimap, "PNG"))

    for image_id in ids:
        write_pair(image_id)
    made: dict[str, object] = {"trainval": ids[:trainval], "test": ids[trainval:]}
    listed = list(ids)
    if quirks:
        made.update(add_pets_quirks(root, ids, write_pair, listed))
    write_lists(root, listed[: len(listed) - test], listed[len(listed) - test :])
    return made


def add_pets_quirks(root: Path, ids: list[str], write_pair, listed: list[str]) -> dict[str, str]:
    """Rewrite some listed files with quirks; add the ones the lists do not name."""
    quirks = {"png_as_jpg": ids[0], "gif_as_jpg": ids[1], "rgba": ids[2], "grey": ids[3]}
    write_pair(quirks["png_as_jpg"], "PNG")
    write_pair(quirks["gif_as_jpg"], "GIF")
    write_pair(quirks["rgba"], "PNG", mode="RGBA")
    write_pair(quirks["grey"], mode="L")
    truncated = quirks["truncated"] = ids[4]
    jpeg = root / "images" / f"{truncated}.jpg"
    jpeg.write_bytes(
        encode(np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8), "JPEG")
    )
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size * 2 // 3])
    unreadable = quirks["unreadable"] = ids[5]
    (root / "images" / f"{unreadable}.jpg").write_bytes(b"this is not an image at all")
    (root / "images" / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    (root / "annotations" / "trimaps" / f"._{ids[0]}.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "annotations" / "._trimaps").write_bytes(b"\x00\x05\x16\x07")
    (root / "annotations" / "._trainval.txt").write_bytes(b"\x00\x05\x16\x07")
    unlisted = quirks["unlisted"] = "Bengal_999"
    write_pair(unlisted)
    missing = quirks["missing"] = "pug_404"
    listed.insert(0, missing)  # listed in trainval, no image on disk
    return quirks


def write_lists(root: Path, trainval: list[str], test: list[str]) -> None:
    def lines(ids: list[str]) -> str:
        header = "#Image CLASS-ID SPECIES BREED-ID\n"
        return header + "".join(
            f"{image_id} {k % 37 + 1} {k % 2 + 1} 1\n" for k, image_id in enumerate(ids)
        )

    (root / "annotations" / "trainval.txt").write_text(lines(trainval))
    (root / "annotations" / "test.txt").write_text(lines(test))


# --- image/mask folders -----------------------------------------------------------------------


def make_folder(
    root: Path,
    *,
    count: int = 10,
    mask_suffix: str = "",
    mask_format: str = "PNG",
    num_classes: int = 2,
    shape: tuple[int, int] = (40, 56),
    val_count: int = 0,
    test_count: int = 0,
    seed: int = 0,
) -> list[str]:
    """images/ + masks/ (and val/, test/ when their counts are given) with square objects;
    returns the stems.

    Binary masks are stored 0/255 like most public sets; multiclass masks hold class
    indices. JPEG masks (``mask_format="JPEG"``) come with compression noise.
    """
    rng = np.random.default_rng(seed)
    extension = {"PNG": "png", "GIF": "gif", "TIFF": "tif", "JPEG": "jpg"}[mask_format]
    stems = []
    for folder, number in ((root, count), (root / "val", val_count), (root / "test", test_count)):
        if not number:
            continue
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for index in range(number):
            stem = f"case_{len(stems):03d}"
            stems.append(stem)
            labels = np.zeros(shape, np.uint8)
            top, left = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
            labels[top : top + shape[0] // 3, left : left + shape[1] // 3] = 1 + index % (
                num_classes - 1
            )
            photo = pet_photo(np.where(labels > 0, 1, 2), rng)
            (folder / "images" / f"{stem}.jpg").write_bytes(encode(photo, "JPEG"))
            stored = labels * 255 if num_classes == 2 else labels
            mask_file = folder / "masks" / f"{stem}{mask_suffix}.{extension}"
            mask_file.write_bytes(encode(stored, mask_format))
    return stems
