"""Time forward + backward of every registered loss next to smp's and MONAI's versions.

    python benchmarks/losses.py            # CPU, and CUDA when available
    python benchmarks/losses.py --quick    # fewer repeats
    python benchmarks/losses.py --losses "*dice*" --device cpu

Batches: binary (16, 1, 256, 256) and multiclass (8, 3, 256, 256), random logits and
blob targets. Each row: the best time of ``repeats`` forward + backward passes of our
loss, of the smp and MONAI losses that define the same thing (same options, see
REFERENCES), and the ratios to plain ``binary_cross_entropy_with_logits`` on the same
logits (timed in the same row) and to the fastest reference. The functions of a row are
timed in turn, repeat after repeat, so that a change in machine load hits them alike.
Distance maps of the target are computed outside the timed step (the data pipeline does
it once per sample); the prediction's distance map for ``hausdorff_dt`` is inside it.
"REFERENCES" are ``smp_reference`` and ``monai_reference`` below.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from losscmp.losses import create_loss, get_loss_entry, list_losses  # noqa: E402
from losscmp.losses.distance import batch_target_maps  # noqa: E402

SHAPES = {"binary": (16, 1, 256, 256), "multiclass": (8, 3, 256, 256)}
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_batch(mode: str, device: str, seed: int = 0):
    """Random logits and a target of random rectangles (about 20 % foreground)."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = SHAPES[mode]
    logits = torch.randn(n, c, h, w, generator=generator)
    labels = torch.zeros(n, h, w, dtype=torch.long)
    for image in range(n):
        for _ in range(4):
            top, left = torch.randint(0, h - 64, (2,), generator=generator).tolist()
            size = int(torch.randint(16, 64, (1,), generator=generator))
            labels[image, top : top + size, left : left + size] = int(
                torch.randint(1, max(c, 2), (1,), generator=generator)
            )
    target = (labels > 0).float().unsqueeze(1) if mode == "binary" else labels
    return logits.to(device), target.to(device)


# ----------------------------------------------------------------- references
def smp_reference(name: str, mode: str) -> LossFn | None:
    """smp's loss with the options that make it define the same thing as ours."""
    try:
        from segmentation_models_pytorch import losses as smp
    except ImportError:
        return None
    binary = mode == "binary"
    table: dict[str, Callable[[], LossFn]] = {
        "dice": lambda: smp.DiceLoss(mode, smooth=0.5),
        "jaccard": lambda: smp.JaccardLoss(mode, smooth=1.0),
        "tversky": lambda: smp.TverskyLoss(mode, alpha=0.3, beta=0.7, smooth=1.0),
        "lovasz": lambda: smp.LovaszLoss(mode),
    }
    if binary:
        table.update(
            {
                "bce": lambda: smp.SoftBCEWithLogitsLoss(),
                "soft_bce": lambda: smp.SoftBCEWithLogitsLoss(smooth_factor=0.05),
                "focal": lambda: smp.FocalLoss(mode, gamma=2.0),
                # one class: smp's gamma on the class mean is the per-class power
                "focal_tversky": lambda: smp.TverskyLoss(
                    mode, alpha=0.3, beta=0.7, gamma=0.75, smooth=1.0
                ),
                "mcc": lambda: probabilities_first(smp.MCCLoss()),
            }
        )
    else:
        table.update(
            {
                "ce": lambda: smp.SoftCrossEntropyLoss(smooth_factor=0.0),
                "label_smoothing_ce": lambda: smp.SoftCrossEntropyLoss(smooth_factor=0.1),
            }
        )
    return table[name]() if name in table else None


def probabilities_first(loss: LossFn) -> LossFn:
    return lambda logits, target: loss(torch.sigmoid(logits), target)


def monai_reference(name: str, mode: str) -> LossFn | None:
    """MONAI's loss with the options that make it define the same thing as ours."""
    try:
        from monai import losses as monai
    except ImportError:
        return None
    binary = mode == "binary"
    act = {"sigmoid": True} if binary else {"softmax": True, "to_onehot_y": True}
    smooth = {"smooth_nr": 1.0, "smooth_dr": 1.0, "batch": True}
    table: dict[str, Callable[[], LossFn]] = {
        "dice": lambda: monai.DiceLoss(**act, **smooth),
        "jaccard": lambda: monai.DiceLoss(**act, jaccard=True, **smooth),
        "tversky": lambda: monai.TverskyLoss(**act, alpha=0.3, beta=0.7, **smooth),
        "hausdorff_dt": lambda: monai.HausdorffDTLoss(**act, include_background=True),
        "bce_dice" if binary else "ce_dice": lambda: monai.DiceCELoss(**act, **smooth),
    }
    if binary:
        table.update(
            {
                "focal": lambda: monai.FocalLoss(gamma=2.0),
                "dice_focal": lambda: monai.DiceFocalLoss(
                    **act, **smooth, gamma=2.0, lambda_dice=0.5, lambda_focal=0.5
                ),
            }
        )
    else:
        table.update(
            {
                "focal": lambda: monai.FocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True),
                "generalized_dice": lambda: monai.GeneralizedDiceLoss(
                    **act, smooth_nr=1.0, smooth_dr=1.0, batch=True
                ),
            }
        )
    if name not in table:
        return None
    loss = table[name]()
    if binary:
        return loss
    return lambda logits, target: loss(logits, target.unsqueeze(1))


# ---------------------------------------------------------------------- timing
def timed_ms(fn: LossFn, logits: torch.Tensor, target: torch.Tensor, clock) -> float:
    """Time of one forward + backward in milliseconds."""
    logits = logits.detach().requires_grad_(True)
    if logits.is_cuda:
        torch.cuda.synchronize()
    start = clock()
    fn(logits, target).backward()
    if logits.is_cuda:
        torch.cuda.synchronize()
    return (clock() - start) * 1000


def interleaved_best(
    fns: dict[str, LossFn], logits, target, warmup: int, repeats: int, clock=time.perf_counter
):
    """Best time per function (timeit's estimator: noise only ever adds time), timing the
    functions in turn so that a change in machine load hits them alike."""
    times: dict[str, list[float]] = {label: [] for label in fns}
    for step in range(warmup + repeats):
        for label, fn in fns.items():
            elapsed = timed_ms(fn, logits, target, clock)
            if step >= warmup:
                times[label].append(elapsed)
    return {label: min(values) for label, values in times.items()}


def ours(name: str, mode: str, logits: torch.Tensor, target: torch.Tensor) -> LossFn:
    loss = create_loss(name, mode=mode)
    maps = {}
    if loss.needs:
        maps = batch_target_maps(
            target, mode=mode, num_classes=logits.shape[1], ignore_index=None, names=loss.needs
        )
    return lambda x, y: loss(x, y, **maps)


def bce_baseline(logits: torch.Tensor, target: torch.Tensor) -> LossFn:
    """Plain BCE-with-logits on the same logits (one-hot target for multiclass)."""
    if target.dim() == logits.dim():
        dense = target
    else:
        dense = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    return lambda x, y: F.binary_cross_entropy_with_logits(x, dense)


def run(
    devices: list[str], names: list[str], warmup: int, repeats: int, cpu_clock: str
) -> list[dict]:
    rows = []
    for device in devices:
        clock = time.perf_counter
        if device == "cpu" and cpu_clock == "cpu":
            clock = time.process_time
        for mode in ("binary", "multiclass"):
            logits, target = make_batch(mode, device)
            for name in names:
                if mode not in get_loss_entry(name).modes:
                    continue
                fns = {
                    "baseline": bce_baseline(logits, target),
                    "ours": ours(name, mode, logits, target),
                }
                for library, reference in (("smp", smp_reference), ("monai", monai_reference)):
                    fn = reference(name, mode)
                    if fn is not None:
                        fns[library] = fn
                row = {"loss": name, "mode": mode, "device": device, "smp": None, "monai": None}
                row.update(interleaved_best(fns, logits, target, warmup, repeats, clock))
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:8.1f}"


def format_row(row: dict) -> str:
    references = [row[lib] for lib in ("smp", "monai") if row.get(lib) is not None]
    fastest = min(references) if references else None
    versus_bce = row["ours"] / row["baseline"]
    versus_ref = "-" if fastest is None else f"{row['ours'] / fastest:5.2f}"
    return (
        f"| {row['loss']:22s} | {row['mode']:10s} | {row['device']:4s} | "
        f"{format_ms(row['ours'])} | {format_ms(row['smp'])} | {format_ms(row['monai'])} | "
        f"{versus_bce:6.2f} | {versus_ref:>5s} |"
    )


HEADER = (
    "| loss                   | mode       | dev  | ours ms  |  smp ms  | monai ms | /BCE   | "
    "/ref  |\n|---|---|---|---:|---:|---:|---:|---:|"
)


def distance_map_ms(device: str, clock) -> float:
    """Best-of-5 time of the prediction's distance map alone (hausdorff_dt's extra step)."""
    from losscmp.losses.boundary import predicted_boundary_distance

    logits, _ = make_batch("binary", device)
    probs = torch.sigmoid(logits)
    times = []
    for _ in range(5):
        if probs.is_cuda:
            torch.cuda.synchronize()
        start = clock()
        predicted_boundary_distance(probs)
        if probs.is_cuda:
            torch.cuda.synchronize()
        times.append((clock() - start) * 1000)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 warm-up and 5 timed runs (default 2 and 20)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--losses", default=None, help="fnmatch pattern, e.g. '*dice*'")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: single-core cost)"
    )
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="CPU timing: process CPU time (default; robust to other "
        "processes on a shared machine) or wall time. CUDA: always wall",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    warmup, repeats = (1, 5) if args.quick else (2, 20)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{args.clock} clock on CPU, "
        f"best of {repeats} timed runs, forward + backward; binary {SHAPES['binary']}, "
        f"multiclass {SHAPES['multiclass']}"
    )
    print(
        "/BCE: ours / binary_cross_entropy_with_logits on the same logits; "
        "/ref: ours / fastest of smp and MONAI for the same definition\n"
    )
    print(HEADER)
    rows = run(devices, list_losses(args.losses), warmup, repeats, args.clock)
    for device in devices:
        for mode in SHAPES:
            baselines = [
                row["baseline"] for row in rows if row["device"] == device and row["mode"] == mode
            ]
            if baselines:
                print(
                    f"BCE-with-logits {mode} {device}: median of the rows' best "
                    f"{statistics.median(baselines):.1f} ms over all rows"
                )
        clock = time.process_time if device == "cpu" and args.clock == "cpu" else time.perf_counter
        how = "scipy per image" if device == "cpu" else "torch brute-force EDT"
        print(
            f"hausdorff_dt prediction distance map alone, binary batch, {device} ({how}): "
            f"{distance_map_ms(device, clock):.1f} ms"
        )


if __name__ == "__main__":
    main()
