"""A user's own loss and dataset, in a module of their own (not losscmp's): registered by a
test the way a notebook would, then used by worker processes that import them by name."""

from __future__ import annotations

import torch

from losscmp.data.base import SegmentationData
from losscmp.data.synthetic import load_synthetic
from losscmp.losses.base import BINARY_MODE, SegLoss


class ScaledBCE(SegLoss):
    """``scale`` times the binary cross-entropy."""

    def __init__(self, mode: str = BINARY_MODE, *, scale: float = 0.5) -> None:
        super().__init__(mode, locals())
        self.scale = scale

    def compute(self, logits, target, maps):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        return self.scale * bce


def load_few_shapes(*, fg_fraction: float = 0.2, **context) -> SegmentationData:
    """A few generated images: the synthetic set's, under a name of the user's."""
    return load_synthetic(fg_fraction=fg_fraction, n_train=16, n_val=8, n_test=8, **context)
