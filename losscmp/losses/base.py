"""The loss interface every registered loss follows (registered in ``catalogue.py``).

A loss is a thin ``nn.Module`` (``SegLoss``) around pure functions in
``functional.py``. ``SegLoss.forward`` does the shared work once: it checks the
shapes, runs the maths in float32 with autocast off (fp16 sums of 65 536 ones
overflow, smp issue 463) and hands the subclass clean inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from losscmp.errors import ParameterError
from losscmp.losses.catalogue import (  # noqa: F401 (the family modules import them from here)
    BINARY_MODE,
    BOTH_MODES,
    MODES,
    MULTICLASS_MODE,
    OBJECT_DISTANCE,
    SIGNED_DISTANCE,
    check_mode,
)

# Labels an int64 mask tensor can hold: what ``ignore_index`` may be.
MASK_LABELS = range(-(2**63), 2**63)


# ---------------------------------------------------------------- validation
def check_range(name: str, value: float, low: float, high: float = float("inf")) -> float:
    """Closed interval check that raises ``ParameterError`` (never assert on user input)."""
    if not low <= value <= high:
        upper = "" if high == float("inf") else f" and <= {high}"
        raise ParameterError(f"{name} must be >= {low}{upper}, got {value}")
    return value


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ParameterError(f"{name} must be > 0, got {value}")
    return value


def check_class_weights(weights: list[float] | None) -> list[float] | None:
    if weights is None:
        return None
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ParameterError(
            f"class_weights must be non-negative with a positive sum, got {weights}"
        )
    return [float(w) for w in weights]


class SegLoss(nn.Module):
    """Base of every loss: ``loss(logits, target, **maps) -> scalar``.

    Subclasses implement ``compute(logits, target, maps)`` and receive float32
    logits (N, C, H, W), a binary target (N, 1, H, W) float or a multiclass
    target (N, H, W) long, and the target maps named in ``needs``.
    """

    # The target maps ``forward`` is given: the registration's ``needs``, which
    # ``create_loss`` sets on the loss it builds.
    needs: frozenset[str] = frozenset()

    def __init__(self, mode: str = BINARY_MODE, params: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.mode = check_mode(mode)
        self.params: dict[str, Any] = {
            key: value
            for key, value in (params or {}).items()
            if key not in ("self", "mode", "__class__")
        }
        ignore_index = self.params.get("ignore_index")
        if ignore_index is not None and ignore_index not in MASK_LABELS:
            # Masks are compared with it as int64 tensors: a larger one cannot be a label.
            raise ParameterError(
                f"ignore_index={ignore_index} is not a mask label "
                f"({MASK_LABELS.start}..{MASK_LABELS.stop - 1})"
            )

    @property
    def binary(self) -> bool:
        return self.mode == BINARY_MODE

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1]: 0 in the first epoch, 1 in the last
        (``train.training_progress``); most losses ignore it."""

    def fit(self, class_pixel_counts: torch.Tensor) -> None:
        """Training-set pixel counts per class ((2,) for binary); most losses ignore it."""

    def target_map(self, name: str, logits: torch.Tensor, target: torch.Tensor, maps: dict):
        """The map the data pipeline computed, or (Python API, tests) one computed here from
        the target, on the CPU: correct, but slow for training."""
        found = maps.get(name)
        if found is None:
            from losscmp.losses.distance import batch_target_maps

            found = batch_target_maps(
                target,
                mode=self.mode,
                num_classes=logits.shape[1],
                ignore_index=getattr(self, "ignore_index", None),
                names=[name],
            )[name]
        return found.to(device=logits.device, dtype=torch.float32)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, **maps: torch.Tensor):
        logits, target = self._check_inputs(logits, target)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute(logits.float(), target, maps)

    def compute(self, logits: torch.Tensor, target: torch.Tensor, maps: dict) -> torch.Tensor:
        raise NotImplementedError

    def _check_inputs(self, logits: torch.Tensor, target: torch.Tensor):
        if logits.dim() < 3:
            raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
        if self.binary:
            if logits.shape[1] != 1:
                raise ValueError(
                    f"binary mode expects one logit channel, got {logits.shape[1]}; "
                    "use mode='multiclass'"
                )
            if target.dim() == logits.dim() - 1:
                target = target.unsqueeze(1)
        else:
            if logits.shape[1] < 2:
                raise ValueError("multiclass mode expects C >= 2 logit channels")
            if target.dim() == logits.dim() and target.shape[1] == 1:
                target = target.squeeze(1)
            target = target.long()
        # Binary: (N, 1, ...) like the logits; multiclass: class indices (N, ...). The whole
        # shape is compared: a (N, 3, H, W) mask must not broadcast against one channel.
        expected = logits.shape if self.binary else logits.shape[:1] + logits.shape[2:]
        if target.shape != expected:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
            )
        return logits, target

    def extra_repr(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"mode={self.mode!r}, {inner}" if inner else f"mode={self.mode!r}"
