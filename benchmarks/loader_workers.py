"""--num-workers: loader processes kept for a trial's epochs and splits, or forked per loader.

    PYTHONPATH=. .venv/bin/python benchmarks/loader_workers.py            # 48 images, 64 px
    PYTHONPATH=. .venv/bin/python benchmarks/loader_workers.py --epochs 5 --rounds 7

Builds a folder dataset (albumentations on) in a temporary folder, then reads what a
trial reads, each epoch's training batches and the validation split, three ways, in
turn within each round (medians over the rounds): in this process (0 workers), with
loader processes forked for every loader (as up to 2026-12-07: twice an epoch), and with
the processes kept (make_loader now). Then the torch and OpenCV threads a loader
process has. Torch runs 1 thread (``--threads 1``) in this process, as a trial does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fixture builders


def read_epochs(data, epochs: int, batch_size: int, workers: int, forked_each_time: bool):
    from losscmp.data import make_loader
    from losscmp.data.loader import _BatchList, _worker_loader

    for epoch in range(1, epochs + 1):
        for split in ("train", "val"):
            loader = make_loader(
                data, split=split, batch_size=batch_size, seed=0, epoch=epoch, num_workers=workers
            )
            if forked_each_time:  # the earlier path: a DataLoader of its own per loader
                batches = _worker_loader(_BatchList(loader.builder, loader.batches), workers)
                for batch in batches:
                    loader.finish(batch)
            else:
                for _ in loader:
                    pass


def _threads_here(_: object) -> dict[str, int]:
    import cv2
    import torch

    return {
        "torch threads": torch.get_num_threads(),
        "OpenCV threads": cv2.getNumThreads(),
        "OS threads": len(os.listdir("/proc/self/task")),
    }


def loader_process_threads(data) -> dict[str, int]:
    """Read in a loader process, after it has built an augmented batch."""
    from losscmp.data import make_loader
    from losscmp.data.loader import BatchBuilder, LoaderWorkers

    LoaderWorkers.close_current()  # forked again below, with the patched builder
    built = BatchBuilder.__call__
    try:
        BatchBuilder.__call__ = lambda self, indices: {**built(self, indices), **_threads_here(0)}
        (batch, *_) = make_loader(data, batch_size=4, num_workers=1)
    finally:
        BatchBuilder.__call__ = built
    return {name: int(batch[name]) for name in ("torch threads", "OpenCV threads", "OS threads")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()

    import torch
    from fixtures_data import make_folder

    from losscmp.data import load_dataset
    from losscmp.data.loader import LoaderWorkers

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        make_folder(Path(folder), count=arguments.images, shape=(96, 128))
        data = load_dataset(f"folder:{folder}", image_size=arguments.size)
    ways = {
        "0 workers (this process)": (0, False),
        f"{arguments.workers} workers forked per loader": (arguments.workers, True),
        f"{arguments.workers} workers kept": (arguments.workers, False),
    }
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(arguments.rounds):
        for way, (workers, forked_each_time) in ways.items():
            LoaderWorkers.close_current()  # each round's kept workers start from a fork too
            start = time.perf_counter()
            read_epochs(data, arguments.epochs, arguments.batch_size, workers, forked_each_time)
            seconds[way].append(time.perf_counter() - start)
    print(
        f"{data.size('train')} train + {data.size('val')} val images at {arguments.size} px, "
        f"batch {arguments.batch_size}, {arguments.epochs} epochs (train + val each), "
        f"median of {arguments.rounds} rounds"
    )
    width = max(len(way) for way in ways)
    for way, times in seconds.items():
        print(f"  {way:<{width}}  {statistics.median(times):6.2f} s")
    print("in a loader process:", loader_process_threads(data))


if __name__ == "__main__":
    main()
