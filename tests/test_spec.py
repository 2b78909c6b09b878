import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from losscmp.errors import SpecError
from losscmp.spec import Spec, as_spec, parse_spec, parse_value, split_spec_list


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("0.3", 0.3),
        ("1e-3", 1e-3),
        ("true", True),
        ("False", False),
        ("none", None),
        ("null", None),
        ("'a,b'", "a,b"),
        ("auto", "auto"),
        ("[1, 2.5]", [1, 2.5]),
        ("[]", []),
    ],
)
def test_values_are_read_as_literals(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_list_of_losses_with_parameters():
    specs = specs_of("dice, focal(gamma=1),tversky(alpha=0.3,beta=0.7)")
    assert specs == [
        Spec("dice"),
        Spec("focal", {"gamma": 1}),
        Spec("tversky", {"alpha": 0.3, "beta": 0.7}),
    ]
    assert [spec.label for spec in specs] == [
        "dice",
        "focal(gamma=1)",
        "tversky(alpha=0.3,beta=0.7)",
    ]


def test_list_values_and_nested_commas():
    spec = parse_spec("ce_dice(class_weights=[1,2,3],smooth=1)")
    assert spec.params == {"class_weights": [1, 2, 3], "smooth": 1}
    assert parse_spec(spec.label) == spec


def test_folder_shorthand_keeps_the_path_verbatim():
    assert parse_spec("folder:/data/my set,v2") == Spec("folder", {"path": "/data/my set,v2"})
    assert parse_spec("folder(path=/data/x,mask_suffix=_mask)").params == {
        "path": "/data/x",
        "mask_suffix": "_mask",
    }


def test_label_quotes_strings_that_would_not_round_trip():
    spec = Spec("folder", {"path": "a,b", "mode": "1"})
    assert parse_spec(spec.label) == spec


@pytest.mark.parametrize(
    "text",
    ["focal(gamma=1", "focal(gamma)", "focal(=1)", "fo cal", "dice(a=1,a=2)", "x(a='1)", "dice)"],
)
def test_malformed_specs_raise_spec_error(text):
    with pytest.raises(SpecError):
        specs_of(text)


def test_yaml_mapping_form():
    assert as_spec({"name": "focal", "gamma": 1}) == Spec("focal", {"gamma": 1})
    with pytest.raises(SpecError, match="needs a 'name'"):
        as_spec({"gamma": 1})


AWKWARD = [
    "t/d s\\bk",
    "t/ds 'both\"",
    "a\\'b",
    "ends with \\",
    "\\\\server\\share",
    "a,b(c)=d[e]",
    "ünïcødé 数据 🐱",
    " padded ",
    "tab\there",
    "new\nline",
    "1e-3",
    "true",
    "none",
    "",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_a_label_reads_back_as_its_spec(text):
    spec = Spec("folder", {"path": text, "names": [text, "x"]})
    assert as_spec(spec.label) == spec


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \\'\",()[]=:é\n1.e-"), max_size=12) | st.text())
def test_any_string_value_round_trips_through_its_label(text):
    spec = Spec("folder", {"path": text})
    assert as_spec(spec.label) == spec
    assert specs_of(f"{spec.label},dice") == [spec, Spec("dice")]


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("'C:\\new\\data'", "C:\\new\\data"),  # no newline: a backslash is never special
        ("'C:\\Users\\me'", "C:\\Users\\me"),
        ("'C:\\data\\'", "C:\\data\\"),
        ("'it''s'", "it's"),
        ('"it\'s"', "it's"),
        ("''", ""),
    ],
)
def test_a_quoted_value_reads_as_typed(typed, value):
    assert parse_value(typed) == value
    assert parse_spec(f"folder(path={typed})") == Spec("folder", {"path": value})


def specs_of(text: str) -> list[Spec]:
    return [as_spec(item) for item in split_spec_list(text)]


@pytest.mark.parametrize(
    ("typed", "meant"), [("dice;focal", "dice,focal"), ("dice focal", "dice,focal")]
)
def test_losses_separated_otherwise_than_by_commas_are_respelt(cli, tmp_path, typed, meant):
    """'dice focal' and 'dice;focal' were 'not a valid name', without saying why."""
    out = tmp_path / "r"
    result = cli("run", "--losses", typed, "--dry-run", "--out", out)
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: --losses: '{typed}' is not a valid name (a list is separated by "
        f"commas: did you mean '{meant}'?)\n"
    )
    assert not out.exists()


def test_names_and_specs_separated_by_a_space_are_respelt(cli, tmp_path):
    """'dice focal(gamma=1)': a spec among the names, and the line had no did-you-mean."""
    out = tmp_path / "r"
    result = cli("run", "--losses", "dice focal(gamma=1)", "--dry-run", "--out", out)
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: --losses: 'dice focal' is not a valid name in 'dice focal(gamma=1)' "
        "(a list is separated by commas: did you mean 'dice,focal(gamma=1)'?)\n"
    )
    assert not out.exists()
