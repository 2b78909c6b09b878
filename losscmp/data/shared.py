"""One copy of a loaded dataset for every worker process on this machine.

The main process loads each dataset before a run starts (to check it). With
``--jobs N`` every worker used to load it again: N more copies in memory and
N more decodes (a cached Pets split at 256 px is ~1.9 GB and ~8 s per
process). Instead the arrays are copied once into POSIX shared memory and the
workers get small picklable handles; a worker maps the same pages, read-only.
The bytes are those the main process loaded, so no number can change.

The main process owns the segments (``SharedArrays``) and unlinks them when
the run ends; a mapping stays valid until its process unmaps it, so a worker
never sees its data vanish. A machine whose shared-memory filesystem lacks
room (Docker's default /dev/shm is 64 MB, and writing past it is a SIGBUS,
not an error) keeps the old way: each worker loads its own copy.

A SIGKILL of the whole process group (``kill -9 -- -PGID``, a scheduler ending a job)
takes Python's resource tracker with the main process, and nothing unlinks the blocks:
a Pets-sized dataset would stay in /dev/shm (memory) until a reboot. So on Linux the
blocks are named after their owner (``losscmp_<pid namespace>_<pid>_<random>``) and the
next run that shares a dataset unlinks those whose owner is gone (:func:`sweep_abandoned`).

A worker that loads its own copy reads the files again, maybe after they were edited
(or, on another machine, from another copy of them): :func:`check_own_copy` compares
that copy's fingerprint with the main process's, and refuses to train on another.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import re
import secrets
import socket
import sys
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from losscmp.data.base import SegmentationData

ARRAY_FIELDS = (
    "train_images",
    "train_masks",
    "val_images",
    "val_masks",
    "test_images",
    "test_masks",
)
SHARED_MEMORY_DIR = Path("/dev/shm")
# Left free in the shared-memory filesystem: other programs (data loader workers, NCCL) use it.
HEADROOM_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SharedArray:
    segment: str  # the shared-memory block's name
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class SharedDataset:
    """A dataset without its arrays (``skeleton``) and where each array lies; picklable.
    Like every handle an executor sends its workers, ``load()`` gives the dataset."""

    skeleton: SegmentationData
    arrays: dict[str, SharedArray]

    def load(self) -> SegmentationData:
        return attach(self)


class SharedArrays:
    """The segments this process created; ``close`` unlinks them."""

    def __init__(self) -> None:
        self._segments: list[shared_memory.SharedMemory] = []

    def publish(self, data: SegmentationData) -> SharedDataset | None:
        """Copy ``data``'s arrays into shared memory; None when there is no room for them."""
        if os.name != "posix":  # attach maps a POSIX shared-memory file descriptor
            return None
        arrays = {name: getattr(data, name) for name in ARRAY_FIELDS}
        present = {name: array for name, array in arrays.items() if array is not None}
        sweep_abandoned()  # before measuring the room: a killed run's blocks take it
        if not fits(sum(array.nbytes for array in present.values())):
            return None
        handles = {}
        for name, array in present.items():
            if array.nbytes == 0:  # a block cannot be empty; the skeleton keeps the array
                continue
            segment = shared_memory.SharedMemory(create=True, size=array.nbytes, name=_owned_name())
            self._segments.append(segment)
            np.ndarray(array.shape, array.dtype, buffer=segment.buf)[...] = array
            handles[name] = SharedArray(segment.name, tuple(array.shape), array.dtype.str)
        skeleton = dataclasses.replace(data, **dict.fromkeys(handles), map_cache={})
        return SharedDataset(skeleton, handles)

    def close(self) -> None:
        for segment in self._segments:
            segment.close()
            segment.unlink()
        self._segments = []


class DataDiffers(Exception):
    """A worker's own copy of a dataset is not the data the main process loaded. Not
    worth a retry: the worker would read the same files again."""


def check_own_copy(data: SegmentationData, expected: str | None) -> None:
    """Refuse ``data``, loaded by this worker itself, unless its fingerprint (a digest of
    every split's names, images and masks, the mode, classes and ignore label) is
    ``expected``, the main process's (None: the main process gave none, nothing to check).
    About 1 s per GB of images, once per worker: only where a worker loads its own copy."""
    if expected is None or data.fingerprint() == expected:
        return
    source, host = data.info.get("source"), socket.gethostname()
    if source in (None, "generated"):  # synthetic: made from its spec and seed alone
        where, why = f"of {data.spec} generated on {host}", "another numpy or losscmp here?"
    else:
        where = f"at {source} on {host}"
        why = "files edited, added or removed since the run loaded them, or another copy"
    raise DataDiffers(
        f"the data {where} differs from the driver's (fingerprint {data.fingerprint()}, "
        f"not {expected}: {why}); not trained"
    )


def attach(shared: SharedDataset) -> SegmentationData:
    """The dataset, its arrays read-only views of the shared blocks."""
    views = {
        name: np.ndarray(where.shape, np.dtype(where.dtype), buffer=_map(where))
        for name, where in shared.arrays.items()
    }
    return dataclasses.replace(shared.skeleton, **views, map_cache={})


def _map(where: SharedArray) -> mmap.mmap:
    """A read-only mapping of the block of its own, unmapped with the last array over it
    (the block's name may be unlinked long before: the pages stay until then)."""
    nbytes = int(np.prod(where.shape)) * np.dtype(where.dtype).itemsize
    if sys.version_info >= (3, 13):  # the owner unlinks it: this process must not track it
        segment = shared_memory.SharedMemory(name=where.segment, track=False)
    else:
        # Before 3.13 attaching registers the block with the resource tracker. Spawned
        # workers share the main process's tracker, which the owner's unlink unregisters.
        segment = shared_memory.SharedMemory(name=where.segment)
    try:
        return mmap.mmap(segment._fd, nbytes, access=mmap.ACCESS_READ)
    finally:
        segment.close()


def fits(nbytes: int) -> bool:
    """Whether the shared-memory filesystem has room for ``nbytes`` more (unknown: yes)."""
    try:
        stats = os.statvfs(SHARED_MEMORY_DIR)
    except OSError:  # no /dev/shm (macOS): shm_open has no filesystem to fill
        return True
    return nbytes + HEADROOM_BYTES <= stats.f_bavail * stats.f_frsize


# Blocks this module creates on Linux: the owner's pid namespace, its pid, a random part.
# Elsewhere (no /proc to tell a live owner from a dead one; macOS allows 31 characters)
# Python's own names are kept, and nothing is swept.
OWNED_NAME = re.compile(r"losscmp_([0-9a-f]{8})_(\d+)_[0-9a-f]{8}")
PID_NAMESPACE = Path("/proc/self/ns/pid")


def _namespace_tag() -> str | None:
    """This process's pid namespace, as 8 hex digits (pids mean nothing across namespaces:
    a container sharing the host's /dev/shm must not take a host process's pid for its
    own); None where there is no /proc to ask."""
    try:
        return f"{os.stat(PID_NAMESPACE).st_ino & 0xFFFFFFFF:08x}"
    except OSError:
        return None


def _owned_name() -> str | None:
    tag = _namespace_tag()
    return None if tag is None else f"losscmp_{tag}_{os.getpid()}_{secrets.token_hex(4)}"


def sweep_abandoned(folder: Path | None = None) -> list[str]:
    """Unlink the blocks of this module whose owner (a main process of this pid namespace)
    is gone, killed with its resource tracker; the names unlinked. A block whose owner's
    pid now belongs to a process started after the block was made is abandoned too."""
    folder = SHARED_MEMORY_DIR if folder is None else folder
    tag = _namespace_tag()
    if tag is None:
        return []
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return []
    removed = []
    for name in names:
        owner = OWNED_NAME.fullmatch(name)
        if owner is None or owner[1] != tag or int(owner[2]) == os.getpid():
            continue
        path = folder / name
        try:
            made = path.stat().st_mtime
            if _alive_since(int(owner[2]), made):
                continue
            path.unlink()
        except OSError:
            continue  # unlinked meanwhile, or not ours to unlink
        removed.append(name)
    return removed


def _alive_since(pid: int, made: float) -> bool:
    """Whether process ``pid`` lives and was started before ``made`` (a timestamp): then it
    may be the block's owner; a pid reused since the owner died belongs to a later process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return _exists(pid)
    if stat[0] == "Z":  # a zombie: exited, only waiting for its parent to reap it
        return False
    started = boot + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    return started <= made + 1.0  # btime and the clock ticks are whole-second coarse


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
