"""Train the losses of one (dataset, seed, learning rate) as one fused model.

Every trial of a seed starts from the same weights and sees the same batches and
augmentations; only the loss differs. So K trials can share one data pipeline and
one forward pass: the K copies of the model are stacked (``stack_module_state``)
and run together with ``vmap`` over ``functional_call`` on a weightless template,
the batch shared by all copies. Each copy then gets its own loss on its own slice
of the logits; the K losses are summed and back-propagated once. The gradient of
the sum with respect to copy k's weights is the gradient of copy k's loss alone,
so each copy trains as it would on its own (up to floating-point reordering in the
batched kernels, measured in ``tests/test_fused.py``).

How the copies run depends on the device (``fused_model``): on CUDA (and MPS) one ``vmap``
over the stacked weights (``FusedModel``), one batched kernel where K would be launched; on
the CPU (``config.PER_COPY_FUSED_DEVICES``) K models of their own (``SeparateCopies``), one
after another, each in channels_last exactly as a model trained alone, under one AdamW over
all their weights: vmap's batching rules cost the CPU 1.7x (benchmarks/README.md), and the
copies one by one give each trial the numbers of ``--fuse off`` bit for bit. They need
tensors of their own, not views of stacked ones: torch's fused CPU AdamW rounds
``exp_avg_sq`` otherwise by where an element falls in its loops (vector loop or tail), so
the head's one-element bias alone and the same values as a row of a (16, 1) stack differ in
15 % of updates (benchmarks/README.md). Runs recorded before
run.json's ``execution.fused_own_weights`` ran the CPU's copies on views of the stacked
weights (``FusedModel.per_copy``), and resume so. The shared batches, evaluation passes and
AdamW step are the same either way.

Each copy keeps its own loss module, BatchNorm running statistics (stacked buffers
under ``vmap``, updated in place), AdamW moments and divergence status. A
copy whose epoch train loss, weights or running statistics are non-finite, or whose
validation or test outputs are, is recorded as diverged exactly as ``train_trial``
records it and is then dropped from the parameters, buffers and optimizer state; the
others go on without it.

``seconds`` (per epoch and per trial) is the trial's share of the group's wall
time: work done for the whole group is split evenly among the copies it served,
per-copy bookkeeping (metrics, boundary scores) counts for its copy alone. The
trials' seconds thus add up to the group's time, as sequential trials' do.

The model must be deterministic in its forward pass (no dropout): ``vmap`` refuses
random operations rather than silently sharing one draw among the copies.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from losscmp import metrics
from losscmp.devices import out_of_memory
from losscmp.model import build_model
from losscmp.plan import Trial, make_loss
from losscmp.spec import Spec
from losscmp.train import (
    Evaluation,
    TrainSettings,
    TrialLog,
    TrialOutcome,
    _autocast,
    all_finite,
    batch_on_device,
    evaluation_loader,
    finite_weights,
    hard_prediction,
    learned_state,
    make_optimizer,
    nan_unless_finite_weights,
    outputs_finite,
    training_loader,
    training_progress,
    trial_settings,
)


def train_fused_group(
    trials: list[Trial],
    loss_specs: dict[str, Spec],
    data,
    settings: TrainSettings,
    on_step: Callable[[Trial, int, int], None] | None = None,
    on_epoch: Callable[[Trial, dict[str, Any]], None] | None = None,
    on_evaluation: Callable[[Trial, str, int, int], None] | None = None,
    wanted: Collection[str] | None = None,
) -> list[TrialOutcome]:
    """Train ``trials`` (one dataset, one seed, any losses) as one fused model.

    Returns one outcome per trial, in order, with the same record ``train_trial``
    writes. ``on_step(trial, step, steps)``, ``on_evaluation(trial, split, batch,
    batches)`` (also per image of a copy's boundary scores, as ``train_trial``) and
    ``on_epoch(trial, row)`` are called for every trial still in the group.
    ``wanted``: the ids whose outcomes count (a resumed group's unfinished trials; the
    others train again only so that these round as in the whole group). The group stops
    once none of them trains: the rest would be compute for nothing, and silent (a worker
    silent that long is taken for hung); the others' outcomes are then unfinished.
    """
    seed = _group_seed(trials)
    settings = trial_settings(settings, trials)  # one optimizer, one schedule: one rate
    started = time.perf_counter()
    fused, copies, scheduler, steps_per_epoch = start_group(trials, loss_specs, data, settings)
    torch.manual_seed(seed)
    setup_share = (time.perf_counter() - started) / len(copies)
    for piece in copies:
        piece.seconds = setup_share
    active = list(copies)
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        for piece in active:
            piece.loss_fn.set_progress(training_progress(epoch, settings.epochs))
        lr = fused.optimizer.param_groups[0]["lr"]
        loss_sums = _train_epoch(fused, active, scheduler, data, settings, epoch, on_step)
        loss_sums = nan_unless_finite_weights(loss_sums, fused.finite_weights())
        train_losses = [total / max(steps_per_epoch, 1) for total in loss_sums.tolist()]
        train_share = (time.perf_counter() - epoch_start) / len(active)
        for piece in active:
            piece.seconds += train_share
        epoch_so_far = _EpochSoFar(epoch, lr, train_share, on_epoch)
        survivors = _drop_diverged(fused, active, train_losses, epoch_so_far)
        if not survivors:
            break
        active = _validate(fused, survivors, data, settings, epoch_so_far, on_evaluation)
        if not any(wanted is None or piece.trial.id in wanted for piece in active):
            break
    return [piece.log.outcome(piece.loss_fn.params, seconds=piece.seconds) for piece in copies]


def start_group(trials, loss_specs, data, settings) -> tuple:
    """(fused model, its copies, cosine schedule, steps per epoch) of ``trials`` at
    ``settings`` (already at their rate): what ``train_fused_group`` trains and the dry
    run's time estimate (``measure``) times."""
    seed = _group_seed(trials)
    fused, copies = _start_group(trials, loss_specs, data, settings, seed)
    steps_per_epoch = len(training_loader(data, settings, _needs_of(copies), seed, epoch=1))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        fused.optimizer, T_max=settings.epochs * steps_per_epoch
    )
    return fused, copies, scheduler, steps_per_epoch


def _start_group(trials, loss_specs, data, settings, seed) -> tuple[Fused, list[_Copy]]:
    """The fused model (every copy from the seed's weights) and each trial's fitted loss."""
    device = settings.device
    model = build_model(settings.preset, data.out_channels, settings.encoder_weights, seed)
    fused = fused_model(model.to(device), len(trials), settings)
    class_counts = torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64)
    copies = []
    for trial in trials:
        loss_fn = make_loss(loss_specs[trial.loss], data).to(device)
        loss_fn.fit(class_counts)
        copies.append(_Copy(trial, loss_fn, TrialLog(trial, data, settings.epochs)))
    return fused, copies


@dataclass(frozen=True)
class _EpochSoFar:
    """An epoch once trained: what its rows need besides each copy's own numbers."""

    epoch: int
    lr: float
    train_share: float  # each active copy's share of the training pass, in seconds
    on_epoch: Callable[[Trial, dict[str, Any]], None] | None


def _drop_diverged(fused, active, train_losses, so_far: _EpochSoFar) -> list[tuple[_Copy, float]]:
    """Record every copy whose epoch loss is not finite as diverged and drop it from the
    fused model; returns the others with their train losses, in order."""
    kept = []  # positions of the copies whose loss stayed finite
    for position, (piece, train_loss) in enumerate(zip(active, train_losses, strict=True)):
        if math.isfinite(train_loss):
            kept.append(position)
            continue
        # The row's seconds run from its "start": this copy's share of the epoch.
        start = time.perf_counter() - so_far.train_share
        row = piece.log.diverged(so_far.epoch, train_loss, so_far.lr, start)
        if so_far.on_epoch:
            so_far.on_epoch(piece.trial, row)
    if kept and len(kept) < len(active):
        fused.keep(kept)
    return [(active[position], train_losses[position]) for position in kept]


def _validate(
    fused, survivors, data, settings, so_far: _EpochSoFar, on_evaluation=None
) -> list[_Copy]:
    """Score validation (and test) for every surviving copy and record its epoch row; a
    copy with a non-finite output is recorded as diverged and dropped from the fused model.
    Returns the copies still training, in order."""
    val_start = time.perf_counter()
    log, epoch = survivors[0][0].log, so_far.epoch
    on_batch = _for_each_copy([piece.trial for piece, _ in survivors], on_evaluation)
    keep = log.keeps_predictions(epoch, "val")
    results = _evaluate(fused, data, settings, "val", keep, on_batch)
    tests = (
        _evaluate(fused, data, settings, "test", log.keeps_predictions(epoch, "test"), on_batch)
        if data.has_test
        else [None] * len(survivors)
    )
    val_share = (time.perf_counter() - val_start) / len(survivors)
    kept = []  # positions of the copies whose outputs stayed finite
    for position, ((piece, train_loss), val, test) in enumerate(
        zip(survivors, results, tests, strict=True)
    ):
        piece.seconds += val_share
        own_start = time.perf_counter()
        row_start = own_start - so_far.train_share - val_share
        if outputs_finite(val, test):
            kept.append(position)
            progress = _for_one_copy(piece.trial, on_evaluation)
            row = piece.log.validated(epoch, train_loss, so_far.lr, row_start, val, test, progress)
        else:
            row = piece.log.diverged(epoch, train_loss, so_far.lr, row_start)
        if so_far.on_epoch:
            so_far.on_epoch(piece.trial, row)
        piece.seconds += time.perf_counter() - own_start
    if kept and len(kept) < len(survivors):
        fused.keep(kept)
    return [survivors[position][0] for position in kept]


class _Float32BatchNorm(torch.nn.BatchNorm2d):
    """BatchNorm2d on a float32 copy of its input (a no-op for float32 input).

    Under ``vmap`` with stacked weights and statistics, functorch's batch-norm rule calls
    the kernel with stand-in weights in the input's dtype beside the float32 running
    statistics. Under bf16 autocast (CUDA casts ``convolution``, the op a vmapped conv
    becomes) the input is bf16, a mix the CPU kernel refuses; float32 here is the
    precision cuDNN's batch norm computes in anyway, and the next convolution casts back.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return super().forward(input.float())


@dataclass(eq=False)
class _Copy:
    """One trial of the group: its loss module, its bookkeeping and its share of the time."""

    trial: Trial
    loss_fn: torch.nn.Module
    log: TrialLog
    seconds: float = 0.0


class FusedModel:
    """K copies of one model as stacked parameters and buffers, trained by one AdamW.

    Call it on a batch (B, ...), in ``layout``, to get every copy's output stacked
    (K, B, ...). The model given becomes the weightless template that ``functional_call``
    runs (its weights move to the meta device, after being copied K times). ``train()``
    / ``eval()`` switch the template, so BatchNorm uses batch statistics (and updates
    each copy's running statistics) or the running statistics, as a plain module would.

    ``per_copy`` (a run resumed on the CPU that started before ``fused_own_weights``; new
    CPU runs take ``SeparateCopies``): the copies run one after another on channels_last
    batches, each on its views of the stacked weights and statistics (``unbind``: its
    backward stacks the K gradients once); else one ``vmap`` over the stacked weights runs
    them all (NCHW: vmap refuses a channels_last ``contiguous``).
    """

    def __init__(self, model: torch.nn.Module, copies: int, settings: TrainSettings):
        from losscmp.config import PER_COPY_FUSED_DEVICES

        self.per_copy = settings.fused_per_copy and settings.device.type in PER_COPY_FUSED_DEVICES
        # The batches' layout. The weights stay NCHW (stacked contiguous for AdamW's kernel):
        # oneDNN computes in the input's layout and gives the same numbers either way.
        self.layout = torch.channels_last if self.per_copy else torch.contiguous_format
        self.params, self.buffers = stack_module_state([model] * copies)
        self.template = model.to("meta")
        for module in self.template.modules():
            if type(module) is torch.nn.BatchNorm2d:
                module.__class__ = _Float32BatchNorm
        # One AdamW over the stacked tensors is K independent AdamWs: its update is
        # elementwise, and the step count and the learning rate (one cosine schedule) are
        # the same for every copy. Weight decay is elementwise too. (Not bit for bit: the CPU's
        # fused kernel rounds by an element's position, which SeparateCopies avoids.)
        self.optimizer = make_optimizer(self.params.values(), settings)
        # Over the template alone, not the bound ``self._call``: a FusedModel holding a
        # function that holds it would be a reference cycle, its K copies' weights, gradients
        # and AdamW moments (GPU memory) kept after the group ends until Python's cycle
        # collector happens to run, into the next group's time and peak memory.
        self._forward = vmap(_functional(self.template), in_dims=(0, 0, None))

    @property
    def copies(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def finite_weights(self) -> torch.Tensor:
        """Whether each copy's weights and statistics are all finite: (K,) bool, on the device."""
        state = learned_state(self.params.values(), self.buffers.values())
        return finite_weights(state, stacked=True)

    def _call(self, params, buffers, images):
        return _functional(self.template)(params, buffers, images)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.per_copy:
            return self._forward(self.params, self.buffers, images)
        params = _unstacked(self.params, self.copies)
        buffers = _unstacked(self.buffers, self.copies)
        outputs = [self._call(mine, own, images) for mine, own in zip(params, buffers, strict=True)]
        # As train_one_epoch gives its loss the logits: contiguous (channels_last is not
        # for C > 1); the stack is one more copy of the logits, a thousandth of the step.
        return torch.stack([out.contiguous() for out in outputs])

    def train(self) -> FusedModel:
        self.template.train()
        return self

    def eval(self) -> FusedModel:
        self.template.eval()
        return self

    def keep(self, positions: list[int]) -> None:
        """Keep only the copies at ``positions`` (in that order): parameters, buffers and
        AdamW moments are sliced, so a dropped copy's values never reach the others."""
        first = next(iter(self.params.values()))
        index = torch.as_tensor(positions, dtype=torch.long, device=first.device)
        state = self.optimizer.state
        kept = {}
        for name, old in self.params.items():
            new = old.detach().index_select(0, index).requires_grad_(old.requires_grad)
            moments = state.pop(old, None)
            if moments:  # exp_avg and exp_avg_sq are per copy; the step count is shared
                state[new] = {
                    key: value.index_select(0, index)
                    if torch.is_tensor(value) and value.shape == old.shape
                    else value
                    for key, value in moments.items()
                }
            kept[name] = new
        self.params = kept
        self.optimizer.param_groups[0]["params"] = list(kept.values())
        self.buffers = {name: value.index_select(0, index) for name, value in self.buffers.items()}


class SeparateCopies:
    """K models of their own, run one after another, trained by one AdamW over all their
    weights: ``FusedModel``'s interface on the CPU (``fused_model``).

    Each copy is the seed's model in channels_last, with parameters and BatchNorm statistics
    of its own, exactly as ``train_trial`` holds one; its forward pass is that model's.
    torch's fused CPU AdamW updates each tensor of its list on its own, so each copy's
    update is the one its trial's AdamW makes (the step count is per tensor, the learning
    rate one cosine schedule): ``--fuse off``'s numbers bit for bit.
    """

    per_copy = True
    layout = torch.channels_last  # of the batches, as train_trial gives them

    def __init__(self, model: torch.nn.Module, copies: int, settings: TrainSettings):
        self.models = [
            copy.deepcopy(model).to(memory_format=torch.channels_last) for _ in range(copies)
        ]
        self.optimizer = make_optimizer(self._parameters(), settings)

    @property
    def copies(self) -> int:
        return len(self.models)

    def _parameters(self) -> list[torch.nn.Parameter]:
        return [param for model in self.models for param in model.parameters()]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # As train_one_epoch gives its loss the logits: contiguous (channels_last is not
        # for C > 1); the stack is one more copy of the logits, a thousandth of the step.
        return torch.stack([model(images).contiguous() for model in self.models])

    def train(self) -> SeparateCopies:
        for model in self.models:
            model.train()
        return self

    def eval(self) -> SeparateCopies:
        for model in self.models:
            model.eval()
        return self

    def finite_weights(self) -> torch.Tensor:
        """Whether each copy's weights and statistics are all finite: (K,) bool, on the device."""
        return torch.stack(
            [finite_weights(learned_state(m.parameters(), m.buffers())) for m in self.models]
        )

    def keep(self, positions: list[int]) -> None:
        """Keep only the copies at ``positions`` (in that order), their AdamW state with them."""
        kept = [self.models[position] for position in positions]
        kept_params = {id(param) for model in kept for param in model.parameters()}
        for param in self._parameters():
            if id(param) not in kept_params:
                self.optimizer.state.pop(param, None)
        self.models = kept
        self.optimizer.param_groups[0]["params"] = self._parameters()


Fused = FusedModel | SeparateCopies


def fused_model(model: torch.nn.Module, copies: int, settings: TrainSettings) -> Fused:
    """``copies`` copies of ``model`` as the device runs them: models of their own on the
    CPU (``config.PER_COPY_FUSED_DEVICES``, unless a resumed run started before
    ``fused_own_weights``), stacked weights under ``vmap`` elsewhere."""
    from losscmp.config import separate_fused_copies

    own = settings.fused_per_copy, settings.fused_own_weights
    if separate_fused_copies(*own, settings.device.type):
        return SeparateCopies(model, copies, settings)
    return FusedModel(model, copies, settings)


def _functional(template: torch.nn.Module) -> Callable:
    """``template``'s forward pass with the weights and buffers given (by name)."""

    def call(params, buffers, images):
        return functional_call(template, (params, buffers), (images,))

    return call


def _unstacked(stacked: dict[str, torch.Tensor], copies: int) -> list[dict[str, torch.Tensor]]:
    """Each copy's views of the stacked tensors, by name."""
    views = [tensor.unbind() for tensor in stacked.values()]
    return [{name: own[k] for name, own in zip(stacked, views, strict=True)} for k in range(copies)]


def _train_epoch(fused, copies, scheduler, data, settings, epoch, on_step) -> torch.Tensor:
    """One pass over the training split for every copy; each copy's sum of its steps' losses
    (K,), on the device: nothing here waits for it (as ``train.train_one_epoch``)."""
    fused.train()
    device = settings.device
    needs = _needs_of(copies)
    loader = training_loader(data, settings, needs, copies[0].trial.seed, epoch)
    totals = torch.zeros(len(copies), device=device)
    steps = len(loader)
    for step, batch in enumerate(loader, start=1):
        totals += group_step(fused, copies, scheduler, batch, settings, needs)
        if on_step:
            for piece in copies:
                on_step(piece.trial, step, steps)
    return totals


def group_step(fused, copies, scheduler, batch, settings, needs=None) -> torch.Tensor:
    """One training step of every copy on a host ``batch``; their losses (K,), detached,
    on the device (no wait). ``needs``: the copies' maps (``_needs_of``)."""
    needs = needs or _needs_of(copies)
    images, target, maps = batch_on_device(batch, settings.device, fused.layout, needs.needs)
    with _autocast(settings):
        logits = fused(images)
    logits = logits.float()
    losses = torch.stack(
        [_copy_loss(piece, logits[k], target, maps) for k, piece in enumerate(copies)]
    )
    fused.optimizer.zero_grad(set_to_none=True)
    # d(sum)/d(loss_k) = 1 for every k, NaN or not: copy k's gradient is its own loss's.
    losses.sum().backward()
    fused.optimizer.step()
    scheduler.step()
    return losses.detach()


def _for_each_copy(trials: list[Trial], on_evaluation) -> Callable[[str, int, int], None] | None:
    """An evaluation pass's ``on_batch``, told to every copy it scores."""
    if on_evaluation is None:
        return None

    def on_batch(split: str, batch: int, batches: int) -> None:
        for trial in trials:
            on_evaluation(trial, split, batch, batches)

    return on_batch


def _for_one_copy(trial: Trial, on_evaluation) -> Callable[[str, int, int], None] | None:
    """``on_evaluation`` for one copy's own work (its boundary scores)."""
    if on_evaluation is None:
        return None
    return lambda split, done, total: on_evaluation(trial, split, done, total)


def _evaluate(fused, data, settings, split: str, keep_predictions: bool = False, on_batch=None):
    """Per copy, an ``Evaluation`` of ``split``: per-image confusion counts, the binary
    probability histogram, hard predictions if asked (as ``train.evaluate`` gives one model)."""
    found = _evaluate_on_device(fused, data, settings, split, keep_predictions, on_batch)
    stacked = found.to_host()
    return [
        Evaluation(
            stacked.counts[k].clone(),
            stacked.histogram[k].copy() if stacked.histogram is not None else None,
            stacked.predictions[k].copy() if stacked.predictions is not None else None,
            bool(stacked.finite[k]),
        )
        for k in range(fused.copies)
    ]


@torch.no_grad()
def _evaluate_on_device(fused, data, settings, split: str, keep_predictions: bool, on_batch=None):
    """The copies' ``Evaluation`` stacked (K first) and on the device: no wait for it.
    ``on_batch(split, batch, batches)`` after each batch (``train.evaluate_on_device``)."""
    fused.eval()
    device = settings.device
    copies = fused.copies
    counts, predictions = [], []
    histogram = None
    finite = torch.ones(copies, dtype=torch.bool, device=device)
    loader = evaluation_loader(data, settings, split)
    for number, batch in enumerate(loader, start=1):
        images, target, _ = batch_on_device(batch, device, fused.layout)
        with _autocast(settings):
            logits = fused(images).float()
        finite &= all_finite(logits.flatten(1), dim=1)
        flat = logits.flatten(0, 1)  # (K·B, C, H, W), copy-major
        targets = target.expand(copies, *target.shape).flatten(0, 1)
        found = metrics.confusion_counts(
            flat, targets, mode=data.mode, ignore_index=data.ignore_index
        )
        counts.append(found.unflatten(0, (copies, -1)))
        if data.mode == "binary":
            batch_histogram = metrics.grouped_probability_histogram(
                logits, target, ignore_index=data.ignore_index
            )
            histogram = batch_histogram if histogram is None else histogram + batch_histogram
        if keep_predictions:
            hard = hard_prediction(flat, data.mode).to(torch.uint8)
            predictions.append(hard.unflatten(0, (copies, -1)))
        if on_batch:
            on_batch(split, number, len(loader))
    kept = torch.cat(predictions, dim=1) if keep_predictions else None
    return Evaluation(torch.cat(counts, dim=1), histogram, kept, finite)


def _copy_loss(piece: _Copy, logits, target, maps) -> torch.Tensor:
    """The copy's loss on its logits. An error fails every trial of the group: it says which
    loss raised it, so the others' failures are not read as theirs. (Out of memory is the
    group's, not the loss's: ``executors.base.failed`` words that.)"""
    try:
        return piece.loss_fn(logits, target, **_subset(maps, piece.loss_fn.needs))
    except Exception as error:
        if not out_of_memory(error):  # torch's, Python's, cuDNN's or cuBLAS's
            error.add_note(
                f"raised by loss '{piece.trial.loss}' of a fused group: --fuse off trains "
                "each loss alone"
            )
        raise


def _subset(maps: dict[str, torch.Tensor], names) -> dict[str, torch.Tensor]:
    """The maps this copy's loss needs, as ``train_one_epoch`` passes them."""
    return {name: maps[name] for name in names}


def _needs_of(copies: list[_Copy]) -> SimpleNamespace:
    """The union of the copies' target maps, shaped as ``training_loader`` reads a loss."""
    return SimpleNamespace(needs=frozenset().union(*(piece.loss_fn.needs for piece in copies)))


def _group_seed(trials: list[Trial]) -> int:
    if not trials:
        raise ValueError("a fused group needs at least one trial")
    groups = {(trial.dataset, trial.seed) for trial in trials}
    if len(groups) != 1:
        raise ValueError(f"a fused group shares one dataset and seed, got {sorted(groups)}")
    return trials[0].seed
