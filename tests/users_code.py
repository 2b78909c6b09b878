"""A user's own loss, in a module of their own (not losscmp's): registered by a test the
way a notebook would, then trained by worker processes that import it by name."""

from __future__ import annotations

import torch

from losscmp.losses.base import BINARY_MODE, SegLoss


class ScaledBCE(SegLoss):
    """``scale`` times the binary cross-entropy."""

    def __init__(self, mode: str = BINARY_MODE, *, scale: float = 0.5) -> None:
        super().__init__(mode, locals())
        self.scale = scale

    def compute(self, logits, target, maps):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        return self.scale * bce
