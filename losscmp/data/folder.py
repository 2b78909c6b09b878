"""Any dataset laid out as PATH/images/* + PATH/masks/*, paired by file stem.

    --dataset folder:PATH
    --dataset "folder(path=PATH,mask_suffix=_mask,num_classes=3)"

Masks may be PNG, GIF, TIFF, BMP or JPEG. Binary (the default): any non-zero
pixel is foreground, except that masks holding 0, 255 and one value in 1-254
(a class index with Pascal VOC's 255 void band) have that value as foreground
and 255 ignored; JPEG masks are thresholded at 128 because compression smears
0/255 edges into in-between values (at 1 when no JPEG mask reaches 128: 0/1
masks). Multiclass (``num_classes`` > 2): the pixel value is the class index,
255 is ignored, JPEG masks are refused (their values cannot be trusted).
Validation comes from PATH/val/images + PATH/val/masks when that exists, else
from a fixed ``val_fraction`` of the pairs; the test split likewise from
PATH/test/ or a fixed ``test_fraction`` (chosen by hash of the file name, so it
does not depend on the seed or on the other files).

This is the user's own data, so problems are errors that name the files, not
silently skipped samples: a file that is not a readable image, a truncated
image (the file ends before the picture does), a mask of another size.

Images and masks are read upright as their EXIF orientation says, as viewers,
annotation tools and OpenCV show them: a phone photo stored sideways is annotated
the way it is seen; a damaged EXIF block is read as far as it goes, quietly (mostly: as
stored, as a viewer shows it). (Pets is read as stored, as the benchmark has it.)
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from losscmp.data import cache
from losscmp.data.base import IGNORE_INDEX, LoadContext, SegmentationData, describe
from losscmp.data.images import (
    SIDEWAYS,
    MergedColours,
    UnreadableFile,
    decode_pairs,
    decoder_threads,
    open_image,
    orientation,
    read_label_image,
)
from losscmp.data.memory import check_dataset_fits, decoders_that_fit
from losscmp.errors import DatasetError, ParameterError

# .jfif and .jpe: JPEG as Windows and some browsers save it.
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".jpe"})
IMAGE_SUFFIXES = JPEG_SUFFIXES | {".png", ".gif", ".tif", ".tiff", ".bmp", ".webp"}
# Tried in order when no mask_suffix is given (ISIC: _segmentation; Carvana: _mask).
COMMON_MASK_SUFFIXES = ("", "_mask", "_segmentation", "_Segmentation", "_seg", "_label", "_gt")
SHOW = 3  # file names listed in an error
MASKS_AT_ONCE = 256  # masks compared with their shifted selves at a time (merged_labels)
DEFAULT_FRACTION = 0.1  # of the pairs, for validation and for test when no val/, test/ folder
# Part of the cache key; raised when the folder's decoding changes (pets' cache is left as it
# was). 2: EXIF orientation applied; 0/1 JPEG masks thresholded at 1, not 128; a mask's
# transparent pixels read as 0; masks that look like their images refused.
# 3: colour masks whose colours merge into one class refused (num_classes > 2): an entry
# written before holds them merged.
DECODING = 3


def folder_mode(*, num_classes: int = 2, **_: object) -> str:
    return "binary" if num_classes == 2 else "multiclass"


def load_folder(
    *,
    path: str,
    mask_suffix: str | None = None,
    num_classes: int = 2,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    **context: Any,
) -> SegmentationData:
    ctx = LoadContext(**context)
    layout = precheck_folder(
        path=path,
        mask_suffix=mask_suffix,
        num_classes=num_classes,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        image_size=ctx.image_size,
        limit=ctx.limit,
    )
    root, (train_pairs, val_pairs, test_pairs), suffix, (validation, testing) = layout
    every_pair = train_pairs + val_pairs + test_pairs
    # What chose the pairs from the folder's files: an entry of the same options made from
    # files since added or removed is deleted when this one is written.
    choice = (mask_suffix, val_fraction, test_fraction, ctx.limit)
    arrays, cached = decoded_pairs(root, every_pair, ctx.image_size, num_classes, choice)
    train_count, val_end = len(train_pairs), len(train_pairs) + len(val_pairs)
    masks = arrays["masks"]
    if num_classes > 2:
        check_not_binary(masks, num_classes)
    binary = num_classes == 2
    data = SegmentationData(
        name="folder",
        spec="",
        mode=folder_mode(num_classes=num_classes),
        class_names=("background", "foreground")
        if binary
        else ("background", *(f"class{k}" for k in range(1, num_classes))),
        train_images=arrays["images"][:train_count],
        train_masks=masks[:train_count],
        val_images=arrays["images"][train_count:val_end],
        val_masks=masks[train_count:val_end],
        test_images=arrays["images"][val_end:],
        test_masks=masks[val_end:],
        ignore_index=IGNORE_INDEX if (masks == IGNORE_INDEX).any() else None,
        train_names=tuple(image.stem for image, _ in train_pairs),
        val_names=tuple(image.stem for image, _ in val_pairs),
        test_names=tuple(image.stem for image, _ in test_pairs),
    )
    merged = [int(value) for value in arrays["merged_labels"]]
    data.info = describe(
        data,
        source=str(root),
        mask_suffix=suffix,
        validation=validation,
        test=testing,
        **cached.info(),
        **({"merged_labels": merged} if merged else {}),  # a report's note names them
    )
    return data


Pairs = list[tuple[Path, Path]]


def precheck_folder(
    *,
    path: str,
    mask_suffix: str | None = None,
    num_classes: int = 2,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    image_size: int,
    limit: int | None,
    **_: Any,
) -> tuple[Path, tuple[Pairs, Pairs, Pairs], str, tuple[str, str]]:
    """Every check short of decoding: parameters, layout, pairing, split, memory.

    Returns (root, (train, val, test pairs), mask suffix, how validation and test were chosen).
    A fraction left out is 0.1; one given for a split that has its own folder is refused.
    """
    if num_classes < 2 or num_classes > 255:
        raise ParameterError(f"dataset 'folder': num_classes={num_classes} must be 2 to 255")
    asked = {"val": val_fraction, "test": test_fraction}
    fractions = {split: DEFAULT_FRACTION if f is None else f for split, f in asked.items()}
    val_fraction, test_fraction = fractions["val"], fractions["test"]
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ParameterError(f"dataset 'folder': {name}={fraction} must be in (0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ParameterError(
            f"dataset 'folder': val_fraction + test_fraction = {val_fraction + test_fraction:g} "
            "leaves nothing to train on; keep their sum below 1"
        )
    if not str(path).strip():
        raise ParameterError("dataset 'folder': path is empty; use --dataset folder:PATH")
    root = Path(path).expanduser()
    check_folder(root)
    pool, suffix = pair_files(root, mask_suffix)
    given = {}  # split -> pairs from its own subfolder
    for split in ("val", "test"):
        # masks/ alone is an unfinished split folder: check_folder names what it lacks
        if any((root / split / part).is_dir() for part in ("images", "masks")):
            refuse_unused_fraction(root / split, split, asked[split])
            check_folder(root / split)
            given[split], _ = pair_files(root / split, suffix)
    check_no_shared_names(root, {"": pool, **given})
    carved = [split for split in ("val", "test") if split not in given]
    train_pairs, *parts = split_pairs(pool, [fractions[split] for split in carved])
    splits = {**given, **dict(zip(carved, parts, strict=True))}
    train_pairs, val_pairs, test_pairs = apply_limit(
        train_pairs, splits["val"], splits["test"], limit
    )
    check_dataset_fits(
        f"folder dataset {root}",
        len(train_pairs) + len(val_pairs) + len(test_pairs),
        image_size,
        "lower --limit or --image-size",
        copies=2,  # decoded arrays, then the kept ones
    )
    how = tuple(
        f"{split}/ folder" if split in given else f"{fractions[split]:g} of the pairs"
        for split in ("val", "test")
    )
    return root, (train_pairs, val_pairs, test_pairs), suffix, how


def refuse_unused_fraction(folder: Path, split: str, fraction: float | None) -> None:
    if fraction is not None:
        name = {"val": "validation", "test": "test"}[split]
        raise ParameterError(
            f"dataset 'folder': {split}_fraction={fraction:g} has no effect: {folder} is the "
            f"{name} split; drop {split}_fraction, or that folder to carve the split instead"
        )


def check_no_shared_names(root: Path, splits: dict[str, Pairs]) -> None:
    """An image in two splits' folders would be trained on and scored, or chosen on."""
    seen: dict[str, str] = {}  # pairing name -> the folder it was first found in
    for prefix, pairs in splits.items():
        folder = f"{prefix}/images/" if prefix else "images/"
        shared = [image for image, _ in pairs if pairing_name(image.stem) in seen]
        if shared:
            first = shared[0]
            raise DatasetError(
                f"folder dataset {root}: {len(shared)} image name(s) are in both "
                f"{seen[pairing_name(first.stem)]} and {folder} (e.g. {first.name}): a split "
                "would score images another one uses; keep each image in one folder"
            )
        seen.update((pairing_name(image.stem), folder) for image, _ in pairs)


def check_folder(root: Path) -> None:
    if not root.exists():
        raise DatasetError(f"folder dataset: {root} is not a folder (it does not exist)")
    if not root.is_dir():
        raise DatasetError(f"folder dataset: {root} is not a folder")
    missing = [name for name in ("images", "masks") if not (root / name).is_dir()]
    if missing:
        raise DatasetError(
            f"folder dataset: {root} needs images/ and masks/ subfolders "
            f"(missing {' and '.join(name + '/' for name in missing)})"
        )


def image_files(folder: Path) -> dict[str, Path]:
    """Stem -> file for the picture files in ``folder`` (hidden and macOS ._ files skipped,
    and anything not a regular file: reading a pipe would wait forever)."""
    found: dict[str, Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        raise DatasetError(
            f"folder dataset: cannot read {folder} ({error.strerror or error})"
        ) from None
    for path in entries:
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        refuse_broken_link(path)
        if not path.is_file():
            continue
        stem = pairing_name(path.stem)
        if stem in found:
            raise DatasetError(
                f"folder dataset: {found[stem].name} and {path.name} in {folder} "
                "share a name; keep one"
            )
        found[stem] = path
    return found


def pairing_name(stem: str) -> str:
    """The name a file is paired by: Unicode NFC, so that 'café' typed on Linux pairs with
    the decomposed 'café' macOS's HFS+ wrote (the two look alike in every listing)."""
    return unicodedata.normalize("NFC", stem)


def refuse_broken_link(path: Path) -> None:
    """A link to a file that is gone would be passed over, leaving its partner unpaired."""
    if path.is_symlink() and not path.exists():
        raise DatasetError(
            f"folder dataset: {path} is a link to {path.readlink()}, which cannot be read "
            "(it does not exist); fix or remove the link"
        )


def subfolders_note(folder: Path) -> str:
    """Why files sorted into subfolders (images/benign/...) were not found."""
    subfolders = sorted(path.name for path in folder.iterdir() if path.is_dir())
    if not subfolders:
        return ""
    return (
        f" (its subfolders, e.g. {subfolders[0]}/, are not read: put the files in "
        f"{folder.name}/ itself)"
    )


def unread_note(folder: Path, stems: list[str] | None = None, suffix: str = "") -> str:
    """Why a partner or a whole folder was not found: files of a type that is not read
    (a .heic photo), among all of ``folder`` or those named ``stem + suffix``."""
    wanted = None if stems is None else {stem + suffix for stem in stems}
    unread = [
        path
        for path in sorted(folder.iterdir())
        if not path.name.startswith(".")
        and path.suffix.lower() not in IMAGE_SUFFIXES
        and path.is_file()
        and (wanted is None or pairing_name(path.stem) in wanted)
    ]
    if not unread:
        return ""
    kinds = ", ".join(sorted(IMAGE_SUFFIXES))
    names = listed([path.name for path in unread])
    return f" ({names} in {folder.name}/ not read: losscmp reads {kinds} files)"


def listed(names: list[str]) -> str:
    shown = ", ".join(names[:SHOW])
    return shown + (f" and {len(names) - SHOW} more" if len(names) > SHOW else "")


def pair_files(root: Path, mask_suffix: str | None) -> tuple[list[tuple[Path, Path]], str]:
    """(image, mask) pairs sorted by name, and the mask suffix used."""
    images, masks = image_files(root / "images"), image_files(root / "masks")
    for found, kind in ((images, "images"), (masks, "masks")):
        if not found:
            folder = root / kind
            why = subfolders_note(folder) or unread_note(folder)
            raise DatasetError(f"folder dataset: no {kind} in {folder}{why}")
    suffix = mask_suffix if mask_suffix is not None else guess_suffix(images, masks)
    suffix = pairing_name(suffix)
    lonely = [stem for stem in images if stem + suffix not in masks]
    unmatched_images = [images[stem].name for stem in lonely]
    mask_stems = {stem + suffix for stem in images}
    spare = {stem: path for stem, path in masks.items() if stem not in mask_stems}
    unmatched_masks = [path.name for path in spare.values()]
    if unmatched_images:
        example = f"masks/<name>{suffix}.png"
        raise DatasetError(
            f"folder dataset: {len(unmatched_images)} image(s) in {root / 'images'} have no mask "
            f"({example}): {listed(unmatched_images)}"
            f"{case_note(lonely, spare, suffix) or unread_note(root / 'masks', lonely, suffix)}"
            + (
                ""
                if mask_suffix is not None
                else "; set mask_suffix=... if masks are named otherwise"
            )
        )
    if unmatched_masks:
        raise DatasetError(
            f"folder dataset: {len(unmatched_masks)} mask(s) in {root / 'masks'} have no image: "
            f"{listed(unmatched_masks)}"
            f"{unread_note(root / 'images', [stem.removesuffix(suffix) for stem in spare])}"
        )
    return [(images[stem], masks[stem + suffix]) for stem in sorted(images)], suffix


def case_note(stems: list[str], spare: dict[str, Path], suffix: str) -> str:
    """Names are matched exactly, as on Linux: say so when an unpaired mask differs only in
    letter case (made on macOS or Windows, where the two are one name)."""
    folded = {stem.casefold(): path for stem, path in spare.items()}
    for stem in stems:
        twin = folded.get((stem + suffix).casefold())
        if twin is not None:
            return f" (masks/{twin.name} differs only in letter case: names must match exactly)"
    return ""


def guess_suffix(images: dict[str, Path], masks: dict[str, Path]) -> str:
    """The common suffix that pairs the most images with a mask."""
    matches = {
        suffix: sum(stem + suffix in masks for stem in images) for suffix in COMMON_MASK_SUFFIXES
    }
    return max(COMMON_MASK_SUFFIXES, key=lambda suffix: matches[suffix])


def split_pairs(pairs: Pairs, fractions: list[float]) -> list[Pairs]:
    """[train, part 1, part 2, ...]: a fixed split by hash of the file name, independent
    of the seed and of other files. Part k takes the next ``fractions[k]`` of the pairs in
    hash order (at least one), so adding a part leaves the earlier ones as they were."""
    if len(pairs) < len(fractions) + 1:
        parts = ["a train", "a validation", "a test"][: len(fractions) + 1]
        needed = ", ".join(parts[:-1]) + " and " + parts[-1]
        raise DatasetError(
            f"folder dataset: {len(pairs)} image/mask pair(s) are not enough for {needed} split"
        )
    ordered = hash_order(pairs)
    parts, start = [], 0
    for fraction in fractions:
        count = max(1, round(len(pairs) * fraction))
        count = min(count, len(pairs) - start - 1)  # leave at least one to train on
        parts.append(sorted(ordered[start : start + count]))
        start += count
    return [sorted(ordered[start:]), *parts]


def hash_order(pairs: Pairs) -> Pairs:
    """A fixed pseudo-random order by hash of the file name: independent of the seed and of
    other files, and spread over name prefixes (benign_*, malignant_*) alike."""
    # The name's bytes on disk: a name that is not UTF-8 (Latin-1 from an old zip) has no
    # str.encode(); for every other name the two are the same bytes.
    return sorted(pairs, key=lambda pair: hashlib.sha1(os.fsencode(pair[0].name)).hexdigest())


def apply_limit(train: Pairs, val: Pairs, test: Pairs, limit: int | None) -> tuple[Pairs, ...]:
    """At most ``limit`` pairs in all, validation and test shrunk in proportion (one at least).

    Each split keeps the first of its pairs in hash order, not by name: names sorted
    alphabetically would keep one class of a set named by class."""
    total = len(train) + len(val) + len(test)
    if limit is None or total <= limit:
        return train, val, test
    val_count = max(1, round(limit * len(val) / total))
    test_count = max(1, round(limit * len(test) / total))
    counts = (max(1, limit - val_count - test_count), val_count, test_count)
    return tuple(
        sorted(hash_order(pairs)[:count])
        for pairs, count in zip((train, val, test), counts, strict=True)
    )


def check_sizes(root: Path, pairs: list[tuple[Path, Path]]) -> int:
    """Image and mask must have the same size, upright; reads headers only. Returns the
    largest file's pixel count."""
    mismatched, unreadable, turned, largest = [], [], False, 0
    for image_path, mask_path in pairs:
        headers = [header_size(image_path), header_size(mask_path)]
        for path, header in zip((image_path, mask_path), headers, strict=True):
            if header is None:
                unreadable.append(shown(root, path))
            else:
                largest = max(largest, header[0][0] * header[0][1])
        if None in headers or headers[0][0] == headers[1][0]:
            continue
        (image_size, image_turned), (mask_size, _) = headers
        turned = turned or image_turned
        upright = " upright" if image_turned else ""
        mismatched.append(
            f"{shown(root, image_path)} {by(image_size)}{upright} vs {shown(root, mask_path)} "
            f"{by(mask_size)}"
        )
    if unreadable:
        count = len(unreadable)
        raise DatasetError(f"folder dataset: {count} file(s) are not images: {listed(unreadable)}")
    if mismatched:
        raise DatasetError(
            f"folder dataset: {len(mismatched)} image/mask pair(s) differ in size: "
            f"{listed(mismatched)}"
            + (
                "; an image is read upright as its EXIF orientation says (as viewers show "
                "it), so its mask must be drawn that way up"
                if turned
                else ""
            )
        )
    return largest


def by(size: tuple[int, int]) -> str:
    """Width x height, as image viewers give a size: '(56, 40)' read as rows first too."""
    return f"{size[0]}x{size[1]}"


def shown(root: Path, path: Path) -> str:
    """A file as an error names it: images/x.png and masks/x.png must not read alike."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def header_size(path: Path) -> tuple[tuple[int, int], bool] | None:
    """((width, height) upright, whether EXIF turns it sideways) from the file header, or
    None if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(path) as image:
            (width, height), sideways = image.size, orientation(image) in SIDEWAYS
            return ((height, width) if sideways else (width, height)), sideways
    except Image.DecompressionBombError as error:  # Pillow will not decode it either
        raise DatasetError(
            f"folder dataset: {path.name} is too large for Pillow to open "
            f"({str(error).split(',')[0]}); downscale or tile the images"
        ) from None
    except UnidentifiedImageError:
        return None
    except ValueError as error:  # Pillow's limits on metadata: a PNG text chunk over 1 MB
        raise DatasetError(
            f"folder dataset: Pillow refuses {path} ({error}); re-save it without its metadata"
        ) from None
    except OSError as error:
        if error.errno is None:  # Pillow's own: a header it cannot parse, not an image
            return None
        # The system's: a file this user may not read (copied from another user's 0600
        # files) or a failing disk, which 'not an image' would misname.
        raise DatasetError(
            f"folder dataset: cannot read {path} ({error.strerror or error})"
        ) from None


def mask_reader(num_classes: int):
    """Reads a mask file into class indices (before resizing)."""

    def read(path: Path) -> np.ndarray:
        if num_classes == 2:  # thresholded and made 0/1 once every mask is read
            return read_label_image(path, upright=True)
        try:
            labels = read_label_image(path, upright=True, classes=True)
        except MergedColours as merged:
            raise DatasetError(
                f"folder dataset: {path.name} is a colour mask: {merged.first} and "
                f"{merged.second} both read as label {merged.label} (a colour's label is its "
                f"brightest channel); with num_classes={num_classes} save each mask as a grey "
                f"or palette PNG whose values are the class indices 0-{num_classes - 1}"
            ) from None
        if path.suffix.lower() in JPEG_SUFFIXES:
            raise DatasetError(
                f"folder dataset: {path.name} is a JPEG mask; JPEG cannot hold class indices "
                "exactly (use PNG), or use a binary dataset"
            )
        return labels

    return read


def threshold_jpeg_masks(masks: np.ndarray, pairs: Pairs) -> np.ndarray:
    """JPEG smears a mask's edges into in-between values: its masks become 0/255, cut at
    128, or at 1 when none reaches 128 (0/1 masks, which 128 would leave empty). Decided
    over every JPEG mask together, like binary_labels; after the nearest-neighbour resize,
    which picks pixels and so commutes with a per-pixel threshold."""
    rows = [row for row, (_, mask) in enumerate(pairs) if mask.suffix.lower() in JPEG_SUFFIXES]
    if rows:
        jpeg = masks[rows]
        cut = 128 if jpeg.max() >= 128 else 1
        masks[rows] = np.where(jpeg >= cut, IGNORE_INDEX, 0)
    return masks


def binary_labels(masks: np.ndarray) -> np.ndarray:
    """Binary masks as 0/1, 255 where ignored: decided over all masks together, so every
    file of a dataset is read the same way.

    Exactly one value in 1-254 besides 0 and 255, held by most masks that hold 255, is a
    VOC-style set (1 = object, 255 = the void band around it): 255 is ignored. Otherwise
    every non-zero value is foreground: 0/255 masks (a stray pixel of another value in one
    of them included), 0/1 masks, and anti-aliased ones whose edges hold many values."""
    labels = (masks > 0).astype(np.uint8)
    if _void_banded(masks):
        labels[masks == IGNORE_INDEX] = IGNORE_INDEX
    return labels


def merged_labels(masks: np.ndarray) -> list[int]:
    """The labels binary reading makes one foreground, where the masks hold several: the
    values in 1-254 that fill regions (pixels whose four neighbours hold the same value: at
    least 1 % of the non-zero pixels; an anti-aliased edge's values are thin bands), when
    there are two or more, and 255 where present (then read as foreground too). Class
    indices (0/1/2/3 with a 255 band) read so are a mistake a run would not show; [] for
    0/1, 0/255 (anti-aliased or not) and 0/1/255 masks."""
    filled = np.zeros(256, np.int64)
    for start in range(0, len(masks), MASKS_AT_ONCE):  # a few temporaries of bounded size
        chunk = masks[start : start + MASKS_AT_ONCE]
        centre = chunk[:, 1:-1, 1:-1]
        inside = (
            (centre == chunk[:, :-2, 1:-1])
            & (centre == chunk[:, 2:, 1:-1])
            & (centre == chunk[:, 1:-1, :-2])
            & (centre == chunk[:, 1:-1, 2:])
        )
        filled += np.bincount(centre[inside], minlength=256)
    counts = np.bincount(masks.ravel(), minlength=256)
    least = 0.01 * counts[1:].sum()
    labels = [value for value in range(1, IGNORE_INDEX) if filled[value] and filled[value] >= least]
    if len(labels) < 2:
        return []
    return labels + ([IGNORE_INDEX] if counts[IGNORE_INDEX] else [])


def _void_banded(masks: np.ndarray) -> bool:
    present = np.flatnonzero(np.bincount(masks.ravel(), minlength=256))
    between = [value for value in present.tolist() if 0 < value < IGNORE_INDEX]
    if len(between) != 1 or IGNORE_INDEX not in present:
        return False
    with_void = (masks == IGNORE_INDEX).any(axis=(1, 2))
    with_object = (masks == between[0]).any(axis=(1, 2))
    return 2 * (with_void & with_object).sum() > with_void.sum()


def check_class_values(masks: np.ndarray, pairs: list[tuple[Path, Path]], num_classes: int) -> None:
    bad = (masks >= num_classes) & (masks != IGNORE_INDEX)
    offenders = np.flatnonzero(bad.any(axis=(1, 2)))
    if len(offenders):
        first = int(offenders[0])
        value = int(masks[first][bad[first]].max())
        names = listed([pairs[index][1].name for index in offenders])
        raise DatasetError(
            f"folder dataset: {len(offenders)} mask(s) hold values >= num_classes={num_classes} "
            f"(e.g. {value} in {pairs[first][1].name}): {names}"
        )


def refuse_photo_masks(root: Path, decoded, pairs: Pairs) -> None:
    """Images copied into masks/ by mistake: binary reading makes a photo foreground almost
    everywhere. Such a mask spreads most of its pixels over values that each only a few
    pixels hold (a label mask holds a few values, each over a region; anti-aliased or JPEG
    edges are a thin band) and follows its image's brightness; both are asked, since a
    dense instance map (hundreds of small objects numbered 1, 2, ...) spreads its values too."""
    photos = [
        row
        for row, mask in enumerate(decoded.masks)
        if rare_value_share(mask) > 0.5 and follows_brightness(mask, decoded.images[row])
    ]
    if photos:
        raise DatasetError(
            f"folder dataset: {len(photos)} mask(s) look like their images, not label images "
            "(most of their pixels hold values that under 1% of the pixels hold, and they "
            "follow the image's brightness): "
            f"{listed([shown(root, pairs[row][1]) for row in photos])}; a mask holds 0 for "
            "background and a label value over each object"
        )


def rare_value_share(mask: np.ndarray) -> float:
    counts = np.bincount(mask.ravel(), minlength=256)
    return float(counts[counts < 0.01 * mask.size].sum() / mask.size)


def follows_brightness(mask: np.ndarray, image: np.ndarray) -> bool:
    """The mask as read (an RGB file's channel maximum) correlates with the image's."""
    brightness = image.max(axis=-1).ravel().astype(np.float64)
    values = mask.ravel().astype(np.float64)
    if brightness.std() == 0 or values.std() == 0:
        return False
    return float(np.corrcoef(brightness, values)[0, 1]) > 0.8


def check_not_binary(masks: np.ndarray, num_classes: int) -> None:
    """Multiclass masks holding only 0 and 255 are binary masks: all foreground would be ignored."""
    present = np.flatnonzero(np.bincount(masks.ravel(), minlength=256))
    if set(present.tolist()) == {0, IGNORE_INDEX}:
        raise DatasetError(
            f"folder dataset: the masks hold only the values 0 and {IGNORE_INDEX}, so they look "
            f"binary (0/{IGNORE_INDEX}); with num_classes={num_classes} a pixel value is a class "
            f"index and {IGNORE_INDEX} means 'ignore', which would ignore all foreground: "
            "use num_classes=2 for binary masks"
        )


def refuse_truncated(root: Path, paths: list[str]) -> None:
    """A truncated image would train on a grey tail it does not have: refused, named."""
    if paths:
        raise DatasetError(
            f"folder dataset: {len(paths)} image(s) are truncated (the file ends before the "
            f"image does): {listed([shown(root, Path(p)) for p in paths])}; re-export or "
            "remove them"
        )


def decoded_pairs(
    root: Path,
    pairs: list[tuple[Path, Path]],
    size: int,
    num_classes: int,
    choice: tuple[object, ...],
) -> tuple[dict[str, np.ndarray], cache.CacheUse]:
    files = [path for pair in pairs for path in pair]
    entry = cache.cache_entry(root, f"folder-{size}px", files, num_classes, decoding=DECODING)
    places = cache.entry_places(root, entry)
    found = cache.load_first(places, ("images", "masks", "truncated", "merged_labels"))
    if found is not None:
        refuse_truncated(root, [str(name) for name in found[0].get("truncated", [])])
        return found
    largest = check_sizes(root, pairs)
    workers = decoders_that_fit(largest, most=decoder_threads())
    try:
        decoded = decode_pairs(pairs, size, mask_reader(num_classes), upright=True, workers=workers)
    except UnreadableFile as error:
        raise DatasetError(f"folder dataset: {error}") from None
    if decoded.unreadable:
        raise DatasetError(
            f"folder dataset: {len(decoded.unreadable)} file(s) cannot be decoded: "
            f"{listed([shown(root, Path(p)) for p in decoded.unreadable])}"
        )
    refuse_truncated(root, decoded.truncated)
    if num_classes > 2:
        check_class_values(decoded.masks, pairs, num_classes)
    else:
        refuse_photo_masks(root, decoded, pairs)
    masks = decoded.masks
    merged: list[int] = []
    if num_classes == 2:
        masks = threshold_jpeg_masks(masks, pairs)
        merged = merged_labels(masks)
        masks = binary_labels(masks)
    arrays = {
        "images": decoded.images,
        "masks": masks,
        "truncated": np.array(decoded.truncated, dtype=str),
        "merged_labels": np.array(merged, dtype=np.int64),
    }
    return arrays, cache.save_first(places, arrays, lineage=(num_classes, *choice))


def folder_status(datasets_root: Path) -> dict[str, Any]:
    """``losscmp datasets``: nothing to fetch; it reads the folder it is given."""
    return {
        "present": True,
        "path": "",
        "how_to_get": "your data: --dataset folder:PATH with PATH/images + PATH/masks",
    }


def folder_foreground_hint(data: SegmentationData) -> str:
    """What usually makes a user's masks read as empty."""
    if data.num_classes > 2:
        return (
            "check the masks: with num_classes > 2 a pixel value is a class index and 255 "
            "means 'ignore'; binary masks (e.g. 0/255) need num_classes=2"
        )
    return "check that masks/ holds the right files and that they mark the foreground"
