"""Decoding image and mask files into resized uint8 arrays, tolerant of real-world quirks.

Handled: files whose content is not what their extension says (PIL reads the
content), palette/grey/RGBA/CMYK images (converted to RGB), truncated JPEGs
(decoded as far as the data goes, then flagged), unreadable files (reported), and,
where the caller asks (``upright``), EXIF orientation: a phone photo stored sideways
is turned as every viewer and annotation tool shows it (a damaged EXIF block is read as
far as it goes, without Pillow's warnings).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from losscmp.errors import DatasetError

# Pillow's modes of more than 8 bits per pixel: integer (16- or 32-bit) and float.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
UPRIGHT = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
SIDEWAYS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
MAX_DECODERS = 8  # threads decoding files at once
# Warnings filters are the process's: catch_warnings in several threads at once (decode_pairs
# reads in a pool) can restore one another's, so headers are read one at a time.
_HEADER_READ = threading.Lock()


class UnreadableFile(Exception):
    """A file PIL cannot decode at all."""


class MergedColours(Exception):
    """A colour mask two of whose colours read as one label (their brightest channel)."""

    def __init__(self, path: Path, first: tuple[int, ...], second: tuple[int, ...], label: int):
        super().__init__(f"{path}: {first} and {second} both read as label {label}")
        self.path, self.first, self.second, self.label = path, first, second, label


@dataclass
class Decoded:
    """Resized arrays for the files that could be read, plus what went wrong."""

    images: np.ndarray
    masks: np.ndarray
    kept: list[int]  # positions (in the requested list) of the decoded pairs
    truncated: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


@contextlib.contextmanager
def quiet_tags():
    """Pillow's warnings about damaged tags silenced (an EXIF block's; a TIFF's own): it
    reads on, the pixels are read as they are, and its warnings ('Corrupt EXIF data',
    'Truncated File Read') were raw Python lines amid the progress display. So is its
    warning for a picture of 90 to 180 megapixels ('could be decompression bomb DOS
    attack', twice per file): a drone or slide scan of the user's own, read and scaled
    down as any other; a larger one is Pillow's error, which folder.header_size names."""
    from PIL import Image

    with _HEADER_READ, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        yield


def open_image(path: Path):
    """``Image.open``, quiet about damaged tags: the JPEG reader reads the EXIF block there."""
    from PIL import Image

    with quiet_tags():
        return Image.open(path)


def orientation(image) -> int:
    """The EXIF orientation an opened image's header gives (1: stored upright).

    Read from the header only, so that a size check (folder.header_size) and the decoder
    agree: a PNG's eXIf chunk after the pixels would need the whole image decoded. A
    damaged EXIF block gives what could be read of it (often 1: read as stored, as a
    viewer that cannot read the block shows it)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        with quiet_tags():
            value = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError):  # a block beyond reading: read as stored
        return 1
    return value if value in UPRIGHT else 1


def turned_upright(image, turn: int):
    from PIL import Image

    return image.transpose(getattr(Image.Transpose, UPRIGHT[turn])) if turn in UPRIGHT else image


def read_rgb(
    path: Path, size: int, *, allow_truncated: bool = False, upright: bool = False
) -> np.ndarray:
    """(size, size, 3) uint8, bilinear with antialiasing; ``upright``: EXIF orientation applied."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    try:
        with open_image(path) as image:
            turn = orientation(image) if upright else 1
            if image.format == "JPEG":
                image.draft("RGB", (size, size))  # decode at reduced scale: much faster
            if allow_truncated:
                previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
                try:
                    image.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = previous
            if image.mode in WIDE_MODES:
                # convert("RGB") clips them to 255: a 16-bit scan would train as white.
                raise DatasetError(
                    f"{path}: a {image.mode} image (more than 8 bits per pixel); losscmp reads "
                    "8-bit images: rescale it to 0-255 first"
                )
            rgb = as_rgb(turned_upright(image, turn))
    except UnidentifiedImageError as error:
        raise UnreadableFile(f"{path}: not an image") from error
    except ValueError as error:  # Pillow's limits on metadata (a PNG text chunk over 1 MB)
        raise UnreadableFile(f"{path}: {error}") from error
    return np.asarray(rgb.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def as_rgb(image):
    """``image.convert("RGB")``, the same pixels, without Pillow's warning for a palette
    image whose transparency is a table ('Palette images with Transparency expressed in
    bytes should be converted to RGBA images'): a raw Python line amid the progress display,
    for any palette PNG with a tRNS chunk. Through RGBA: the palette's colours, alpha
    dropped, as the direct conversion gives them."""
    if image.mode == "P" and isinstance(image.info.get("transparency"), bytes):
        image = image.convert("RGBA")
    return image.convert("RGB")


def read_label_image(path: Path, *, upright: bool = False, classes: bool = False) -> np.ndarray:
    """Pixel values of a mask file, (H, W) uint8, at its own size (``upright``: EXIF
    orientation applied, as read_rgb does to its image).

    RGB masks become the per-pixel maximum over channels (any colour on black
    marks foreground; ``classes``: the values are class indices, so two colours that
    would read as one, red and green of one brightness, raise MergedColours);
    palette images are read as palette_labels says; a transparent
    pixel (alpha 0) is 0, as it shows nothing: a white layer cut out by its alpha
    would otherwise read as all foreground.
    """
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as opened:
            turn = orientation(opened) if upright else 1
            opened.load()
            image = turned_upright(opened, turn)
            if image.mode == "P":
                return palette_labels(image)
            if image.mode == "L":
                return np.asarray(image, dtype=np.uint8)
            if image.mode in WIDE_MODES:
                return _whole_labels(np.asarray(image), path)
            if image.mode in ("LA", "PA"):
                return opaque_only(image, np.asarray(image.getchannel(0), dtype=np.uint8))
            if image.mode == "1":
                return np.asarray(image, dtype=np.uint8)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
            if image.mode == "RGBA":  # a transparent pixel is 0, whatever its colour
                rgb = opaque_only(image, rgb)
            if classes:
                refuse_merged_colours(path, rgb)
            return rgb.max(axis=-1)
    except UnidentifiedImageError as error:
        raise UnreadableFile(f"{path}: not an image") from error
    except ValueError as error:  # as read_rgb
        raise UnreadableFile(f"{path}: {error}") from error


def refuse_merged_colours(path: Path, rgb: np.ndarray) -> None:
    """Raise MergedColours when two colours of ``rgb`` have the same brightest channel."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
    colours = np.unique(packed | rgb[..., 2])
    channels = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=-1)
    labels = channels.max(axis=-1)
    order = np.argsort(labels, kind="stable")
    repeats = np.flatnonzero(np.diff(labels[order]) == 0)
    if len(repeats):
        first, second = channels[order[repeats[0]]], channels[order[repeats[0] + 1]]
        label = int(labels[order[repeats[0]]])
        raise MergedColours(path, tuple(map(int, first)), tuple(map(int, second)), label)


def opaque_only(image, values: np.ndarray) -> np.ndarray:
    """``values`` (labels, or RGB) with the fully transparent pixels of ``image`` set to 0."""
    alpha = np.asarray(image.getchannel(image.mode[-1]), dtype=np.uint8)
    transparent = alpha == 0 if values.ndim == 2 else (alpha == 0)[..., None]
    return np.where(transparent, 0, values).astype(np.uint8)


def _whole_labels(values: np.ndarray, path: Path) -> np.ndarray:
    """A 16-bit or float mask's values as uint8 labels; refused unless each is a whole
    number in 0-255 (clipping would turn 300 into 255, the ignore label)."""
    if values.size and not (
        values.min() >= 0 and values.max() <= 255 and np.array_equal(values, np.floor(values))
    ):
        shown = ", ".join(f"{value:g}" for value in np.unique(values)[:6])
        raise DatasetError(
            f"{path}: a mask must hold whole labels 0-255 (255: ignore); this one holds "
            f"{shown}{', ...' if np.unique(values).size > 6 else ''}"
        )
    return values.astype(np.uint8)


def palette_labels(image) -> np.ndarray:
    """Palette masks: with an all-grey palette the grey level is the label (encoders such
    as GIF's reorder the palette, so the index is not); with any colour in the palette
    (Pascal VOC style) the index is the label.

    Decided from the whole palette, not the colours one image uses: a mask of a
    black/white/red palette that shows only black and white is still read by index,
    like its siblings (read as grey, class 1 would become 255, ignored)."""
    indices = np.asarray(image, dtype=np.uint8)
    palette = np.array(image.getpalette() or [], np.uint8).reshape(-1, 3)
    if len(palette) and (palette == palette[:, :1]).all():
        grey = np.zeros(256, np.uint8)
        grey[: len(palette)] = palette[:, 0]
        return grey[indices]
    return indices


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize: class indices must never be blended."""
    from PIL import Image

    if labels.shape == (size, size):
        return labels
    return np.asarray(Image.fromarray(labels).resize((size, size), Image.NEAREST))


def is_truncation(error: OSError) -> bool:
    return "truncated" in str(error) or "broken data stream" in str(error)


def decoder_threads() -> int:
    return min(MAX_DECODERS, os.cpu_count() or 1)


def decode_pairs(
    pairs: Sequence[tuple[Path, Path]],
    size: int,
    read_mask: Callable[[Path], np.ndarray],
    *,
    upright: bool = False,
    workers: int | None = None,
) -> Decoded:
    """Decode (image, mask) pairs in a thread pool (PIL releases the GIL while decoding) of
    ``workers`` threads (default: one per core, MAX_DECODERS at most); ``upright``: images
    turned as their EXIF orientation says (read_mask does its own)."""
    images = np.zeros((len(pairs), size, size, 3), np.uint8)
    masks = np.zeros((len(pairs), size, size), np.uint8)
    failed: dict[int, str] = {}  # position -> the file that could not be read

    def decode(position: int, allow_truncated: bool) -> str:
        image_path, mask_path = pairs[position]
        current = image_path
        try:
            images[position] = read_rgb(
                image_path, size, allow_truncated=allow_truncated, upright=upright
            )
            current = mask_path
            masks[position] = resize_labels(read_mask(mask_path), size)
        except UnreadableFile:
            failed[position] = str(current)
            return "unreadable"
        except OSError as error:
            failed[position] = str(current)
            return "truncated" if is_truncation(error) and current == image_path else "unreadable"
        return "ok"

    with ThreadPoolExecutor(workers or decoder_threads()) as pool:
        outcome = list(pool.map(lambda position: decode(position, False), range(len(pairs))))
    # Truncated files are read again one by one, accepting the missing tail: PIL's
    # switch for that is process-wide, so it must not be on while other threads decode.
    truncated = [position for position, state in enumerate(outcome) if state == "truncated"]
    for position in truncated:
        outcome[position] = "truncated" if decode(position, True) == "ok" else "unreadable"
    kept = [position for position, state in enumerate(outcome) if state != "unreadable"]
    return Decoded(
        images=images[kept],
        masks=masks[kept],
        kept=kept,
        truncated=[str(pairs[p][0]) for p, state in enumerate(outcome) if state == "truncated"],
        unreadable=[failed[p] for p, state in enumerate(outcome) if state == "unreadable"],
    )
