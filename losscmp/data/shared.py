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
"""

from __future__ import annotations

import dataclasses
import mmap
import os
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
        if not fits(sum(array.nbytes for array in present.values())):
            return None
        handles = {}
        for name, array in present.items():
            if array.nbytes == 0:  # a block cannot be empty; the skeleton keeps the array
                continue
            segment = shared_memory.SharedMemory(create=True, size=array.nbytes)
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
