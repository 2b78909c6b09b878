"""Small batches and predictions shared by the tests/test_losses_*.py files."""

from __future__ import annotations

import torch

from losscmp.losses import get_loss_entry, list_losses

SIZE = 16
CONFIDENT = 20.0
IGNORE = 255

# Losses whose minimum is the smoothed target, not a confident prediction.
SMOOTHED_LABELS = {"soft_bce": "epsilon", "label_smoothing_ce": "epsilon"}


def loss_mode_pairs() -> list[tuple[str, str]]:
    """Every (registered loss, supported mode): new losses are tested without new code."""
    return [(name, mode) for name in list_losses() for mode in get_loss_entry(name).modes]


def blob_target(mode: str, batch: int = 2, size: int = SIZE, classes: int = 3):
    """Targets with two objects per image (so every map and class is non-trivial)."""
    labels = torch.zeros(batch, size, size, dtype=torch.long)
    labels[:, 2:7, 3:9] = 1
    labels[:, 9:14, 8:15] = 2 if classes > 2 else 1
    labels[1:, 10:12, 1:4] = 1  # images differ
    if mode == "binary":
        return (labels > 0).float().unsqueeze(1)
    return labels


def random_logits(mode: str, batch: int = 2, size: int = SIZE, classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    channels = 1 if mode == "binary" else classes
    return torch.randn(batch, channels, size, size, generator=generator)


def random_target(mode: str, batch: int = 2, size: int = SIZE, classes: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed + 1000)
    if mode == "binary":
        return (torch.rand(batch, 1, size, size, generator=generator) > 0.6).float()
    return torch.randint(0, classes, (batch, size, size), generator=generator)


def loss_and_pipeline_target(name: str, mode: str, ignore_index: int | None):
    """The loss, a random target (its first 3 columns ignored with ``ignore_index``) and the
    target's distance maps the loss needs, made on the host as the data pipeline makes them."""
    from losscmp.losses import create_loss
    from losscmp.losses.distance import batch_target_maps

    loss = create_loss(name, mode=mode, ignore_index=ignore_index)
    target = random_target(mode)
    if ignore_index is not None:
        target[..., :3] = ignore_index
    classes = 1 if mode == "binary" else 3
    maps = batch_target_maps(
        target, mode=mode, num_classes=max(2, classes), ignore_index=ignore_index, names=loss.needs
    )
    return loss, target, maps


def perfect_logits(target: torch.Tensor, mode: str, classes: int = 3, scale: float = CONFIDENT):
    """A confident prediction that agrees with the target everywhere."""
    if mode == "binary":
        return (2 * target.float() - 1) * scale
    one_hot = torch.nn.functional.one_hot(target.clamp(max=classes - 1), classes)
    return (2 * one_hot.permute(0, 3, 1, 2).float() - 1) * scale


def smoothed_logits(target: torch.Tensor, mode: str, epsilon: float, classes: int = 3):
    """The minimiser of a label-smoothed loss: logits of the smoothed target."""
    if mode == "binary":
        probability = target.float() * (1 - epsilon) + epsilon / 2
        return torch.logit(probability)
    one_hot = torch.nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float()
    return torch.log(one_hot * (1 - epsilon) + epsilon / classes)


def best_logits(name: str, target: torch.Tensor, mode: str, loss) -> torch.Tensor:
    if name in SMOOTHED_LABELS:
        return smoothed_logits(target, mode, loss.params[SMOOTHED_LABELS[name]])
    return perfect_logits(target, mode)


def grad_of(loss, logits: torch.Tensor, target: torch.Tensor, **maps):
    """(value, gradient) of ``loss`` at ``logits``."""
    logits = logits.detach().clone().requires_grad_(True)
    value = loss(logits, target, **maps)
    value.backward()
    return value.detach(), logits.grad
