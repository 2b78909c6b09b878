"""Pure tensor helpers shared by the loss families.

Conventions: logits are float32 (N, C, H, W); a binary target is (N, 1, H, W)
float in {0, 1} with ``ignore_index`` where ignored; a multiclass target is
(N, H, W) long. ``valid`` is a float mask broadcastable to the logits, or
``None`` when nothing can be ignored (skipping the multiplications is faster).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from losscmp.errors import ParameterError

# Added to denominators that can be exactly zero when ``smooth`` is 0.
EPS = 1e-7


def binary_target(target: torch.Tensor, ignore_index: int | None):
    """Float target with ignored pixels set to 0, and the valid-pixel mask (or None)."""
    if ignore_index is None:
        return target.float(), None
    valid = target != ignore_index
    return torch.where(valid, target, 0).float(), valid.float()


def multiclass_target(target: torch.Tensor, ignore_index: int | None):
    """Class indices with ignored pixels set to 0, and the (N, 1, H, W) valid mask (or None)."""
    if ignore_index is None:
        return target, None
    valid = target != ignore_index
    return torch.where(valid, target, 0), valid.unsqueeze(1).float()


def one_hot(labels: torch.Tensor, num_classes: int, valid: torch.Tensor | None) -> torch.Tensor:
    """(N, H, W) long -> (N, C, H, W) float32, all-zero at ignored pixels, in one scatter."""
    shape = (labels.shape[0], num_classes, *labels.shape[1:])
    source = (
        valid
        if valid is not None
        else torch.ones(1, device=labels.device).expand(labels.shape[0], 1, *labels.shape[1:])
    )
    return torch.zeros(shape, device=labels.device).scatter_(1, labels.unsqueeze(1), source)


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean over valid pixels only; 0 when every pixel is ignored."""
    if valid is None:
        return values.mean()
    valid = valid.expand_as(values)
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def probabilities_and_target(
    logits: torch.Tensor, target: torch.Tensor, binary: bool, ignore_index: int | None
):
    """Probabilities and one-hot target, both (N, K, H, W), zero at ignored pixels.

    Binary: K = 1 (the foreground). Multiclass: K = C (softmax over channels).
    Returns ``(probs, target_one_hot, valid)``.
    """
    if binary:
        y, valid = binary_target(target, ignore_index)
        probs = torch.sigmoid(logits)
    else:
        labels, valid = multiclass_target(target, ignore_index)
        probs = torch.softmax(logits, dim=1)
        y = one_hot(labels, logits.shape[1], valid)
    if valid is not None:
        probs = probs * valid
    return probs, y, valid


def sum_dims(reduction: str, ndim: int) -> tuple[int, ...]:
    """Dims summed into soft counts: all but classes ("batch") or only spatial ("image")."""
    spatial = tuple(range(2, ndim))
    return (0, *spatial) if reduction == "batch" else spatial


def valid_count(valid: torch.Tensor | None, like: torch.Tensor, dims: tuple[int, ...]):
    """Number of valid pixels per count entry (for TN = n - TP - FP - FN)."""
    if valid is None:
        n = 1
        for dim in dims:
            n *= like.shape[dim]
        return torch.full((), float(n), device=like.device)
    return valid.expand(like.shape[0], 1, *like.shape[2:]).sum(dims)


def weighted_class_mean(
    per_class: torch.Tensor, class_weights: list[float] | None, first_class: int = 0
) -> torch.Tensor:
    """Mean over the last (class) dim: plain, or Σ w·l / Σ w (not divided by C again)."""
    if class_weights is None:
        return per_class.mean(-1)
    weights = torch.tensor(class_weights, device=per_class.device, dtype=per_class.dtype)
    weights = select_weights(weights, per_class.shape[-1], first_class)
    return (per_class * weights).sum(-1) / weights.sum()


def select_weights(weights: torch.Tensor, num_scored: int, first_class: int) -> torch.Tensor:
    """Class weights are given for all C classes; drop the background's when it is excluded."""
    total = num_scored + first_class
    if weights.numel() != total:
        raise ParameterError(
            f"class_weights has {weights.numel()} values but the model predicts {total} classes"
        )
    return weights[first_class:]


def pixel_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, binary: bool, ignore_index: int | None
):
    """Per-pixel (B)CE, shape (N, 1, H, W), and the valid mask; ignored pixels hold 0."""
    if binary:
        y, valid = binary_target(target, ignore_index)
        loss = binary_cross_entropy(logits, y)
    else:
        labels, valid = multiclass_target(target, ignore_index)
        loss = F.cross_entropy(logits, labels, reduction="none").unsqueeze(1)
    if valid is not None:
        loss = loss * valid
    return loss, valid


def log_prob_of_target(
    logits: torch.Tensor, target: torch.Tensor, binary: bool, ignore_index: int | None
):
    """log p_t per pixel (N, 1, H, W), the class index map (or y), and the valid mask.

    Binary: log σ(z) with z = x for y = 1 and -x for y = 0 (stable for |x| = 100).
    Multiclass: log_softmax gathered at the true class.
    """
    if binary:
        y, valid = binary_target(target, ignore_index)
        logpt = log_sigmoid(logits * (2 * y - 1))
        return logpt, y, valid
    labels, valid = multiclass_target(target, ignore_index)
    logpt = torch.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1))
    return logpt, labels, valid


def one_minus_exp(log_p: torch.Tensor) -> torch.Tensor:
    """1 - exp(log p), floored so pow(·, γ<1) keeps a finite gradient.

    Plain exp, not expm1 (10x slower on CPU): the cancellation only matters below
    1 - p = 1e-7, where the floor takes over anyway."""
    return (1 - log_p.exp()).clamp_min(EPS)


# ---------------------------------------------------------------- fast softplus
# torch's CPU softplus, logsigmoid and log1p are not vectorised (about 10 ms per million
# values here, against 0.5 ms for sigmoid and 1-2 ms for exp and log), so the stable forms
# below are built from the vectorised ops with an analytic backward.


class _Softplus(torch.autograd.Function):
    """softplus(x) = log(1 + e^x) = max(x, 0) - log σ(|x|); gradient σ(x).

    σ(|x|) rounds to 1 for |x| > 17, which drops at most 6e-8 of the value (harmless in a
    loss); the gradient is exact."""

    @staticmethod
    def forward(ctx, logits):
        ctx.save_for_backward(logits)
        return logits.clamp(min=0).sub_(torch.sigmoid(logits.abs()).log_())

    @staticmethod
    def backward(ctx, grad):
        (logits,) = ctx.saved_tensors
        return grad * torch.sigmoid(logits)


def softplus(logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - σ(x)), stable for |x| = 100 and faster than F.softplus on CPU."""
    return _Softplus.apply(logits)


def log_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """log σ(x) = x - softplus(x)."""
    return logits - softplus(logits)


def binary_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    positive_weight: torch.Tensor | float = 1.0,
    negative_weight: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Per-pixel -[w+ y log p + w- (1-y) log(1-p)] from logits (y may be soft).

    -log(1-p) = softplus(x) and -log p = softplus(x) - x: one softplus serves both."""
    negative_term = softplus(logits)
    if isinstance(positive_weight, float) and positive_weight == negative_weight == 1.0:
        return negative_term - logits * y
    positive_term = negative_term - logits
    return positive_weight * y * positive_term + negative_weight * (1 - y) * negative_term


# ---------------------------------------------------------------- fused soft counts
class _SoftCounts(torch.autograd.Function):
    """Σ p·y and Σ p from logits in one forward pass, with a two-pass analytic backward.

    Autograd would keep and walk the sigmoid/softmax, the product and both sums; here
    the backward is dL/dp = g_tp·y + g_p, then the activation's fused backward kernel.
    """

    @staticmethod
    def forward(ctx, logits, y, valid, binary: bool, dims: tuple[int, ...]):
        probs = torch.sigmoid(logits) if binary else torch.softmax(logits, dim=1)
        masked = probs if valid is None else probs * valid
        ctx.save_for_backward(probs, y, valid)
        ctx.binary, ctx.dims = binary, dims
        return row_dot(masked, y, dims), masked.sum(dims)

    @staticmethod
    def backward(ctx, grad_tp, grad_p_sum):
        probs, y, valid = ctx.saved_tensors
        shape = [1 if d in ctx.dims else size for d, size in enumerate(probs.shape)]
        grad_probs = (y * grad_tp.reshape(shape)).add_(grad_p_sum.reshape(shape))
        if valid is not None:
            grad_probs = grad_probs.mul_(valid)
        if ctx.binary:
            grad_logits = torch.ops.aten.sigmoid_backward(grad_probs, probs)
        else:
            grad_logits = torch._softmax_backward_data(grad_probs, probs, 1, probs.dtype)
        return grad_logits, None, None, None, None


def row_dot(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Σ a·b over ``dims``; a BLAS dot product (no temporary) when one number comes out."""
    kept = [size for d, size in enumerate(a.shape) if d not in dims]
    if math.prod(kept) == 1:
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(kept)
    return (a * b).sum(dims)


def soft_counts_from_logits(
    logits: torch.Tensor,
    y: torch.Tensor,
    valid: torch.Tensor | None,
    binary: bool,
    dims: tuple[int, ...],
):
    """Soft (TP, FP, FN) over ``dims`` straight from logits (one pass, fused backward).

    ``y`` is the (N, K, H, W) float target, zero at ignored pixels; ``valid`` the mask."""
    tp, p_sum = _SoftCounts.apply(logits, y, valid, binary, dims)
    # Differences of float32 sums can dip below 0 by rounding where the count is 0.
    return tp, (p_sum - tp).clamp_min(0), (y.sum(dims) - tp).clamp_min(0)
