"""Will it fit? Memory estimates checked before a dataset or a batch is allocated.

Datasets are held decoded in memory (uint8 images and masks), so a dataset of
``n`` images of ``size`` x ``size`` pixels needs at least ``n * size**2 * (3 + 1)``
bytes, and a real dataset briefly twice that while it is decoded. A training
batch needs at least :data:`BATCH_BYTES_PER_PIXEL` bytes per pixel (float32
input, target and logits, and the first U-Net stage's activations and
gradients); the real need is higher, so these are lower bounds: a refusal
means the run cannot fit, never that it might not.

What the machine has: the kernel's MemAvailable, lowered to the cgroup's limit
when the process runs in a container. Where neither can be read, nothing is
refused. No numpy or torch here: ``losscmp.config`` uses it while validating.
"""

from __future__ import annotations

import os
from pathlib import Path

from losscmp.errors import DatasetError, ParameterError

MASK_BYTES = 1  # uint8 class index per pixel
IMAGE_CHANNELS = 3  # uint8 RGB
BATCH_BYTES_PER_PIXEL = 64  # a lower bound for one training step's tensors per pixel
MAP_BYTES = 4  # float32 per distance-map channel
# A file being decoded, per pixel at its own size: the decoded picture and its RGB copy, or
# a mask's labels and their copies. An estimate, on the high side (a grey 92-megapixel PNG
# and its mask raised a process's peak by ~0.4 GB; an RGB one decodes to 3 bytes a pixel).
DECODE_BYTES_PER_PIXEL = 8


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None when unknown."""
    candidates = [_meminfo_available(), _cgroup_room()]
    known = [value for value in candidates if value is not None]
    if known:
        return min(known)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """The cgroup's limit minus its usage (v2, then v1), or None without a limit."""
    pairs = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ]
    for limit_file, usage_file in pairs:
        try:
            limit_text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit_text == "max" or not limit_text.isdigit():
            return None
        limit = int(limit_text)
        if limit >= 1 << 60:  # v1's "no limit"
            return None
        try:
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            usage = 0
        return max(0, limit - usage)
    return None


def estimate_dataset_bytes(
    n_images: int, image_size: int, *, copies: int = 1, map_channels: int = 0
) -> int:
    """Images and masks held in memory (``copies`` while decoding), plus float32 distance
    maps when a loss needs them (``map_channels`` per pixel)."""
    pixels = int(n_images) * int(image_size) ** 2
    return copies * pixels * (IMAGE_CHANNELS + MASK_BYTES) + pixels * map_channels * MAP_BYTES


def estimate_batch_bytes(batch_size: int, image_size: int) -> int:
    """A lower bound on one training step's memory."""
    return int(batch_size) * int(image_size) ** 2 * BATCH_BYTES_PER_PIXEL


def size_text(count: int) -> str:
    """Bytes in a short human form: 512 MiB, 3.2 GiB, 1.5e+04 TiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    if value >= 1e4:
        return f"{value:.1e} {unit}"
    return f"{value:.0f} {unit}" if value >= 10 or unit == "B" else f"{value:.1f} {unit}"


def check_fits(needed: int, what: str, hint: str, *, error: type = DatasetError) -> None:
    """Refuse ``what`` when it needs more memory than the machine has available."""
    available = available_memory()
    if available is None or needed <= available:
        return
    raise error(
        f"{what} needs at least {size_text(needed)} of memory, more than the "
        f"{size_text(available)} this machine has available; {hint}"
    )


def check_dataset_fits(
    what: str, n_images: int, image_size: int, hint: str, *, copies: int = 1
) -> None:
    needed = estimate_dataset_bytes(n_images, image_size, copies=copies)
    check_fits(
        needed,
        f"{what} ({n_images} image(s) of {image_size}x{image_size} pixels)",
        hint,
    )


def decoders_that_fit(largest_pixels: int, most: int) -> int:
    """How many files to decode at once (``most`` at most, one at least): as many of the
    largest as fit side by side in the memory available. Pictures of tens of megapixels
    decoded on every core at once could take more than the decoded dataset itself."""
    available = available_memory()
    each = max(1, int(largest_pixels) * DECODE_BYTES_PER_PIXEL)
    if available is None:
        return most
    return max(1, min(most, available // each))


def check_batch_fits(batch_size: int, image_size: int) -> None:
    needed = estimate_batch_bytes(batch_size, image_size)
    check_fits(
        needed,
        f"one batch of {batch_size} image(s) of {image_size}x{image_size} pixels",
        "lower --batch-size or --image-size",
        error=ParameterError,
    )
