"""create_loss / list_losses / get_loss_entry: names, metadata, parameter checking."""

from __future__ import annotations

import inspect
import typing

import pytest
import torch

from losscmp.errors import ParameterError, UnknownNameError
from losscmp.losses import (
    LOSS_REGISTRY,
    SegLoss,
    create_loss,
    get_loss_entry,
    list_losses,
)

# The losses the design's LOSSES.md lists: none may disappear. The per-loss checks below run
# over the registry instead, so that a new loss is checked without an edit here.
CATALOGUE = [
    "bce",
    "ce",
    "weighted_bce",
    "balanced_bce",
    "soft_bce",
    "label_smoothing_ce",
    "focal",
    "topk_ce",
    "distance_weighted_bce",
    "dice",
    "jaccard",
    "tversky",
    "focal_tversky",
    "log_cosh_dice",
    "generalized_dice",
    "mcc",
    "f1",
    "lovasz",
    "bce_dice",
    "ce_dice",
    "dice_focal",
    "dice_topk",
    "combo",
    "unified_focal",
    "boundary",
    "hausdorff_dt",
]
REGISTERED = list_losses()
FAMILIES = {"pixel", "overlap", "compound", "boundary"}
MAPS = {"signed_distance", "object_distance"}


def test_every_loss_of_the_catalogue_is_registered():
    assert set(CATALOGUE) <= set(REGISTERED)
    assert sorted(REGISTERED) == REGISTERED


def test_list_losses_filters_with_a_pattern():
    dice = list_losses("*dice*")
    assert dice == [name for name in REGISTERED if "dice" in name]
    assert {"bce_dice", "ce_dice", "dice", "generalized_dice", "log_cosh_dice"} <= set(dice)
    assert "focal" not in dice


@pytest.mark.parametrize("name", REGISTERED)
def test_entry_metadata_is_complete(name):
    entry = get_loss_entry(name)
    assert entry.description and "\n" not in entry.description
    assert entry.family in FAMILIES
    assert set(entry.modes) <= {"binary", "multiclass"} and entry.modes
    assert entry.reference and entry.formula
    assert entry.needs <= MAPS
    assert issubclass(entry.load(), SegLoss)
    assert create_loss(name, mode=entry.modes[0]).needs == entry.needs
    assert "mode" not in entry.parameters


@pytest.mark.parametrize("name", REGISTERED)
def test_the_listing_reads_each_class_signature_as_imported(name):
    """Registered by import path, a loss's parameters are read from its source
    (``losscmp losses`` imports no torch): exactly what the imported class says."""
    from losscmp.signatures import read_signature

    entry = get_loss_entry(name)
    assert isinstance(entry.factory, str)
    static = read_signature(entry.factory)  # raises Unreadable: the listing would import
    cls = entry.load()
    assert static.signature == inspect.signature(cls)
    hints = typing.get_type_hints(cls.__init__)
    assert static.hints == {key: hints[key] for key in inspect.signature(cls).parameters}
    assert entry.parameters == {
        key: parameter
        for key, parameter in inspect.signature(cls).parameters.items()
        if key != "mode"
    }


@pytest.mark.parametrize("name", REGISTERED)
def test_every_parameter_is_type_annotated_with_a_default(name):
    entry = get_loss_entry(name)
    hints = entry.type_hints()
    for parameter in entry.parameters.values():
        assert parameter.name in hints, parameter.name
        assert parameter.default is not inspect.Parameter.empty, parameter.name


@pytest.mark.parametrize("name", REGISTERED)
def test_an_overlap_formula_shows_its_smooth_term(name):
    # `losscmp losses --show generalized_dice` listed smooth (default 1) under a formula
    # without it, though on its max-normalised weights s = 1 is one pixel of the rarest class.
    entry = get_loss_entry(name)
    if entry.family == "overlap" and "smooth" in entry.defaults:
        assert "+ s" in entry.formula or "+s" in entry.formula, entry.formula


def test_boundary_family_declares_its_maps():
    assert get_loss_entry("boundary").needs == {"signed_distance"}
    assert get_loss_entry("hausdorff_dt").needs == {"signed_distance"}
    assert get_loss_entry("distance_weighted_bce").needs == {"object_distance"}
    assert get_loss_entry("dice").needs == frozenset()


def test_the_target_maps_are_named_once():
    """The loss catalogue names the maps that distance.py computes and the loader accepts."""
    from losscmp.data import loader
    from losscmp.losses import catalogue, distance

    assert catalogue.TARGET_MAPS == ("signed_distance", "object_distance")
    assert distance.TARGET_MAPS is catalogue.TARGET_MAPS
    assert frozenset(catalogue.TARGET_MAPS) == loader.KNOWN_MAPS
    assert [catalogue.map_channels(name, 3) for name in catalogue.TARGET_MAPS] == [3, 1]


def test_a_loss_needing_an_unknown_map_is_refused_at_registration():
    from losscmp.losses.catalogue import register_loss

    with pytest.raises(ValueError, match=r"loss 'edgy' needs unknown target map\(s\) \['edge'\]"):
        register_loss(
            "edgy", "x:Y", "", family="boundary", reference="", formula="", needs=["edge"]
        )
    assert "edgy" not in list_losses()


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'dice'"):
        create_loss("dcie")


def test_bad_parameter_name_lists_the_valid_ones():
    with pytest.raises(ParameterError, match=r"no parameter 'gama'.*'gamma'.*valid parameters"):
        create_loss("focal", gama=1)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("focal", {"gamma": "high"}),
        ("dice", {"smooth": True}),
        ("dice", {"reduction": "pixel"}),
        ("lovasz", {"per_image": "yes"}),
        ("dice", {"class_weights": [1, "a"]}),
        ("weighted_bce", {"beta": "automatic"}),
        ("topk_ce", {"k": [10]}),
    ],
)
def test_bad_parameter_type_is_rejected(name, params):
    with pytest.raises(ParameterError, match="is not"):
        create_loss(name, **params)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("focal", {"gamma": -1}),
        ("focal", {"alpha": 1.5}),
        ("tversky", {"alpha": -0.1}),
        ("tversky", {"alpha": 0, "beta": 0}),
        ("dice", {"smooth": -1}),
        ("topk_ce", {"k": 0}),
        ("topk_ce", {"k": 150}),
        ("combo", {"alpha": 2}),
        ("balanced_bce", {"epsilon": 0.7}),
        # beta could reach 1: an all-negative batch would score 0 whatever the prediction.
        ("balanced_bce", {"epsilon": 0}),
        ("dice", {"class_weights": [-1, 1]}),
        ("dice", {"class_weights": []}),
        # Only the background weighs, and it is not scored: the loss was NaN.
        ("dice", {"mode": "multiclass", "include_background": False, "class_weights": [1, 0]}),
        ("ce_dice", {"mode": "multiclass", "include_background": False, "class_weights": [1, 0]}),
        ("distance_weighted_bce", {"sigma": 0}),
        ("weighted_bce", {"beta": 0}),
        ("unified_focal", {"delta": 1.2}),
        ("focal_tversky", {"gamma": 0}),
        ("dice", {"ignore_index": 2**63}),  # no int64 mask holds it
        ("dice", {"smooth": 10**400}),  # beyond a float: infinite
    ],
)
def test_bad_parameter_value_raises_parameter_error(name, params):
    with pytest.raises(ParameterError):
        create_loss(name, **params)


def test_a_weighted_mean_over_zero_weights_was_nan():
    # include_background=False, class_weights [1, 0, 0]: Σ w·l / Σ w = 0/0 over classes 1, 2.
    with pytest.raises(ParameterError, match="every scored class weight 0"):
        create_loss("mcc", mode="multiclass", include_background=False, class_weights=[1, 0, 0])


def test_values_are_coerced_from_spec_and_yaml_types():
    assert create_loss("focal", gamma=1).params["gamma"] == 1.0
    assert isinstance(create_loss("focal", gamma=1).gamma, float)
    assert create_loss("dice", mode="multiclass", class_weights=[1, 2, 3]).class_weights == [
        1.0,
        2.0,
        3.0,
    ]
    assert create_loss("weighted_bce", beta="auto").params["beta"] == "auto"
    assert create_loss("weighted_bce", beta=3).params["beta"] == 3.0
    assert create_loss("topk_ce", k=5).k == 5.0


@pytest.mark.parametrize(
    ("name", "mode", "alternative"),
    [
        ("bce", "multiclass", "ce"),
        ("ce", "binary", "bce"),
        ("soft_bce", "multiclass", "label_smoothing_ce"),
        ("bce_dice", "multiclass", "ce_dice"),
        ("ce_dice", "binary", "bce_dice"),
        ("weighted_bce", "multiclass", "ce"),
    ],
)
def test_unsupported_mode_names_the_alternative(name, mode, alternative):
    with pytest.raises(ParameterError, match=f"binary|multiclass.*use '{alternative}"):
        create_loss(name, mode=mode)


def test_unknown_mode_is_rejected():
    with pytest.raises(ParameterError, match="mode"):
        create_loss("dice", mode="multilabel")


def test_wrong_class_weight_count_is_a_parameter_error():
    import torch

    loss = create_loss("dice", mode="multiclass", class_weights=[1.0, 2.0])
    with pytest.raises(ParameterError, match="3 classes"):
        loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


def test_registry_is_the_shared_one():
    assert LOSS_REGISTRY.kind == "loss"
    assert LOSS_REGISTRY.names() == REGISTERED


@pytest.mark.parametrize(
    ("name", "mode", "logits", "target"),
    [
        ("dice", "binary", (2, 1, 8, 8), (2, 3, 8, 8)),  # an RGB mask
        ("lovasz", "binary", (2, 1, 8, 8), (2, 2, 8, 8)),  # a one-hot mask
        ("bce", "binary", (2, 1, 8, 8), (2, 1, 8, 4)),
        ("dice", "multiclass", (2, 3, 8, 8), (2, 3, 8, 8)),  # one-hot instead of indices
        ("ce", "multiclass", (2, 3, 8, 8), (2, 8, 4)),
    ],
)
def test_a_target_of_the_wrong_shape_is_refused(name, mode, logits, target):
    # Binary dice and Lovász broadcast a (2, 3, 8, 8) target against the one logit channel
    # and returned a number; the check compared only the batch and spatial sizes.
    loss = create_loss(name, mode=mode)
    with pytest.raises(ValueError, match="does not match"):
        loss(torch.zeros(logits), torch.zeros(target))
