"""Decode and resize once: resized uint8 arrays saved as .npz next to the data, or, where
the data folder cannot take them (read-only, another user's, its disk full), in the
user's cache: ``$LOSSCMP_CACHE_DIR``, else ``$XDG_CACHE_HOME/losscmp``, else
``~/.cache/losscmp``, in a folder of its own per data folder (named by its resolved path,
so two data folders never share an entry). A load reads the data folder's entry first,
then the user's; both follow the rules below.

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
fractions, Pets' --limit), writing an entry deletes those of its dataset and size
written with the same lineage, which the files as they now are could not give again.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
# Where entries go when the data folder cannot take them; else XDG's cache folder.
USER_CACHE_VARIABLE = "LOSSCMP_CACHE_DIR"
USER_CACHE_DIRNAME = "losscmp"  # in $XDG_CACHE_HOME, else ~/.cache
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


def user_cache_root() -> Path | None:
    """The user's cache folder for entries the data folder cannot take; None where there
    is none (no home folder to put it in)."""
    chosen = os.environ.get(USER_CACHE_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative path is to be ignored
        return Path(xdg) / USER_CACHE_DIRNAME
    try:
        return Path.home() / ".cache" / USER_CACHE_DIRNAME
    except (RuntimeError, KeyError):  # no $HOME and no password entry
        return None


def user_cache_folder(root: Path) -> Path | None:
    """The user cache's folder for the data in ``root``: its name, readable, and a hash of
    its resolved path, so that two data folders (even of the same name) never share one,
    and one reached through a symbolic link shares the folder of its target."""
    base = user_cache_root()
    if base is None:
        return None
    resolved = Path(os.path.realpath(root))
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:16]
    return base / f"{resolved.name[:40] or 'root'}-{digest}"


def entry_places(root: Path, entry: Path) -> list[Path]:
    """Where ``entry`` (``cache_entry``'s, in the data folder) may be kept: the data
    folder's cache first, then the user's."""
    user = user_cache_folder(root)
    return [entry] if user is None else [entry, user / entry.name]


@dataclasses.dataclass(frozen=True)
class CacheUse:
    """What a load did with the cache, for run.json's dataset info and the console."""

    state: str  # HIT, WRITTEN, or why not written (of the last place tried)
    folder: Path  # where it was read or written; else the last place tried
    # Why the data folder's cache did not take it, where the user's was tried instead.
    data_folder: str = ""

    def info(self) -> dict[str, str]:
        """run.json's dataset fields: ``cache``, ``cache_dir``, ``cache_data_folder``."""
        fields = {"cache": self.state, "cache_dir": str(self.folder)}
        if self.data_folder:
            fields["cache_data_folder"] = self.data_folder
        return fields


def load_first(
    places: list[Path], names: Iterable[str]
) -> tuple[dict[str, np.ndarray], CacheUse] | None:
    """The arrays of the first place that holds a whole entry; None: rebuild it."""
    names = list(names)
    for place in places:
        stored = load_cached(place, names)
        if stored is not None:
            return stored, CacheUse(HIT, place.parent)
    return None


def save_first(
    places: list[Path], arrays: dict[str, np.ndarray], lineage: object = None
) -> CacheUse:
    """Write the entry in the first place that takes it (save_cached's rules in each)."""
    first = save_cached(places[0], arrays, lineage)
    if first == WRITTEN or len(places) == 1:
        return CacheUse(first, places[0].parent)
    second = save_cached(places[1], arrays, lineage)
    return CacheUse(second, places[1].parent, data_folder=first)


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
    """The lineage an entry was written with; None for one without (written before
    lineages) or one that cannot be read (kept: a later load rebuilds it)."""
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
    where = f": {error.filename}" if error.filename else ""  # a file where a folder goes
    return f"not written: {error.strerror or error}{where}"


def cache_note(label: str, info: dict[str, object]) -> str:
    """A line for the console when a dataset's entry could not be written, so that every
    run decodes its images again, or was written in the user's cache, not the data
    folder's (where the disk space goes); "" when read, or written in the data folder."""
    state, data_folder = str(info.get("cache", HIT)), str(info.get("cache_data_folder", ""))
    if state == HIT or (state == WRITTEN and not data_folder):
        return ""
    if state == WRITTEN:
        return (
            f"{label}: the decoded images are cached in {info['cache_dir']}, not in the "
            f"data folder ({_why(data_folder)})"
        )
    why = _why(state)
    if data_folder:
        why = f"the data folder: {_why(data_folder)}; {info['cache_dir']}: {why}"
    return f"{label}: the decoded images were not cached ({why}): every run decodes them again"


def _why(state: str) -> str:
    return {
        READ_ONLY: "its folder is read-only",
        DISK_FULL: "the disk is full",
        LOW_DISK_SPACE: f"it would leave less than {HEADROOM_BYTES // 2**20} MiB free on the disk",
    }.get(state, state)


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
