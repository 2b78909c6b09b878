"""Model presets: the same smp U-Net shape for every loss of a run.

``tiny`` is sized for CPU runs (a 16×64×64 training step takes about 0.08 s
on 2 cores, channels_last); ``small`` is a standard ResNet-18 U-Net and the default on a GPU;
``medium`` is smp's ResNet-34 default. ``auto`` picks tiny on the CPU and
small elsewhere.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from losscmp.errors import ParameterError, unknown


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    unet_kwargs: dict[str, Any]


MODEL_PRESETS = {
    preset.name: preset
    for preset in (
        ModelPreset(
            "tiny",
            "U-Net, ResNet-18 encoder cut at depth 3, decoder 32-16-8 (CPU smoke runs, demo)",
            {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": (32, 16, 8)},
        ),
        ModelPreset(
            "small",
            "U-Net, full ResNet-18 encoder, decoder 128-64-32-16-16 (GPU default)",
            {"encoder_name": "resnet18", "decoder_channels": (128, 64, 32, 16, 16)},
        ),
        ModelPreset(
            "medium",
            "U-Net, ResNet-34 encoder, smp's default decoder 256-128-64-32-16",
            {"encoder_name": "resnet34"},
        ),
    )
}


def resolve_preset(name: str, device_type: str) -> ModelPreset:
    """``auto`` means tiny on the CPU (where time is short) and small on accelerators."""
    if name == "auto":
        name = "tiny" if device_type == "cpu" else "small"
    if name not in MODEL_PRESETS:
        raise unknown("model preset", name, [*MODEL_PRESETS, "auto"])
    return MODEL_PRESETS[name]


# The initial models this process has built, by what decides their weights, oldest first.
# The planner orders trials dataset, seed, rate, loss, so one seed's trials (every rate and
# loss, or the fused groups of them) come in one stretch, in this process and in each worker:
# one entry serves that stretch, a second the runner's early build with pretrained weights
# (out_channels 1), so no more are kept (a `medium` entry holds 24 M weights).
INITIAL_MODELS_KEPT = 2
_INITIAL_MODELS: OrderedDict[tuple, Any] = OrderedDict()
_INITIAL_MODELS_LOCK = threading.Lock()  # a Ray worker may run tasks in threads
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def build_model(preset: ModelPreset, out_channels: int, encoder_weights: str | None, seed: int):
    """Build the U-Net with weights drawn from ``seed`` alone, so every loss starts equal.

    Each call returns a model of its own (a trial trains its weights in place); the ones
    after the first of the same initial model in this process are copies of a kept one,
    bit for bit the weights and buffers a fresh build draws (~0.01 s for the tiny preset
    against ~0.2 s to construct ResNet-18 and draw its 11 M weights, 93 % then dropped).
    The global random state is left as it was."""
    key = (preset.name, repr(sorted(preset.unet_kwargs.items())), out_channels)
    key += (encoder_weights, seed)
    with _INITIAL_MODELS_LOCK:
        if key in _INITIAL_MODELS:
            _INITIAL_MODELS.move_to_end(key)
        else:
            _INITIAL_MODELS[key] = _construct(preset, out_channels, encoder_weights, seed)
            while len(_INITIAL_MODELS) > INITIAL_MODELS_KEPT:
                _INITIAL_MODELS.popitem(last=False)
        return copy.deepcopy(_INITIAL_MODELS[key])  # new tensors, storage shared with none


def clear_model_cache() -> None:
    """Forget the kept initial models (tests; a process that wants their memory back)."""
    with _INITIAL_MODELS_LOCK:
        _INITIAL_MODELS.clear()


def _construct(preset: ModelPreset, out_channels: int, encoder_weights: str | None, seed: int):
    """smp's U-Net with every weight drawn from ``seed`` (or loaded), less its unused stages."""
    import segmentation_models_pytorch as smp
    import torch

    def unet():
        torch.manual_seed(seed)  # each attempt draws the same weights
        return smp.Unet(
            in_channels=3,
            classes=out_channels,
            encoder_weights=encoder_weights,
            **preset.unet_kwargs,
        )

    with torch.random.fork_rng(devices=[]), _quiet_hub_logging():
        model = _pretrained(unet, preset, encoder_weights) if encoder_weights else unet()
    _drop_unused_stages(model.encoder, preset.unet_kwargs.get("encoder_depth", 5))
    return model


def _pretrained(unet, preset: ModelPreset, encoder_weights: str):
    """``unet()`` with the weights from the Hugging Face hub's cache if they are there (no
    network at all), else downloaded; refused at once where the hub cannot be reached:
    the hub's client would retry the connection for ~25 s per file before failing."""
    from huggingface_hub import constants

    try:
        with _hub_offline():
            return unet()
    except (OSError, RuntimeError):
        pass  # not in the cache
    cannot = f"could not load '{encoder_weights}' encoder weights for the {preset.name} model"
    where = f"they are downloaded once into {constants.HF_HUB_CACHE}, then read from there"
    host = _unreachable_hub_host()
    if host:
        raise ParameterError(f"{cannot}: {host} cannot be reached (no internet access?); {where}")
    try:
        return unet()
    except (OSError, RuntimeError):
        raise ParameterError(f"{cannot} ({where}; is there internet access?)") from None


@contextlib.contextmanager
def _hub_offline():
    """The hub's client reads its cache only (``HF_HUB_OFFLINE``), failing at once."""
    from huggingface_hub import constants

    # A module global, read by every hub call in this process: a thread building a model
    # meanwhile (a Ray worker runs tasks in threads) would be offline too, and two
    # overlapping switches could restore each other's value. Safe only because it is
    # switched from _construct alone, which runs under _INITIAL_MODELS_LOCK (one build at
    # a time), and nothing else in losscmp calls the hub.
    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline


def _unreachable_hub_host() -> str | None:
    """The hub's host name where it does not resolve (no network, no DNS), else None; not
    asked through a proxy, which resolves it itself."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return host
    return None


def _drop_unused_stages(encoder, depth: int) -> None:
    """smp keeps a ResNet encoder's stages beyond ``depth``, which its forward never runs:
    93 % of the tiny preset's weights, held once per trial and K times by a fused model.
    Stage k (``layer{k}``) runs from depth k + 1. Dropped once the model is built, so every
    weight in use is drawn as before: no number changes. An empty stage rather than none,
    since smp before 0.4 lists every stage in its forward (running the first depth + 1)."""
    import torch

    for stage in range(depth, 5):
        if isinstance(getattr(encoder, f"layer{stage}", None), torch.nn.Module):
            setattr(encoder, f"layer{stage}", torch.nn.Identity())


def input_memory_format(model):
    """The layout to feed ``model`` its batches in: that of its first 4-D weight.

    ``train_trial`` moves the model to ``channels_last`` (oneDNN on the CPU and cuDNN run
    the U-Net about 1.3x faster on it than on NCHW), and a channels_last model given NCHW
    batches would convert every activation back; a model kept in NCHW gets NCHW batches.
    """
    import torch

    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    if weight is not None and weight.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@contextlib.contextmanager
def _quiet_hub_logging():
    """Mute huggingface_hub's per-retry warnings: a failed download is reported in one line."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)
