"""No host-device sync per training step, checked without a GPU.

On the meta device a tensor has a shape and a dtype but no values, so everything that
reads a value on the host (``.item()``, ``float(t)``, ``if t:``, ``.tolist()``,
``.cpu()``, ``.numpy()``, boolean indexing, ``nonzero``) raises. Code that runs on
meta therefore runs on a GPU without waiting for it: a training step, a fused step and
an evaluation pass (its per-batch progress included) run on meta here, end to end, with
every loss. The CPU-only shortcuts (SciPy distance transforms, Lovász's sort of the
positive errors, top-k's count of valid pixels) are the branches a non-CPU device does
not take.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from losses_helpers import (
    IGNORE,
    loss_and_pipeline_target,
    loss_mode_pairs,
    random_logits,
    random_target,
)
from train_helpers import tiny_settings

from losscmp.data import load_dataset
from losscmp.fused import FusedModel, _Copy, _evaluate_on_device, _train_epoch
from losscmp.losses import create_loss
from losscmp.losses.pixel import top_fraction_mean, top_fraction_mean_on_device
from losscmp.model import build_model
from losscmp.plan import Trial, make_loss
from losscmp.spec import parse_spec
from losscmp.train import TrialLog, evaluate_on_device, make_optimizer, train_one_epoch

META = torch.device("meta")
PAIRS = loss_mode_pairs()


@pytest.fixture(autouse=True)
def no_autocast_on_meta(monkeypatch):
    """The meta device has no autocast state, so ``torch.autocast`` refuses it; with
    autocast disabled (float32 training, the losses' own float32 block) it is a no-op."""
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())


def on_meta(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(META)


@pytest.mark.parametrize("ignore_index", [None, IGNORE])
@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=[f"{n}-{m}" for n, m in PAIRS])
def test_every_loss_runs_forward_and_backward_without_reading_the_device(name, mode, ignore_index):
    loss, target, maps = loss_and_pipeline_target(name, mode, ignore_index)
    logits = on_meta(random_logits(mode)).requires_grad_(True)
    value = loss(logits, on_meta(target), **{key: on_meta(m) for key, m in maps.items()})
    value.backward()
    assert value.shape == () and value.device == META
    assert logits.grad.shape == logits.shape


def test_lovasz_per_image_runs_without_reading_the_device():
    loss = create_loss("lovasz", mode="binary", per_image=True)
    logits = on_meta(random_logits("binary")).requires_grad_(True)
    loss(logits, on_meta(random_target("binary"))).backward()
    assert logits.grad.shape == logits.shape


def test_top_fraction_without_a_host_count_equals_the_host_count():
    """The device path of top-k (k stays a tensor) against the CPU's, on random cases,
    and a hand-computed one: valid [5, 1, 3, 2], 50 % -> the mean of 5 and 3."""
    values = torch.tensor([5.0, 9.0, 1.0, 3.0, 2.0])
    valid = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0])
    masked = torch.where(valid > 0, values, -1.0)
    assert top_fraction_mean_on_device(masked, valid, 50.0).item() == pytest.approx(4.0)
    assert top_fraction_mean(values, valid, 50.0).item() == pytest.approx(4.0)
    nothing = torch.zeros(5)
    assert top_fraction_mean_on_device(torch.full((5,), -1.0), nothing, 10.0).item() == 0.0
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        count = int(torch.randint(1, 500, (1,), generator=generator))
        values = torch.rand(count, generator=generator) * 3
        valid = (torch.rand(count, generator=generator) < 0.6).float()
        percent = float(torch.rand(1, generator=generator)) * 100 + 1e-3
        host = top_fraction_mean(values, valid, percent)
        device = top_fraction_mean_on_device(torch.where(valid > 0, values, -1.0), valid, percent)
        assert device.item() == pytest.approx(host.item(), rel=1e-6, abs=1e-7)


# ------------------------------------------------------------ whole passes on meta
BINARY = "synthetic(fg_fraction=0.2,n_train=4,n_val=4,n_test=4)"  # one batch of four
MULTICLASS = "synthetic(fg_fraction=0.2,n_train=4,n_val=4,n_test=4,num_classes=3)"


def meta_settings():
    return tiny_settings(META)


def losses_of(data) -> list[str]:
    return [name for name, mode in PAIRS if mode == data.mode]


@pytest.mark.parametrize("spec", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
def test_a_training_epoch_and_an_evaluation_run_without_reading_the_device(spec):
    data = load_dataset(spec, image_size=32, seed=0)
    settings = meta_settings()
    counts = torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64)
    template = build_model(settings.preset, data.out_channels, None, seed=0)
    template = template.to(META, memory_format=torch.channels_last)
    for name in losses_of(data):
        model = copy.deepcopy(template)
        loss_fn = make_loss(parse_spec(name), data).to(META)
        loss_fn.fit(counts)
        optimizer = make_optimizer(model.parameters(), settings)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
        total = train_one_epoch(model, loss_fn, optimizer, scheduler, data, settings, 0, 1, None)
        assert total.shape == () and total.device == META, name
    reported = []  # each batch's progress, told without reading the device
    found = evaluate_on_device(model, data, settings, "val", True, lambda *b: reported.append(b))
    assert reported == [("val", 1, 1)]
    assert found.counts.device == META and found.counts.shape[0] == 4
    assert found.predictions.shape == (4, 32, 32)


@pytest.mark.parametrize("spec", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
def test_a_fused_epoch_of_every_loss_runs_without_reading_the_device(spec):
    data = load_dataset(spec, image_size=32, seed=0)
    settings = meta_settings()
    counts = torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64)
    names = losses_of(data)
    model = build_model(settings.preset, data.out_channels, None, seed=0).to(META)
    fused = FusedModel(model, len(names), settings)
    copies = []
    for name in names:
        trial = Trial(data.spec, name, 0)
        loss_fn = make_loss(parse_spec(name), data).to(META)
        loss_fn.fit(counts)
        copies.append(_Copy(trial, loss_fn, TrialLog(trial, data, 1)))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fused.optimizer, T_max=2)
    totals = _train_epoch(fused, copies, scheduler, data, settings, 1, None)
    assert totals.shape == (len(names),) and totals.device == META
    reported = []
    found = _evaluate_on_device(fused, data, settings, "test", True, lambda *b: reported.append(b))
    assert reported == [("test", 1, 1)]
    assert found.counts.shape[:2] == (len(names), 4) and found.counts.device == META
    assert found.predictions.shape == (len(names), 4, 32, 32)
