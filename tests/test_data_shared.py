"""One shared copy of a dataset for the worker processes (``losscmp.data.shared``)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import encode, make_folder, tiny_data

from losscmp.config import RunConfig
from losscmp.data import load_dataset, shared
from losscmp.data.shared import SharedArrays, attach
from losscmp.executors.base import Execution
from losscmp.executors.local import LocalExecutor


def _fingerprint(handle) -> list:
    """Run in a spawned process: what the attached arrays hold and whether they are writable."""
    data = attach(handle)
    arrays = [data.train_images, data.train_masks, data.val_images, data.val_masks]
    return [
        (array.shape, array.dtype.str, int(array.sum()), array.flags.writeable) for array in arrays
    ]


def test_a_spawned_process_maps_the_same_arrays_read_only():
    data = tiny_data(count=12, size=16, ignore_index=255)
    blocks = SharedArrays()
    try:
        handle = blocks.publish(data)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seen = pool.apply(_fingerprint, (handle,))
    finally:
        blocks.close()
    expected = [
        (array.shape, array.dtype.str, int(array.sum()), False)
        for array in (data.train_images, data.train_masks, data.val_images, data.val_masks)
    ]
    assert seen == expected


def test_attached_data_is_the_dataset_and_closing_unlinks_every_block():
    data = tiny_data(count=9, size=16, mode="multiclass", num_classes=3)
    data.test_images, data.test_masks = data.val_images[:0], data.val_masks[:0]  # empty split
    data.map_cache[("train", "sdf")] = np.ones(3)  # a worker fills its own
    blocks = SharedArrays()
    handle = blocks.publish(data)
    copy = attach(handle)
    for name in shared.ARRAY_FIELDS:
        assert np.array_equal(getattr(copy, name), getattr(data, name)), name
    assert copy.train_images.flags.writeable is False
    with pytest.raises(ValueError, match="read-only"):
        copy.train_masks[0, 0, 0] = 1
    assert (copy.mode, copy.class_names, copy.spec) == (data.mode, data.class_names, data.spec)
    assert copy.map_cache == {} and copy.reported_split == "val"
    names = [where.segment for where in handle.arrays.values()]
    assert len(names) == 4  # the empty test split needs no block
    blocks.close()
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_without_room_in_dev_shm_workers_load_their_own_copy(monkeypatch):
    data = tiny_data(count=6, size=16)
    monkeypatch.setattr(shared, "HEADROOM_BYTES", 1 << 60)  # a full /dev/shm
    executor = LocalExecutor(RunConfig())
    try:
        executor.start(Execution(jobs=2), torch.device("cpu"))  # spawns two idle workers
        kept = executor.share({"tiny": data})
    finally:
        executor.close()
    assert kept["tiny"] is data and executor.shared == {}


def test_in_process_jobs_share_nothing():
    data = tiny_data(count=6, size=16)
    executor = LocalExecutor(RunConfig())
    executor.start(Execution(jobs=1), torch.device("cpu"))
    assert executor.share({"tiny": data})["tiny"] is data
    assert executor.shared == {} and executor.shared_arrays._segments == []


def _killed_with_its_tracker() -> list[str]:
    """Blocks a process published before its whole process group was SIGKILLed (its
    resource tracker too): nothing unlinked them."""
    script = (
        "import sys, time\n"
        "from fixtures_data import tiny_data\n"
        "from losscmp.data.shared import SharedArrays\n"
        "handle = SharedArrays().publish(tiny_data(count=6, size=16))\n"
        "print(' '.join(where.segment for where in handle.arrays.values()), flush=True)\n"
        "time.sleep(60)\n"
    )
    tests = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.path.dirname(tests)])}
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own group, as a shell job or a batch job is
    )
    names = process.stdout.readline().split()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    return names


@pytest.mark.skipif(not Path("/proc/self/ns/pid").exists(), reason="no /proc: nothing is swept")
def test_blocks_of_a_run_killed_with_its_process_group_are_unlinked_by_the_next():
    """kill -9 -- -PGID took the resource tracker along: the blocks stayed in /dev/shm
    (memory) for good; the next run that shares a dataset removes them."""
    left = []
    try:
        left += _killed_with_its_tracker()
        assert len(left) == 4
        assert all((shared.SHARED_MEMORY_DIR / name).exists() for name in left)  # leaked
        executor = LocalExecutor(RunConfig())  # a resume with one trial left: no workers
        executor.start(Execution(jobs=1), torch.device("cpu"))
        with executor:
            executor.share({"tiny": tiny_data(count=6, size=16)})
        assert not any((shared.SHARED_MEMORY_DIR / name).exists() for name in left)
        left += _killed_with_its_tracker()  # and a run with workers
        blocks = SharedArrays()
        try:
            handle = blocks.publish(tiny_data(count=6, size=16))
            assert not any((shared.SHARED_MEMORY_DIR / name).exists() for name in left)
            mine = [where.segment for where in handle.arrays.values()]
            assert all((shared.SHARED_MEMORY_DIR / name).exists() for name in mine)
        finally:
            blocks.close()
    finally:  # a failure here must not leave the killed process's blocks in memory
        for name in left:
            with contextlib.suppress(OSError):
                (shared.SHARED_MEMORY_DIR / name).unlink()


def test_the_sweep_spares_live_owners_other_namespaces_and_other_files(tmp_path):
    if not Path("/proc/self/ns/pid").exists():
        pytest.skip("no /proc: nothing is swept")
    tag = shared._namespace_tag()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(finished.stdout)
    parent = os.getppid()  # alive, and started before the files below
    files = {
        "dead": f"losscmp_{tag}_{dead}_0123abcd",
        "mine": f"losscmp_{tag}_{os.getpid()}_0123abcd",
        "parent": f"losscmp_{tag}_{parent}_0123abcd",
        "other namespace": f"losscmp_{'f' * 8 if tag != 'f' * 8 else '0' * 8}_{dead}_0123abcd",
        "python's": "psm_0123abcd",
        "another program's": "losscmp_notours",
    }
    for name in files.values():
        (tmp_path / name).write_bytes(b"x")
    reused = f"losscmp_{tag}_{parent}_89abcdef"  # made long before its pid's process started
    (tmp_path / reused).write_bytes(b"x")
    os.utime(tmp_path / reused, (1e9, 1e9))
    assert sorted(shared.sweep_abandoned(tmp_path)) == sorted([files["dead"], reused])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        name for key, name in files.items() if key != "dead"
    )


def _share_then_edit_a_mask(monkeypatch, root: Path) -> None:
    """Once the main process has loaded the data and shared what it could (so before any
    worker loads its own copy), one mask file is rewritten with another object."""
    real_share = LocalExecutor.share

    def share_then_edit(self, datasets):
        kept = real_share(self, datasets)
        mask = np.zeros((40, 56), np.uint8)
        mask[5:25, 30:50] = 255
        (root / "masks" / "case_000.png").write_bytes(encode(mask, "PNG"))
        return kept

    monkeypatch.setattr(LocalExecutor, "share", share_then_edit)


@pytest.mark.parametrize(
    "edited",
    [
        pytest.param(False, id="same-files", marks=pytest.mark.slow),  # trains: 20 s
        pytest.param(True, id="edited-meanwhile"),  # trains nothing: 12 s, workers spawned
    ],
)
def test_a_worker_loading_its_own_copy_trains_only_on_the_main_process_data(
    cli, tmp_path, monkeypatch, edited
):
    """Without room in /dev/shm each worker loads the dataset itself: files edited after
    the main process loaded them (or another copy on a Ray node) had some trials train on
    other data, without a word. A worker now compares its copy's fingerprint with the main
    process's: the same files train as before; edited ones fail each trial at once (no
    retry: it would read the same files), naming the data, the host and both digests."""
    root = tmp_path / "data"
    make_folder(root, count=12)
    monkeypatch.setattr(shared, "HEADROOM_BYTES", 1 << 60)  # a full /dev/shm: own copies
    if edited:
        _share_then_edit_a_mask(monkeypatch, root)
    out = tmp_path / "runs"
    flags = ["--losses", "dice,bce", "--epochs", "1", "--model", "tiny", "--device", "cpu"]
    result = cli(
        "run", "--dataset", f"folder:{root}", *flags, "--threads", "1", "-j", "2", "--out", out
    )

    (run_dir,) = out.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    if not edited:
        assert result.exit_code == 0, result.output
        assert "failed_trials" not in meta or not meta["failed_trials"]
        return
    assert result.exit_code == 1, result.output
    ((label, stored),) = meta["datasets"].items()
    theirs = load_dataset(label, image_size=64).fingerprint()  # the edited files'
    assert theirs != stored["fingerprint"]
    expected = (
        f"the data at {root} on {socket.gethostname()} differs from the driver's (fingerprint "
        f"{theirs}, not {stored['fingerprint']}: files edited, added or removed since the run "
        "loaded them, or another copy); not trained"
    )
    assert list(meta["failed_trials"].values()) == [expected, expected]
    assert "retry:" not in result.stderr


def test_a_workers_own_copy_is_checked_once_and_a_differing_one_refused_for_every_job(
    monkeypatch,
):
    """What a worker loads itself must have the main process's fingerprint; one that does
    not is refused, and so is every later job of that data in the process, without loading
    it again (Pets: 8 s a load). Generated data says what could make it differ."""
    from losscmp import data as data_package
    from losscmp import worker
    from losscmp.executors.base import JobContext
    from losscmp.spec import as_spec

    monkeypatch.setattr(worker, "_DATASETS", {})
    monkeypatch.setattr(worker, "_REFUSED", {})
    loads = []
    real_load = data_package.load_dataset

    def counted_load(*args, **kwargs):
        loads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(data_package, "load_dataset", counted_load)
    label = "synthetic(fg_fraction=0.1,n_train=8,n_val=4,n_test=4)"
    config = RunConfig(dataset=label, image_size=32)
    right = real_load(label, image_size=32).fingerprint()

    def context(fingerprint: str) -> JobContext:
        return JobContext(config, {}, {label: as_spec(label)}, None, 1, {label: fingerprint})

    with pytest.raises(shared.DataDiffers) as refused:
        worker.job_dataset(label, context("0" * 16))
    assert str(refused.value) == (
        f"the data of {label} generated on {socket.gethostname()} differs from the driver's "
        f"(fingerprint {right}, not 0000000000000000: another numpy or losscmp here?); "
        "not trained"
    )
    with pytest.raises(shared.DataDiffers, match="not 0000000000000000"):
        worker.job_dataset(label, context("0" * 16))  # the next job: not loaded again
    assert len(loads) == 1

    monkeypatch.setattr(worker, "_REFUSED", {})  # a fresh worker, its copy as the main's
    assert worker.job_dataset(label, context(right)).fingerprint() == right
    assert worker.job_dataset(label, context(right)) is worker.job_dataset(label, context(right))
    assert len(loads) == 2
