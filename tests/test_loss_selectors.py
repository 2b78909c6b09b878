"""``--losses all`` and fnmatch patterns (``*dice*``): expanded to the losses of the run's
dataset mode, in registry order, duplicates kept once; visible in the dry run and recorded
as the expanded names in run.json, so that ``--resume`` compares lists of names."""

from __future__ import annotations

import json
import re

import pytest

from losscmp.config import build_config
from losscmp.errors import ParameterError
from losscmp.losses import LOSS_REGISTRY
from losscmp.plan import plan_run, select_losses
from losscmp.spec import Spec

TINY = ["--image-size", "32", "--device", "cpu", "--epochs", "1"]
BINARY = "synthetic(n_train=16,n_val=8,n_test=8)"
MULTICLASS = "synthetic(n_train=16,n_val=8,n_test=8,num_classes=3)"


def losses_of(mode: str) -> list[str]:
    """The registry's own answer: the entries whose modes list ``mode``, by name."""
    return [
        entry.name for entry in sorted(LOSS_REGISTRY, key=lambda e: e.name) if mode in entry.modes
    ]


def planned_losses(losses, dataset: str = BINARY) -> list[str]:
    return plan_run(build_config(losses=losses, dataset=dataset, out="unused")).config.losses


@pytest.mark.parametrize(("dataset", "mode"), [(BINARY, "binary"), (MULTICLASS, "multiclass")])
def test_all_is_every_loss_defined_for_the_datasets_mode(cli, tmp_path, dataset, mode):
    expected = losses_of(mode)  # counted here: a new loss needs no edit of this file
    count = len(expected)
    assert 0 < count < len(LOSS_REGISTRY.names())  # each mode lacks some: ce is multiclass only
    out = tmp_path / "r"
    result = cli("run", "--losses", "all", "--dataset", dataset, *TINY, "--dry-run", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"'all': {count} {mode} losses: {', '.join(expected)}\n" in result.output
    assert f"{count} planned trials (dry run: nothing trained)" in result.output
    assert planned_losses("all", dataset) == expected
    assert not out.exists()


def test_patterns_expand_in_registry_order_beside_explicit_names(cli, tmp_path):
    """Each pattern's matches at its place in the list, sorted; the explicit names where
    they stand; a pattern's match listed before it is not trained twice."""
    dices = ["bce_dice", "dice", "dice_focal", "dice_topk", "generalized_dice", "log_cosh_dice"]
    assert planned_losses("*dice*,focal") == [*dices, "focal"]
    assert planned_losses("focal,*DICE*") == ["focal", *dices]  # names are lower case
    assert planned_losses("dice_focal,*dice*") == [
        "dice_focal",
        *(d for d in dices if d != "dice_focal"),
    ]
    assert planned_losses("*tversky*,tversky*") == ["focal_tversky", "tversky"]
    assert planned_losses("[bf]ce*") == ["bce", "bce_dice"]
    out = tmp_path / "r"
    result = cli(
        "run",
        "--losses",
        "dice,*dice*,focal",
        "--dataset",
        BINARY,
        *TINY,
        "--dry-run",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    assert (
        "'*dice*': 6 binary losses: bce_dice, dice, dice_focal, dice_topk, generalized_dice, "
        "log_cosh_dice (dice listed before it)\n"
    ) in result.output
    assert "7 planned trials" in result.output


def test_all_mixed_with_parameterised_specs():
    """A spec with other parameters is another loss; one equal to the defaults is the loss
    ``all`` already brings, kept once where it first appears."""
    binary = losses_of("binary")
    assert planned_losses("all,tversky(alpha=0.7,beta=0.3)") == [
        *binary,
        "tversky(alpha=0.7,beta=0.3)",
    ]
    assert planned_losses("focal(gamma=1),all") == ["focal(gamma=1.0)", *binary]
    assert planned_losses("all,dice(smooth=1)") == binary  # dice's defaults: the same loss
    assert planned_losses("dice(smooth=1),all") == [
        "dice(smooth=1.0)",
        *(n for n in binary if n != "dice"),
    ]


def test_explicit_repeats_are_still_refused():
    with pytest.raises(ParameterError, match="'dice' is listed twice"):
        planned_losses("dice,all,dice")


@pytest.mark.parametrize(
    ("losses", "dataset", "message"),
    [
        (
            "*dcie*",
            BINARY,
            "no loss matches '*dcie*' (did you mean '*dice*'?); 'losscmp losses' lists them",
        ),
        ("dice,*focla*", BINARY, "no loss matches '*focla*' (did you mean '*focal*'?)"),
        ("zz*", BINARY, "no loss matches 'zz*'; 'losscmp losses' lists them"),
        (
            "ce*",
            BINARY,
            "no binary loss matches 'ce*': it matches ce, ce_dice, defined for multiclass mode "
            "only, and this run's data is binary",
        ),
        (
            "all,bce*",
            MULTICLASS,
            "no multiclass loss matches 'bce*': it matches bce, bce_dice, defined for binary mode "
            "only, and this run's data is multiclass",
        ),
        ("*dice*(smooth=2)", BINARY, "'*dice*' stands for several names and takes no parameters"),
        ("all()", BINARY, "'all' stands for several names and takes no parameters"),
    ],
)
def test_a_selector_that_selects_nothing_is_one_line_exit_2(
    cli, tmp_path, losses, dataset, message
):
    out = tmp_path / "r"
    result = cli("run", "--losses", losses, "--dataset", dataset, *TINY, "--dry-run", "--out", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert result.stderr.startswith("losscmp: error: ") and message in result.stderr
    assert not out.exists()


def test_a_run_without_dry_run_refuses_before_any_folder(cli, tmp_path):
    out = tmp_path / "r"
    result = cli("run", "--losses", "all,*xyz*", "--dataset", BINARY, *TINY, "--out", out)
    assert result.exit_code == 2 and "no loss matches '*xyz*'" in result.stderr
    assert not out.exists()


def test_all_counts_every_loss_against_the_trial_limit(cli, tmp_path):
    """Before expansion 'all' is one name: 5000 seeds passed the config's check."""
    result = cli(
        "run",
        "--losses",
        "all",
        "--seeds",
        "5000",
        "--dataset",
        BINARY,
        *TINY,
        "--dry-run",
        "--out",
        tmp_path / "r",
    )
    count = len(losses_of("binary"))
    assert result.exit_code == 2
    assert f"makes {5000 * count} trials ({count} loss(es) x 1 dataset(s)" in result.stderr


@pytest.mark.parametrize(
    ("yaml", "flags", "seeds", "expected"),
    [
        (
            "losses: all\nseeds: 5000\n",
            [],
            5000,
            "{config}: 'seeds' 5000 makes {trials} trials ({count} loss(es) x 1 dataset(s) x 1 "
            "learning rate(s) x 5000 seed(s)); at most 100000",
        ),
        (
            "seeds: 60000\n",
            ["--losses", "all"],
            60000,
            "{config}: 'seeds' 60000 makes {trials} trials ({count} loss(es) x 1 dataset(s) x 1 "
            "learning rate(s) x 60000 seed(s)); at most 100000",
        ),
        (
            "losses: all\nseeds: 3\n",
            ["--seeds", "4400"],
            4400,
            "--seeds 4400 makes {trials} trials ({count} loss(es) x 1 dataset(s) x 1 learning "
            "rate(s) x 4400 seed(s)); at most 100000",
        ),
    ],
)
def test_the_trial_limit_names_the_seeds_where_they_were_given(
    cli, tmp_path, yaml, flags, seeds, expected
):
    """Seeds from a config file were named '--seeds 5000' once 'all' was expanded, a flag
    the command line did not have; as the check before expansion names them, the file's
    key."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml + f"dataset: {BINARY}\n")
    out = tmp_path / "r"
    result = cli("run", "--config", config, *flags, *TINY, "--dry-run", "--out", out)
    assert result.exit_code == 2
    count = len(losses_of("binary"))
    assert count * seeds > 100_000  # over the limit, however many losses there are
    message = expected.format(config=f"config file {config}", count=count, trials=count * seeds)
    assert result.stderr == f"losscmp: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("losses_yaml", "expected"),
    [
        ("all", losses_of("multiclass")),
        ("'*tversky*,ce'", ["focal_tversky", "tversky", "ce"]),
        (
            '["*tversky*", {name: focal, gamma: 1}, {name: "ce*"}]',
            ["focal_tversky", "tversky", "focal(gamma=1.0)", "ce", "ce_dice"],
        ),
    ],
)
def test_yaml_losses_take_all_and_patterns(cli, tmp_path, losses_yaml, expected):
    config = tmp_path / "run.yaml"
    config.write_text(f"losses: {losses_yaml}\ndataset: {MULTICLASS}\n")
    assert plan_run(build_config(config, out=str(tmp_path / "r"))).config.losses == expected
    result = cli("run", "--config", config, *TINY, "--dry-run", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert f"{len(expected)} planned trials" in result.output


def test_a_yaml_pattern_that_matches_nothing_names_itself(cli, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"losses: ['*dcie*']\ndataset: {BINARY}\n")
    result = cli("run", "--config", config, *TINY, "--dry-run", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: no loss matches '*dcie*' (did you mean '*dice*'?); "
        "'losscmp losses' lists them\n"
    )


def test_datasets_of_two_modes_make_all_ambiguous():
    """No run has them today (the imbalance dial keeps the mode); refused, not guessed."""
    with pytest.raises(
        ParameterError,
        match="'all' cannot choose the losses of this run: its datasets are binary and multiclass",
    ):
        select_losses(LOSS_REGISTRY, ["all"], ["binary", "multiclass"])
    named, selections = select_losses(LOSS_REGISTRY, [Spec("dice")], ["binary", "multiclass"])
    assert named == [Spec("dice")] and selections == []


def test_a_loss_name_in_capitals_is_the_loss_recorded_in_lower_case():
    """As a pattern in capitals matches (``DICE*``), ``--losses Dice`` is dice: the plan
    (and so run.json and the tables) names it as the registry does, so that two runs
    combine; written twice in two cases it is one loss, listed twice."""
    losses = ["Dice", "FOCAL(gamma=2)", "Boundary", "*Tversky*"]
    assert planned_losses(losses) == [
        "dice",
        "focal(gamma=2.0)",
        "boundary",
        "focal_tversky",
        "tversky",
    ]
    with pytest.raises(ParameterError, match="'dice' is listed twice"):
        planned_losses(["dice", "Dice"])


def test_run_json_records_the_expanded_names_and_resume_matches_them(cli, tmp_path):
    """A real run (2 trials, 1 epoch): run.json's config holds the names, its command what
    was typed; --resume with the same pattern matches the expanded list."""
    out = tmp_path / "r"
    args = ["--losses", "*tversky*", "--dataset", BINARY, *TINY, "--threads", "1"]
    result = cli("run", *args, "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    first_lines = result.stderr.splitlines()[:3]
    assert first_lines == [
        f"run folder: {run_dir}",
        "'*tversky*': 2 binary losses: focal_tversky, tversky",
        "executing: in this process, 1 thread",
    ]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["config"]["losses"] == ["focal_tversky", "tversky"]
    assert "--losses '*tversky*'" in meta["command"]
    assert sorted(meta["losses"]) == ["focal_tversky", "tversky"]
    resumed = cli("run", "--resume", run_dir, "--losses", "*tversky*", "--seeds", "2", "--dry-run")
    assert resumed.exit_code == 0, resumed.output
    assert "2 of 4 planned trials still to train" in resumed.output


def test_resume_with_all_matches_the_runs_expanded_list(cli, tmp_path):
    binary = losses_of("binary")
    run_dir = write_run_of(tmp_path, binary)
    result = cli("run", "--resume", run_dir, "--losses", "all", "--seeds", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    count = len(binary)
    assert f"'all': {count} binary losses: {', '.join(binary)}\n" in result.output
    assert f"{count} of {2 * count} planned trials still to train" in result.output


def test_resume_with_all_says_what_a_grown_registry_adds(cli, tmp_path, exploding_loss):
    """The run trained every binary loss there was; since, the registry gained one
    ('exploding', registered for this test): 'all' now means one more."""
    trained = [name for name in losses_of("binary") if name != exploding_loss]
    run_dir = write_run_of(tmp_path, trained)
    grown = cli("run", "--resume", run_dir, "--losses", "all", "--dry-run")
    assert grown.exit_code == 2
    assert grown.stderr == (
        f"losscmp: error: --resume {run_dir}: this command changes losses (adds 'exploding'; "
        "'all' expanded to the losses registered now); resume with the run's own options, "
        "or start a new run\n"
    )
    kept = cli("run", "--resume", run_dir, "--seeds", "2", "--dry-run")  # its own losses
    assert kept.exit_code == 0, kept.output
    count = len(trained)
    assert f"{count} of {2 * count} planned trials still to train" in kept.output


def write_run_of(tmp_path, losses):
    from run_fixtures import write_run

    quality = {name: 0.5 + index / 100 for index, name in enumerate(losses)}
    return write_run(tmp_path / "runs", quality=quality, seeds=(0,), epochs=2, n_images=4)


def test_the_readme_gives_the_registrys_counts_per_mode():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    binary, multiclass = len(losses_of("binary")), len(losses_of("multiclass"))
    assert f"{binary} binary, {multiclass} multiclass" in readme


def test_losses_command_takes_all_and_respells_a_pattern(cli):
    from losscmp.losses import list_losses

    listed = cli("losses", "all")
    assert listed.exit_code == 0
    assert all(name in listed.output for name in list_losses())
    typo = cli("losses", "*dcie*")
    assert typo.exit_code == 2
    assert typo.stderr == "losscmp: error: no loss matches '*dcie*' (did you mean '*dice*'?)\n"


def test_losses_command_in_an_80_column_terminal_breaks_no_word(cli, monkeypatch):
    """In 80 columns six columns broke their words mid-way ('binary/multicla' 'ss',
    'ignore_inde' 'x=None'): the parameters, which --show lists, go, and modes wrap whole."""
    import re

    from losscmp.losses import list_losses

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stdout is a terminal
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("losses")
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert set(re.findall(r"multicla\w*|binar\w*", text)) == {"binary", "multiclass"}
    assert all(re.search(rf"│ {name} +│", text) for name in list_losses())
    assert "parameters not shown at 80 columns: losscmp losses --show NAME" in text
    monkeypatch.delenv("TTY_COMPATIBLE")  # a pipe: wide, every column
    wide = cli("losses")
    assert "parameters (defaults)" in wide.stdout and "include_background=True" in wide.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (  # was: unknown loss 'focal(gamma=1)'; choose from: ... (no did-you-mean)
            ["--show", "focal(gamma=1)"],
            "--show takes a loss's name, without parameters (did you mean '--show focal'?)",
        ),
        (  # was: unknown loss 'focal[gamma=1]' (did you mean 'focal'?); choose from: ...
            ["--show", "focal[gamma=1]"],
            "--show takes a loss's name, without parameters (did you mean '--show focal'?)",
        ),
        (  # was: unknown loss '*dice*' (did you mean 'dice'?)
            ["--show", "*dice*"],
            "--show takes one loss's name, not a pattern: losscmp losses '*dice*' lists "
            "the losses it matches",
        ),
        (  # was: unknown loss 'overlap'; choose from: ... (the family column's name)
            ["--show", "overlap"],
            "--show takes one loss's name, not a family's: losscmp losses 'overlap' lists "
            "its losses",
        ),
        (  # was: no loss matches 'focal(gamma=1)' (no did-you-mean)
            ["focal(gamma=1)"],
            "no loss matches 'focal(gamma=1)' (a pattern names losses, without parameters: "
            "did you mean 'focal'?)",
        ),
        (  # was: no loss matches 'focal[gamma=1]' ('[' read as a pattern's, no hint)
            ["focal[gamma=1]"],
            "no loss matches 'focal[gamma=1]' (a pattern names losses, without parameters: "
            "did you mean 'focal'?)",
        ),
    ],
)
def test_losses_command_says_what_to_type_for_a_spec_or_a_pattern(cli, args, message):
    result = cli("losses", *args)
    assert result.exit_code == 2
    assert result.stderr == f"losscmp: error: {message}\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "shown"),
    [(["--show", " tversky "], "tversky — Tversky loss"), ([" tversky "], "1 loss")],
)
def test_losses_command_ignores_spaces_around_a_name_as_losses_does(cli, args, shown):
    """--losses ' dice , focal ' reads dice and focal; 'losses --show " tversky "' was an
    unknown loss (did you mean 'tversky'?)."""
    result = cli("losses", *args)
    assert result.exit_code == 0, result.output
    assert shown in result.stdout
    assert "│ tversky " in result.stdout or "Salehi et al. 2017" in result.stdout


def test_parameters_in_square_brackets_are_respelt_in_parentheses(cli, tmp_path):
    """'[' is a pattern's character class: 'focal[gamma=1]' matched no loss, and the line
    did not say that parameters go in parentheses."""
    out = tmp_path / "r"
    result = cli("run", "--losses", "dice,focal[gamma=1]", "--dataset", BINARY, *TINY,
                 "--dry-run", "--out", out)  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: no loss matches 'focal[gamma=1]' (parameters go in parentheses: "
        "did you mean 'focal(gamma=1)'?); 'losscmp losses' lists them\n"
    )
    assert not out.exists()


def test_losses_command_given_one_name_points_to_its_formula_and_paper(cli):
    """'losscmp losses tversky' printed one row: no formula, no paper, and no word that
    --show has them."""
    result = cli("losses", "tversky")
    assert result.exit_code == 0, result.output
    assert "'losscmp losses --show tversky': its formula, parameters and paper" in result.stdout
    several = cli("losses", "*tversky*")
    assert "--show" not in several.stdout


def test_losses_command_lists_a_family_by_the_name_its_column_shows(cli):
    """The table's family column says 'overlap'; 'losscmp losses overlap' matched no loss,
    with no hint, and a misspelt family got no did-you-mean."""
    overlap = sorted(entry.name for entry in LOSS_REGISTRY if entry.family == "overlap")
    result = cli("losses", "Overlap")
    assert result.exit_code == 0, result.output
    assert f"{len(overlap)} losses" in result.stdout
    assert all(f"│ {name} " in result.stdout for name in overlap)
    assert "│ focal " not in result.stdout
    note = " ".join(result.stderr.split())  # as one line, however the terminal wraps it
    assert note == (
        "note: 'Overlap' is a family of losses, not a loss; --losses takes its losses by "
        f"name: {','.join(overlap)}"
    )
    typo = cli("losses", "compund")
    assert typo.stderr == "losscmp: error: no loss matches 'compund' (did you mean 'compound'?)\n"
    loss = cli("losses", "boundary")  # a loss's name and a family's: the loss
    assert "1 loss" in loss.stdout and "hausdorff_dt" not in loss.stdout


def test_a_family_given_to_losses_names_its_losses_of_the_datas_mode(cli, tmp_path):
    """--losses pixel: 'unknown loss 'pixel'; choose from: ...', which did not say that the
    listing's family column was meant, nor which of its losses the data's mode takes."""
    out = tmp_path / "r"
    result = cli("run", "--losses", "dice,pixel", "--dataset", BINARY, *TINY, "--dry-run",
                 "--out", out)  # fmt: skip
    assert result.exit_code == 2
    binary = [name for name in losses_of("binary") if LOSS_REGISTRY.get(name).family == "pixel"]
    assert "ce" not in binary and "bce" in binary
    assert result.stderr == (
        "losscmp: error: 'pixel' is a family of losses, not a loss; --losses takes its binary "
        f"losses by name: {','.join(binary)}\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "listed", "note"),
    [
        # was: no loss matches 'dice,focal' (did you mean 'dice_focal'?)
        ("dice,*tversky*", ["dice", "focal_tversky", "tversky"], None),
        # was: no loss matches 'binary' (did you mean 'boundary'?)
        ("binary", losses_of("binary"), "'binary' is a mode, not a loss: --losses all trains "
                                        "every loss of the data's mode"),
    ],
)  # fmt: skip
def test_losses_command_takes_a_list_and_a_mode_as_losses_and_its_columns_do(
    cli, text, listed, note
):
    result = cli("losses", text)
    assert result.exit_code == 0, result.output
    assert f"{len(listed)} losses" in result.stdout
    assert all(f"│ {name} " in result.stdout for name in listed)
    assert len(re.findall(r"^│ \w", result.stdout, flags=re.MULTILINE)) == len(listed)
    assert " ".join(result.stderr.split()) == (f"note: {note}" if note else "")


def test_losses_command_respells_a_list_separated_by_spaces(cli):
    result = cli("losses", "dice focal")  # was: (did you mean 'dice_focal'?)
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: no loss matches 'dice focal' (a list is separated by commas: did you "
        "mean 'dice,focal'?)\n"
    )


def test_a_mode_given_to_losses_points_to_all(cli, tmp_path):
    out = tmp_path / "r"
    result = cli("run", "--losses", "binary", "--dataset", BINARY, *TINY, "--dry-run", "--out", out)
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: 'binary' is a mode, not a loss: --losses all trains every loss of the "
        "data's mode\n"
    )
    assert not out.exists()
