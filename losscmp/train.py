"""Train one (dataset, loss, seed) trial and return its records.

The loop is deliberately plain: build the seeded model, train with AdamW and a
per-step cosine schedule, evaluate every epoch, stop early only if the loss
turns non-finite. The only host-device syncs are once per epoch (train loss,
evaluation counts), never per step or batch. It never prints: progress goes
out through the ``on_step`` / ``on_evaluation`` / ``on_epoch`` callbacks.

Every epoch is evaluated on the validation split *and* on the test split (when
the dataset has one): the report picks a trial's epoch (and, binary, its
threshold; and a loss's learning rate) on validation and reads test there, so
the chosen epoch can be any epoch and any metric's best, with no model state
kept and nothing to redo on --resume. The test pass costs one forward pass over
the test split per epoch (measured in the README); the columns it fills are
never read by any choice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from losscmp import metrics
from losscmp.data import make_loader
from losscmp.data.base import SegmentationData
from losscmp.data.transforms import normalise_tensor
from losscmp.devices import amp_trains_in_bf16, to_device
from losscmp.events import BOUNDARIES
from losscmp.model import ModelPreset, build_model
from losscmp.plan import Trial, make_loss
from losscmp.spec import Spec

PANEL_SIZE = 4  # images (of the reported split) shown per loss in the prediction panel


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    num_workers: int
    preset: ModelPreset
    encoder_weights: str | None
    device: torch.device
    amp: bool
    fused_adamw: bool = True  # False only for a resumed run that started without it
    fused_per_copy: bool = True  # fused.FusedModel: False only for a run resumed as above
    fused_own_weights: bool = True  # fused.SeparateCopies: False only for a run resumed as above


@dataclass
class Evaluation:
    """One split at one epoch: per-image confusion counts, the binary probability
    histogram (None for multiclass), the hard predictions when kept, and whether every
    output was finite. On the device while the pass runs; ``to_host`` gives the tensor of
    counts, NumPy arrays and a bool."""

    counts: torch.Tensor
    histogram: np.ndarray | torch.Tensor | None = None
    predictions: np.ndarray | torch.Tensor | None = field(default=None, repr=False)
    # False: some logit overflowed to inf or NaN (finite but huge weights): the scores of
    # such a model are those of NaN read as background, so the trial has diverged.
    finite: bool | np.ndarray | torch.Tensor = True

    def to_host(self) -> Evaluation:
        """The device's results on the host: the pass's one wait for the device."""
        finite = self.finite.cpu().numpy() if torch.is_tensor(self.finite) else self.finite
        return Evaluation(
            self.counts.cpu(),
            None if self.histogram is None else self.histogram.cpu().numpy(),
            None if self.predictions is None else self.predictions.cpu().numpy(),
            finite if np.ndim(finite) else bool(finite),
        )


def outputs_finite(val: Evaluation, test: Evaluation | None) -> bool:
    return bool(val.finite) and (test is None or bool(test.finite))


@dataclass
class TrialOutcome:
    """What a trial produced: the JSON record plus the panel predictions."""

    record: dict[str, Any]
    panel_predictions: np.ndarray | None = field(default=None, repr=False)
    panel_split: str = "val"  # the images the panel predictions are of


class TrialLog:
    """One trial's bookkeeping: epoch rows, best epoch, final per-image rows and panel, and
    the record built from them. Shared by ``train_trial`` and ``fused.train_fused_group``."""

    def __init__(self, trial: Trial, data, epochs: int):
        self.trial, self.data, self.planned_epochs = trial, data, epochs
        self.started = time.perf_counter()
        self.epochs: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.final_images: list[dict[str, Any]] = []
        self.panel: np.ndarray | None = None
        self.status, self.diverged_epoch = "finished", None

    def last(self, epoch: int) -> bool:
        return epoch == self.planned_epochs

    def keeps_predictions(self, epoch: int, split: str) -> bool:
        """The last planned epoch keeps the reported split's hard predictions (final images,
        HD95, panel)."""
        return self.last(epoch) and split == self.data.reported_split

    def diverged(self, epoch: int, train_loss: float, lr: float, started: float) -> dict:
        """A non-finite epoch train loss, weight or output: the trial stops here; returns
        the epoch row."""
        self.status, self.diverged_epoch = "diverged", epoch
        self.epochs.append(_epoch_row(epoch, train_loss, {}, lr, started, self.status))
        return self.epochs[-1]

    def validated(
        self, epoch, train_loss, lr, started, val: Evaluation, test=None, on_evaluation=None
    ) -> dict:
        """A finished epoch and its evaluations (test: None without a test split);
        returns the epoch row. The last epoch scores the boundaries of every image of the
        reported split, telling ``on_evaluation(BOUNDARIES, image, images)`` as it goes."""
        data = self.data
        summary = epoch_scores(data, val, test)
        self.epochs.append(_epoch_row(epoch, train_loss, summary, lr, started, "ok"))
        reported = test if data.reported_split == "test" else val
        if not self.best or summary["val_dice"] > self.best["val_dice"]:
            self.best = {"epoch": epoch, "val_dice": summary["val_dice"], "counts": reported.counts}
        if self.last(epoch):
            on_image = _boundary_progress(on_evaluation)
            self.final_images = per_image_rows(
                reported.counts, "final", data, reported.predictions, on_image
            )
            self.panel = reported.predictions[:PANEL_SIZE]
        return self.epochs[-1]

    def outcome(self, loss_params: dict[str, Any], seconds: float | None = None) -> TrialOutcome:
        """The record; ``seconds`` defaults to the time since this log was created."""
        best, trial = self.best, self.trial
        best_images = per_image_rows(best["counts"], "best", self.data) if best else []
        if seconds is None:
            seconds = time.perf_counter() - self.started
        record = {
            "trial_id": trial.id,
            "dataset": trial.dataset,
            "loss": trial.loss,
            **({"base_lr": trial.lr} if trial.lr is not None else {}),
            "seed": trial.seed,
            "status": self.status,
            "diverged_epoch": self.diverged_epoch,
            "best_epoch": best.get("epoch"),
            "seconds": round(seconds, 3),
            "loss_params": loss_params,
            "epochs": self.epochs,
            "images": best_images + self.final_images,
        }
        return TrialOutcome(record, self.panel, self.data.reported_split)


def _boundary_progress(on_evaluation) -> Callable[[int, int], None] | None:
    """``on_evaluation`` as ``all_boundary_scores``'s ``on_image``."""
    if on_evaluation is None:
        return None
    return lambda image, images: on_evaluation(BOUNDARIES, image, images)


def epoch_scores(data: SegmentationData, val: Evaluation, test: Evaluation | None) -> dict:
    """The epoch row's scores: ``val_*`` and ``test_*`` at probability 0.5 (argmax); binary
    adds the threshold chosen on validation, both splits' scores at it, AP and ECE."""
    row = metrics.summarize_epoch(val.counts, mode=data.mode, class_names=data.class_names)
    threshold_index = None
    if val.histogram is not None:
        columns, threshold_index = metrics.histogram_scores(val.histogram, "val_")
        row["threshold"] = metrics.THRESHOLDS[threshold_index]
        row.update(columns)
    if test is not None:
        row.update(
            metrics.summarize_epoch(
                test.counts, mode=data.mode, class_names=data.class_names, prefix="test_"
            )
        )
        if test.histogram is not None and threshold_index is not None:
            row.update(metrics.histogram_scores(test.histogram, "test_", threshold_index)[0])
    return row


def trial_settings(settings: TrainSettings, trials) -> TrainSettings:
    """The settings at the trials' own learning rate (a fused group shares one)."""
    rates = {trial.lr for trial in trials}
    if len(rates) != 1:
        raise ValueError(f"trials trained together share one learning rate, got {sorted(rates)}")
    (rate,) = rates
    return settings if rate is None else dataclasses.replace(settings, lr=rate)


def training_progress(epoch: int, epochs: int) -> float:
    """What ``set_progress`` gets in epoch ``epoch`` (from 1) of ``epochs``: 0 in the first
    and 1 in the last, so the boundary loss's alpha runs from 0.01 to 1 as LOSSES.md says
    ((epoch - 1) / epochs stopped at 1 - 1/epochs: alpha 0.90 in the last of 10 epochs)."""
    return (epoch - 1) / max(epochs - 1, 1)


def train_trial(
    trial: Trial,
    loss_spec: Spec,
    data,
    settings: TrainSettings,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_evaluation: Callable[[str, int, int], None] | None = None,
) -> TrialOutcome:
    """Train ``trial``; ``on_step(step, steps)`` after each training step,
    ``on_evaluation(split, batch, batches)`` after each evaluation batch (and each image
    of the last epoch's boundary scores, split ``BOUNDARIES``) and ``on_epoch(row)`` once
    an epoch is scored."""
    settings = trial_settings(settings, [trial])
    model, loss_fn, optimizer, scheduler, steps_per_epoch = start_trial(
        trial, loss_spec, data, settings
    )
    torch.manual_seed(trial.seed)
    log = TrialLog(trial, data, settings.epochs)
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        loss_fn.set_progress(training_progress(epoch, settings.epochs))
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = train_one_epoch(
            model, loss_fn, optimizer, scheduler, data, settings, trial.seed, epoch, on_step
        )
        state = learned_state(model.parameters(), model.buffers())
        loss_sum = nan_unless_finite_weights(loss_sum, finite_weights(state))
        train_loss = float(loss_sum) / max(steps_per_epoch, 1)  # the epoch's one sync
        healthy = math.isfinite(train_loss)
        if healthy:
            val, test = _evaluate_epoch(model, data, settings, log, epoch, on_evaluation)
            healthy = outputs_finite(val, test)
        if healthy:
            row = log.validated(epoch, train_loss, lr, epoch_start, val, test, on_evaluation)
        else:
            row = log.diverged(epoch, train_loss, lr, epoch_start)
        if on_epoch:
            on_epoch(row)
        if not healthy:
            break
    return log.outcome(loss_fn.params)


def start_trial(trial: Trial, loss_spec: Spec, data, settings: TrainSettings) -> tuple:
    """(model, fitted loss, AdamW, cosine schedule, steps per epoch) of ``trial`` at
    ``settings`` (already at its rate): what ``train_trial`` trains and the dry run's time
    estimate (``measure``) times."""
    device = settings.device
    model = build_model(settings.preset, data.out_channels, settings.encoder_weights, trial.seed)
    model = model.to(device, memory_format=torch.channels_last)
    loss_fn = make_loss(loss_spec, data).to(device)
    loss_fn.fit(torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64))
    optimizer = make_optimizer(model.parameters(), settings)
    steps_per_epoch = len(training_loader(data, settings, loss_fn, trial.seed, epoch=1))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=settings.epochs * steps_per_epoch
    )
    return model, loss_fn, optimizer, scheduler, steps_per_epoch


def _evaluate_epoch(
    model, data, settings, log, epoch, on_batch=None
) -> tuple[Evaluation, Evaluation | None]:
    """Validation and, where the dataset has one, test, keeping the predictions ``log``
    asks for at this epoch."""
    val = evaluate(model, data, settings, "val", log.keeps_predictions(epoch, "val"), on_batch)
    if not data.has_test:
        return val, None
    keep = log.keeps_predictions(epoch, "test")
    return val, evaluate(model, data, settings, "test", keep, on_batch)


def learned_state(parameters, buffers) -> list[torch.Tensor]:
    """The weights and the floating-point buffers (BatchNorm's running statistics): a
    running variance overflowing to inf leaves training finite (it normalises by the
    batch's own) while every evaluation in eval mode reads NaN."""
    return [*parameters, *(buffer for buffer in buffers if buffer.is_floating_point())]


def finite_weights(parameters, stacked: bool = False) -> torch.Tensor:
    """Whether every weight (and statistic: ``learned_state``) is finite, on the device: a
    0-d bool, or one per copy (K,) of a stacked model's (K, ...) tensors."""
    if stacked:
        return torch.stack([all_finite(p.flatten(1), dim=1) for p in parameters]).all(0)
    return torch.stack([all_finite(p) for p in parameters]).all()


def all_finite(tensor: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``torch.isfinite(tensor).all(dim)`` (all: ``dim`` None) in one pass, on the device: a
    float64 sum of float32 (or narrower) values cannot overflow (each is below 3.5e38, the
    sum of a trillion of them below 1e51), so it is finite exactly when every value is
    (inf, -inf and NaN make it inf or NaN). ``isfinite`` then ``all`` is four passes over
    the values, ~4x the time on a CPU (~2 ms per epoch for the tiny model's weights). Not
    for float64 values, nor on MPS (no float64): those take ``isfinite``."""
    if tensor.dtype == torch.float64 or tensor.device.type == "mps":
        finite = torch.isfinite(tensor)
        return finite.all() if dim is None else finite.all(dim)
    if dim is None:
        return tensor.sum(dtype=torch.float64).isfinite()
    return tensor.sum(dim, dtype=torch.float64).isfinite()


def nan_unless_finite_weights(loss_sum: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """The epoch's loss, NaN where the weights are no longer finite, so that the trial is
    recorded as diverged: a loss can stay finite while its gradients poison the weights
    (MCC with eps=0 on a one-class batch: a loss of 1, NaN gradients)."""
    return torch.where(finite, loss_sum, torch.full_like(loss_sum, math.nan))


def make_optimizer(params, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW, with torch's fused kernel on the devices that have one (not the meta device
    of tests/test_host_sync.py). Runs recorded without ``fused_adamw`` used it on CUDA
    only, and their resumed CPU trials keep the default loop (``settings.fused_adamw``
    False), whose rounding differs."""
    from losscmp.config import FUSED_ADAMW_DEVICES

    fused = settings.fused_adamw and settings.device.type in FUSED_ADAMW_DEVICES
    kernel = {"fused": True} if fused else {}
    return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, **kernel)


def train_one_epoch(model, loss_fn, optimizer, scheduler, data, settings, seed, epoch, on_step):
    """One pass over the training split; returns the sum of its steps' losses, a 0-d tensor
    on the device.

    Nothing in the loop waits for the device (tests/test_host_sync.py runs it on the meta
    device, where any read of a value fails); the caller's ``float`` is the epoch's sync."""
    from losscmp.model import input_memory_format

    model.train()
    layout = input_memory_format(model)  # channels_last from train_trial
    loader = training_loader(data, settings, loss_fn, seed, epoch)
    total = torch.zeros((), device=settings.device)
    steps = len(loader)
    for step, batch in enumerate(loader, start=1):
        total += train_step(model, loss_fn, optimizer, scheduler, batch, settings, layout)
        if on_step:
            on_step(step, steps)
    return total


def train_step(model, loss_fn, optimizer, scheduler, batch, settings, layout) -> torch.Tensor:
    """One training step on a host ``batch``; its loss, detached, on the device (no wait)."""
    images, target, maps = batch_on_device(batch, settings.device, layout, loss_fn.needs)
    with _autocast(settings):
        logits = model(images)
    # The losses are written for (and faster on) contiguous logits; C = 1 is already.
    logits = logits.to(torch.float32, memory_format=torch.contiguous_format)
    loss = loss_fn(logits, target, **maps)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.detach()


def batch_on_device(batch, device, layout=None, maps=()):
    """(images in ``layout``, target, {map name: map}) of a host batch, on ``device``,
    without waiting for it (``devices.to_device``). uint8 images (the loaders of an
    accelerator, see ``normalises_on_host``) are normalised there."""
    images = batch["image"]
    if images.dtype == torch.uint8:
        images = normalise_tensor(to_device(images, device))
        images = images.contiguous(memory_format=layout or torch.contiguous_format)
    else:
        images = to_device(images, device, layout)
    on_device = {name: to_device(batch[name], device) for name in maps}
    return images, to_device(batch["target"], device), on_device


def normalises_on_host(settings: TrainSettings) -> bool:
    """Images are normalised where the model runs: on the host for the CPU (NumPy, the
    fastest there); on an accelerator after sending uint8, a quarter of the bytes and
    no float work on the host, which a small model's step is waiting on."""
    return settings.device.type == "cpu"


def training_loader(data, settings: TrainSettings, loss_fn, seed: int, epoch: int):
    """This epoch's batches: order and augmentation fixed by (seed, epoch), maps the loss needs."""
    return make_loader(
        data,
        split="train",
        batch_size=settings.batch_size,
        seed=seed,
        epoch=epoch,
        num_workers=settings.num_workers,
        maps=loss_fn.needs,
        augment=True,
        normalise=normalises_on_host(settings),
    )


def evaluation_loader(data, settings: TrainSettings, split: str = "val"):
    """A split (val or test) in order, un-augmented, without target maps."""
    return make_loader(
        data,
        split=split,
        batch_size=settings.batch_size,
        seed=0,
        epoch=0,
        num_workers=settings.num_workers,
        maps=frozenset(),
        augment=False,
        normalise=normalises_on_host(settings),
    )


def evaluate(
    model, data, settings, split: str, keep_predictions: bool = False, on_batch=None
) -> Evaluation:
    """Per-image confusion counts over ``split`` (val or test), the probability histogram
    (binary) and the hard predictions if asked; one transfer to the host at the end."""
    return evaluate_on_device(model, data, settings, split, keep_predictions, on_batch).to_host()


@torch.no_grad()
def evaluate_on_device(
    model, data, settings, split: str, keep_predictions: bool = False, on_batch=None
):
    """``evaluate`` before the transfer: nothing here waits for the device.
    ``on_batch(split, batch, batches)`` after each batch: a pass over a large split takes
    minutes on a CPU, with no training step to report."""
    from losscmp.model import input_memory_format

    model.eval()
    device = settings.device
    layout = input_memory_format(model)  # channels_last from train_trial
    counts, predictions = [], []
    histogram = None
    finite = torch.ones((), dtype=torch.bool, device=device)
    loader = evaluation_loader(data, settings, split)
    for number, batch in enumerate(loader, start=1):
        images, target, _ = batch_on_device(batch, device, layout)
        with _autocast(settings):
            logits = model(images).float()
        finite &= all_finite(logits)
        counts.append(
            metrics.confusion_counts(logits, target, mode=data.mode, ignore_index=data.ignore_index)
        )
        if data.mode == "binary":
            found = metrics.probability_histogram(logits, target, ignore_index=data.ignore_index)
            histogram = found if histogram is None else histogram + found
        if keep_predictions:
            predictions.append(hard_prediction(logits, data.mode).to(torch.uint8))
        if on_batch:
            on_batch(split, number, len(loader))
    return Evaluation(
        torch.cat(counts), histogram, torch.cat(predictions) if keep_predictions else None, finite
    )


def hard_prediction(logits: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "binary":
        return (logits[:, 0] >= 0).long()  # sigmoid(x) >= 0.5  <=>  x >= 0
    return logits.argmax(dim=1)


def per_image_rows(
    counts, which: str, data, predictions=None, on_image=None
) -> list[dict[str, Any]]:
    """Per-image Dice/IoU (foreground classes averaged) of the reported split; boundary
    metrics with predictions (``on_image``: see ``all_boundary_scores``)."""
    split = data.reported_split
    masks = data.masks(split)
    image_scores = metrics.per_image_scores(counts, mode=data.mode)
    dice, iou = image_scores["dice"].tolist(), image_scores["iou"].tolist()
    boundaries = None
    if predictions is not None:
        boundaries = all_boundary_scores(predictions, masks, data, on_image)
    rows = []
    for index in range(len(dice)):
        row = {"which": which, "split": split, "image": index, "dice": dice[index]}
        row["iou"] = iou[index]
        if boundaries is not None:
            row.update(boundaries[index])
        rows.append(row)
    return rows


def all_boundary_scores(
    predictions: np.ndarray, masks, data, on_image: Callable[[int, int], None] | None = None
) -> list[dict[str, float | None]]:
    """``boundary_scores`` of every image, in order; ``on_image(done, images)`` after each
    (Pets' test split takes minutes, with nothing else to report). SciPy's k-d tree and
    distance transform release the GIL, so the images are shared among the trial's own
    torch threads (its budget)."""

    def score(index: int) -> dict[str, float | None]:
        return boundary_scores(predictions[index], masks[index], data)

    images = len(predictions)
    rows: list[dict[str, float | None]] = []
    with _ordered_map(torch.get_num_threads()) as ordered_map:
        for row in ordered_map(score, range(images)):
            rows.append(row)
            if on_image:
                on_image(len(rows), images)
    return rows


@contextlib.contextmanager
def _ordered_map(threads: int):
    """``map``, or a pool of ``threads`` threads' (results still in order)."""
    if threads == 1:
        yield map
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="losscmp-boundary") as pool:
        yield pool.map


def boundary_scores(prediction: np.ndarray, mask: np.ndarray, data) -> dict[str, float | None]:
    """HD95 (px) and NSD at 2 px, averaged over the foreground classes present in either mask.

    Ignored pixels count for neither mask, so a prediction is not judged inside the
    border band it was never taught.
    """
    classes = [1] if data.mode == "binary" else range(1, data.num_classes)
    valid = mask != data.ignore_index if data.ignore_index is not None else True
    hd95s, nsds = [], []
    for cls in classes:
        predicted, truth = (prediction == cls) & valid, (mask == cls) & valid
        if predicted.any() or truth.any():
            distance, surface_dice = metrics.boundary_scores(predicted, truth, tolerance=2.0)
            hd95s.append(distance)
            nsds.append(surface_dice)
    if not hd95s:  # nothing to find and nothing predicted: a perfect empty answer
        return {"hd95": 0.0, "nsd": 1.0}
    return {"hd95": float(np.mean(hd95s)), "nsd": float(np.mean(nsds))}


def _epoch_row(epoch, train_loss, summary, lr, started, status) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": train_loss if math.isfinite(train_loss) else None,
        **summary,
        "lr": lr,
        "seconds": round(time.perf_counter() - started, 3),
        "status": status,
    }


def _autocast(settings: TrainSettings):
    """bf16 autocast for --amp where it trains in bf16 (devices.amp_trains_in_bf16)."""
    enabled = settings.amp and amp_trains_in_bf16(settings.device)
    return torch.autocast(device_type=settings.device.type, dtype=torch.bfloat16, enabled=enabled)
