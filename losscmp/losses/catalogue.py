"""Every loss by name: the registration lines, and the names they use. Free of torch.

A loss is one class in a module of ``losscmp/losses/`` plus one ``register_loss`` line
here. The registry holds each class by its import path: ``losscmp losses`` and the
parameter checks of ``losscmp run`` read the class's signature from its source
(``losscmp.signatures``), and the module (torch) is imported when a loss is built.
"""

from __future__ import annotations

from collections.abc import Iterable

from losscmp.errors import ParameterError
from losscmp.registry import Registry

BINARY_MODE = "binary"
MULTICLASS_MODE = "multiclass"
MODES = (BINARY_MODE, MULTICLASS_MODE)
BOTH_MODES = MODES

# The target maps a loss may name in ``needs``; ``losses.distance`` computes them and the
# data pipeline (``data.loader``) caches them. Those in PER_CLASS_MAPS hold one channel per
# channel the model predicts, the others one.
SIGNED_DISTANCE = "signed_distance"
OBJECT_DISTANCE = "object_distance"
TARGET_MAPS = (SIGNED_DISTANCE, OBJECT_DISTANCE)
PER_CLASS_MAPS = frozenset({SIGNED_DISTANCE})

# ``mode`` comes from the dataset (the caller), never from a user's loss spec.
LOSS_REGISTRY = Registry("loss", context_params=("mode",))

# What to use instead when a loss is defined for one mode only, by loss name.
ALTERNATIVES: dict[str, str] = {}


def register_loss(
    name: str,
    factory: str,
    description: str,
    *,
    family: str,
    reference: str,
    formula: str,
    modes: tuple[str, ...] = BOTH_MODES,
    needs: Iterable[str] = (),
    alternative: str | None = None,
    soft_targets: bool = False,
) -> None:
    """Register the ``SegLoss`` subclass at ``factory`` ("losscmp.losses.module:Class");
    ``alternative`` names the loss for the other mode; ``needs``, the target maps the
    data pipeline computes for it.

    ``soft_targets``: a binary target may hold probabilities in [0, 1] (soft labels) and
    the loss treats them as such; unless a documented weight or smoothing moves it (as
    ``weighted_bce``'s beta does), its minimum is then the prediction p = y. False for a
    loss that needs hard masks (distance maps, Lovász's sorted labels) or class indices.
    """
    needs = frozenset(needs)
    unknown_maps = sorted(needs - set(TARGET_MAPS))
    if unknown_maps:  # a registration's mistake: no user can cause it
        raise ValueError(f"loss '{name}' needs unknown target map(s) {unknown_maps}")
    if alternative:
        ALTERNATIVES[name] = alternative
    LOSS_REGISTRY.register(
        name,
        description,
        family=family,
        modes=tuple(modes),
        reference=reference,
        formula=formula,
        needs=needs,
        soft_targets=soft_targets,
    )(factory)


def map_channels(name: str, out_channels: int) -> int:
    """The channels of target map ``name`` for a model predicting ``out_channels``."""
    return out_channels if name in PER_CLASS_MAPS else 1


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


# overlap.py
register_loss(
    "dice",
    "losscmp.losses.overlap:DiceLoss",
    "Soft Dice loss",
    family="overlap",
    soft_targets=True,
    reference="Milletari et al. 2016 (V-Net); Sudre et al. 2017",
    formula="1 - (2TP + s)/(2TP + FP + FN + s); squared: denominator sum p^2 + sum y^2",
)
register_loss(
    "jaccard",
    "losscmp.losses.overlap:JaccardLoss",
    "Soft Jaccard (IoU) loss",
    family="overlap",
    soft_targets=True,
    reference="Rahman & Wang 2016",
    formula="1 - (TP + s)/(TP + FP + FN + s)",
)
register_loss(
    "tversky",
    "losscmp.losses.overlap:TverskyLoss",
    "Tversky loss: Dice with separate FP (alpha) and FN (beta) weights",
    family="overlap",
    soft_targets=True,
    reference="Salehi et al. 2017",
    formula="1 - (TP + s)/(TP + alpha FP + beta FN + s)",
)
register_loss(
    "focal_tversky",
    "losscmp.losses.overlap:FocalTverskyLoss",
    "Focal Tversky loss: Tversky loss raised to gamma per class",
    family="overlap",
    soft_targets=True,
    reference="Abraham & Khan 2019",
    formula="(1 - TI)^gamma, TI = (TP + s)/(TP + alpha FP + beta FN + s)",
)
register_loss(
    "log_cosh_dice",
    "losscmp.losses.overlap:LogCoshDiceLoss",
    "log(cosh(Dice loss)): a smoothed Dice loss",
    family="overlap",
    soft_targets=True,
    reference="Jadon 2020",
    formula="log(cosh(1 - (2TP + s)/(2TP + FP + FN + s)))",
)
register_loss(
    "generalized_dice",
    "losscmp.losses.overlap:GeneralizedDiceLoss",
    "Generalized Dice: classes weighted by 1/(sum y_c)^2",
    family="overlap",
    soft_targets=True,
    reference="Sudre et al. 2017",
    formula="1 - (2 sum_c w_c TP_c + s)/(sum_c w_c (2TP_c + FP_c + FN_c) + s), "
    "w_c = 1/(sum y_c)^2 divided by the largest; binary: background and foreground",
)
register_loss(
    "mcc",
    "losscmp.losses.overlap:MCCLoss",
    "Matthews correlation coefficient loss on soft counts",
    family="overlap",
    soft_targets=True,
    reference="Abhishek & Hamarneh 2021",
    formula="1 - (TP·TN - FP·FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN) + eps); "
    "no foreground (MCC 0/0): FP/(FP+TN); no background: FN/(TP+FN)",
)
register_loss(
    "f1",
    "losscmp.losses.overlap:F1Loss",
    "1 - soft F1 from soft precision TP/(TP+FP) and recall TP/(TP+FN)",
    family="overlap",
    soft_targets=True,
    reference="seed 004 (soft F1)",
    formula="1 - 2PR/(P + R), P = (TP+s)/(TP+FP+s), R = (TP+s)/(TP+FN+s), clamped to [0, 1]",
)
register_loss(
    "lovasz",
    "losscmp.losses.overlap:LovaszLoss",
    "Lovász hinge (binary) / Lovász-softmax over present classes (multiclass)",
    family="overlap",
    reference="Berman et al. 2018",
    formula="Lovász extension of the Jaccard loss on hinge errors 1 - x·(2y-1) / |y - p|",
)

# boundary.py
register_loss(
    "boundary",
    "losscmp.losses.boundary:BoundaryLoss",
    "Dice + alpha·boundary loss, alpha rising linearly from 0.01 to 1 over training",
    family="boundary",
    needs=(SIGNED_DISTANCE,),
    reference="Kervadec et al. 2019",
    formula="dice + alpha(t)·mean(phi_G·(p - y)), phi_G signed distance (negative inside)",
)
register_loss(
    "hausdorff_dt",
    "losscmp.losses.boundary:HausdorffDTLoss",
    "Hausdorff distance loss via distance transforms of target and prediction",
    family="boundary",
    needs=(SIGNED_DISTANCE,),
    reference="Karimi & Salcudean 2019",
    formula="mean of (p - y)^2·(d_G^a + d_P^a)",
)

# pixel.py
register_loss(
    "bce",
    "losscmp.losses.pixel:BCELoss",
    "Binary cross-entropy on logits",
    family="pixel",
    soft_targets=True,
    modes=("binary",),
    alternative="ce",
    reference="-",
    formula="-[y log p + (1-y) log(1-p)], mean over pixels",
)
register_loss(
    "ce",
    "losscmp.losses.pixel:CELoss",
    "Multiclass cross-entropy (softmax) with optional class weights",
    family="pixel",
    modes=("multiclass",),
    alternative="bce",
    reference="-",
    formula="-log softmax(x)_y, weighted mean over pixels",
)
register_loss(
    "weighted_bce",
    "losscmp.losses.pixel:WeightedBCELoss",
    "BCE with the positive term weighted by beta (auto: N_neg/N_pos of the training set)",
    family="pixel",
    soft_targets=True,
    modes=("binary",),
    alternative="ce(class_weights=[...])",
    reference="Ronneberger et al. 2015 (U-Net); Pihur et al. 2007",
    formula="-[beta y log p + (1-y) log(1-p)], mean over pixels",
)
register_loss(
    "balanced_bce",
    "losscmp.losses.pixel:BalancedBCELoss",
    "Class-balanced BCE with beta = share of negatives in the batch (HED)",
    family="pixel",
    soft_targets=True,
    modes=("binary",),
    alternative="ce(class_weights=[...])",
    reference="Xie & Tu 2015 (HED)",
    formula="-[beta y log p + (1-beta)(1-y) log(1-p)], beta = N_neg/N clipped to [eps, 1-eps]",
)
register_loss(
    "soft_bce",
    "losscmp.losses.pixel:SoftBCELoss",
    "BCE against smoothed labels y' = y(1-eps) + eps/2",
    family="pixel",
    soft_targets=True,
    modes=("binary",),
    alternative="label_smoothing_ce",
    reference="Szegedy et al. 2016",
    formula="BCE(p, y(1-eps) + eps/2); smp's smooth_factor f equals eps = 2f",
)
register_loss(
    "label_smoothing_ce",
    "losscmp.losses.pixel:LabelSmoothingCELoss",
    "Cross-entropy against (1-eps)·onehot + eps/K (torch's convention)",
    family="pixel",
    modes=("multiclass",),
    alternative="soft_bce",
    reference="Szegedy et al. 2016",
    formula="CE(p, (1-eps)·onehot(y) + eps/K)",
)
register_loss(
    "focal",
    "losscmp.losses.pixel:FocalLoss",
    "Focal loss: cross-entropy down-weighted by (1-p_t)^gamma per pixel",
    family="pixel",
    soft_targets=True,
    reference="Lin et al. 2017",
    formula="-alpha_t (1-p_t)^gamma log p_t per pixel, mean",
)
register_loss(
    "topk_ce",
    "losscmp.losses.pixel:TopKCELoss",
    "Cross-entropy averaged over the k% hardest pixels of the batch",
    family="pixel",
    soft_targets=True,
    reference="Wu et al. 2016 (bootstrapped CE)",
    formula="mean of the top k% per-pixel (B)CE values",
)
register_loss(
    "distance_weighted_bce",
    "losscmp.losses.pixel:DistanceWeightedBCELoss",
    "U-Net weight map: CE weighted by class balance plus w0·exp(-(d1+d2)^2/(2 sigma^2))",
    family="pixel",
    needs=(OBJECT_DISTANCE,),
    reference="Ronneberger et al. 2015 (U-Net)",
    formula="mean of [w_c(x) + w0 exp(-(d1+d2)^2 / (2 sigma^2))]·CE(x)",
)

# compound.py
register_loss(
    "bce_dice",
    "losscmp.losses.compound:BCEDiceLoss",
    "BCE + Dice (nnU-Net's DC+CE for one channel)",
    family="compound",
    soft_targets=True,
    modes=("binary",),
    alternative="ce_dice",
    reference="Isensee et al. 2021 (nnU-Net); Ma et al. 2021",
    formula="lambda_ce·BCE + lambda_dice·dice",
)
register_loss(
    "ce_dice",
    "losscmp.losses.compound:CEDiceLoss",
    "Cross-entropy + Dice (nnU-Net's DC+CE)",
    family="compound",
    modes=("multiclass",),
    alternative="bce_dice",
    reference="Isensee et al. 2021 (nnU-Net); Ma et al. 2021",
    formula="lambda_ce·CE + lambda_dice·dice",
)
register_loss(
    "dice_focal",
    "losscmp.losses.compound:DiceFocalLoss",
    "lambda·Dice + (1-lambda)·Focal",
    family="compound",
    soft_targets=True,
    reference="Ma et al. 2021 (Loss Odyssey); Zhu et al. 2019",
    formula="lambda_dice·dice + (1-lambda_dice)·focal",
)
register_loss(
    "dice_topk",
    "losscmp.losses.compound:DiceTopKLoss",
    "Dice + top-k% cross-entropy",
    family="compound",
    soft_targets=True,
    reference="Ma et al. 2021 (Loss Odyssey)",
    formula="dice + topk_ce(k)",
)
register_loss(
    "combo",
    "losscmp.losses.compound:ComboLoss",
    "Combo: alpha·weighted CE + (1-alpha)·Dice loss (shifted to be >= 0)",
    family="compound",
    soft_targets=True,
    reference="Taghanaki et al. 2019",
    formula="alpha·WCE_beta + (1-alpha)·(1 - DSC), "
    "WCE_beta = -[beta y log p + (1-beta)(1-y) log(1-p)]",
)
register_loss(
    "unified_focal",
    "losscmp.losses.compound:UnifiedFocalLoss",
    "Asymmetric Unified Focal loss: modified focal + modified focal Tversky",
    family="compound",
    soft_targets=True,
    reference="Yeung et al. 2022",
    formula="lambda·L_maF + (1-lambda)·L_maFTL (background suppressed, foreground enhanced)",
)
