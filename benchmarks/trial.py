"""Time one losscmp trial against a hand-written PyTorch loop doing the same work.

    python benchmarks/trial.py                      # CPU: tiny U-Net, 64 px, 6 epochs, 3 repeats
    python benchmarks/trial.py --repeats 1 --epochs 2          # a quick look
    python benchmarks/trial.py --device cuda --preset small    # on a GPU (bf16 autocast)
    python benchmarks/trial.py --device cuda --preset small --compile reduce-overhead
                                    # and the plain loop with torch.compile (CUDA graphs)
    python benchmarks/trial.py --stub-model --repeats 9     # the work outside the model

The library side is ``losscmp.train.train_trial`` on the synthetic dataset (256 training
and 64 validation images, dihedral augmentation), exactly as ``losscmp run`` calls it.
The plain side is the best loop written by hand for the same job: the same smp U-Net
(same preset and seed), the same uint8 arrays normalised with the same ImageNet
statistics, a random quarter turn/flip per sample and epoch, the same batch size and
epochs, AdamW with a per-step cosine schedule, channels_last, no host sync per step,
and per-epoch scoring of the validation and the test split (as losscmp scores both every
epoch) that counts hard-prediction TP/FP/FN per image and reports the dataset Dice (one
sync per split and epoch). On CUDA both sides run under bf16 autocast with
``cudnn.benchmark``. The loss is BCE (``--loss bce``): the plain loop uses
``F.binary_cross_entropy_with_logits``; any other ``--loss`` is created with
``losscmp.losses.create_loss`` on both sides, so only the training machinery differs.

The two sides run in turn (plain, losscmp, plain, losscmp, ...) in one process, after an
untimed 1-epoch warm-up of each, so that a change in machine load hits both alike; the
medians and their ratio are printed. ``--compile MODE`` adds a third side, the plain loop
with its model under ``torch.compile(mode=MODE)``: compiled once (in the warm-up, whose
time is printed as the compile cost) and reset to the seeded weights for every trial, so
its timed runs are the steady state a compiled trainer would reach. The library side also
does work the plain loop does not (per-image Dice/IoU rows, HD95 and NSD of the last
epoch's predictions, the epoch records): it is inside its time. On the CPU, results are
deterministic for a given thread count (the validation Dice printed for each side repeats
from run to run); on a GPU they agree to rounding (cuDNN times its kernels, atomics add in
any order). ``--stub-model`` swaps the U-Net for two convolutions on both sides: a step of
almost no compute, so the difference of the two times is the library's work outside the
model (loading, loss, scoring, records), which the U-Net's time otherwise buries in the
machine's noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from losscmp.data import load_dataset  # noqa: E402
from losscmp.data.transforms import MEAN, STD  # noqa: E402
from losscmp.devices import native_bf16  # noqa: E402
from losscmp.model import build_model, resolve_preset  # noqa: E402
from losscmp.plan import Trial, make_loss  # noqa: E402
from losscmp.spec import as_spec  # noqa: E402
from losscmp.train import TrainSettings, train_trial  # noqa: E402

LR, WEIGHT_DECAY, BATCH_SIZE, SEED = 3e-3, 1e-4, 16, 0
THROUGHPUT_TARGET = 0.95  # issue 9: one trial against the best plain loop (wall)
FUSED_ADAMW = ("cpu", "cuda")  # one kernel for all parameters: ~3x faster steps on CPU


# ------------------------------------------------------------------ plain PyTorch
def normalised(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, H·W, 3), ImageNet-normalised, on the device: the
    pixel-major layout that a channels_last (N, 3, H, W) batch is a view of."""
    x = torch.from_numpy(images).to(device).float()
    mean = torch.as_tensor(MEAN, device=device)
    std = torch.as_tensor(STD, device=device)
    return ((x / 255 - mean) / std).flatten(1, 2)


def dihedral_pixels(size: int, device: torch.device) -> torch.Tensor:
    """(8, size²) source pixel of every output pixel for the 8 quarter turns/flips."""
    grid = torch.arange(size * size, device=device).view(size, size)
    ops = [torch.rot90(grid, op % 4, dims=(0, 1)) for op in range(8)]
    return torch.stack([op.flip(1) if k >= 4 else op for k, op in enumerate(ops)]).flatten(1)


def batch_of(pixels: torch.Tensor, index: torch.Tensor, sources: torch.Tensor, size: int):
    """Samples ``index`` of (N, H·W, C), each turned by its own op (``sources``: (B, H·W)),
    as a channels_last (B, C, H, W) batch: one gather, no host sync."""
    picked = pixels[index]
    turned = picked.gather(1, sources.unsqueeze(2).expand(-1, -1, picked.shape[2]))
    return turned.view(len(index), size, size, -1).permute(0, 3, 1, 2)


def stub_model(preset, out_channels: int, encoder_weights, seed: int) -> torch.nn.Module:
    """``--stub-model``: two convolutions in ``build_model``'s place, seeded alike."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, out_channels, 1)
    )


def use_stub_model() -> None:
    """Both sides build ``stub_model``: losscmp's trainer and ``seeded_model`` here."""
    import losscmp.train

    global build_model
    build_model = losscmp.train.build_model = stub_model


def seeded_model(data, preset, device: torch.device) -> torch.nn.Module:
    model = build_model(preset, data.out_channels, None, SEED)  # losscmp's seeded weights
    return model.to(device, memory_format=torch.channels_last)


def plain_trial(data, preset, epochs, loss_name, device, amp, compiled=None):
    """The hand-written loop; returns the last epoch's validation Dice. ``compiled``: a
    (module, its ``torch.compile`` wrapper) pair, reset to the seeded weights and trained
    instead of a fresh model."""
    model = seeded_model(data, preset, device)
    if compiled is not None:
        module, wrapper = compiled
        module.load_state_dict(model.state_dict())  # weights and BatchNorm statistics
        model = wrapper
    loss_fn = (
        F.binary_cross_entropy_with_logits
        if loss_name == "bce"
        else make_loss(as_spec(loss_name), data).to(device)
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=device.type in FUSED_ADAMW
    )
    size = data.train_images.shape[1]
    train_x = normalised(data.train_images, device)
    train_y = torch.from_numpy(data.train_masks).to(device).float().flatten(1).unsqueeze(2)
    evaluated = [  # scored every epoch, as losscmp does: validation (chooses), test (reported)
        (
            normalised(images, device).view(-1, size, size, 3).permute(0, 3, 1, 2),
            torch.from_numpy(masks).to(device).unsqueeze(1) > 0,
        )
        for images, masks in [
            (data.val_images, data.val_masks),
            (data.test_images, data.test_masks),
        ]
    ]
    turns = dihedral_pixels(size, device)
    count = train_x.shape[0]
    steps = count // BATCH_SIZE + (count % BATCH_SIZE > 1)  # a last batch of 1 is dropped
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    generator = torch.Generator().manual_seed(SEED)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    dice = float("nan")
    for _ in range(epochs):
        model.train()
        order = torch.randperm(count, generator=generator).to(device)
        ops = torch.randint(0, 8, (count,), generator=generator).to(device)
        total = torch.zeros((), device=device)
        for step in range(steps):
            index = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
            sources = turns[ops[index]]
            images = batch_of(train_x, index, sources, size)
            target = batch_of(train_y, index, sources, size)
            with autocast:
                logits = model(images)
            loss = loss_fn(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach()
        mean_loss = float(total) / steps  # one sync per epoch
        if not math.isfinite(mean_loss):
            break
        model.eval()
        scores = [split_dice(model, x, y, autocast) for x, y in evaluated]
        dice = scores[0]
    return dice


@torch.no_grad()
def split_dice(model, images, masks, autocast) -> float:
    """Dataset Dice of the hard predictions over one split: per image TP, FP, FN."""
    counts = []
    with autocast:
        for start in range(0, images.shape[0], BATCH_SIZE):
            predicted = model(images[start : start + BATCH_SIZE]) >= 0
            actual = masks[start : start + BATCH_SIZE]
            pairs = (predicted & actual, predicted & ~actual, ~predicted & actual)
            counts.append(torch.stack([pair.sum((1, 2, 3)) for pair in pairs], 1))
    tp, fp, fn = torch.cat(counts).sum(0).tolist()  # one sync per split and epoch
    return 2 * tp / max(2 * tp + fp + fn, 1)


# ------------------------------------------------------------------ losscmp
def losscmp_trial(data, settings: TrainSettings, loss_name: str):
    """``train_trial`` as the runner calls it; returns the last epoch's validation Dice."""
    outcome = train_trial(Trial("synthetic", loss_name, SEED), as_spec(loss_name), data, settings)
    return outcome.record["epochs"][-1].get("val_dice", float("nan"))


# ------------------------------------------------------------------ timing
def timed(fn, epochs: int, device: torch.device) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, the function's result) of ``fn(epochs)``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(epochs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--preset", default="auto", help="model preset (auto: tiny on CPU)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--loss", default="bce", help="loss spec (bce: plain side uses torch's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--compile",
        choices=["default", "reduce-overhead", "max-autotune"],
        help="also time the plain loop with torch.compile(model, mode=...)",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile's backend; 'eager' traces the model without generating code "
        "(a quick check of this script on the CPU; --compile's mode is then not used)",
    )
    parser.add_argument(
        "--stub-model",
        action="store_true",
        help="both sides train two convolutions instead of the U-Net: the work outside the model",
    )
    args = parser.parse_args(argv)
    if args.stub_model:
        use_stub_model()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    preset = resolve_preset(args.preset, device.type)
    data = load_dataset("synthetic", image_size=args.image_size, seed=SEED)
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=BATCH_SIZE,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        num_workers=0,
        preset=preset,
        encoder_weights=None,
        device=device,
        amp=True,
    )
    amp = device.type == "cuda" and native_bf16(device)  # as losscmp's own rule
    sides = {
        "plain": lambda epochs: plain_trial(data, preset, epochs, args.loss, device, amp),
        "losscmp": lambda epochs: losscmp_trial(
            data, dataclasses.replace(settings, epochs=epochs), args.loss
        ),
    }
    if args.compile:
        module = seeded_model(data, preset, device)
        how = {"mode": args.compile} if args.compile_backend == "inductor" else {}
        compiled = (module, torch.compile(module, backend=args.compile_backend, **how))
        sides["compiled"] = lambda epochs: plain_trial(
            data, preset, epochs, args.loss, device, amp, compiled
        )
    images = data.size("train") * args.epochs
    print(
        f"torch {torch.__version__}, {device.type}, {torch.get_num_threads()} CPU threads; "
        f"preset {preset.name}, {args.image_size} px, {data.size('train')} train / "
        f"{data.size('val')} val / {data.size('test')} test images, batch {BATCH_SIZE}, "
        f"{args.epochs} epochs, loss {args.loss}, bf16 autocast {'on' if amp else 'off'}"
        f"{', stub model' if args.stub_model else ''}; "
        f"a 1-epoch warm-up, then {args.repeats} timed runs per side, alternating"
    )
    for name, fn in sides.items():  # warm-up: allocator, oneDNN/cuDNN kernel choice, imports
        wall, _, _ = timed(fn, 1, device)
        if name == "compiled":
            print(f"  compiled ({args.compile}): 1-epoch warm-up with compilation {wall:.1f} s")
    walls: dict[str, list[float]] = {name: [] for name in sides}
    cpus: dict[str, list[float]] = {name: [] for name in sides}
    dice: dict[str, float] = {}
    for repeat in range(args.repeats):
        for name, fn in sides.items():
            wall, cpu, dice[name] = timed(fn, args.epochs, device)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"  run {repeat + 1} {name:8s} {wall:7.2f} s wall  {cpu:7.2f} s CPU", flush=True)
    print()
    for name in sides:
        wall = statistics.median(walls[name])
        print(
            f"{name:8s} median {wall:7.2f} s wall ({images / wall:6.1f} train images/s), "
            f"{statistics.median(cpus[name]):7.2f} s CPU; last val Dice {dice[name]:.4f}"
        )
    ratio = statistics.median(walls["plain"]) / statistics.median(walls["losscmp"])
    cpu_ratio = statistics.median(cpus["plain"]) / statistics.median(cpus["losscmp"])
    print(f"losscmp throughput / plain loop: {ratio:.3f} (wall), {cpu_ratio:.3f} (CPU time)")
    if args.stub_model:  # the target is the U-Net's; here the difference is what counts
        extra = statistics.median(walls["losscmp"]) - statistics.median(walls["plain"])
        print(f"work outside the model: losscmp {1000 * extra / args.epochs:.1f} ms per epoch more")
    else:
        verdict = "met" if ratio >= THROUGHPUT_TARGET else "NOT met"
        print(f"target: losscmp >= {THROUGHPUT_TARGET}x the plain loop's throughput: {verdict}")
    if "compiled" in sides:
        plain, best = statistics.median(walls["plain"]), statistics.median(walls["compiled"])
        library = statistics.median(walls["losscmp"])
        print(
            f"compiled plain loop throughput / plain loop: {plain / best:.3f}; "
            f"losscmp / compiled plain loop: {best / library:.3f} (wall)"
        )


if __name__ == "__main__":
    main()
