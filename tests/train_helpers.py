"""Training settings for tests that call the trainers directly (no run folder)."""

from __future__ import annotations

import torch

from losscmp.model import MODEL_PRESETS
from losscmp.train import TrainSettings


def tiny_settings(
    device: str | torch.device = "cpu",
    *,
    epochs: int = 1,
    batch_size: int = 4,
    lr: float = 1e-3,
    amp: bool = False,
) -> TrainSettings:
    """The ``tiny`` U-Net, no pretrained weights, no loader workers, AdamW's weight decay 1e-4."""
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
    )
