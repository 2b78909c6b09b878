"""How fast the input pipeline delivers images, next to how fast the model eats them.

    PYTHONPATH=. .venv/bin/python benchmarks/loader.py                 # 300 images, 256 px
    PYTHONPATH=. .venv/bin/python benchmarks/loader.py --images 1000 --workers 0 2 4

Builds a pets-layout tree of photo-sized JPEGs (500x375, like Oxford-IIIT Pet)
in a temporary folder, then measures images/second for:
  - cold load: decode + resize every JPEG and write the cache (first run ever);
  - cached load: read the .npz cache back (every later run);
  - one training epoch through make_loader (albumentations on), per worker count;
  - one validation epoch (no augmentation), per worker count;
  - first epoch from cold = cold load + one training epoch;
  - the synthetic set's vectorised path at 64 px, for comparison;
  - the CPU model (``tiny`` preset) doing forward + backward at the same size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fixture builders


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def epoch_seconds(data, split: str, workers: int, batch_size: int, augment: bool) -> float:
    from losscmp.data import make_loader

    loader = make_loader(
        data,
        split=split,
        batch_size=batch_size,
        seed=0,
        epoch=1,
        num_workers=workers,
        augment=augment,
    )
    seconds, _ = timed(lambda: sum(len(batch["index"]) for batch in loader))
    return seconds


def model_images_per_second(size: int, batch_size: int) -> float:
    import torch

    from losscmp.model import build_model, resolve_preset

    model = build_model(resolve_preset("tiny", "cpu"), 1, None, 0)
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.randn(batch_size, 3, size, size)
    target = (torch.rand(batch_size, 1, size, size) > 0.5).float()

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up: first-call allocations
    seconds, _ = timed(lambda: [step() for _ in range(3)])
    return 3 * batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    arguments = parser.parse_args()

    import torch
    from fixtures_data import make_pets_tree

    from losscmp.data import load_dataset

    torch.set_num_threads(2)
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "oxford-iiit-pet"
        make_pets_tree(root, trainval=arguments.images, test=10, quirks=False, shape=(375, 500))

        def load():
            return load_dataset("pets", data_dir=root, image_size=arguments.size)

        cold, data = timed(load)
        cached, data = timed(load)
        count = data.size("train") + data.size("val")
        train, val = data.size("train"), data.size("val")
        rows += [("cold load (decode + resize + write cache)", count / cold)]
        rows += [("cached load (.npz)", count / cached)]
        for workers in arguments.workers:
            augmented = epoch_seconds(data, "train", workers, arguments.batch_size, True)
            plain = epoch_seconds(data, "val", workers, arguments.batch_size, False)
            rows += [(f"train epoch, albumentations, {workers} workers", train / augmented)]
            rows += [(f"val epoch, no augmentation, {workers} workers", val / plain)]
            rows += [(f"first epoch from cold, {workers} workers", train / (cold + augmented))]
    synthetic = load_dataset("synthetic(n_train=256,n_val=64)", image_size=64)
    rows += [
        (
            "synthetic 64 px train epoch, dihedral, 0 workers",
            256 / epoch_seconds(synthetic, "train", 0, arguments.batch_size, True),
        )
    ]
    rows += [
        (
            f"model 'tiny' forward+backward at {arguments.size} px (CPU)",
            model_images_per_second(arguments.size, arguments.batch_size),
        )
    ]

    print(
        f"{count} pets-layout images (500x375 JPEG) at {arguments.size} px, "
        f"batch {arguments.batch_size}"
    )
    width = max(len(label) for label, _ in rows)
    for label, rate in rows:
        print(f"  {label:<{width}}  {rate:10.1f} images/s")


if __name__ == "__main__":
    main()
