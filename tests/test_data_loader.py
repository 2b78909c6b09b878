"""make_loader: batch format, fixed order and augmentation per (seed, epoch), maps."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from fixtures_data import install_fake_distance, needs_albumentations, tiny_data

from losscmp.data import load_dataset, make_loader
from losscmp.data.loader import BatchBuilder, LoaderWorkers
from losscmp.data.transforms import MEAN, STD, apply_dihedral
from losscmp.errors import ParameterError

# Each pipeline; albumentations' skipped, saying why, where the package is missing.
AUGMENTATIONS = ["dihedral", pytest.param("albumentations", marks=needs_albumentations)]


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic(n_train=40,n_val=10)", image_size=32, seed=0)


def collect(loader):
    return list(loader)


def unnormalise(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised float -> (H, W, 3) uint8."""
    array = image.permute(1, 2, 0).numpy() * (255 * STD) + 255 * MEAN
    return np.round(array).astype(np.uint8)


def test_binary_batch_format(synthetic):
    batch = next(iter(make_loader(synthetic, split="train", batch_size=8, seed=0, epoch=0)))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["target"].shape == (8, 1, 32, 32) and batch["target"].dtype == torch.float32
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (8,)
    assert set(batch["target"].unique().tolist()) <= {0.0, 1.0}
    assert abs(batch["image"].mean().item()) < 1.5


def test_images_normalised_on_the_device_match_the_host(synthetic):
    """An accelerator's loader sends uint8 images and ``batch_on_device`` normalises them
    there: the same values as the host's NumPy normalisation within float32 rounding, in
    the layout asked for; everything else in the batch is unchanged."""
    from losscmp.train import batch_on_device

    def first(normalise: bool):
        loader = make_loader(synthetic, split="train", batch_size=8, normalise=normalise)
        return next(iter(loader))

    host, raw = first(True), first(False)
    assert raw["image"].dtype == torch.uint8 and raw["image"].shape == (8, 32, 32, 3)
    assert torch.equal(raw["target"], host["target"])
    cpu = torch.device("cpu")
    for layout in (torch.channels_last, torch.contiguous_format):
        images, target, _ = batch_on_device(raw, cpu, layout)
        assert images.dtype == torch.float32 and images.shape == (8, 3, 32, 32)
        assert images.is_contiguous(memory_format=layout)
        assert (images - host["image"]).abs().max().item() <= 1e-6
        assert torch.equal(target, host["target"])


def test_multiclass_target_is_long_with_ignore_index():
    data = tiny_data(mode="multiclass", num_classes=3, ignore_index=255)
    batch = next(iter(make_loader(data, split="val", batch_size=4)))
    assert batch["target"].shape == (4, 32, 32) and batch["target"].dtype == torch.int64
    assert set(batch["target"].unique().tolist()) <= {0, 1, 2, 255}


def test_validation_is_in_order_and_unaugmented(synthetic):
    batches = collect(make_loader(synthetic, split="val", batch_size=4, seed=5, epoch=7))
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(10))
    assert np.array_equal(unnormalise(batches[0]["image"][1]), synthetic.val_images[1])
    assert np.array_equal(batches[0]["target"][1, 0].numpy(), synthetic.val_masks[1])


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch(synthetic):
    def order(seed, epoch):
        loader = make_loader(synthetic, split="train", batch_size=8, seed=seed, epoch=epoch)
        return torch.cat([b["index"] for b in loader]).tolist()

    assert sorted(order(0, 0)) == list(range(40))
    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(1, 1)


def test_trailing_single_sample_batch_is_dropped_when_training(synthetic):
    loader = make_loader(synthetic, split="train", batch_size=39)
    assert [len(b["index"]) for b in loader] == [39]
    assert len(loader) == 1
    assert [len(b["index"]) for b in make_loader(synthetic, split="val", batch_size=9)] == [9, 1]


def test_batch_size_one_trains_on_every_sample(synthetic):
    """The guard against a trailing lone sample left one sample out of every epoch at
    --batch-size 1, where every batch is one: 39 steps for 40 images."""
    loader = make_loader(synthetic, split="train", batch_size=1, seed=0, epoch=1)
    assert len(loader) == 40
    assert sorted(int(b["index"][0]) for b in loader) == list(range(40))


def turned(array: np.ndarray, op: int) -> np.ndarray:
    return apply_dihedral(array[None], np.array([op]), (1, 2))[0]


def test_dihedral_augmentation_turns_image_and_mask_together(synthetic):
    batch = next(iter(make_loader(synthetic, split="train", batch_size=40, seed=1, epoch=2)))
    changed = 0
    for row, index in enumerate(batch["index"].tolist()):
        image = unnormalise(batch["image"][row])
        mask = batch["target"][row, 0].numpy().astype(np.uint8)
        original = synthetic.train_images[index]
        ops = [op for op in range(8) if np.array_equal(turned(original, op), image)]
        assert ops, "augmented image is not a flip/turn of the original"
        assert np.array_equal(turned(synthetic.train_masks[index], ops[0]), mask)
        changed += ops[0] != 0
    assert changed > 20


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_workers_give_identical_batches(augmentation):
    data = tiny_data(count=24, augmentation=augmentation, ignore_index=255)

    def batches(workers):
        return collect(
            make_loader(data, split="train", batch_size=5, seed=3, epoch=1, num_workers=workers)
        )

    for single, parallel in zip(batches(0), batches(2), strict=True):
        for key in single:
            assert torch.equal(single[key], parallel[key]), key


@needs_albumentations
def test_albumentations_sample_does_not_depend_on_its_batch():
    data = tiny_data(count=12, augmentation="albumentations")

    def by_index(batch_size):
        out = {}
        for batch in make_loader(data, split="train", batch_size=batch_size, seed=2, epoch=4):
            for row, index in enumerate(batch["index"].tolist()):
                out[index] = (batch["image"][row], batch["target"][row])
        return out

    small, large = by_index(3), by_index(6)
    for index in small:
        assert torch.equal(small[index][0], large[index][0])
        assert torch.equal(small[index][1], large[index][1])


@needs_albumentations
def test_albumentations_changes_with_epoch_and_fills_ignore_outside():
    data = tiny_data(count=12, augmentation="albumentations", ignore_index=255)

    def first_batch(epoch):
        loader = make_loader(data, split="train", batch_size=12, epoch=epoch, shuffle=False)
        return next(iter(loader))

    first, second = first_batch(0), first_batch(1)
    assert not torch.equal(first["image"], second["image"])
    assert set(first["target"].unique().tolist()) <= {0.0, 1.0, 255.0}


def test_maps_are_cached_and_turned_with_the_mask(monkeypatch):
    calls = install_fake_distance(monkeypatch)
    data = tiny_data(count=10, augmentation="dihedral")
    from fixtures_data import fake_target_maps

    for epoch in range(3):
        loader = make_loader(
            data, split="train", batch_size=5, epoch=epoch, maps={"signed_distance"}
        )
        for batch in loader:
            assert batch["signed_distance"].shape == (5, 1, 32, 32)
            for row in range(5):
                mask = batch["target"][row, 0].numpy().astype(np.uint8)
                expected = fake_target_maps(
                    mask, mode="binary", num_classes=2, ignore_index=None, names=["signed_distance"]
                )["signed_distance"]
                assert np.allclose(batch["signed_distance"][row].numpy(), expected)
    assert len(calls) == 10  # once per training sample, not per epoch


@needs_albumentations
def test_maps_are_recomputed_after_albumentations(monkeypatch):
    calls = install_fake_distance(monkeypatch)
    data = tiny_data(count=6, mode="multiclass", num_classes=3)
    maps = {"signed_distance", "object_distance"}
    batch = next(iter(make_loader(data, split="train", batch_size=6, maps=maps)))
    assert batch["signed_distance"].shape == (6, 3, 32, 32)
    assert batch["object_distance"].shape == (6, 1, 32, 32)
    assert len(calls) == 6


def test_a_map_s_cache_size_counts_the_channels_its_entry_declares(monkeypatch):
    """The cache asks the catalogue how many channels a map holds (PER_CLASS_MAPS), not
    its name: declared per class, object_distance of 3 classes no longer fits."""
    from losscmp.data import loader
    from losscmp.losses import catalogue

    install_fake_distance(monkeypatch)
    data = tiny_data(count=6, mode="multiclass", num_classes=3)
    one_channel = data.masks("train").size * 4
    monkeypatch.setattr(loader, "MAP_CACHE_BYTES", one_channel)
    assert loader.split_maps(data, "train", "object_distance").shape == (6, 1, 32, 32)
    assert loader.split_maps(data, "train", "signed_distance") is None
    data.map_cache.clear()
    monkeypatch.setattr(catalogue, "PER_CLASS_MAPS", frozenset({"object_distance"}))
    assert loader.split_maps(data, "train", "object_distance") is None


def test_maps_with_the_real_distance_module(synthetic):
    pytest.importorskip("losscmp.losses.distance")
    batch = next(iter(make_loader(synthetic, split="val", batch_size=4, maps={"signed_distance"})))
    inside = batch["target"] == 1
    assert (batch["signed_distance"][inside] <= 0).all()
    assert (batch["signed_distance"][~inside] > 0).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"maps": {"distance"}}, "unknown target map 'distance'"),
        ({"batch_size": 0}, "batch size"),
        ({"num_workers": -1}, "num_workers"),
        ({"split": "tset"}, "unknown split 'tset'"),
    ],
)
def test_bad_loader_arguments(synthetic, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        make_loader(synthetic, **kwargs)


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_requesting_maps_does_not_change_the_batches(monkeypatch, augmentation):
    install_fake_distance(monkeypatch)
    data = tiny_data(count=10, augmentation=augmentation)

    def batches(maps):
        return collect(make_loader(data, split="train", batch_size=4, seed=1, epoch=2, maps=maps))

    for plain, with_maps in zip(batches(set()), batches({"signed_distance"}), strict=True):
        for key in ("image", "target", "index"):
            assert torch.equal(plain[key], with_maps[key]), key


def _loader_start_method(results) -> None:
    """In a spawned process (as a --jobs worker is): the start method of its loader workers."""
    import multiprocessing

    from losscmp.data import load_dataset, make_loader
    from losscmp.data.loader import LoaderWorkers

    data = load_dataset("synthetic(n_train=8,n_val=4)", image_size=16, seed=0)
    loader = make_loader(data, split="val", batch_size=4, num_workers=1)
    chosen = LoaderWorkers(data, 1).loader.multiprocessing_context  # None: the default
    method = chosen.get_start_method() if chosen else multiprocessing.get_start_method()
    results.put((method, sum(1 for _ in loader)))


def test_a_spawned_worker_forks_its_loader_processes_as_the_main_process_does():
    """A --jobs worker is spawned, which makes spawn its default start method: loader
    processes spawned from it imported torch again for every epoch and split (a 10 s smoke
    run took 40 s with -j 2 --num-workers 1). They use the platform's default instead."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    child = spawn.Process(target=_loader_start_method, args=(results,))
    child.start()
    method, batches = results.get(timeout=120)
    child.join(30)
    assert method == multiprocessing.get_all_start_methods()[0]
    assert batches == 1


# --- loader workers kept from one epoch and split to the next ---------------------------------


@pytest.fixture
def builder_process(monkeypatch):
    """Batches say which process built them and how many torch threads it had."""
    built = BatchBuilder.__call__

    def traced(self, indices):
        batch = built(self, indices)
        batch["pid"] = torch.tensor(os.getpid())
        batch["torch_threads"] = torch.tensor(torch.get_num_threads())
        return batch

    monkeypatch.setattr(BatchBuilder, "__call__", traced)  # forked workers inherit it
    yield
    LoaderWorkers.close_current()


def epochs_and_splits(data, workers, maps=frozenset(), epochs=3):
    """What a trial reads: each epoch's training batches, then the validation split."""
    read = []
    for epoch in range(1, epochs + 1):
        train = make_loader(data, batch_size=5, seed=3, epoch=epoch, num_workers=workers, maps=maps)
        read += collect(train)
        read += collect(make_loader(data, split="val", batch_size=5, num_workers=workers))
    return read


def assert_same_batches(expected, got):
    assert len(expected) == len(got)
    for one, other in zip(expected, got, strict=True):
        for key in ("image", "target", "index"):
            assert torch.equal(one[key], other[key]), key


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_loader_workers_are_forked_once_for_every_epoch_and_split(builder_process, augmentation):
    """Forking them for each loader cost about 0.2 s each time, twice an epoch."""
    data = tiny_data(count=24, augmentation=augmentation)
    parallel = epochs_and_splits(data, workers=2)
    assert_same_batches(epochs_and_splits(data, workers=0), parallel)
    assert len({int(batch["pid"]) for batch in parallel}) == 2
    assert {int(batch["torch_threads"]) for batch in parallel} == {1}


@needs_albumentations
def test_a_loader_left_half_way_does_not_disturb_the_next(builder_process):
    data = tiny_data(count=24)
    next(iter(make_loader(data, batch_size=5, seed=3, epoch=1, num_workers=2)))
    assert_same_batches(epochs_and_splits(data, workers=0), epochs_and_splits(data, workers=2))


@needs_albumentations
def test_two_loaders_read_at_once_both_get_their_batches(builder_process):
    data = tiny_data(count=24)
    train, val = (
        make_loader(data, split=s, batch_size=5, seed=3, epoch=1, num_workers=2)
        for s in ("train", "val")
    )
    pairs = list(zip(train, val, strict=False))  # val is read while train's workers are busy
    train0, val0 = (
        make_loader(data, split=s, batch_size=5, seed=3, epoch=1) for s in ("train", "val")
    )
    assert_same_batches([t for t, _ in pairs], collect(train0)[: len(pairs)])
    assert_same_batches([v for _, v in pairs], collect(val0)[: len(pairs)])


def test_maps_cached_after_the_fork_fork_the_workers_again(builder_process, monkeypatch):
    """Their forked copies of the data lack the new maps: forked again, they share them
    instead of each computing its own (and numbers stay the same)."""
    calls = install_fake_distance(monkeypatch)
    data = tiny_data(count=24, augmentation="dihedral")
    plain = collect(make_loader(data, batch_size=5, seed=3, epoch=1, num_workers=2))
    mapped = make_loader(
        data, batch_size=5, seed=3, epoch=1, num_workers=2, maps={"signed_distance"}
    )
    computed = len(calls)  # in this process, once per sample
    with_maps = collect(mapped)
    assert len(calls) == computed == 24
    assert_same_batches(plain, with_maps)
    assert not {int(b["pid"]) for b in plain} & {int(b["pid"]) for b in with_maps}
    expected = collect(make_loader(data, batch_size=5, seed=3, epoch=1, maps={"signed_distance"}))
    for one, other in zip(expected, with_maps, strict=True):
        assert torch.equal(one["signed_distance"], other["signed_distance"])


@needs_albumentations
def test_a_worker_error_is_raised_and_the_next_loader_forks_afresh(builder_process, monkeypatch):
    data = tiny_data(count=24)
    collect(make_loader(data, batch_size=5, seed=3, epoch=1, num_workers=2))
    broken = LoaderWorkers.current
    traced = BatchBuilder.__call__

    def failing(self, indices):
        if self.key[0] == "val":
            raise ValueError("broken batch")
        return traced(self, indices)

    monkeypatch.setattr(BatchBuilder, "__call__", failing)
    LoaderWorkers.close_current()  # fork again with the failing builder
    with pytest.raises(ValueError, match="broken batch"):
        collect(make_loader(data, split="val", batch_size=5, num_workers=2))
    assert LoaderWorkers.current is None and broken is not None
    monkeypatch.setattr(BatchBuilder, "__call__", traced)
    assert_same_batches(epochs_and_splits(data, 0, epochs=1), epochs_and_splits(data, 2, epochs=1))
