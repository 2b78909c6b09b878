"""Training settings, and CUDA-style bf16 on the CPU, for tests that call the trainers directly."""

from __future__ import annotations

import contextlib

import torch

from losscmp.fused import FusedModel, _Copy, _train_epoch
from losscmp.model import MODEL_PRESETS, build_model
from losscmp.plan import Trial, make_loss
from losscmp.spec import parse_spec
from losscmp.train import TrainSettings, TrialLog, make_optimizer, train_one_epoch


def tiny_settings(
    device: str | torch.device = "cpu",
    *,
    epochs: int = 1,
    batch_size: int = 4,
    lr: float = 1e-3,
    amp: bool = False,
    fused_per_copy: bool = True,
) -> TrainSettings:
    """The ``tiny`` U-Net, no pretrained weights, no loader workers, AdamW's weight decay 1e-4;
    ``fused_per_copy`` False: a fused model runs its copies under vmap, as on CUDA."""
    return TrainSettings(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=1e-4,
        num_workers=0,
        preset=MODEL_PRESETS["tiny"],
        encoder_weights=None,
        device=torch.device(device),
        amp=amp,
        fused_per_copy=fused_per_copy,
    )


def one_step_fused_and_alone(data, losses: list[str], setup: TrainSettings):
    """One training step (``data`` has one batch) of the losses' copies fused, and of each
    alone, on ``setup.device``: (the fused losses, the FusedModel, [(loss, model, optimizer)
    of each alone])."""
    device = setup.device
    trials = [Trial(data.spec, label, 0) for label in losses]
    counts = torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64)

    def loss_for(trial):
        loss_fn = make_loss(parse_spec(trial.loss), data).to(device)
        loss_fn.fit(counts)
        return loss_fn

    def model():
        return build_model(setup.preset, data.out_channels, None, seed=0).to(device)

    fused = FusedModel(model(), len(trials), setup)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fused.optimizer, T_max=1)
    copies = [_Copy(trial, loss_for(trial), TrialLog(trial, data, 1)) for trial in trials]
    fused_losses = _train_epoch(fused, copies, scheduler, data, setup, 1, None).tolist()
    alone = []
    for trial in trials:
        single = model()
        optimizer = make_optimizer(single.parameters(), setup)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1)
        loss_fn = loss_for(trial)
        total = train_one_epoch(single, loss_fn, optimizer, schedule, data, setup, 0, 1, None)
        alone.append((float(total), single, optimizer))
    return fused_losses, fused, alone


@contextlib.contextmanager
def cuda_style_bf16_on_cpu(monkeypatch):
    """bf16 autocast on the CPU, applied as CUDA applies it, for the trainers' ``_autocast``.

    The two devices' autocast lists differ where it matters to a fused model: CUDA casts
    ``aten::convolution`` (the op a vmapped ``conv2d`` reaches), the CPU only ``conv2d``. So
    on the CPU a fused model's convolutions would stay float32, and its BatchNorm would
    never see the bf16 input it gets on a GPU. Registering CUDA's rule for the CPU closes
    that gap for the duration (the library object's registrations end with it)."""
    import losscmp.fused
    import losscmp.train

    def convolution_in_bf16(input, weight, bias, *options):
        below_autocast = torch._C._ExcludeDispatchKeyGuard(
            torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)
        )
        with below_autocast:
            dtype = torch.get_autocast_dtype("cpu")
            bias = bias.to(dtype) if bias is not None else None
            return torch.ops.aten.convolution(input.to(dtype), weight.to(dtype), bias, *options)

    def cpu_autocast(settings):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.amp)

    library = torch.library.Library("aten", "IMPL")
    library.impl("convolution", convolution_in_bf16, "AutocastCPU")
    monkeypatch.setattr(losscmp.train, "_autocast", cpu_autocast)
    monkeypatch.setattr(losscmp.fused, "_autocast", cpu_autocast)
    try:
        yield
    finally:
        library._destroy()
