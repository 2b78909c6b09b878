"""Decode and resize once: resized uint8 arrays saved as .npz next to the data.

The key covers every source file's relative path, size, modification and change
times and inode, the image size and a format version, so an edited, added or
removed file, or a new size, makes a new entry and a stale array is never read
back. The change time and inode catch an edit that keeps size and modification
time (``cp -p``, ``rsync -a``, ``os.utime``): they cannot be set back by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CACHE_DIRNAME = ".losscmp-cache"
# Raised whenever decoding or the key changes. 2: 16-bit and float files refused
# where they were clipped to 0-255. 3: the key holds each file's ctime and inode.
# 4: binary folder masks of 0, 1 and 255 keep 255 as ignored, not foreground.
# 5: ... only where most masks holding 255 hold the object value too (not a stray pixel).
CACHE_VERSION = 5


def cache_key(root: Path, files: Iterable[Path], *parts: object) -> str:
    """A short hash of the files' identities (path, size, mtime, ctime, inode) and ``parts``."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{parts!r}".encode())
    for path in files:
        try:
            stat = path.stat()
            identity = (
                f"{path.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}"
                f"|{stat.st_ctime_ns}|{stat.st_ino}"
            )
        except OSError:
            identity = f"{path}|missing"
        digest.update(identity.encode() + b"\n")
    return digest.hexdigest()[:20]


def cache_path(root: Path, prefix: str, key: str) -> Path:
    return root / CACHE_DIRNAME / f"{prefix}-{key}.npz"


def load_cached(path: Path, names: Iterable[str] = ()) -> dict[str, np.ndarray] | None:
    """The stored arrays, or None when absent, damaged (truncated, a bad CRC) or missing
    one of ``names``: then the caller rebuilds it."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None
    return arrays if set(names) <= set(arrays) else None


def save_cached(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    """Write atomically (a reader never sees half a file); False if the folder is read-only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        # mkstemp makes it 0600: others sharing the dataset folder could not read it. As
        # open() would make it (the umask kept); a filesystem without modes keeps its own.
        with contextlib.suppress(OSError):
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        return True
    except OSError:
        if "temporary" in locals():
            Path(temporary).unlink(missing_ok=True)
        return False


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it: put it back at once
    os.umask(mask)
    return mask
