from typing import Literal

import pytest

from losscmp.errors import ParameterError, UnknownNameError
from losscmp.registry import Registry, coerce


def make_registry() -> Registry:
    registry = Registry("widget", context_params=("mode",))

    @registry.register("gear", "A gear.", family="parts")
    def gear(
        mode: str = "binary",
        teeth: int = 12,
        ratio: float = 1.0,
        kind: Literal["spur", "helical"] = "spur",
        weights: list[float] | None = None,
        beta: float | Literal["auto"] = "auto",
    ):
        return {"mode": mode, "teeth": teeth, "ratio": ratio, "kind": kind, "weights": weights}

    return registry


def test_create_coerces_values_to_the_signature():
    registry = make_registry()
    made = registry.create("gear", {"teeth": 10.0, "ratio": 2, "weights": [1, 2]}, mode="x")
    assert made == {"mode": "x", "teeth": 10, "ratio": 2.0, "kind": "spur", "weights": [1.0, 2.0]}
    assert isinstance(made["ratio"], float) and isinstance(made["teeth"], int)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match=r"unknown widget 'gaer' \(did you mean 'gear'\?\)"):
        make_registry().get("gaer")


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ParameterError, match=r"no parameter 'teth'.*'teeth'.*valid parameters: "):
        make_registry().create("gear", {"teth": 3})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"teeth": 1.5}, "teeth=1.5 is not a whole number"),
        ({"ratio": "x"}, "ratio='x' is not a number"),
        ({"kind": "bevel"}, "kind='bevel' is not one of 'spur', 'helical'"),
        ({"weights": 3}, "weights=3 is not a list of number or none"),
        ({"beta": "manual"}, "beta='manual' is not a number or one of 'auto'"),
        ({"ratio": True}, "is not a number"),
    ],
)
def test_wrong_types_name_the_expected_type(params, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_registry().create("gear", params)


def test_names_filter_with_fnmatch_and_defaults_skip_context():
    registry = make_registry()
    assert registry.names("g*") == ["gear"] and registry.names("*dice*") == []
    entry = registry.get("gear")
    assert "mode" not in entry.defaults
    assert entry.defaults["teeth"] == 12


def test_coerce_union_prefers_the_first_matching_type():
    assert coerce(0.5, float | Literal["auto"]) == 0.5
    assert coerce("auto", float | Literal["auto"]) == "auto"
    assert coerce(None, list[float] | None) is None


def test_canonical_orders_by_signature_and_coerces():
    from losscmp.registry import canonical

    entry = make_registry().get("gear")
    assert list(canonical(entry, {"kind": "helical", "teeth": 10.0})) == ["teeth", "kind"]
    assert canonical(entry, {"ratio": 2})["ratio"] == 2.0


def test_suggestions_ignore_case():
    from losscmp.errors import suggest

    assert suggest("DICE", ["dice", "focal"]) == " (did you mean 'dice'?)"


def test_a_suggestion_takes_a_near_spelling_then_the_one_name_that_begins_it():
    """One rule for every 'did you mean' (an unknown option's had its own): a near
    spelling first ('lr_grid': 'lr-grid', though 'lr' begins it), else the one name that
    begins what was typed, or that it begins, however unlike it is ('output-dir': 'out',
    which the closest-spelling rule alone did not offer)."""
    from losscmp.errors import suggest

    assert suggest("lr_grid", ["lr", "lr-grid", "seed"]) == " (did you mean 'lr-grid'?)"
    assert suggest("output-dir", ["out", "seed", "seeds"]) == " (did you mean 'out'?)"
    assert suggest("bogus", ["out", "seed", "seeds"]) == ""


def test_trial_ids_stay_unique_when_labels_are_long():
    from losscmp.results import trial_id

    long = "tversky(alpha=0.3,beta=0.7,smooth=1.0,reduction=image,include_background=false,x=1)"
    assert trial_id("s", long, 0) != trial_id("s", long[:-2] + "2)", 0)
    assert trial_id("s", "a[1]", 0) != trial_id("s", "a(1)", 0)


def test_a_misspelt_choice_gets_a_suggestion():
    with pytest.raises(ParameterError, match=r"kind='spirl' .*\(did you mean 'spur'\?\)"):
        make_registry().create("gear", {"kind": "spirl"})
    with pytest.raises(ParameterError, match=r"beta='aut' .*\(did you mean 'auto'\?\)"):
        make_registry().create("gear", {"beta": "aut"})


def test_names_match_a_pattern_whatever_its_case():
    registry = make_registry()
    assert registry.names("GEAR") == registry.names("G*") == ["gear"]


def test_a_factory_registered_by_path_is_imported_only_to_be_called(monkeypatch):
    import importlib

    registry = Registry("loss", context_params=("mode",))
    registry.register("tversky", "Tversky.")("losscmp.losses.overlap:TverskyLoss")
    entry = registry.get("tversky")
    real_import = importlib.import_module

    def no_project_imports(name, *args):
        assert not name.startswith("losscmp"), f"imported {name}"
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_project_imports)
    assert list(entry.parameters)[:3] == ["alpha", "beta", "smooth"]
    assert entry.defaults["alpha"] == 0.3
    assert entry.type_hints()["reduction"] == Literal["batch", "image"]
    assert registry.names() == ["tversky"]
    monkeypatch.undo()
    from losscmp.losses.overlap import TverskyLoss

    assert entry.load() is TverskyLoss
    assert isinstance(registry.create("tversky", {"alpha": 0.5}, mode="binary"), TverskyLoss)


def test_a_signature_the_source_reader_cannot_evaluate_is_read_from_the_import():
    import inspect

    from losscmp import signatures
    from losscmp.losses.base import check_range

    # high: float = float("inf") is no literal: the reader refuses, the entry imports.
    with pytest.raises(signatures.Unreadable):
        signatures.read_signature("losscmp.losses.base:check_range")
    registry = Registry("check")
    registry.register("range", "A range check.")("losscmp.losses.base:check_range")
    entry = registry.get("range")
    assert entry.parameters == dict(inspect.signature(check_range).parameters)
    assert entry.defaults == {"high": float("inf")}
    assert entry.type_hints()["high"] is float
