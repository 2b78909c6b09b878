"""Pure tensor helpers shared by the loss families.

Conventions: logits are float32 (N, C, H, W); a binary target is (N, 1, H, W)
float in {0, 1} with ``ignore_index`` where ignored; a multiclass target is
(N, H, W) long. ``valid`` is a float mask broadcastable to the logits, or
``None`` when nothing can be ignored (skipping the multiplications is faster).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscmp.devices import device_constant
from losscmp.errors import ParameterError

# Added to denominators that can be exactly zero when ``smooth`` is 0.
EPS = 1e-7


def binary_target(target: torch.Tensor, ignore_index: int | None):
    """Float target with ignored pixels set to 0, and the valid-pixel mask (or None)."""
    if ignore_index is None:
        return target.float(), None
    valid = (target != ignore_index).float()
    return target.float() * valid, valid  # a product, not torch.where: 10x faster on CPU


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


def valid_pixels(valid: torch.Tensor | None, like: torch.Tensor):
    """What ``masked_mean`` divides by: all of ``like``'s elements, or the valid ones (>= 1)."""
    if valid is None:
        return like.numel()
    return valid.expand_as(like).sum().clamp_min(1.0)


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


def image_mean(per_image: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-image values (N,) over the images that have a valid pixel: an image whose
    pixels are all ignored is left out of the count too, not averaged in as a 0. A scalar
    (batch reduction) is returned as it is; 0 when every image is ignored."""
    if valid is None or per_image.dim() == 0:
        return per_image.mean()
    scored = valid.flatten(1).amax(1)  # 1 for an image with a valid pixel, else 0
    if per_image.shape != scored.shape:  # (N, 1) would broadcast to (N, N)
        raise ValueError(f"per-image values {tuple(per_image.shape)} for {len(scored)} images")
    return (per_image * scored).sum() / scored.sum().clamp_min(1)


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
    weights = device_constant(class_weights, per_class.device, per_class.dtype)
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


class _SigmoidTerms(torch.autograd.Function):
    """From logits, with one sigmoid p = σ(x) for everything: Σ w·BCE(x, y)·q^γ over all
    pixels (q = |y - p| floored at EPS; γ = 0 is BCE) and, when ``dims`` is given, the
    soft counts TP = Σ min(p, y) (``soft_intersection``), FP = Σ p - TP, FN = Σ y - TP over
    ``dims`` (valid pixels), with one analytic backward.

    BCE = max(x, 0) - x·y - log σ(|x|) with log σ(|x|) = log1p(-min(p, 1 - p)) (stable
    for |x| = 100; log1p is also faster than log on CPU; below 6e-8 the term is lost, as
    in ``softplus``).
    Pixel term's gradient: w·[(p - y)·q^γ + γ·BCE·q^(γ-1)·sign(p - y)·p(1 - p)], the
    second term 0 where q is floored (as autograd through ``clamp_min``); for γ = 2 it is
    w·(p - y)·(q² + 2·BCE·p(1 - p)), where the floor changes the gradient by < 1e-14;
    γ = 0: w·(p - y). Counts' gradient: (g_TP·[p < y] + g_Σp)·valid·p(1 - p).
    """

    @staticmethod
    def forward(ctx, logits, y, weight, gamma: float, valid, dims):
        p = torch.sigmoid(logits)
        # -BCE in one buffer, in place (each fresh 4 MB buffer costs page faults).
        negative_bce = torch.rsub(p, 1)
        torch.minimum(negative_bce, p, out=negative_bce)  # 1 - p exact for p >= 1/2
        negative_bce.neg_().log1p_().sub_(logits.clamp(min=0)).addcmul_(logits, y)
        bce = diff = focus = None
        if gamma:
            bce = negative_bce.neg_()
            diff = p - y
            focus = diff.abs().clamp_min_(EPS)
            focus = focus.square_() if gamma == 2 else focus.pow_(gamma)
            per_pixel = focus if weight is None else focus * weight
            total = dot(bce, per_pixel)
        else:  # the backward needs neither BCE nor a focusing term
            total = -(negative_bce.sum() if weight is None else dot(negative_bce, weight))
        del negative_bce
        ctx.gamma, ctx.dims = gamma, dims
        ctx.save_for_backward(p, y, weight, valid, bce, diff, focus)
        if dims is None:
            return total
        masked = p if valid is None else p * valid
        tp = soft_intersection(masked, y, dims)
        # Differences of float32 sums can dip below 0 by rounding where the count is 0;
        # clamped, with clamp_min's gradient mask (>= 0) applied in the backward.
        fp, fn = masked.sum(dims).sub_(tp), y.sum(dims).sub_(tp)
        ctx.count_masks = (fp >= 0, fn >= 0)
        return total, tp, fp.clamp_min_(0), fn.clamp_min_(0)

    @staticmethod
    def backward(ctx, grad, grad_tp=None, grad_fp=None, grad_fn=None):
        p, y, weight, valid, bce, diff, focus = ctx.saved_tensors
        gamma = ctx.gamma
        times_p_one_minus_p = torch.ops.aten.sigmoid_backward  # (g, p) -> g·p(1 - p)
        counts_grad = None
        if ctx.dims is not None:  # (g_TP·[p < y] + g_Σp)·p(1 - p), still to be masked
            fp_kept, fn_kept = ctx.count_masks
            grad_p_sum = grad_fp * fp_kept  # Σ p = TP + FP; Σ y = TP + FN (constant)
            grad_tp = grad_tp - grad_p_sum - grad_fn * fn_kept
            shape = [1 if d in ctx.dims else size for d, size in enumerate(p.shape)]
            counts_grad = intersection_slope(p, y).mul_(grad_tp.reshape(shape))
            counts_grad.add_(grad_p_sum.reshape(shape))
            times_p_one_minus_p.grad_input(counts_grad, p, grad_input=counts_grad)
            if not gamma and weight is valid:
                # BCE + counts, both masked by ``valid``: one buffer, one mask pass.
                counts_grad.addcmul_(p, grad).addcmul_(y, grad, value=-1)
                return (counts_grad if valid is None else counts_grad.mul_(valid)), *NONE5
            if valid is not None:
                counts_grad.mul_(valid)
        if not gamma:
            grad_logits = p - y
        elif gamma == 2:
            grad_logits = times_p_one_minus_p(bce, p).mul_(2).add_(focus).mul_(diff)
        else:
            square = diff.square().clamp_min_(EPS * EPS)  # q², q floored as in forward
            above_floor = (diff.abs() > EPS).float()
            grad_logits = times_p_one_minus_p(bce, p).mul_(gamma).div_(square)
            grad_logits.mul_(above_floor).add_(1).mul_(focus).mul_(diff)
        if weight is not None:
            grad_logits.mul_(weight)
        grad_logits.mul_(grad)
        if counts_grad is not None:
            grad_logits.add_(counts_grad)
        return grad_logits, *NONE5


NONE5 = (None,) * 5


def sigmoid_focal_sum(
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 0.0,
) -> torch.Tensor:
    """Σ weight·BCE(x, y)·|y - σ(x)|^γ (focal; γ = 0 is BCE) in one fused pass.

    ``weight`` (valid mask, class weights, or None) has the shape of ``logits``.
    Divide by ``valid_pixels`` for the mean."""
    return _SigmoidTerms.apply(logits, y, weight, float(gamma), None, None)


def sigmoid_focal_sum_and_counts(
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    gamma: float,
    valid: torch.Tensor | None,
    dims: tuple[int, ...],
):
    """``sigmoid_focal_sum`` and the soft (TP, FP, FN) over ``dims`` of the same sigmoid,
    in one pass with one backward: the two halves of a binary compound loss."""
    return _SigmoidTerms.apply(logits, y, weight, float(gamma), valid, dims)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ a·b. Not ``torch.dot``: MKL's dot product sums in an order that depends on the
    inputs' memory alignment, so a trial's numbers would depend on what ran before it in
    the process (and so on the executor). torch's own sum does not (about 6 µs slower
    for a 16×64×64 batch)."""
    return (a * b).sum()


# ---------------------------------------------------------------- soft intersection
def soft_intersection(probs: torch.Tensor, y: torch.Tensor, dims: tuple[int, ...]):
    """TP = Σ min(p, y) over ``dims``: |p ∩ y| = (|p|_1 + |y|_1 - |p - y|_1)/2 of Wang &
    Blaschko 2023 (JDTLoss; MONAI's ``soft_label=True``, smp's soft scores). With it
    FP = Σ p - TP = Σ relu(p - y) and FN = Σ y - TP = Σ relu(y - p), so every overlap score
    is perfect exactly at p = y, for soft targets y in [0, 1] too. Σ p·y is not: with
    y = 0.5 everywhere it rewards p -> 1 (Dice loss 0.33 at p = 0.99, 0.49 at p = 0.5).
    For y in {0, 1}, min(p, y) is p·y exactly (p in [0, 1]), so on hard targets the sums,
    and every loss built on them, are bit-for-bit the classic ones."""
    return torch.minimum(probs, y).sum(dims)


def intersection_slope(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d min(p, y)/dp as a float 0/1 map: 1 where p < y, else 0. That is y itself for
    y in {0, 1} and p in (0, 1). At a tie (p = y: the kink at a soft target's optimum; for a
    hard target only where the sigmoid saturates, and there its derivative p(1 - p) is 0)
    the slope is 0, relu's convention for min(p, y) = y - relu(y - p). Written straight
    into a float buffer: a bool mask and its conversion cost four times as much on CPU."""
    return torch.gt(y, probs, out=torch.empty_like(probs))


# ---------------------------------------------------------------- fused soft counts
class _SoftCounts(torch.autograd.Function):
    """TP and Σ p from logits in one forward pass, with a two-pass analytic backward.

    Autograd would keep and walk the sigmoid/softmax, the product and both sums; here
    the backward is dL/dp = g_tp·dTP/dp + g_p, then the activation's fused backward kernel.
    ``soft``: TP = ``soft_intersection`` (binary targets may be probabilities); otherwise
    Σ p·y, for one-hot targets, where it is the same number and its slope is y itself.
    """

    @staticmethod
    def forward(ctx, logits, y, valid, binary: bool, dims: tuple[int, ...], soft: bool):
        probs = torch.sigmoid(logits) if binary else torch.softmax(logits, dim=1)
        masked = probs if valid is None else probs * valid
        ctx.save_for_backward(probs, y, valid)
        ctx.binary, ctx.dims, ctx.soft = binary, dims, soft
        tp = soft_intersection(masked, y, dims) if soft else row_dot(masked, y, dims)
        return tp, masked.sum(dims)

    @staticmethod
    def backward(ctx, grad_tp, grad_p_sum):
        probs, y, valid = ctx.saved_tensors
        shape = [1 if d in ctx.dims else size for d, size in enumerate(probs.shape)]
        if ctx.soft:  # slope from the unmasked p: ignored pixels are masked below
            grad_probs = intersection_slope(probs, y).mul_(grad_tp.reshape(shape))
        else:
            grad_probs = y * grad_tp.reshape(shape)
        grad_probs.add_(grad_p_sum.reshape(shape))
        if valid is not None:
            grad_probs = grad_probs.mul_(valid)
        if ctx.binary:
            grad_logits = torch.ops.aten.sigmoid_backward(grad_probs, probs)
        else:
            grad_logits = torch._softmax_backward_data(grad_probs, probs, 1, probs.dtype)
        return grad_logits, None, None, None, None, None


def row_dot(a: torch.Tensor, b: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Σ a·b over ``dims`` (see ``dot`` for why not a BLAS dot product)."""
    return (a * b).sum(dims)


def soft_counts_from_logits(
    logits: torch.Tensor,
    y: torch.Tensor,
    valid: torch.Tensor | None,
    binary: bool,
    dims: tuple[int, ...],
):
    """Soft (TP, FP, FN) over ``dims`` straight from logits (one pass, fused backward).

    ``y`` is the (N, K, H, W) float target, zero at ignored pixels; ``valid`` the mask.
    Binary: TP = Σ min(p, y), right for soft targets too (``soft_intersection``);
    multiclass targets are class indices, one-hot here, and TP = Σ p·y."""
    tp, p_sum = _SoftCounts.apply(logits, y, valid, binary, dims, binary)
    # Differences of float32 sums can dip below 0 by rounding where the count is 0.
    return tp, (p_sum - tp).clamp_min(0), (y.sum(dims) - tp).clamp_min(0)
