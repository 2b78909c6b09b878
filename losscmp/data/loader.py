"""Batches from a SegmentationData: fixed order and augmentation per (seed, epoch).

A batch is built by one function from a list of sample positions, in the main
process (num_workers=0, vectorised over the batch) or in worker processes (each
worker builds whole batches); the result is the same either way because all
randomness comes from (seed, epoch, sample).

Distance maps: for un-augmented or dihedrally augmented samples the maps are
computed once per sample and cached on the data object (a flip or quarter turn
of a mask turns its distance maps the same way, exactly); after the full
albumentations pipeline (sub-pixel rotation and scaling) they are recomputed
from the augmented mask, in the workers.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from losscmp.data import transforms
from losscmp.data.base import SegmentationData
from losscmp.errors import ParameterError
from losscmp.losses.catalogue import TARGET_MAPS, map_channels

KNOWN_MAPS = frozenset(TARGET_MAPS)
MAP_CACHE_BYTES = 512 * 1024**2  # beyond this, maps are computed per batch instead
_SHUFFLE_STREAM = 0x5EED
WORKER_TIMEOUT_S = 300


class SegmentationLoader:
    """An iterable of batch dicts; ``len()`` is the number of batches."""

    def __init__(
        self,
        builder: BatchBuilder,
        batches: list[np.ndarray],
        num_workers: int,
        normalise: bool = True,
    ):
        self.builder = builder
        self.batches = batches
        self.num_workers = num_workers
        self.finish = finish if normalise else _as_built

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.num_workers == 0:
            return (self.finish(self.builder(indices)) for indices in self.batches)
        return (self.finish(batch) for batch in self._from_workers())

    def _from_workers(self) -> Iterator[dict[str, Any]]:
        workers = LoaderWorkers.for_builder(self.builder, self.num_workers)
        if workers is None:  # the process's workers are busy with another loader
            yield from _worker_loader(_BatchList(self.builder, self.batches), self.num_workers)
            return
        yield from workers.batches(self.builder.key, self.batches)


class LoaderWorkers:
    """Loader processes forked once and kept, for every epoch and split that follows.

    Forking them again for every loader cost about 0.2 s each time (torch's DataLoader
    starting and joining its processes), twice an epoch: more than a small epoch's batches
    themselves (benchmarks/README.md). They build a batch from its builder's key and
    positions, so they follow a new epoch without a new fork; a builder needs nothing they
    lack unless its target maps were cached after the fork (a loss that needs other maps):
    then they are forked again, so as to share those pages instead of each computing its own.
    One set per process, which trains one trial at a time (a loader read while they serve
    another, e.g. in a Ray worker's other thread, forks processes of its own, as before).
    """

    current: LoaderWorkers | None = None
    _claim = threading.RLock()  # a Ray worker may train in several threads

    def __init__(self, data: SegmentationData, num_workers: int):
        self.data = data
        self.num_workers = num_workers
        self.cached_maps = frozenset(data.map_cache)  # what the forked copies hold
        self.tasks = _Tasks()
        self.loader = _worker_loader(_BuiltFromKey(data), num_workers, self.tasks)
        self.busy = False

    @classmethod
    def for_builder(cls, builder: BatchBuilder, num_workers: int) -> LoaderWorkers | None:
        """The process's workers, claimed (busy) for the caller's ``batches``, forked again
        when they cannot build for ``builder``; None while they serve another loader (one
        iterated half-way, or in another thread)."""
        with cls._claim:
            workers = cls.current
            if workers is not None and workers.busy:
                return None
            if workers is None or not workers.serves(builder, num_workers):
                cls.close_current()
                workers = cls.current = cls(builder.data, num_workers)
            workers.busy = True
            return workers

    @classmethod
    def close_current(cls) -> None:
        with cls._claim:
            workers, cls.current = cls.current, None
        if workers is not None:
            workers.loader = None  # its iterator's finaliser stops the processes

    def serves(self, builder: BatchBuilder, num_workers: int) -> bool:
        return (
            self.data is builder.data
            and self.num_workers == num_workers
            and set(builder.cached_map_keys) <= self.cached_maps
        )

    def batches(self, key: BuilderKey, batches: list[np.ndarray]) -> Iterator[dict[str, Any]]:
        self.tasks.items = [(key, indices) for indices in batches]
        try:
            yield from self.loader
        except GeneratorExit:  # left half-way: the next iteration drains what is under way
            raise
        except BaseException:  # a worker's error, a timeout: its iterator is spent, fork anew
            type(self).close_current()
            raise
        finally:
            self.busy = False


def _worker_loader(dataset: Any, num_workers: int, sampler: Any = None) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=None,  # items are whole batches already
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=sampler is not None,
        worker_init_fn=_one_thread_per_worker,
        timeout=WORKER_TIMEOUT_S,  # a stuck worker raises instead of hanging the run
        # The platform's default (fork on Linux), also inside a --jobs worker: that one
        # was spawned, which makes spawn its default, and a spawned loader process
        # imports torch again (about 2 s).
        multiprocessing_context=multiprocessing.get_all_start_methods()[0],
    )


class _Tasks:
    """The sampler of kept workers: this iteration's (builder key, positions), set before."""

    def __init__(self) -> None:
        self.items: list[tuple[BuilderKey, np.ndarray]] = []

    def __iter__(self) -> Iterator[tuple[BuilderKey, np.ndarray]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class _BuiltFromKey:
    """Map-style dataset of kept workers: an item is (builder key, positions)."""

    def __init__(self, data: SegmentationData):
        self.data = data
        self.builder: BatchBuilder | None = None

    def __getitem__(self, task: tuple[BuilderKey, np.ndarray]) -> dict[str, Any]:
        key, indices = task
        if self.builder is None or self.builder.key != key:  # a new epoch or split
            split, maps, augment, seed, epoch = key
            self.builder = BatchBuilder(
                self.data, split, maps=maps, augment=augment, seed=seed, epoch=epoch
            )
        return self.builder(indices)


class _BatchList:
    """Map-style dataset whose items are whole batches (for torch's DataLoader)."""

    def __init__(self, builder: BatchBuilder, batches: list[np.ndarray]):
        self.builder = builder
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int) -> dict[str, Any]:
        return self.builder(self.batches[position])


def _one_thread_per_worker(_: int) -> None:
    import torch

    # The workers already fill the cores; threads inside each would only contend.
    # (OpenCV's pool is left alone: reconfiguring it in a forked child can hang.)
    torch.set_num_threads(1)


BuilderKey = tuple[str, frozenset[str], bool, int, int]  # split, maps, augment, seed, epoch


class BatchBuilder:
    """Turns sample positions of one split into a batch dict of tensors (image still uint8)."""

    def __init__(
        self,
        data: SegmentationData,
        split: str,
        *,
        maps: frozenset[str],
        augment: bool,
        seed: int,
        epoch: int,
    ):
        self.data = data
        self.key: BuilderKey = (split, frozenset(maps), augment, seed, epoch)
        self.images = data.images(split)
        self.masks = data.masks(split)
        self.map_names = sorted(maps)
        self.seed, self.epoch = seed, epoch
        self.dihedral = augment and data.augmentation == "dihedral"
        self.pipeline = None
        if augment and not self.dihedral:
            fill = data.ignore_index if data.ignore_index is not None else 0
            self.pipeline = transforms.train_pipeline(fill)
        # Drawn for the whole split at once: sample i's turn depends on (seed, epoch, i) only.
        self.ops = transforms.dihedral_ops(seed, epoch, len(self.masks)) if self.dihedral else None
        self.cached_maps = {}
        if self.pipeline is None:
            self.cached_maps = {name: split_maps(data, split, name) for name in self.map_names}

    @property
    def cached_map_keys(self) -> list[tuple[str, str]]:
        """The ``data.map_cache`` entries this builder reads."""
        split = self.key[0]
        return [(split, name) for name, maps in self.cached_maps.items() if maps is not None]

    def __call__(self, indices: np.ndarray) -> dict[str, Any]:
        import torch

        images, masks = self.images[indices], self.masks[indices]
        maps = {
            name: cached[indices] for name, cached in self.cached_maps.items() if cached is not None
        }
        if self.dihedral:
            ops = self.ops[indices]
            images = transforms.apply_dihedral(images, ops, axes=(1, 2))
            masks = transforms.apply_dihedral(masks, ops, axes=(1, 2))
            maps = {
                name: transforms.apply_dihedral(m, ops, axes=(2, 3)) for name, m in maps.items()
            }
        elif self.pipeline is not None:
            images, masks = self._augment_each(images, masks, indices)
        missing = [name for name in self.map_names if name not in maps]
        maps.update(compute_maps(self.data, masks, missing))
        batch = {
            "image": torch.from_numpy(np.ascontiguousarray(images)),  # uint8 until finish()
            "target": target_tensor(self.data, masks),
            "index": torch.from_numpy(indices.astype(np.int64)),
        }
        batch.update({name: torch.from_numpy(np.ascontiguousarray(m)) for name, m in maps.items()})
        return batch

    def _augment_each(
        self, images: np.ndarray, masks: np.ndarray, indices: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        out_images, out_masks = np.empty_like(images), np.empty_like(masks)
        for row, index in enumerate(indices):
            seed = transforms.sample_seed(self.seed, self.epoch, int(index))
            out_images[row], out_masks[row] = transforms.augment_sample(
                self.pipeline, images[row], masks[row], seed
            )
        return out_images, out_masks


def finish(batch: dict[str, Any]) -> dict[str, Any]:
    """Normalise the uint8 images, in the main process: workers send uint8 batches,
    a quarter of the bytes of float32, which is most of their cost on a small CPU."""
    batch["image"] = transforms.normalise(batch["image"].numpy())
    return batch


def _as_built(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def target_tensor(data: SegmentationData, masks: np.ndarray) -> Any:
    """Binary: float (B, 1, H, W) in {0, 1} or 255; multiclass: long (B, H, W)."""
    import torch

    if data.mode == "binary":
        return torch.from_numpy(masks[:, None].astype(np.float32))
    return torch.from_numpy(masks.astype(np.int64))


def compute_maps(
    data: SegmentationData, masks: np.ndarray, names: Iterable[str]
) -> dict[str, np.ndarray]:
    """Distance maps for a stack of masks, (B, K, H, W) float32 per name."""
    names = list(names)
    if not names:
        return {}
    from losscmp.losses.distance import target_maps

    per_sample = [
        target_maps(
            mask,
            mode=data.mode,
            num_classes=data.num_classes,
            ignore_index=data.ignore_index,
            names=names,
        )
        for mask in masks
    ]
    return {
        name: np.stack([maps[name] for maps in per_sample]).astype(np.float32) for name in names
    }


def split_maps(data: SegmentationData, split: str, name: str) -> np.ndarray | None:
    """All of a split's maps for ``name``, cached on ``data``; None when too big to keep."""
    key = (split, name)
    if key not in data.map_cache:
        masks = data.masks(split)
        channels = map_channels(name, data.out_channels)
        if masks.size * channels * 4 > MAP_CACHE_BYTES:
            return None
        data.map_cache[key] = compute_maps(data, masks, [name])[name]
    return data.map_cache[key]


def batch_positions(
    count: int, batch_size: int, *, shuffle: bool, drop_single: bool, seed: int, epoch: int
) -> list[np.ndarray]:
    """Sample positions per batch: a (seed, epoch)-fixed permutation when shuffling.

    A trailing batch of one sample is dropped when training, as a guard: BatchNorm
    in training mode fails when a channel has a single value to normalise, which
    happens for one sample whose feature map is 1x1 (e.g. after a deep encoder);
    a lone sample also gives a noisy gradient step and batch statistics. Not at batch
    size 1, where every batch is a lone sample: dropping the last one only left a
    sample out of every epoch.
    """
    if shuffle:
        order = np.random.default_rng([seed, epoch, _SHUFFLE_STREAM, 1]).permutation(count)
    else:
        order = np.arange(count)
    batches = [order[start : start + batch_size] for start in range(0, count, batch_size)]
    if drop_single and batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def make_loader(
    data: SegmentationData,
    *,
    split: str = "train",
    batch_size: int = 16,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    maps: frozenset[str] | Iterable[str] = frozenset(),
    augment: bool | None = None,
    shuffle: bool | None = None,
    normalise: bool = True,
) -> SegmentationLoader:
    """Batches of one split; ``augment`` and ``shuffle`` default to on for train only.

    ``normalise=False`` leaves the images uint8 (B, H, W, 3), a quarter of the bytes, for
    ``transforms.normalise_tensor`` on the device they are sent to."""
    maps = frozenset(maps)
    unknown_maps = sorted(maps - KNOWN_MAPS)
    if unknown_maps:
        raise ParameterError(
            f"unknown target map '{unknown_maps[0]}'; choose from: {', '.join(sorted(KNOWN_MAPS))}"
        )
    if batch_size < 1:
        raise ParameterError(f"batch size must be at least 1, not {batch_size}")
    if num_workers < 0:
        raise ParameterError(f"num_workers must be 0 or more, not {num_workers}")
    training = split == "train"
    builder = BatchBuilder(
        data,
        split,
        maps=maps,
        augment=training if augment is None else augment,
        seed=seed,
        epoch=epoch,
    )
    batches = batch_positions(
        data.size(split),
        batch_size,
        shuffle=training if shuffle is None else shuffle,
        drop_single=training,
        seed=seed,
        epoch=epoch,
    )
    return SegmentationLoader(builder, batches, num_workers, normalise)
