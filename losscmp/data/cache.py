"""Decode and resize once: resized uint8 arrays saved as .npz next to the data.

The key covers every source file's relative path, size, modification and change
times and inode, the image size and a format version, so an edited, added or
removed file, or a new size, makes a new entry and a stale array is never read
back. The change time and inode catch an edit that keeps size and modification
time (``cp -p``, ``rsync -a``, ``os.utime``): they cannot be set back by hand.

An entry's name also holds a hash of the file list and options alone (its family):
writing one deletes the others of its family, made from earlier versions of the same
files, which no load can read again (a file's change time never goes back), and the
entries of its dataset and size named before families (a key alone), which no load reads
either. Entries of other sizes, ``--limit`` values or options are kept.

An added or removed file makes a new family, not a new key: where the caller names the
options that choose the files (their ``lineage``: a folder dataset's --limit and split
fractions), writing an entry deletes those of its dataset and size written with the same
lineage, which the files as they now are could not give again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import tempfile
import time
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
LEGACY_KEY_LENGTH = 20  # the hex key of an entry named before families (a key only)
TEMPORARY_SUFFIX = ".tmp"  # an entry being written
ABANDONED_AFTER_S = 3600  # a temporary file untouched this long was left by a killed write
LINEAGE = "lineage"  # an entry's member: a hash of the options that chose its files
# Left free on the data folder's disk by a write: the run writes its results there too, often.
HEADROOM_BYTES = 256 * 2**20

# What became of an entry, as run.json's dataset "cache" says: read back, written, or why not.
HIT, WRITTEN = "hit", "written"
READ_ONLY = "read-only"  # the folder cannot be written (permissions, a read-only mount)
DISK_FULL = "disk full"  # the write ran out of room (or of quota)
LOW_DISK_SPACE = "low disk space"  # it would have left less than HEADROOM_BYTES free
NOT_WRITTEN = (READ_ONLY, DISK_FULL, LOW_DISK_SPACE)  # and "not written: <the OS's words>"
_FULL_ERRORS = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS)


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
        digest.update(os.fsencode(identity) + b"\n")  # a name may not be UTF-8
    return digest.hexdigest()[:20]


def cache_entry(
    root: Path, prefix: str, files: Iterable[Path], *parts: object, decoding: int = 0
) -> Path:
    """Where the arrays decoded from ``files`` with ``parts`` are kept:
    ``<prefix>-<family>.<key>.npz``, the family naming the files and parts, the key their
    current identities and the ``decoding`` version too (so a new version supersedes)."""
    files = list(files)
    names = [str(path.relative_to(root)) for path in files]
    family = hashlib.sha256(repr((parts, names)).encode()).hexdigest()[:12]
    key = cache_key(root, files, *parts, decoding)
    return root / CACHE_DIRNAME / f"{prefix}-{family}.{key}.npz"


def superseded(path: Path) -> list[Path]:
    """The entries of ``path``'s family other than itself, and those of its prefix named
    as before families (``<prefix>-<key>.npz``), which no load reads any more."""
    family = path.name.split(".")[0]
    prefix = family.rsplit("-", 1)[0]
    unnamed = path.parent.glob(f"{prefix}-{'[0-9a-f]' * LEGACY_KEY_LENGTH}.npz")
    same = [other for other in path.parent.glob(f"{family}.*.npz") if other.name != path.name]
    return [*same, *unnamed]


def lineage_digest(lineage: object) -> str:
    return hashlib.sha256(repr(lineage).encode("utf-8", "backslashreplace")).hexdigest()[:16]


def same_lineage(path: Path, lineage: object) -> list[Path]:
    """The other entries of ``path``'s prefix (dataset and size) written with ``lineage``:
    made from another file list by the same options, so from files since added or removed."""
    prefix = path.name.split(".")[0].rsplit("-", 1)[0]
    wanted = lineage_digest(lineage)
    return [
        other
        for other in path.parent.glob(f"{prefix}-*.npz")
        if other.name != path.name and stored_lineage(other) == wanted
    ]


def stored_lineage(path: Path) -> str | None:
    """The lineage an entry was written with; None for one without (pets', or written
    before lineages) or one that cannot be read (kept: a later load rebuilds it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return str(_read_member(archive, archive.getinfo(f"{LINEAGE}.npy")))
    except MemoryError:
        raise
    except Exception:  # absent (KeyError) or damaged: as load_cached, never a traceback
        return None


def load_cached(path: Path, names: Iterable[str] = ()) -> dict[str, np.ndarray] | None:
    """The stored arrays, or None when absent, damaged or missing one of ``names``: then
    the caller rebuilds it. Damaged: anything zipfile or numpy cannot read back whole, as
    written (truncated, a bad CRC, a header whose shape or dtype was changed)."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {
                info.filename.removesuffix(".npy"): _read_member(archive, info)
                for info in archive.infolist()
            }
    except MemoryError:  # a real shortage (a damaged shape is refused before allocating)
        raise
    except Exception:  # a damaged header raises what numpy's parser raises
        # (tokenize.TokenError, SyntaxError), a damaged zip what zipfile does (RuntimeError
        # for an 'encrypted' flag, NotImplementedError for a compression method): a cache
        # entry is a copy, so whatever fails reading it means rebuild, never a traceback.
        return None
    return arrays if set(names) <= set(arrays) else None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One array of an .npz entry, read to the end of its member so that zipfile checks its
    CRC: np.load stops where the header's shape says, so a header damaged into a smaller
    shape read back part of the array, its CRC never checked. The shape must account for
    the member's bytes before anything is allocated (a damaged one may ask for terabytes)."""
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[version]
        shape, _, dtype = read_header(stream)
        expected = stream.tell() + math.prod(shape) * dtype.itemsize
    if expected != info.file_size:
        raise ValueError(f"{info.filename}: its header does not match its size")
    with archive.open(info) as stream:
        array = np.lib.format.read_array(stream, allow_pickle=False)
        if stream.read():  # cannot be, the sizes matching; reaching the end checks the CRC
            raise ValueError(f"{info.filename}: bytes after the array")
    return array


def save_cached(path: Path, arrays: dict[str, np.ndarray], lineage: object = None) -> str:
    """Delete the entries it supersedes (with a ``lineage``, those of the same one too),
    then write atomically (a reader never sees half a file): WRITTEN, or why not (READ_ONLY,
    DISK_FULL, LOW_DISK_SPACE, or "not written: " and the error). A write stopped half-way
    (Ctrl-C) deletes its temporary file; one killed leaves it to the next write's sweep."""
    if lineage is not None:
        arrays = {**arrays, LINEAGE: np.array(lineage_digest(lineage))}
    # First: no load reads them again, and on a nearly full disk their room is this one's.
    outdated = same_lineage(path, lineage) if lineage is not None else []
    for stale in [*superseded(path), *outdated]:
        with contextlib.suppress(OSError):  # another process may be deleting it too
            stale.unlink()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(path.parent)
        if not room_for(path.parent, sum(array.nbytes for array in arrays.values())):
            return LOW_DISK_SPACE
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=TEMPORARY_SUFFIX)
    except OSError as error:
        return not_written(error)
    replaced = False
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        # mkstemp makes it 0600: others sharing the dataset folder could not read it. As
        # open() would make it (the umask kept); a filesystem without modes keeps its own.
        with contextlib.suppress(OSError):
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        replaced = True
    except OSError as error:
        return not_written(error)
    finally:
        if not replaced:  # an error or an interrupt: half an entry, gigabytes for Pets
            Path(temporary).unlink(missing_ok=True)
    return WRITTEN


def not_written(error: OSError) -> str:
    """Why a write failed, in run.json's words: the user's remedy differs."""
    if error.errno in _FULL_ERRORS:
        return DISK_FULL
    if error.errno in _READ_ONLY_ERRORS:
        return READ_ONLY
    return f"not written: {error.strerror or error}"


def decoded_again_note(label: str, state: str) -> str:
    """A line for the console when a dataset's cache entry could not be written, so that
    every run decodes its images again; "" when it was read or written."""
    if state in (HIT, WRITTEN):
        return ""
    why = {
        READ_ONLY: "its folder is read-only",
        DISK_FULL: "the disk is full",
        LOW_DISK_SPACE: f"it would leave less than {HEADROOM_BYTES // 2**20} MiB free on the disk",
    }.get(state, state)
    return f"{label}: the decoded images were not cached ({why}): every run decodes them again"


def room_for(folder: Path, nbytes: int) -> bool:
    """Whether ``folder``'s disk keeps HEADROOM_BYTES free after ``nbytes`` more: the cache
    saves time only, and a run's results, often on the same disk, need the last bytes more
    (a Pets entry at 256 px is about 2 GB). Unknown (no statvfs): yes; a full disk's
    ENOSPC is handled by the write anyway."""
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return True
    return nbytes + HEADROOM_BYTES <= stats.f_bavail * stats.f_frsize


def remove_abandoned(folder: Path) -> None:
    """Delete the temporary files of writes killed half-way (SIGKILL, the OOM killer, a
    power cut), which nothing else would: those not written to for ABANDONED_AFTER_S. A
    write under way touches its file all along; one paused for longer fails to rename it
    and is not kept (save_cached's False), nothing worse."""
    now = time.time()
    for temporary in folder.glob(f"*{TEMPORARY_SUFFIX}"):
        with contextlib.suppress(OSError):  # gone meanwhile: another run swept it
            if now - temporary.stat().st_mtime > ABANDONED_AFTER_S:
                temporary.unlink()


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it: put it back at once
    os.umask(mask)
    return mask
