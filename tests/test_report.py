"""Summaries and renderers on hand-written run folders (tests/run_fixtures.py), known numbers."""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from run_fixtures import LR, epoch_shape, held_out_epoch_shape, write_run

from losscmp import summary as summary_module
from losscmp.errors import LosscmpError, UnknownNameError
from losscmp.render import RENDERERS
from losscmp.render.cells import (
    ordered_rows,
    table_columns,
    table_extras,
)
from losscmp.render.terminal import render_class_tables, render_imbalance_table, render_table
from losscmp.results import RunStore, planned_trial_names, read_run_json, trial_id
from losscmp.selection import chosen_rows
from losscmp.summary import (
    RunResults,
    build_report,
    combine_runs,
    failed_trial_notes,
    headline_caption,
    imbalance_frame,
    load_run,
    per_class_columns,
    report_notes,
    resolve_run_dirs,
    summarize,
    unfinished_trials,
)

QUALITY = {"dice": 0.80, "focal": 0.55, "tversky": 0.78}


def rendered(table, width: int = 250, color_system: str | None = None) -> str:
    """``table`` as text, drawn as on a pipe (no styles) or, given a ``color_system``, as
    on a terminal."""
    console = Console(record=True, width=width, color_system=color_system, file=io.StringIO())
    console.print(table)
    return console.export_text()


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path, quality=QUALITY, twins={"dice_copy": "dice"})


@pytest.fixture
def summary(run_dir):
    return summarize(load_run(run_dir))


# ---------------------------------------------------------------- finding runs


def test_resolve_accepts_a_run_folder(run_dir):
    assert resolve_run_dirs([run_dir]) == [run_dir]


def test_resolve_parent_takes_the_newest_run(tmp_path):
    write_run(tmp_path, run_id="20260101-120000-aaaaaa")
    newest = write_run(tmp_path, run_id="20260102-090000-bbbbbb")
    (tmp_path / "notes").mkdir()  # not a run: ignored
    assert resolve_run_dirs([tmp_path]) == [newest]


def test_resolve_parent_takes_the_newest_run_whatever_its_folder_is_called(tmp_path):
    """A run folder renamed by hand ('baseline') sorted after every run id by name."""
    old = write_run(tmp_path, run_id="20260101-120000-aaaaaa")
    renamed = old.rename(tmp_path / "baseline")
    newest = write_run(
        tmp_path,
        run_id="20260102-090000-bbbbbb",
        extra_meta={"started_at": "2026-01-02T09:00:00+00:00"},
    )
    assert resolve_run_dirs([tmp_path]) == [newest]
    assert resolve_run_dirs([renamed]) == [renamed]  # named, it is still read


def test_resolve_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(LosscmpError, match="does not exist"):
        resolve_run_dirs([tmp_path / "nope"])


def test_resolve_folder_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(LosscmpError, match="is not a losscmp run folder"):
        resolve_run_dirs([tmp_path])


def test_resolve_drops_repeats(run_dir):
    assert resolve_run_dirs([run_dir, run_dir.parent]) == [run_dir]


def test_one_run_named_two_ways_is_read_once(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(run_dir.parent)
    (tmp_path / "link").symlink_to(run_dir)
    named = [Path(run_dir.name), run_dir, tmp_path / "link"]
    assert resolve_run_dirs(named) == [Path(run_dir.name)]


# ---------------------------------------------------------------- loading


def test_schema_version_mismatch_is_refused(tmp_path):
    run_dir = write_run(tmp_path, schema_version=99)
    with pytest.raises(LosscmpError, match="schema version 99"):
        load_run(run_dir)


def test_run_without_trials_says_so(tmp_path):
    run_dir = write_run(tmp_path)
    for path in (run_dir / "trials").iterdir():
        path.unlink()
    (run_dir / "epochs.csv").unlink()
    (run_dir / "images.csv").unlink()
    with pytest.raises(LosscmpError, match="no finished trials"):
        load_run(run_dir)


def test_a_run_whose_every_trial_failed_says_so_not_that_it_is_running(tmp_path):
    """One loss raising fails its whole fused group: with one seed, every trial. The run
    ends, and its report (and the command's last line) read "still running"."""
    failed = {"t1": "ValueError: the loss broke", "t2": "ValueError: the loss broke"}
    extra = {"failed_trials": failed, "finished_at": "2026-01-01T12:10:00+00:00"}
    run_dir = write_run(tmp_path, extra_meta=extra, write_csvs=False)
    for path in (run_dir / "trials").iterdir():
        path.unlink()
    with pytest.raises(LosscmpError) as caught:
        load_run(run_dir)
    assert str(caught.value) == (
        f"{run_dir} has no finished trials: 2 trial(s) failed (e.g. t1: ValueError: the loss "
        f"broke); 'losscmp run --resume {run_dir}' tries them again"
    )


def test_the_summary_names_failed_trials_without_the_console(tmp_path):
    """The summary (data) imported the console (Rich, progress bars) to name a failed
    trial; the name lives in a module both use (trial_names)."""
    run_dir = write_run(
        tmp_path,
        quality={"bce": 0.5, "dice": 0.6},
        seeds=(0, 1),
        extra_meta={"learning_rates": [LR]},
    )
    failed = trial_id("synthetic", "dice", 1, LR)
    (run_dir / "trials" / f"{failed}.json").unlink()
    RunStore(run_dir).record_failed(failed, "worker died twice")
    code = (
        "import sys; from pathlib import Path; "
        "from losscmp.summary import failed_trial_notes, load_run; "
        f"print(failed_trial_notes(load_run(Path({str(run_dir)!r}), repair=False))); "
        "print([name for name in sys.modules if name == 'losscmp.console' or "
        "name.startswith('rich')])"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    notes, imported = found.stdout.splitlines()
    assert "1 trial failed (dice · seed 1: worker died twice)" in notes
    assert imported == "[]"


def test_a_run_whose_every_trial_failed_names_the_trial_as_its_lines_did(cli, tmp_path):
    """'losscmp report' of such a run named the trial by its id
    ('synthetic__bce__seed0__<hash>'), where the run's 'failed:' and last lines said
    'bce · seed 0'."""
    failed = {
        trial_id("synthetic", loss, 0): "ValueError: the loss broke" for loss in ("bce", "dice")
    }
    extra = {"failed_trials": failed, "finished_at": "2026-01-01T12:10:00+00:00"}
    run_dir = write_run(
        tmp_path, quality={"bce": 0.5, "dice": 0.6}, seeds=(0,), extra_meta=extra, write_csvs=False
    )
    for path in (run_dir / "trials").iterdir():
        path.unlink()
    result = cli("report", run_dir)
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: {run_dir} has no finished trials: 2 trial(s) failed (e.g. bce · "
        f"seed 0: ValueError: the loss broke); 'losscmp run --resume {run_dir}' tries "
        "them again\n"
    )


def test_damaged_trial_file_is_named(run_dir):
    damaged = next((run_dir / "trials").iterdir())
    damaged.write_text("{not json")
    with pytest.raises(LosscmpError, match=damaged.name):
        load_run(run_dir)


def test_run_json_that_is_not_an_object_is_damaged(run_dir):
    (run_dir / "run.json").write_text("[1, 2]")
    with pytest.raises(LosscmpError, match=r"run\.json is damaged"):
        load_run(run_dir)


def test_trial_file_that_is_not_a_record_is_damaged(run_dir):
    damaged = next((run_dir / "trials").iterdir())
    damaged.write_text("[1, 2]")
    with pytest.raises(LosscmpError, match=f"{damaged.name} is damaged"):
        load_run(run_dir)


def _add_field_to_first_row(text: str) -> str:
    header, first, rest = text.split("\n", 2)
    return f"{header}\n{first},9\n{rest}"


def _add_field_to_a_later_row(text: str) -> str:
    lines = text.split("\n")
    lines[3] += ",9"
    return "\n".join(lines)


def _text_in(column: str):
    def damage(text: str) -> str:
        frame = pd.read_csv(io.StringIO(text))
        frame[column] = frame[column].astype(object)
        frame.loc[1, column] = "oops"
        return frame.to_csv(index=False)

    return damage


def _drop(column: str):
    def damage(text: str) -> str:
        frame = pd.read_csv(io.StringIO(text))
        return frame.drop(columns=column).to_csv(index=False)

    return damage


DAMAGES = {
    "extra-field-first-row": ("epochs.csv", _add_field_to_first_row),
    "extra-field-later-row": ("epochs.csv", _add_field_to_a_later_row),
    "text-val-dice": ("epochs.csv", _text_in("val_dice")),
    "text-epoch": ("epochs.csv", _text_in("epoch")),
    "missing-val-dice": ("epochs.csv", _drop("val_dice")),
    "missing-loss": ("epochs.csv", _drop("loss")),
    "images-text-hd95": ("images.csv", _text_in("hd95")),
    "images-missing-which": ("images.csv", _drop("which")),
}


def _without_trial_files(run_dir):
    """A run read from its tables alone (older runs): with trial files, a damaged
    table is rebuilt from them instead (tests/test_store.py)."""
    for path in (run_dir / "trials").iterdir():
        path.unlink()
    return run_dir


@pytest.mark.parametrize(("name", "damage"), DAMAGES.values(), ids=DAMAGES.keys())
def test_damaged_csv_is_one_clear_error_naming_the_file(run_dir, name, damage):
    _without_trial_files(run_dir)
    path = run_dir / name
    path.write_text(damage(path.read_text()))
    with pytest.raises(LosscmpError, match=f"{name} is damaged") as caught:
        summarize(load_run(run_dir))
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_damaged_csv_is_exit_2_and_one_line_in_the_cli(cli, run_dir):
    _without_trial_files(run_dir)
    path = run_dir / "epochs.csv"
    path.write_text(_add_field_to_first_row(path.read_text()))
    result = cli("report", run_dir)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("losscmp: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "epochs.csv is damaged" in result.stderr


def test_damaged_trial_record_is_named_when_tables_are_rebuilt(tmp_path):
    run_dir = write_run(tmp_path, write_csvs=False)
    damaged = next((run_dir / "trials").iterdir())
    record = json.loads(damaged.read_text())
    record["epochs"][0]["val_dice"] = "oops"
    damaged.write_text(json.dumps(record))
    with pytest.raises(LosscmpError, match="trials is damaged .*val_dice"):
        load_run(run_dir)


def test_trial_ids_without_trials_folder_match_the_runners(tmp_path):
    losses = ["dice", "focal(gamma=1)", "tversky(alpha=0.3, beta=0.7)"]
    run_dir = write_run(
        tmp_path,
        quality=lambda loss, dataset: 0.7,
        losses=losses,
        datasets=["synthetic(fg_fraction=0.05)"],
    )
    for path in (run_dir / "trials").iterdir():
        path.unlink()
    results = load_run(run_dir)
    expected = {
        trial_id("synthetic(fg_fraction=0.05)", loss, seed, LR)
        for loss in losses
        for seed in (0, 1, 2)
    }
    assert set(results.trials["trial_id"]) == expected
    assert unfinished_trials(results) == {}


def test_a_failed_trial_is_noted_once_not_also_as_unfinished(tmp_path):
    """A run that ended with a failed trial: one note says it failed and how to train it
    again; 'is unfinished: 1 planned trial(s) have no result yet' counted it a second time."""
    run_dir = write_run(
        tmp_path, quality={"dice": 0.7}, extra_meta={"failed_trials": {"lost": "worker died"}}
    )
    meta = read_run_json(run_dir)
    meta["trials"].append("lost")
    (run_dir / "run.json").write_text(json.dumps(meta))
    results = load_run(run_dir)
    assert unfinished_trials(results) == {}
    notes = report_notes(results)
    assert [note for note in notes if "lost" in note or "unfinished" in note] == [
        f"{run_dir}: 1 trial failed (lost: worker died); "
        f"'losscmp run --resume {run_dir}' tries it again"
    ]


def _command_in(text: str, start: str) -> list[str]:
    """The words of the command ``text`` gives from ``start`` on, as bash reads it pasted:
    up to the closing quote that wraps it, else to the end."""
    command = text[text.index(start) :]
    if text[text.index(start) - 1] == "'":
        command = command[: command.rindex("'")]
    printed = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True, check=True
    )
    return printed.stdout.decode().split("\0")[:-1]


def test_the_commands_in_notes_name_a_folder_with_spaces_as_one_word(tmp_path):
    """'finish it with: losscmp run --resume my runs/...' pasted ran --resume on 'my'."""
    parent = tmp_path / "my runs $HOME"
    run_dir = write_run(
        parent, quality={"dice": 0.7}, extra_meta={"failed_trials": {"lost": "worker died"}}
    )
    meta = read_run_json(run_dir)
    meta["trials"] += ["lost", "never started"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    results = load_run(run_dir)
    failed, _ = report_notes(results)
    resume = ["losscmp", "run", "--resume", str(run_dir)]
    assert _command_in(failed, "losscmp run") == resume
    (unfinished,) = report_notes(results, failed_trials=False)  # the command its own
    assert _command_in(unfinished, "losscmp run") == resume
    with pytest.raises(LosscmpError) as inside:
        resolve_run_dirs([run_dir / "trials"])
    assert _command_in(str(inside.value), "losscmp report") == ["losscmp", "report", str(run_dir)]


def test_the_failed_trials_note_is_left_out_only_where_asked(tmp_path):
    """The failed trials are data (RunResults.failed_trials), not a note tagged by its type
    (a str subclass, lost by any copy of the text): 'losscmp run', whose last line names
    them, asks for the notes without them, and keeps every other note."""
    run_dir = write_run(
        tmp_path, quality={"dice": 0.7}, extra_meta={"failed_trials": {"lost": "worker died"}}
    )
    meta = read_run_json(run_dir)
    meta["trials"] += ["lost", "pending"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    results = load_run(run_dir)
    assert results.failed_trials == {run_dir: {"lost": "worker died"}}
    failed = (
        f"{run_dir}: 1 trial failed (lost: worker died); "
        f"'losscmp run --resume {run_dir}' tries it again"
    )
    unfinished = f"{run_dir} is unfinished: 1 planned trial(s) have no result yet (pending); "
    # The folder's --resume is given once: the unfinished note after the failed one refers to it.
    assert report_notes(results) == [
        failed,
        unfinished + "the same 'losscmp run --resume' finishes it too",
    ]
    assert report_notes(results, failed_trials=False) == [
        unfinished + f"finish it with: losscmp run --resume {run_dir}"
    ]


def test_the_failed_trials_note_names_the_trial_as_the_runs_lines_do(tmp_path):
    """The note named the trial by its id ('synthetic__focal__lr0.001__seed1__<hash>'),
    where the run's 'failed:' and last lines say 'focal @ lr 0.001 · seed 1' (the rate: the
    run had two); run.json's losses, datasets, seeds and rates rebuild the name."""
    rates = [0.01, 0.001]
    run_dir = write_run(
        tmp_path,
        quality={"dice": 0.7, "focal": 0.6},
        seeds=(0, 1),
        lrs=rates,
        extra_meta={"learning_rates": rates},
    )
    failed = trial_id("synthetic", "focal", 1, 0.001)
    (run_dir / "trials" / f"{failed}.json").unlink()
    RunStore(run_dir).record_failed(failed, "worker died twice")
    assert planned_trial_names(read_run_json(run_dir))[failed] == "focal @ lr 0.001 · seed 1"
    assert failed_trial_notes(load_run(run_dir, repair=False)) == [
        f"{run_dir}: 1 trial failed (focal @ lr 0.001 · seed 1: worker died twice); "
        f"'losscmp run --resume {run_dir}' tries it again"
    ]


def test_fixture_names_trials_as_the_runner_does(run_dir):
    names = {path.stem for path in (run_dir / "trials").iterdir()}
    meta = json.loads((run_dir / "run.json").read_text())
    assert names == set(meta["trials"])
    assert trial_id("synthetic", "focal", 1, LR) in names


def test_tables_are_rebuilt_from_trials_when_csvs_are_missing(tmp_path, summary):
    run_dir = write_run(
        tmp_path / "x", quality=QUALITY, twins={"dice_copy": "dice"}, write_csvs=False
    )
    rebuilt = summarize(load_run(run_dir))
    pd.testing.assert_frame_equal(rebuilt, summary)


# ---------------------------------------------------------------- summarising


def test_one_row_per_loss_best_first(summary):
    assert summary["loss"].tolist()[:2] in (["dice", "dice_copy"], ["dice_copy", "dice"])
    assert summary["loss"].tolist()[2:] == ["tversky", "focal"]
    assert summary["is_best"].tolist() == [True, False, False, False]
    assert summary["metric"].unique().tolist() == ["dice"]


def test_headline_is_test_dice_at_the_validation_chosen_epoch(run_dir, summary):
    epochs = pd.read_csv(run_dir / "epochs.csv")
    focal = epochs[epochs["loss"] == "focal"]
    # validation peaks at the second-to-last epoch; test keeps rising to the last one
    chosen = focal.loc[focal.groupby("seed")["val_dice"].idxmax()]
    assert set(chosen["epoch"]) == {len(epoch_shape(4)) - 1}
    assert held_out_epoch_shape(4).argmax() == 3  # test's own best is another epoch
    per_seed = chosen.set_index("seed")["test_dice"]
    row = summary.set_index("loss").loc["focal"]
    assert row["headline_split"] == "test"
    assert row["score_mean"] == pytest.approx(per_seed.mean())
    assert row["score_std"] == pytest.approx(per_seed.std(ddof=1))
    assert row["score_mean"] < focal.groupby("seed")["test_dice"].max().mean()
    assert row["best_dice_mean"] == pytest.approx(row["score_mean"])
    assert row["ci_low"] < row["score_mean"] < row["ci_high"]
    assert row["best_epoch"] == 3
    # "final" is test at the last epoch, which the rising test curve makes the larger
    final = focal[focal["epoch"] == 4]["test_dice"].mean()
    assert row["final_dice_mean"] == pytest.approx(final) and final > row["best_dice_mean"]


def test_each_trial_reads_its_own_rows_at_its_own_rate():
    """Two rates of one (loss, seed), their epoch and image rows interleaved: each trial
    reads only its own, chooses the first of tied epochs, ends at its last validated one
    and sums its epochs' time where trials/ did not record it."""
    epochs = pd.DataFrame(
        [  # loss, seed, rate, epoch, val_dice, test_dice, seconds
            ("dice", 0, 1e-3, 1, 0.50, 0.40, 1.0),
            ("dice", 0, 1e-2, 1, 0.80, 0.75, 2.0),
            ("dice", 0, 1e-3, 2, 0.70, 0.61, 1.0),
            ("dice", 0, 1e-2, 2, 0.60, 0.55, 2.0),
            ("dice", 0, 1e-3, 3, 0.70, 0.65, 1.0),  # ties epoch 2: the first one is chosen
            ("dice", 0, 1e-2, 3, math.nan, 0.90, 2.5),  # not validated: not the final epoch
            ("dice", 0, 1e-3, 4, 0.60, 0.66, 1.0),
            ("dice", 1, 1e-3, 1, math.nan, math.nan, 0.5),  # diverged in its first epoch
            ("focal", 0, 1e-3, 1, 0.99, 0.99, 9.0),  # another loss, same seed and rate
        ],
        columns=["loss", "seed", "base_lr", "epoch", "val_dice", "test_dice", "seconds"],
    ).assign(dataset="d")
    images = pd.DataFrame(
        [  # loss, seed, rate, which, hd95
            ("dice", 0, 1e-3, "final", 2.0),
            ("dice", 0, 1e-2, "final", 10.0),
            ("dice", 0, 1e-3, "final", 4.0),
            ("dice", 0, 1e-2, "final", math.nan),
            ("dice", 0, 1e-3, "best", 100.0),  # not the final epoch's
            ("focal", 0, 1e-3, "final", 50.0),
        ],
        columns=["loss", "seed", "base_lr", "which", "hd95"],
    ).assign(dataset="d")
    trials = pd.DataFrame(
        [  # loss, seed, rate, status, diverged_epoch, seconds
            ("dice", 0, 1e-3, "finished", None, 12.5),
            ("dice", 0, 1e-2, "finished", None, None),  # its epochs' sum: 6.5
            ("dice", 1, 1e-3, "diverged", 1, 7.5),
            ("focal", 0, 1e-3, "finished", None, 9.0),
        ],
        columns=["loss", "seed", "base_lr", "status", "diverged_epoch", "seconds"],
    ).assign(dataset="d", trial_id=lambda frame: [f"t{i}" for i in range(len(frame))])
    results = RunResults([Path("run")], [{}], {"d": {}}, trials, epochs, images)

    rows = summarize(results).set_index(["loss", "lr"])
    columns = ["n_seeds", "n_diverged", "best_epoch", "best_dice_mean", "final_dice_mean"]
    columns += ["final_hd95_mean", "seconds"]
    assert rows.loc[("dice", 1e-3), columns].tolist() == [2, 1, 2.0, 0.61, 0.66, 3.0, 10.0]
    assert rows.loc[("dice", 1e-2), columns].tolist() == [1, 0, 1.0, 0.75, 0.55, 10.0, 6.5]
    assert rows.loc[("focal", 1e-3), columns].tolist() == [1, 0, 1.0, 0.99, 0.99, 50.0, 9.0]


def test_a_validation_only_run_reports_validation_and_says_so(tmp_path):
    run_dir = write_run(tmp_path, quality=QUALITY, schema_version=1)
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert not [column for column in epochs if column.startswith("test_")]
    summary = summarize(load_run(run_dir))
    focal = epochs[epochs["loss"] == "focal"]
    row = summary.set_index("loss").loc["focal"]
    assert row["headline_split"] == "validation"
    assert row["score_mean"] == pytest.approx(focal.groupby("seed")["val_dice"].max().mean())
    assert row["lr"] == LR  # from run.json's config: version 1 trials did not record it
    text = rendered(render_table(summary))
    assert "VALIDATION ONLY" in text and "Dice val." in text


def test_a_validation_only_run_is_not_combined_with_one_that_reports_test(tmp_path):
    """Combined, the older run's losses had no test score: a table of dashes under a caption
    that said every score was read on test."""
    old = write_run(tmp_path, quality={"dice": 0.8}, schema_version=1, run_id="20250101-0-old")
    new = write_run(tmp_path, quality={"focal": 0.6}, run_id="20260101-0-new")
    with pytest.raises(LosscmpError) as refused:
        build_report([old, new])
    assert str(refused.value) == (
        "cannot combine runs 20250101-0-old and 20260101-0-new: 20250101-0-old was made "
        "before losscmp kept a test split (schema 1: its scores are on validation) and "
        "20260101-0-new is scored on test; report them separately"
    )
    with pytest.raises(LosscmpError, match="20250101-0-old was made before"):
        build_report([new, old])


def test_twin_is_indistinguishable_and_worse_loss_is_significant(summary):
    rows = summary.set_index("loss")
    twin = "dice_copy" if rows.loc["dice", "is_best"] else "dice"
    assert rows.loc[twin, "p_value"] == 1.0
    assert rows.loc[twin, "indistinguishable_from_best"]
    assert rows.loc["focal", "p_holm"] < 0.01
    assert not rows.loc["focal", "indistinguishable_from_best"]
    # Holm over the three comparisons never lowers a p-value
    assert (rows["p_holm"].dropna() >= rows["p_value"].dropna()).all()


def test_final_hd95_and_time_are_reported(summary):
    rows = summary.set_index("loss")
    assert rows.loc["focal", "final_hd95_mean"] > rows.loc["dice", "final_hd95_mean"] > 0
    assert (summary["seconds"] > 0).all()


def test_diverged_seeds_are_left_out_and_reported(tmp_path):
    run_dir = write_run(
        tmp_path,
        quality=QUALITY,
        diverged={("focal", 1): 3, ("tversky", 0): 2, ("tversky", 1): 2, ("tversky", 2): 2},
    )
    rows = summarize(load_run(run_dir)).set_index("loss")
    assert rows.loc["focal", "status"] == "1/3 seeds diverged at epoch 3"
    assert rows.loc["focal", "n_diverged"] == 1
    assert not math.isnan(rows.loc["focal", "score_mean"])
    assert rows.loc["tversky", "status"] == "diverged at epoch 2"
    assert pd.isna(rows.loc["tversky", "rank"])
    assert math.isnan(rows.loc["tversky", "score_mean"])
    assert rows.loc["dice", "status"] == "finished"
    text = rendered(render_table(rows.reset_index(), "dice"))
    assert "diverged ep 2" in text and "1/3 diverged ep 3" in text


def test_a_loss_that_diverged_on_most_seeds_is_not_crowned_by_the_one_left(tmp_path):
    """dice, the best loss, diverged on seeds 0 and 1: its seed 2 alone is no verdict."""
    run_dir = write_run(tmp_path, quality=QUALITY, diverged={("dice", 0): 2, ("dice", 1): 2})
    summary = summarize(load_run(run_dir))
    rows = summary.set_index("loss")
    assert rows.loc["dice", "score_mean"] > rows.loc["focal", "score_mean"]
    assert summary["loss"].iloc[-1] == "dice" and not rows.loc["dice", "is_best"]
    assert rows.loc["dice", "rank"] == len(QUALITY)
    assert "ranks after every loss with fewer diverged seeds" in headline_caption("dice", summary)
    clean = summarize(load_run(write_run(tmp_path / "clean", quality=QUALITY)))
    assert "diverged seeds" not in headline_caption("dice", clean)


def test_a_run_whose_every_trial_diverged_in_its_first_epoch_is_reported(tmp_path):
    """(e.g. --lr 1e12): no epoch was ever scored; every loss is listed as diverged, and
    the footer still names the test split the run has."""
    losses = ["dice", "focal"]
    run_dir = write_run(
        tmp_path,
        losses=losses,
        seeds=(0, 1),
        diverged={(loss, seed): 1 for loss in losses for seed in (0, 1)},
    )
    summary = summarize(load_run(run_dir))
    rows = summary.set_index("loss")
    assert list(rows["status"]) == ["diverged at epoch 1"] * 2
    assert rows["score_mean"].isna().all() and rows["rank"].isna().all()
    assert set(summary["headline_split"]) == {"test"}
    assert rendered(render_table(summary, "dice")).count("diverged ep 1") == 2


def test_the_caption_says_a_loss_that_diverged_on_every_seed_has_no_score(tmp_path):
    """Its '–' were put down to 'no test where fewer than two seeds are in common with the
    best', of a table whose other loss had every seed, or of one with no best at all."""
    diverged = {("focal", 0): 2, ("focal", 1): 2}
    one = write_run(tmp_path / "one", quality=QUALITY, seeds=(0, 1), diverged=diverged)
    every = {(loss, seed): 1 for loss in QUALITY for seed in (0, 1)}
    all_of_them = write_run(tmp_path / "all", quality=QUALITY, seeds=(0, 1), diverged=every)
    for run_dir in (one, all_of_them):
        caption = build_report([run_dir]).caption
        assert caption.endswith(" –: a loss that diverged on every seed has no score."), caption


def test_trials_that_diverged_before_any_epoch_row_are_reported(tmp_path):
    """A diverged trial record may hold no epoch rows at all: it is listed all the same."""
    run_dir = write_run(tmp_path, losses=["dice", "focal"], seeds=(0,), diverged={})
    for path in (run_dir / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        record.update(status="diverged", diverged_epoch=1, best_epoch=None, epochs=[])
        path.write_text(json.dumps(record))
    rows = summarize(load_run(run_dir)).set_index("loss")
    assert sorted(rows.index) == ["dice", "focal"]
    assert list(rows["status"]) == ["diverged at epoch 1"] * 2


def test_metric_iou_changes_the_headline(run_dir):
    summary = summarize(load_run(run_dir), metric="iou")
    assert (summary["score_mean"] == summary["best_iou_mean"]).all()
    assert "IoU test" in rendered(render_table(summary, "iou"))


def test_unknown_metric_suggests_a_name(run_dir):
    with pytest.raises(UnknownNameError, match="did you mean 'dice'"):
        summarize(load_run(run_dir), metric="dise")


def test_multiclass_has_per_class_columns(tmp_path):
    run_dir = write_run(tmp_path, class_names=("background", "pet", "border"))
    summary = summarize(load_run(run_dir))
    assert per_class_columns(summary) == [
        "best_dice_background_mean",
        "best_dice_pet_mean",
        "best_dice_border_mean",
    ]
    row = summary.iloc[0]
    # the fixture spreads the foreground classes around the headline
    assert row["best_dice_pet_mean"] == pytest.approx(row["score_mean"] + 0.05)


def test_dice_per_class_is_a_table_of_its_own_one_line_a_loss(tmp_path):
    """It was a cell of the comparison, one line per class ('class1 0.127'): with 8 classes
    every loss's row stood 7 lines tall, the class names repeated in each."""
    run_dir = write_run(tmp_path, quality=QUALITY, class_names=("background", "pet", "border"))
    summary = summarize(load_run(run_dir))
    comparison = rendered(render_table(summary))
    assert "per class" not in comparison and "pet" not in comparison
    (grid,) = render_class_tables(summary)
    text = rendered(grid)
    lines = text.splitlines()
    header = next(line for line in lines if "loss" in line.split())
    assert header.split() == ["loss", "background", "pet", "border"]
    ranked = chosen_rows(summary).sort_values("rank")
    rows = [line.split() for line in lines if line.split()[:1] and line.split()[0] in QUALITY]
    assert [row[0] for row in rows] == list(ranked["loss"])  # the comparison's order
    for row, (_, entry) in zip(rows, ranked.iterrows(), strict=True):
        assert row[1:] == [
            part
            for name in ("background", "pet", "border")
            for part in (
                f"{entry[f'best_dice_{name}_mean']:.3f}",
                "±",
                f"{entry[f'best_dice_{name}_std']:.3f}",
            )
        ]
    assert "Dice per class — synthetic" in text
    assert "the headline averages the foreground classes" in " ".join(text.split())


def test_the_hd95_caption_says_how_a_multiclass_image_is_scored(tmp_path, summary):
    """An image's HD95 is its foreground classes' mean, a class in only one of the mask and
    the prediction counting the image's diagonal: every loss of an undertrained 4-class run
    read about 55 px of 90, and the caption did not say why."""
    classes = ("background", "pet", "border")
    run_dir = write_run(tmp_path / "multiclass", quality=QUALITY, class_names=classes)
    caption = headline_caption("dice", summarize(load_run(run_dir)))
    assert caption.endswith(
        " HD95: pixels, at the last epoch, mean over the validation images of each one's mean "
        "over the foreground classes in its mask or prediction (a class in only one of them "
        "counts as the image's diagonal)."
    )  # the fixture's images.csv rows name no split: validation, as rows written before it
    binary = headline_caption("dice", summary)
    assert binary.endswith(" HD95: pixels, at the last epoch, mean over the validation images.")


def test_a_binary_run_has_no_dice_per_class_table(summary):
    assert render_class_tables(summary) == []


# ---------------------------------------------------------------- combining


def test_comparable_runs_combine(tmp_path):
    first = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, run_id="20260101-1-a")
    second = write_run(tmp_path, quality={"tversky": 0.7}, run_id="20260101-2-b")
    runs = [load_run(path) for path in resolve_run_dirs([first, second])]
    summary = summarize(runs)
    assert summary["loss"].tolist() == ["dice", "tversky", "focal"]
    assert summary["p_holm"].notna().sum() == 2


def test_a_damaged_trial_file_is_not_filled_in_from_another_run(tmp_path):
    """A report leaves a damaged trial file out; combined with a run that has the same
    trial, that run's row silently took its place (dice seed 0 from the second run, seed 1
    from the first), and the note's --resume then trained it again into a clash."""
    first = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, run_id="20260101-1-a")
    second = write_run(tmp_path, quality={"dice": 0.7}, seeds=(0,), run_id="20260101-2-b")
    damaged = first / "trials" / f"{trial_id('synthetic', 'dice', 0, LR)}.json"
    damaged.write_text("{not json")
    with pytest.raises(
        LosscmpError, match="runs 20260101-1-a, 20260101-2-b: each has loss 'dice' seed 0"
    ):
        build_report([first, second])
    damaged.unlink()  # the first run without that trial at all: it combines
    assert set(build_report([first, second]).results.trials["run_id"]) == {
        "20260101-1-a",
        "20260101-2-b",
    }


def test_the_caption_names_a_file_listing_every_rate_only_where_one_is_written(cli, tmp_path):
    """A combined report writes no summary.csv (without --csv), yet its caption said
    'summary.csv lists every rate'."""
    rates = {"lrs": [1e-3, 1e-2], "rate_quality": {1e-3: 0.0, 1e-2: 0.1}}
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="20260101-1-a", **rates)
    second = write_run(tmp_path, quality={"focal": 0.6}, run_id="20260101-2-b", **rates)
    alone = cli("report", first)
    assert "summary.csv lists every rate." in " ".join(alone.stdout.split())
    combined = cli("report", first, second)
    assert combined.exit_code == 0, combined.output
    said = " ".join(combined.stdout.split())
    assert "--csv FILE lists every rate." in said and "summary.csv" not in said
    assert "--csv FILE lists every rate." in build_report([first, second]).caption
    assert not (second / "summary.csv").exists()  # the combined report wrote none


def test_tables_written_to_a_file_end_no_line_in_spaces(cli, tmp_path):
    """Piped or redirected, every line was padded to the table's width (after the centred
    title, each caption line, the status): 'losscmp report ... > table.txt' then showed
    as trailing whitespace in every diff and editor."""
    run_dir = write_run(
        tmp_path, quality=QUALITY, class_names=("background", "pet", "border"), seeds=(0,)
    )
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "Dice per class" in result.stdout and len(lines) > 20
    assert [line for line in lines if line != line.rstrip()] == []
    title = lines[0]
    assert title.strip() == "losscmp — synthetic" and title.startswith(" " * 10)  # centred


def test_the_report_says_which_runs_its_table_holds(cli, tmp_path):
    """A folder of runs is reported by its newest run, and named runs are merged into one
    table: the output said neither, so a table could not be told from another run's."""
    first = write_run(tmp_path / "a", quality={"dice": 0.8, "focal": 0.6}, run_id="20260101-1")
    write_run(tmp_path / "b", quality={"dice": 0.8}, run_id="20260101-2")
    newest = write_run(tmp_path / "b", quality={"tversky": 0.7}, seeds=(0,), run_id="20260101-3")
    result = cli("report", first, tmp_path / "b")
    assert result.exit_code == 0, result.output
    lines = " ".join(result.output.split())  # Rich wraps notes at the terminal's width
    assert f"note: {tmp_path / 'b'}: its newest run, 20260101-3 (of 2 runs there)" in lines
    assert (
        f"note: 2 runs combined in one table: {first} (dice, focal; seeds 0, 1, 2; lr 0.003); "
        f"{newest} (tversky; seed 0; lr 0.003)"
    ) in lines
    assert lines.index("note: 2 runs combined") < lines.index("tversky 0.")  # above the table
    alone = " ".join(cli("report", first).output.split())
    assert "newest run" not in alone and "combined" not in alone  # the run named: no more
    parent = " ".join(cli("report", tmp_path / "a").output.split())
    assert f"note: {tmp_path / 'a'}: its one run, 20260101-1" in parent


def a_run_just_started_after(older):
    """A newer run beside ``older``, as it is once its run.json is written: no trial yet."""
    starting = older.parent / "20260102-1"
    starting.mkdir()
    meta = json.loads((older / "run.json").read_text())
    meta.update(run_id=starting.name, started_at="2026-01-02T00:00:00+00:00")
    (starting / "run.json").write_text(json.dumps(meta))
    return starting


def test_the_note_names_the_run_whose_table_is_shown_when_a_trial_ends_meanwhile(
    cli, tmp_path, monkeypatch
):
    """`report results/` while a run's first trial ended: the table was the run before's
    (the folder resolved while the newest had no trial), but the line above it resolved
    the folder again and named the newest run (seen with a live run, benchmarks' smoke).
    The line names the run that was read."""
    older = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), run_id="20260101-1")
    starting = a_run_just_started_after(older)
    rows = (older / "epochs.csv").read_text().splitlines(keepends=True)
    (starting / "epochs.csv").write_text(rows[0])
    read = summary_module.load_run

    def first_trial_ends_while_read(run_dir, **options):
        (starting / "epochs.csv").write_text("".join(rows))  # the running run's first row
        return read(run_dir, **options)

    monkeypatch.setattr(summary_module, "load_run", first_trial_ends_while_read)
    result = cli("report", tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        f"note: {tmp_path}: its newest run with a finished trial, 20260101-1 (of 2 runs "
        "there; newer, without one yet: 20260102-1)"
    ) in " ".join(result.output.split())
    assert (older / "summary.csv").is_file() and not (starting / "summary.csv").exists()


def test_plots_of_combined_runs_say_they_are_each_runs_own(cli, tmp_path):
    """--plots with two runs wrote each run's figures, of its own losses, into its folder,
    without a word: they looked like the combined table's figures with losses missing."""
    first = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), run_id="a", panel=False)
    second = write_run(tmp_path, quality={"focal": 0.6}, seeds=(0,), run_id="b", panel=False)
    result = cli("report", first, second, "--plots", "--csv", tmp_path / "both.csv")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert (
        "note: --plots drew each run's own figures (its losses only) into its folder; "
        "--html FILE draws the combined ones"
    ) in said
    for run_dir in (first, second):
        assert (run_dir / "plots" / "learning_curves.png").is_file()
    alone = " ".join(cli("report", first, "--plots").output.split())
    assert "--plots drew" not in alone


@pytest.mark.parametrize("with_headers", [False, True], ids=["run.json", "and headers"])
def test_a_folder_whose_newest_run_has_no_trial_yet_reports_the_one_before(
    cli, tmp_path, with_headers
):
    """`report results/` while a run was starting (run.json written, no trial ended yet)
    refused: 'has no finished trials yet'; the runs before it were out of reach but by
    name. The newest run with a finished trial is reported, and the line says so. A run
    writes its tables' headers as it starts: epochs.csv's header alone, read as an old
    run's table (made before trial files), refused again."""
    older = write_run(tmp_path, quality={"dice": 0.8}, seeds=(0,), run_id="20260101-1")
    starting = a_run_just_started_after(older)
    if with_headers:
        for table in ("epochs.csv", "images.csv"):
            header = (older / table).read_text().splitlines(keepends=True)[0]
            (starting / table).write_text(header)
    assert resolve_run_dirs([tmp_path]) == [older]
    result = cli("report", tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        f"note: {tmp_path}: its newest run with a finished trial, 20260101-1 (of 2 runs "
        "there; newer, without one yet: 20260102-1)"
    ) in " ".join(result.output.split())
    shutil.rmtree(older)  # no run with a trial: the newest one's reason
    result = cli("report", tmp_path)
    assert result.exit_code == 2
    # Stopped so early (SIGTERM in the first epoch), it is finished as any stopped run is.
    assert result.stderr == (
        f"losscmp: error: {starting} has no finished trials yet (still running, or stopped "
        f"before one ended; if stopped, finish it with: losscmp run --resume {starting})\n"
    )


def test_the_caption_counts_the_seeds_of_every_loss(tmp_path):
    """Combined (or unfinished) runs may give losses different numbers of seeds: the caption
    said 'over 3 seed(s)' of a loss that had one."""
    three = write_run(tmp_path, quality={"dice": 0.8}, run_id="a")
    one = write_run(tmp_path, quality={"focal": 0.6}, seeds=(0,), run_id="b")
    summary = summarize([load_run(three), load_run(one)])
    assert summary.set_index("loss")["n_seeds"].to_dict() == {"dice": 3, "focal": 1}
    assert "mean ± sd over 1–3 seed(s);" in headline_caption("dice", summary)
    assert "mean ± sd over 3 seed(s);" in headline_caption("dice", summarize(load_run(three)))


def test_the_caption_says_why_a_loss_of_a_several_seed_table_has_no_interval_or_test(
    tmp_path,
):
    """Combined runs, 3 seeds and 1: the one-seed loss's CI and the p of every loss but the
    best read '–', and the caption (which explains '–' only when every loss has one seed)
    did not say why; a reader took the paired test for broken."""
    three = write_run(tmp_path, quality={"dice": 0.8, "bce": 0.7}, run_id="a")
    one = write_run(tmp_path, quality={"focal": 0.9}, seeds=(0,), run_id="b")
    summary = summarize([load_run(three), load_run(one)])
    by_loss = summary.set_index("loss")
    assert by_loss["rank"].to_dict() == {"focal": 1, "dice": 2, "bce": 3}
    assert by_loss[["ci_low", "p_value"]].isna().to_dict("list") == {
        "ci_low": [True, False, False],
        "p_value": [True, True, True],
    }
    assert headline_caption("dice", summary).endswith(
        " –: a loss with one seed has no interval; no test where fewer than two seeds are "
        "in common with the best."
    )
    best_has_three = summarize([load_run(three)])
    assert "–:" not in headline_caption("dice", best_has_three)


def test_a_finished_seed_without_a_headline_score_is_said_not_silently_dropped(tmp_path):
    """A finished trial whose test Dice is NaN (a hand-edited record; AP of a split with no
    foreground pixel) was left out of its loss's mean without a word: dice ranked first on
    its other seed alone, with 'ok', no sd and no caption or note saying why."""
    run_dir = write_run(tmp_path, quality={"dice": 0.6, "focal": 0.8}, seeds=(0, 1))
    path = run_dir / "trials" / f"{trial_id('synthetic', 'focal', 0, LR)}.json"
    record = json.loads(path.read_text())
    for row in record["epochs"]:
        row["test_dice"] = math.nan
    path.write_text(json.dumps(record))
    report = build_report([run_dir])
    rows = report.summary.set_index("loss")
    assert rows["n_seeds"].to_dict() == {"focal": 2, "dice": 2}
    assert rows["n_scored"].to_dict() == {"focal": 1, "dice": 2}
    focal_seed_1 = json.loads(
        (run_dir / "trials" / f"{trial_id('synthetic', 'focal', 1, LR)}.json").read_text()
    )
    epochs = focal_seed_1["epochs"]
    chosen = max(epochs, key=lambda row: row["val_dice"])  # the first of equals, as report
    assert rows.loc["focal", "score_mean"] == chosen["test_dice"]
    assert (
        "focal: 1 of its 2 seeds has no test Dice at its chosen epoch (NaN in the run's "
        "records); its mean is over 1 seed" in report.notes
    )
    assert report.caption.endswith(
        " –: a loss with a score on one seed only (the others diverged or have none) has no "
        "interval; no test where fewer than two seeds are in common with the best."
    )


def test_a_test_split_without_the_headline_score_is_still_the_one_reported(tmp_path):
    """AP has no value on a test split without a foreground pixel. The report then read
    every column (Dice too) on validation, at the epoch validation chose, and its caption
    said the run had no test split ('VALIDATION ONLY'): it has one, and it chose nothing."""
    run_dir = write_run(tmp_path, quality={"dice": 0.6, "focal": 0.8}, seeds=(0, 1))
    for path in (run_dir / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        for row in record["epochs"]:
            row["test_ap"] = math.nan
        path.write_text(json.dumps(record))
    report = build_report([run_dir], metric="ap")
    rows = report.summary.set_index("loss")
    assert set(rows["headline_split"]) == {"test"}
    assert rows["score_mean"].isna().all() and rows["n_scored"].eq(0).all()
    # The other columns are test's too, at the epoch of the best validation AP
    test_dice = []
    for seed in (0, 1):
        path = run_dir / "trials" / f"{trial_id('synthetic', 'focal', seed, LR)}.json"
        epochs = json.loads(path.read_text())["epochs"]
        chosen = max(epochs, key=lambda row: row["val_ap"])  # the first of equals
        assert chosen["test_dice"] != chosen["val_dice"]
        test_dice.append(chosen["test_dice"])
    assert rows.loc["focal", "best_dice_mean"] == pytest.approx(sum(test_dice) / 2)
    assert "VALIDATION ONLY" not in report.caption
    assert report.caption.startswith("Headline: dataset-level AP on the test split")
    assert (
        "focal: 2 of its 2 seeds have no test AP at its chosen epoch (NaN in the run's "
        "records); it has no mean" in report.notes
    )


def test_a_run_made_before_data_fingerprints_combines_with_a_newer_one(tmp_path):
    newer = write_run(
        tmp_path, quality={"dice": 0.8}, run_id="new", dataset_info={"fingerprint": "a" * 16}
    )
    older = write_run(tmp_path, quality={"focal": 0.6}, run_id="old")
    assert summarize([load_run(newer), load_run(older)])["loss"].tolist() == ["dice", "focal"]


def test_runs_that_wrote_and_then_hit_the_dataset_cache_combine(tmp_path):
    """A folder or pets dataset's first run writes its decode cache and records how long the
    load took; the next run of the same data (same fingerprint) hits the cache."""
    loaded = {"fingerprint": "a" * 16, "cache": "written", "load_seconds": 8.1}
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="a", dataset_info=loaded)
    again = {**loaded, "cache": "hit", "load_seconds": 0.4}
    second = write_run(tmp_path, quality={"focal": 0.6}, run_id="b", dataset_info=again)
    summary = summarize([load_run(first), load_run(second)])
    assert summary["loss"].tolist() == ["dice", "focal"]


def test_runs_whose_data_was_cached_in_another_users_cache_combine(tmp_path):
    """A read-only data folder's entry goes to each user's own cache: two users' runs of
    the same data (same fingerprint) record other cache folders."""
    mine = {
        "fingerprint": "a" * 16,
        "cache": "written",
        "cache_dir": "/home/me/.cache/losscmp/set-0123456789abcdef",
        "cache_data_folder": "read-only",
    }
    theirs = {**mine, "cache": "hit", "cache_dir": "/home/you/.cache/losscmp/set-0123456789abcdef"}
    del theirs["cache_data_folder"]
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="a", dataset_info=mine)
    second = write_run(tmp_path, quality={"focal": 0.6}, run_id="b", dataset_info=theirs)
    summary = summarize([load_run(first), load_run(second)])
    assert summary["loss"].tolist() == ["dice", "focal"]


def test_runs_spread_differently_over_processes_combine(tmp_path):
    """--executor / --jobs / --trials-per-gpu / --ray-address never change a trial's numbers."""
    spread = {"executor": "ray", "jobs": 4, "trials_per_gpu": 2, "ray_address": "auto"}
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="20260101-1-a")
    second = write_run(tmp_path, quality={"focal": 0.6}, run_id="r2", config=spread)
    summary = summarize([load_run(first), load_run(second)])
    assert summary["loss"].tolist() == ["dice", "focal"]


def test_combined_runs_that_rounded_differently_are_noted(tmp_path):
    """Threads per trial (set by --jobs when not given), fusion and the device: combinable,
    but the report says so, since they move scores by about a seed's spread."""
    execution = {"executor": "local", "jobs": 1, "threads": 2, "fused": False}
    first = write_run(
        tmp_path, quality={"dice": 0.8}, run_id="a", extra_meta={"execution": execution}
    )
    second = write_run(
        tmp_path,
        quality={"focal": 0.6},
        run_id="b",
        extra_meta={"execution": {**execution, "jobs": 2, "threads": 1}},
    )
    (note,) = combine_runs([load_run(first), load_run(second)]).notes
    assert note.startswith("the combined runs differ in threads (a: threads 2; b: threads 1)")
    same = write_run(
        tmp_path, quality={"tversky": 0.7}, run_id="c", extra_meta={"execution": execution}
    )
    assert combine_runs([load_run(first), load_run(same)]).notes == []
    # The same execution asked for in words (--threads 2, --fuse off on a CPU): no difference.
    asked = write_run(
        tmp_path,
        quality={"bce": 0.5},
        run_id="d",
        config={"threads": 2, "fuse": "off"},
        extra_meta={"execution": execution},
    )
    assert combine_runs([load_run(first), load_run(asked)]).notes == []


def test_combined_runs_fused_on_the_cpu_with_weights_of_their_own_are_not_noted(tmp_path):
    """A CPU run fused with copies of their own (fused.SeparateCopies) has --fuse off's
    numbers bit for bit: no note. One fused on views of stacked weights (before
    fused_own_weights) or by vmap rounded otherwise: noted."""
    device = "cpu: Test CPU (AVX2)"
    plain = {"executor": "local", "jobs": 1, "threads": 1, "fused": False}
    own = {**plain, "fused": True, "fused_per_copy": True, "fused_own_weights": True}
    views = {**own, "fused_own_weights": False}

    def run(run_id, loss, execution, where=device):
        meta = {"execution": execution, "device": where}
        return load_run(write_run(tmp_path, quality={loss: 0.7}, run_id=run_id, extra_meta=meta))

    unfused = run("a", "dice", plain)
    assert combine_runs([unfused, run("b", "focal", own)]).notes == []
    (note,) = combine_runs([unfused, run("c", "bce", views)]).notes
    assert note.startswith("the combined runs differ in fused (a: fused False; c: fused True)")
    gpu = "cuda: Test GPU"
    (note,) = combine_runs([run("d", "dice", plain, gpu), run("e", "bce", own, gpu)]).notes
    assert note.startswith("the combined runs differ in fused (d: fused False; e: fused True)")


def cpu_as_described(**environment: str) -> str:
    """run.json's device for this CPU, described by a fresh Python (torch reads its kernel
    choice from the environment once, at import)."""
    code = (
        "import torch; from losscmp.devices import describe_device; "
        "print(describe_device(torch.device('cpu')))"
    )
    env = {**os.environ, **environment}
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def test_combined_runs_from_cpus_with_other_instruction_sets_are_noted(tmp_path):
    """Two CPUs with other vector instructions (an AVX-512 Xeon, an AVX2-only one) train
    the same command at the same thread count to other numbers (seen: dice's first epoch
    loss 0.79344 with oneDNN on AVX-512, 0.79336 with it held to AVX2), so run.json names
    the CPU and its instruction set, and a report over both says they rounded differently.
    Both were recorded as 'cpu: x86_64' and combined without a word."""
    here = cpu_as_described()
    assert here.startswith("cpu: ")
    plain = cpu_as_described(ATEN_CPU_CAPABILITY="default")  # torch's scalar kernels
    if plain == here:  # e.g. an arm64 CPU without SVE: torch's capability is DEFAULT already
        pytest.skip(f"torch has no vector kernels to hold back on this CPU ({here})")
    execution = {"executor": "local", "jobs": 1, "threads": 1, "fused": False}
    runs = [
        write_run(
            tmp_path,
            quality={loss: 0.7},
            run_id=run_id,
            extra_meta={"execution": execution, "device": device},
        )
        for loss, run_id, device in (("dice", "a", here), ("focal", "b", plain))
    ]
    (note,) = combine_runs([load_run(run) for run in runs]).notes
    assert note.startswith("the combined runs differ in device (a: device cpu: ")
    assert plain in note


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": {"image_size": 64}}, "--image-size 32 vs --image-size 64; a fair"),
        ({"config": {"epochs": 9}}, "--epochs 4 vs --epochs 9; a fair"),
        ({"extra_meta": {"model": {"preset": "small"}}}, "--model tiny vs --model small; a fair"),
        ({"dataset_info": {"val_size": 99}}, "val_size"),
        ({"dataset_info": {"fingerprint": "b" * 16}}, "fingerprint"),
        ({"datasets": ("pets",)}, "different datasets"),
        ({"quality": {"dice": 0.8}}, "each has loss 'dice' seed 0"),
    ],
    ids=["image-size", "epochs", "model", "split", "data", "dataset", "repeated-trial"],
)
def test_incomparable_runs_are_refused_with_the_reason(tmp_path, changes, message):
    first = write_run(
        tmp_path,
        quality={"dice": 0.8, "focal": 0.6},
        run_id="20260101-1-a",
        dataset_info={"fingerprint": "a" * 16},
    )
    second = write_run(tmp_path, **{"quality": {"tversky": 0.7}, **changes}, run_id="r2")
    runs = [load_run(first), load_run(second)]
    with pytest.raises(LosscmpError, match=message):
        summarize(runs)


@pytest.mark.parametrize(
    ("first_config", "second_config", "difference"),
    [
        (
            {"lr": 3e-3},
            {"lr_grid": [1e-3, 1e-2]},
            "one rate (--lr 0.003) vs a rate grid (--lr-grid 0.001,0.01)",
        ),
        (
            {"lr_grid": [1e-3, 3e-3]},
            {"lr": 1e-2},
            "a rate grid (--lr-grid 0.001,0.003) vs one rate (--lr 0.01)",
        ),
        ({"lr": 3e-3}, {"lr": 1e-2}, "--lr 0.003 vs --lr 0.01"),
        # Rates that print alike (an older run's) are named so that they differ.
        (
            {"lr_grid": [1e-4, 1e-3]},
            {"lr_grid": [1.0000001e-4, 1e-3]},
            "a rate grid (--lr-grid 0.0001,0.001) vs a rate grid (--lr-grid 0.00010000001,0.001)",
        ),
        (
            {"lr_grid": [1e-4, 1e-3]},
            {"lr": 1.0000001e-4},
            "a rate grid (--lr-grid 0.0001,0.001) vs one rate (--lr 0.00010000001)",
        ),
        ({"lr": 1e-4}, {"lr": 1.0000001e-4}, "--lr 0.0001 vs --lr 0.00010000001"),
        ({"amp": True}, {"amp": False}, "--amp vs --no-amp"),
        ({"limit": None}, {"limit": 16}, "--limit none vs --limit 16"),
    ],
    ids=[
        "rate-vs-grid",
        "grid-vs-rate",
        "rates",
        "grids-alike",
        "grid-vs-rate-alike",
        "rates-alike",
        "amp",
        "limit",
    ],
)
def test_runs_with_other_options_are_refused_naming_them_as_the_user_set_them(
    tmp_path, first_config, second_config, difference
):
    """A grid run beside a plain one was refused as 'lr (0.003 vs 0.01)', naming the
    default rate the grid run never trained at; other options went by their config keys
    ('epochs (4 vs 9)') with Python's reprs ('None')."""
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="a", config=first_config)
    second = write_run(tmp_path, quality={"bce": 0.7}, run_id="b", config=second_config)
    with pytest.raises(LosscmpError) as refused:
        summarize([load_run(first), load_run(second)])
    assert str(refused.value) == (
        f"cannot combine runs a and b: {difference}; a fair comparison needs the same setup"
    )


def test_grid_runs_with_the_same_grid_combine_whatever_their_unused_lr(tmp_path):
    """A grid run trains at its grid's rates only: its --lr (a config file's, say) is no
    difference."""
    grid = {"lr_grid": [1e-3, 3e-3]}
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="a", config={**grid, "lr": 0.1})
    second = write_run(tmp_path, quality={"bce": 0.7}, run_id="b", config=grid)
    combined = combine_runs([load_run(first), load_run(second)])
    assert sorted(set(combined.trials["loss"])) == ["bce", "dice"]


def test_another_image_size_is_named_rather_than_the_data_fingerprint(tmp_path):
    """--image-size (or --limit) gives other images: the refusal said 'holds other images
    in each (data fingerprint ...)' rather than the option the user changed."""
    first = write_run(tmp_path, quality={"dice": 0.8}, run_id="a", image_size=64)
    second = write_run(
        tmp_path,
        quality={"bce": 0.7},
        run_id="b",
        image_size=32,
        dataset_info={"fingerprint": "b" * 16},
    )
    with pytest.raises(LosscmpError) as refused:
        summarize([load_run(first), load_run(second)])
    assert str(refused.value) == (
        "cannot combine runs a and b: --image-size 64 vs --image-size 32; a fair "
        "comparison needs the same setup"
    )


def test_a_fraction_sweep_beside_one_dataset_is_refused_naming_the_sweep(tmp_path):
    sweep = write_run(
        tmp_path,
        quality={"dice": 0.8},
        run_id="a",
        datasets=("synthetic(fg_fraction=0.05)", "synthetic(fg_fraction=0.2)"),
        config={"fg_fraction": [0.05, 0.2]},
    )
    one = write_run(
        tmp_path, quality={"bce": 0.7}, run_id="b", datasets=("synthetic(fg_fraction=0.05)",)
    )
    with pytest.raises(LosscmpError) as refused:
        summarize([load_run(sweep), load_run(one)])
    assert str(refused.value) == (
        "cannot combine runs a and b: different datasets (synthetic(fg_fraction=0.05), "
        "synthetic(fg_fraction=0.2) from --fg-fraction 0.05,0.2 vs synthetic(fg_fraction=0.05))"
    )


def test_runs_of_generated_data_with_other_first_seeds_are_refused_with_why(tmp_path):
    """Synthetic images are drawn from a run's --seed: a second run with --seed 1 (to add
    seeds, or another loss) was refused for 'differs in fingerprint ('a7bb...' vs
    '9a45...')', which said nothing a user could act on."""
    first = write_run(
        tmp_path, quality={"dice": 0.8}, run_id="a", dataset_info={"fingerprint": "a" * 16}
    )
    other_seed = write_run(
        tmp_path,
        quality={"bce": 0.7},
        seeds=(1,),
        run_id="b",
        dataset_info={"fingerprint": "b" * 16},
    )
    with pytest.raises(LosscmpError) as refused:
        summarize([load_run(first), load_run(other_seed)])
    assert str(refused.value) == (
        "cannot combine runs a and b: dataset "
        f"'synthetic' holds other images in each (data fingerprint {'a' * 16} vs {'b' * 16}): "
        "its images are generated from a run's first seed (--seed 0 vs 1); to add seeds to "
        "a run, run its command again with more --seeds and --resume RUN_DIR"
    )
    same_seed = write_run(
        tmp_path, quality={"bce": 0.7}, run_id="c", dataset_info={"fingerprint": "b" * 16}
    )
    with pytest.raises(LosscmpError) as refused:
        summarize([load_run(first), load_run(same_seed)])
    assert str(refused.value).endswith(f"(data fingerprint {'a' * 16} vs {'b' * 16})")


def test_a_run_and_its_copy_are_refused_naming_both_folders(tmp_path):
    """A run reported beside its copy (a backup, a download) was refused as 'cannot
    combine runs 20260101-1: each has loss ...': one run id, 'each' of one, and no folder
    to tell which two were meant."""
    original = write_run(tmp_path / "results", quality={"dice": 0.8}, run_id="20260101-1")
    copy = tmp_path / "backup" / "20260101-1"
    shutil.copytree(original, copy)
    with pytest.raises(LosscmpError) as refused:
        summarize([load_run(original), load_run(copy)])
    assert str(refused.value) == (
        f"cannot combine runs {original} and {copy}: each has loss 'dice' seed 0 on "
        "'synthetic' (both are run 20260101-1: copies of one run); report one of them, or "
        "runs with different losses"
    )


# ---------------------------------------------------------------- output


def test_table_names_the_headline_and_marks_rows(summary):
    text = rendered(render_table(summary, "dice"))
    assert "Headline: dataset-level Dice on the test split at each trial's epoch chosen on" in (
        text.replace("\n", " ")
    )
    assert "the test split chose nothing" in text.replace("\n", " ")
    assert "t-interval" in text
    assert "≈" in text  # the twin
    assert "best" in text
    focal_line = next(line for line in text.splitlines() if " focal" in line)
    assert "≈" not in focal_line


def test_a_p_just_below_alpha_never_reads_as_alpha(summary):
    """Holm p 0.0497 is 'different' (no ≈); to 3 decimals it printed 0.050, which the
    caption's '≈ = indistinguishable from the best (p ≥ 0.05)' reads the other way."""
    from losscmp.render.cells import p_value

    assert p_value(0.0497) == "<0.050"
    assert p_value(0.0504) == "0.050"  # at or above alpha: marked ≈, and it reads so
    assert p_value(0.0494) == "0.049"
    row = summary.index[summary["loss"] == "focal"][0]
    summary.loc[row, ["p_holm", "indistinguishable_from_best"]] = [0.0497, False]
    focal_line = next(
        line for line in rendered(render_table(summary)).splitlines() if " focal" in line
    )
    assert "<0.050" in focal_line and "≈" not in focal_line


def test_labels_and_paths_with_brackets_print_as_typed(cli, tmp_path):
    """A folder dataset's path may hold [...]: Rich markup would drop '[v2]' from the title
    and fail on the unmatched '[/b]' of the run folder's path ('wrote ...')."""
    label = "folder(path='/data/scans[v2]')"
    run_dir = write_run(tmp_path / "a[" / "b]", quality={"dice": 0.8}, datasets=[label])
    assert f"losscmp — {label}" in rendered(render_table(summarize(load_run(run_dir))))
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    assert f"losscmp — {label}" in result.stdout
    assert f"wrote {run_dir / 'summary.csv'}" in result.stderr


def test_csv_naming_the_runs_own_summary_is_told_written_once(cli, tmp_path, monkeypatch):
    """'report RUN --csv RUN/summary.csv' (spelt from inside the run here) printed 'wrote'
    twice for the one file, as if two had been written."""
    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8})
    monkeypatch.chdir(run_dir)
    result = cli("report", run_dir, "--csv", "summary.csv")
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("wrote ")] == [
        f"wrote {run_dir / 'summary.csv'}"
    ]


def test_best_row_is_highlighted(summary):
    [table] = render_table(summary, "dice").tables()
    assert table.rows[0].style == "bold green"
    assert all(row.style != "bold green" for row in table.rows[1:])


# ---------------------------------------------------------------- narrow terminals

LONG_NAME = "tversky(alpha=0.7,beta=0.3)"
# The columns a narrow terminal may leave out, in the order it does (binary, no grid)
LEAVE_OUT = [
    "MCC final",
    "IoU final",
    "Dice final",
    "thr. (val.)",
    "ECE test",
    "AP test",
    "Dice@thr. test",
    "MCC test",
    "IoU test",
    "HD95 final",
    "time s",
    "chosen ep.",
    "lr",
]


@pytest.fixture
def rate_grid_run(tmp_path):
    """A learning-rate grid, a long loss name and a seed that diverged."""
    return write_run(
        tmp_path,
        quality={"dice": 0.8, LONG_NAME: 0.78, "focal": 0.55},
        lrs=[1e-3, 1e-2],
        rate_quality={1e-3: 0.0, 1e-2: 0.1},
        diverged={("focal", 2): 3},
    )


@pytest.fixture
def rate_grid_summary(rate_grid_run):
    """rate_grid_run's Dice table is 182 columns wide, 173 with its status '1/3 diverged
    ep 3' wrapped."""
    return summarize(load_run(rate_grid_run))


def left_out_in(text: str) -> list[str]:
    """The columns the dim line under the table names, [] without it."""
    found = re.search(
        r"not shown at this width \(\d+ columns\): (.*?); all columns: .*?a wider terminal",
        " ".join(text.split()),
    )
    return found.group(1).split(", ") if found else []


def shown_rows(summary: pd.DataFrame, left_out: list[str], metric: str = "dice") -> list[str]:
    """Each row of each table as it reads left to right, top to bottom (multi-line cells
    line by line): the text of every cell of the columns not left out, whole."""
    summary = chosen_rows(summary)
    texts = []
    for _, rows in summary.groupby("dataset", sort=False):
        extras = table_extras(rows, metric)
        columns = table_columns(metric, extras)
        shown = [column for column in columns if column.title.replace("\n", " ") not in left_out]
        for row in ordered_rows(rows):
            cells = [column.text(row).split("\n") for column in shown]
            lines = [
                cell[k] for k in range(max(map(len, cells))) for cell in cells if k < len(cell)
            ]
            texts.append(" ".join(lines))
    return texts


def assert_whole(text: str, summary: pd.DataFrame, metric: str = "dice") -> None:
    """No cell cut: every shown cell of every row is there whole, in its place."""
    assert "…" not in text
    words = " ".join(text.split())
    for row in shown_rows(summary, left_out_in(text), metric):
        assert row in words


@pytest.mark.parametrize(
    ("width", "left_out"),
    [(120, LEAVE_OUT[:7]), (100, LEAVE_OUT[:10]), (80, LEAVE_OUT)],
)
def test_a_narrow_terminal_leaves_out_whole_columns_and_names_them(
    rate_grid_summary, width, left_out
):
    """At 120 columns Rich cut every cell ('tvers…', '0.0…', '-0.0…', 'Dice te…') and
    dropped '#' and 'status'; the rate showed as '0…' on a grid of 26 losses."""
    text = rendered(render_table(rate_grid_summary), width)
    assert left_out_in(text) == left_out
    assert_whole(text, rate_grid_summary)
    assert f"not shown at this width ({width} columns)" in " ".join(text.split())
    header = next(line for line in text.splitlines() if "loss" in line.split())
    assert header.split()[:2] == ["#", "loss"] and header.split()[-1] == "status"
    focal = next(line for line in text.splitlines() if " focal " in line)
    assert focal.split()[0] == "3" and f" {LONG_NAME} " in text
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize(
    ("combined", "files", "all_columns"),
    [
        (False, (), "the run's summary.csv, or a wider terminal"),
        (True, (), "add --csv FILE or --html FILE, or a wider terminal"),
        (True, ("--csv", "table.csv"), "table.csv, or a wider terminal"),
    ],
    ids=["one-run", "combined", "combined-csv"],
)
def test_a_narrow_terminal_names_where_the_left_out_columns_are(
    cli, tmp_path, monkeypatch, combined, files, all_columns
):
    """The line under a narrowed table sent a combined report's reader to 'summary.csv,
    report.html', files a combined report does not write (nor 'losscmp report' a run's
    report.html)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stdout is a terminal
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)
    runs = [write_run(tmp_path / "runs", quality={"dice": 0.8}, run_id="a")]
    if combined:
        runs.append(write_run(tmp_path / "runs", quality={"focal": 0.6}, run_id="b"))
    result = cli("report", *runs, *files)
    assert result.exit_code == 0, result.output
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", result.stdout).split())
    assert text.endswith(f"; all columns: {all_columns}")
    assert left_out_in(text)


def test_a_table_that_fits_is_drawn_whole_and_a_status_wraps_before_a_column_goes(
    rate_grid_summary,
):
    wide = rendered(render_table(rate_grid_summary))
    assert left_out_in(wide) == [] and "not shown" not in wide
    assert_whole(wide, rate_grid_summary)
    for title in ("MCC\nfinal", "thr.\n(val.)", "HD95\nfinal", "chosen\nep.", "lr"):
        assert all(part in wide for part in title.split("\n"))
    lines = [line.rstrip() for line in wide.splitlines()]
    natural = max(map(len, lines))
    assert natural == 182
    assert [
        line.rstrip() for line in rendered(render_table(rate_grid_summary), 182).splitlines()
    ] == (lines)
    # narrower, the status wraps ('1/3 diverged ep 3' down to 'diverged') and nothing goes
    squeezed = rendered(render_table(rate_grid_summary), 173)
    assert left_out_in(squeezed) == [] and "not shown" not in squeezed
    assert_whole(squeezed, rate_grid_summary)
    assert any(line.split() == ["diverged"] for line in squeezed.splitlines())
    assert left_out_in(rendered(render_table(rate_grid_summary), 172)) == ["MCC final"]


def test_a_terminal_too_narrow_for_the_columns_always_shown_folds_the_loss_names(
    rate_grid_summary,
):
    """At 60 columns the columns always shown are 76 wide with the long name whole: the name
    folds, the numbers stay whole (narrower still, Rich squeezes what is left)."""
    text = rendered(render_table(rate_grid_summary), 60)
    assert left_out_in(text) == LEAVE_OUT
    assert "…" not in text
    header = next(line for line in text.splitlines() if "loss" in line.split())
    assert header.split() == ["#", "loss", "mean", "±", "sd", "95%", "CI", "(Holm)", "status"]
    lines = text.splitlines()
    tversky = next(i for i, line in enumerate(lines) if " tversky(" in line)
    expected = ["2", "tversky(", "0.736", "±", "0.002", "0.731–0.742", "0.018", "ok"]
    assert lines[tversky].split() == expected
    name = [lines[tversky].split()[1]] + [line.strip() for line in lines[tversky + 1 : tversky + 4]]
    assert name == ["tversky(", "alpha=0.", "7,beta=0", ".3)"]


def test_the_tables_of_several_datasets_leave_out_the_same_columns(tmp_path):
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05)]
    run_dir = write_run(tmp_path, quality={"dice": 0.8, LONG_NAME: 0.7}, datasets=datasets)
    summary = summarize(load_run(run_dir))
    text = rendered(render_table(summary), 100)
    assert left_out_in(text) == LEAVE_OUT[:9]
    assert text.count("not shown at this width") == 1
    assert_whole(text, summary)
    headers = [line.split() for line in text.splitlines() if "loss" in line.split()]
    assert len(headers) == 2 and headers[0] == headers[1]
    assert all(f"losscmp — {dataset}" in text for dataset in datasets)


def test_a_narrow_terminal_keeps_every_class_of_dice_per_class(tmp_path):
    """No class is left out: the classes are drawn in as few tables as fit, each with the
    loss names, as the imbalance dial's fractions are."""
    names = ("background", "pet", "border", "collar", "leash")
    run_dir = write_run(tmp_path, quality=QUALITY, class_names=names)
    summary = summarize(load_run(run_dir))
    (grid,) = render_class_tables(summary)
    wide, narrow = rendered(grid, 250), rendered(grid, 60)
    assert "(continued)" not in wide and "(continued)" in narrow
    assert "…" not in narrow and max(map(len, narrow.splitlines())) <= 60
    headers = [line.split()[1:] for line in narrow.splitlines() if line.split()[:1] == ["loss"]]
    assert len(headers) > 1 and sum(headers, []) == list(names)
    assert " ".join(narrow.split()).count("the headline averages the foreground classes") == 1


def caption_in(text: str) -> str:
    """The caption under the table, on one line."""
    words = " ".join(text.split())
    return words[words.index("Headline:") :].split(" not shown at this width")[0]


# What the caption says for each column that its abbreviation needs explained
EXPLAINED = {
    "thr. (val.)": "thr. = the probability threshold chosen on validation (best Dice)",
    "Dice@thr. test": "Dice@thr. applies",
    "AP test": "AP (average precision over pixels)",
    "ECE test": "ECE (15 equal-width bins)",
    "IoU test": "IoU",
    "MCC test": "MCC",
    "HD95 final": "HD95: pixels, at the last epoch",
    "lr": "learning rate (lr)",
}


@pytest.mark.parametrize("width", [250, 172, 158, 151, 143, 136, 129, 118, 111, 104, 97, 83])
def test_the_caption_explains_the_columns_shown_and_no_other(rate_grid_summary, width):
    """At 120 columns the caption still explained 'thr.', Dice@thr., AP and ECE, whose
    columns the table had left out; at 80 also IoU, MCC, HD95 and '(lr)'."""
    text = rendered(render_table(rate_grid_summary), width)
    left_out, caption = left_out_in(text), caption_in(text)
    for title, explanation in EXPLAINED.items():
        assert (explanation in caption) == (title not in left_out), (title, caption)
    # what is always shown, always explained
    assert "CI: 95% t-interval over seeds; p: paired t-test" in caption
    assert "≈ = indistinguishable from the best" in caption
    assert "Each loss is shown at the learning rate" in caption


@pytest.mark.parametrize(
    ("width", "sentence"),
    [
        (
            250,
            "thr. = the probability threshold chosen on validation (best Dice) at that epoch; "
            "Dice@thr. applies it to the reported split; AP (average precision over pixels) "
            "and ECE (15 equal-width bins) need no threshold. HD95",
        ),
        (
            151,
            "finished. Dice@thr. applies the probability threshold chosen on validation (best "
            "Dice) at that epoch to the reported split; AP (average precision over pixels) and "
            "ECE (15 equal-width bins) need no threshold. HD95",
        ),
        (
            143,
            "to the reported split; AP (average precision over pixels) needs no threshold. HD95",
        ),
        (136, "at that epoch to the reported split. HD95"),
        (129, "the seeds that finished. HD95"),
        (
            118,
            "(p ≥ 0.05). IoU 'test' is read at that same epoch (one model snapshot per trial), "
            "not at its own maximum. Scores",
        ),
        (111, "(p ≥ 0.05). Scores"),
    ],
)
def test_the_captions_sentences_read_whole_without_a_left_out_column(
    rate_grid_summary, width, sentence
):
    assert sentence in caption_in(rendered(render_table(rate_grid_summary), width))


def test_a_headline_among_the_columns_left_out_is_still_explained(rate_grid_run):
    """Dice@thr., AP or ECE as the headline: always shown (the others of their kind are
    left out at 83 columns), so always explained."""
    for metric, explanation in [
        ("dice_t", "Dice@thr. applies the probability threshold chosen on validation"),
        ("ap", "AP (average precision over pixels) needs no threshold."),
        ("ece", "ECE (15 equal-width bins) needs no threshold."),
    ]:
        summary = summarize(load_run(rate_grid_run), metric)
        caption = caption_in(rendered(render_table(summary, metric), 83))
        assert explanation in caption and "thr. =" not in caption


@pytest.mark.parametrize(
    ("sources", "advice"),
    [
        ([None], "use --seeds 3 or more."),
        ([{"seeds": "config file run.yaml"}], "set 'seeds' to 3 or more in config file run.yaml."),
        ([{"epochs": "config file run.yaml"}], "use --seeds 3 or more."),
        # combined runs whose seeds were set in different places: the flag sets either
        ([{"seeds": "config file run.yaml"}, None], "use --seeds 3 or more."),
    ],
)
def test_one_seeds_advice_names_the_option_where_it_was_given(cli, tmp_path, sources, advice):
    """'seeds: 1' in a config file got the advice 'use --seeds 3 or more', a flag the
    command line did not have; run.json's option_sources says where the seeds came from."""
    runs = []
    for number, source in enumerate(sources):
        extra = {"option_sources": source} if source is not None else {}
        run_id = f"2026010{number + 1}-120000-abc123"
        quality = [{"dice": 0.8, "focal": 0.6}, {"tversky": 0.7}][number]
        runs.append(
            write_run(tmp_path, quality=quality, seeds=(0,), run_id=run_id, extra_meta=extra)
        )
    result = cli("report", *runs, "--html", tmp_path / "page.html")
    assert result.exit_code == 0, result.output
    sentence = f"One seed gives no interval or test: {advice}"
    assert sentence in " ".join(result.stdout.split())
    assert html.escape(sentence) in (tmp_path / "page.html").read_text()


def test_a_stopped_runs_one_seed_advice_is_to_finish_it_not_to_ask_for_seeds(cli, tmp_path):
    """A run of '--seeds 2' stopped before any second seed finished was told 'use --seeds
    3 or more': it had asked for them; what it lacks is the seeds that did not finish."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0, 1))
    for loss in ("dice", "focal"):
        (run_dir / "trials" / f"{trial_id('synthetic', loss, 1, LR)}.json").unlink()
    result = cli("report", run_dir, "--html", tmp_path / "page.html")
    assert result.exit_code == 0, result.output
    sentence = (
        "One seed gives no interval or test: the run asked for 2 seeds and not every trial "
        f"finished; 'losscmp run --resume {run_dir}' trains the rest."
    )
    assert sentence in " ".join(result.stdout.split())
    assert "--seeds 3" not in result.stdout
    assert html.escape(sentence) in (tmp_path / "page.html").read_text()


def test_two_stopped_runs_one_seed_advice_resumes_each_in_its_own_command(cli, tmp_path):
    """Two such runs reported together were told 'the run's command plus --resume A / B':
    --resume takes one folder, and ' / ' read as part of a path."""
    runs = [
        write_run(tmp_path, quality={loss: 0.8}, seeds=(0, 1), run_id=run_id)
        for loss, run_id in (("dice", "20260101-120000-abc123"), ("focal", "20260101-130000-d"))
    ]
    for run_dir, loss in zip(runs, ("dice", "focal"), strict=True):
        (run_dir / "trials" / f"{trial_id('synthetic', loss, 1, LR)}.json").unlink()
    result = cli("report", *runs)
    assert result.exit_code == 0, result.output
    assert (
        "One seed gives no interval or test: the runs asked for 2 seeds and not every trial "
        f"finished; 'losscmp run --resume' on each folder ({runs[0]}, {runs[1]}) trains the "
        "rest."
    ) in " ".join(result.stdout.split())


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_report_in_a_120_column_terminal_cuts_no_number(cli, tmp_path, monkeypatch):
    run_dir = write_run(tmp_path, quality={"dice": 0.8, LONG_NAME: 0.78, "focal": 0.55})
    summary = summarize(load_run(run_dir))
    piped = cli("report", run_dir)
    assert piped.exit_code == 0, piped.output
    assert "not shown" not in piped.stdout and "MCC" in piped.stdout  # not a terminal
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stdout is a terminal
    monkeypatch.setenv("COLUMNS", "120")
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    assert left_out_in(text) == LEAVE_OUT[:7]
    assert_whole(text, summary)


def write_csv(run_dir: Path, path: Path) -> Path:
    """``report RUN --csv PATH``'s file."""
    return RENDERERS["csv"].write(build_report([run_dir]), path)


def test_csv_is_a_readable_csv_in_the_text_of_the_runs_summary(tmp_path, run_dir, summary):
    out = tmp_path / "out"
    out.mkdir()
    path = write_csv(run_dir, out / "summary.csv")
    back = pd.read_csv(path)
    assert back["loss"].tolist() == summary["loss"].tolist()
    assert {"p_holm", "ci_low", "ci_high", "indistinguishable_from_best"} <= set(back.columns)
    assert [p.name for p in out.iterdir()] == ["summary.csv"]  # no temp file left
    own = RunStore(run_dir).write_summary(summary)
    assert path.read_text() == own.read_text()


def test_indistinguishable_column_reads_back_clean(tmp_path):
    """True/False where a test ran (the best too), empty only where none could: with one
    seed the best row's lone True read back as a True/NaN object column."""
    columns = {}
    for seeds in ((0, 1, 2), (0,)):
        run_dir = write_run(tmp_path / str(len(seeds)), quality=QUALITY, seeds=seeds)
        path = write_csv(run_dir, tmp_path / f"{len(seeds)}.csv")
        columns[len(seeds)] = pd.read_csv(path)["indistinguishable_from_best"]
    assert columns[3].dtype == bool and columns[3].iloc[0]
    assert columns[1].isna().all()


def test_csv_to_a_folder_is_a_clear_error(tmp_path, run_dir):
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(LosscmpError, match="is a folder; give a file name"):
        write_csv(run_dir, folder)
    assert list(folder.iterdir()) == []


def test_caption_says_other_best_columns_share_the_headline_epoch(summary):
    caption = headline_caption("dice", summary)
    assert "IoU and MCC 'test' are read at that same epoch (one model snapshot per trial)" in (
        caption
    )
    assert "Dice and MCC 'test'" in headline_caption("iou", summary)
    assert "Dice, IoU and MCC 'test'" in headline_caption("image_dice", summary)


def test_the_caption_names_a_per_image_headline_once(summary):
    assert headline_caption("image_iou", summary).startswith(
        "Headline: mean per-image IoU on the test split at each trial's epoch"
    )
    assert headline_caption("dice", summary).startswith("Headline: dataset-level Dice on the")


# ---------------------------------------------------------------- imbalance dial


def dial_quality(loss: str, dataset: str) -> float:
    fraction = float(dataset.split("=")[1].rstrip(")"))
    # dice copes with rare foreground, bce does not
    return {"dice": 0.75, "bce": 0.9}[loss] - (0.0 if loss == "dice" else 2.0 * (0.2 - fraction))


def test_imbalance_dial_table(tmp_path):
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    run_dir = write_run(tmp_path, quality=dial_quality, losses=["dice", "bce"], datasets=datasets)
    summary = summarize(load_run(run_dir))
    dial = imbalance_frame(summary)
    assert dial["fg_fraction"].unique().tolist() == [0.01, 0.05, 0.2]
    pivot = dial.pivot(index="loss", columns="fg_fraction", values="score_mean")
    assert pivot.loc["dice", 0.01] > pivot.loc["bce", 0.01]
    assert pivot.loc["bce", 0.2] > pivot.loc["dice", 0.2]
    text = rendered(render_imbalance_table(summary))
    assert "fg 0.01" in text and "fg 0.2" in text


def test_the_dial_marks_the_loss_each_fractions_table_ranks_first(tmp_path):
    """Lowest first for ECE; and at 0.01, where dice has the best mean but diverged on two
    seeds of three, the dial marks what that fraction's table ranks first (bce)."""
    from losscmp.render.cells import best_at_each_fraction

    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05)]
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "bce": 0.6}, datasets=datasets)
    for metric in ("dice", "ece"):  # ECE here is 0.1 x (1 - Dice): dice's is the lowest
        dial = imbalance_frame(summarize(load_run(run_dir), metric))
        assert best_at_each_fraction(dial) == {("dice", 0.01), ("dice", 0.05)}
    ece = render_imbalance_table(summarize(load_run(run_dir), "ece"), metric="ece")
    caption = " ".join(rendered(ece).split())
    assert "ECE (test, lower is better, at the epoch chosen on validation" in caption
    diverged = {("dice", 0): 2, ("dice", 1): 2}
    unstable = write_run(tmp_path / "u", quality={"dice": 0.8, "bce": 0.6}, datasets=datasets,
                         diverged=diverged)  # fmt: skip
    dial = imbalance_frame(summarize(load_run(unstable)))
    assert dial.set_index(["loss", "fg_fraction"]).loc[("dice", 0.01), "score_mean"] > 0.7
    assert best_at_each_fraction(dial) == {("bce", 0.01), ("bce", 0.05)}


def test_the_dials_best_cells_are_starred_where_the_output_has_no_bold(tmp_path):
    """Piped or in a file the caption said 'bold = best at that fraction' of a table with no
    bold in it: nothing told the best apart. There, the best cells are starred."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.2)]

    def quality(loss: str, dataset: str) -> float:  # dice best at 0.01, bce at 0.2
        return {"dice": 0.8, "bce": 0.6}[loss] * (0.5 if loss == "dice" and "0.2" in dataset else 1)

    run_dir = write_run(tmp_path, quality=quality, losses=["dice", "bce"], datasets=datasets)
    grid = render_imbalance_table(summarize(load_run(run_dir)))
    plain = rendered(grid)
    rows = {line.split()[0]: line.split()[1:] for line in plain.splitlines() if "±" in line}
    assert [cell.startswith("*") for cell in rows["dice"][::3]] == [True, False]
    assert [cell.startswith("*") for cell in rows["bce"][::3]] == [False, True]
    assert "* = best at that fraction." in " ".join(plain.split())
    text = rendered(grid, color_system="truecolor")
    assert "*" not in text and "bold = best at that fraction." in " ".join(text.split())


def test_a_fraction_where_every_loss_diverged_has_no_best_and_still_renders(tmp_path):
    # Both losses diverge in their first epoch on every seed: no score at any fraction.
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.2)]
    diverged = {(loss, seed): 1 for loss in ("dice", "bce") for seed in (0, 1, 2)}
    run_dir = write_run(
        tmp_path, quality={"dice": 0.8, "bce": 0.7}, datasets=datasets, diverged=diverged
    )
    summary = summarize(load_run(run_dir))
    from losscmp.render.cells import best_at_each_fraction

    assert best_at_each_fraction(imbalance_frame(summary)) == set()
    text = rendered(render_imbalance_table(summary))
    assert "fg 0.01" in text and "–" in text


DIAL_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)


@pytest.fixture
def wide_dial(tmp_path):
    """Six fractions and a long loss name: a dial 127 columns wide."""
    datasets = [f"synthetic(fg_fraction={f})" for f in DIAL_FRACTIONS]
    quality = {"dice": 0.8, LONG_NAME: 0.78, "focal": 0.55, "bce": 0.6}
    return summarize(load_run(write_run(tmp_path, quality=quality, datasets=datasets)))


def dial_cells(text: str) -> dict[tuple[str, str], str]:
    """(loss, 'fg 0.01') -> the cell as printed, read from every table of the dial, one
    line a row: 'mean ± sd' whole on the row's line, or nothing is read."""
    cells, fractions = {}, []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["loss"]:
            fractions = re.findall(r"fg \S+", line)
        elif words and fractions and re.match(r"[a-z]", words[0]):
            found = re.findall(r"\d\.\d{3} ± \d\.\d{3}|–", line)
            if len(found) == len(fractions):
                cells.update(
                    {
                        (words[0], fraction): cell
                        for fraction, cell in zip(fractions, found, strict=True)
                    }
                )
    return cells


def expected_dial_cells(summary: pd.DataFrame) -> dict[tuple[str, str], str]:
    from losscmp.render.cells import mean_sd

    return {
        (row.loss, f"fg {row.fg_fraction:g}"): mean_sd(row.score_mean, row.score_std)
        for row in imbalance_frame(summary).itertuples()
    }


@pytest.mark.parametrize(("width", "tables"), [(250, 1), (127, 1), (126, 2), (80, 2), (60, 6)])
def test_a_narrow_terminal_draws_the_dial_in_several_tables_every_number_whole(
    wide_dial, width, tables
):
    """At 100 columns Rich broke each 'mean ± sd' over two lines, at 80 over three, and at
    60 cut every number to '0…'. Every fraction is kept, in order, in as few tables of
    whole cells as fit, each with the loss names; the caption once, under the last."""
    text = rendered(render_imbalance_table(wide_dial), width, color_system="standard")
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert dial_cells(text) == expected_dial_cells(wide_dial)
    headers = [re.findall(r"fg \S+", line) for line in text.splitlines() if "loss" in line]
    assert len(headers) == tables
    assert sum(headers, []) == [f"fg {fraction:g}" for fraction in DIAL_FRACTIONS]
    assert text.count("Imbalance dial — synthetic") == tables
    assert text.count("(continued)") == tables - 1
    assert " ".join(text.split()).count("bold = best at that fraction.") == 1


@pytest.mark.parametrize(("width", "tables"), [(250, 1), (60, 2)])
def test_the_dials_title_is_drawn_whole_where_the_terminal_has_room(tmp_path, width, tables):
    """The title is as wide as the dial's spec, the table as its numbers: Rich broke the
    title to the table's width, inside the spec ('...n_val=' then '16,n_test=16)')."""
    datasets = [f"synthetic(fg_fraction={f},n_train=48,n_val=16)" for f in (0.05, 0.1, 0.2, 0.4)]
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "bce": 0.6}, datasets=datasets)
    text = rendered(render_imbalance_table(summarize(load_run(run_dir))), width)
    title = "Imbalance dial — synthetic(n_train=48,n_val=16)"
    lines = [line.strip() for line in text.splitlines()]
    assert lines.count(title) == 1
    assert lines.count(f"{title} (continued)") == tables - 1
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width


def test_a_dial_too_narrow_for_one_fraction_beside_the_names_folds_the_names(wide_dial):
    text = rendered(render_imbalance_table(wide_dial), 40)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 40
    assert " ".join(text.split()).count("0.702 ± 0.017") == 1  # tversky(...) at fg 0.01
    assert "tversky(" in text and ".3)" in text  # folded, not cut


def test_report_draws_a_dial_whole_in_an_80_column_terminal(cli, tmp_path, monkeypatch):
    datasets = [f"synthetic(fg_fraction={f})" for f in DIAL_FRACTIONS]
    quality = {"dice": 0.8, LONG_NAME: 0.78, "focal": 0.55, "bce": 0.6}
    run_dir = write_run(tmp_path, quality=quality, datasets=datasets)
    summary = summarize(load_run(run_dir))
    piped = cli("report", run_dir)
    assert piped.exit_code == 0, piped.output
    dial = piped.stdout[piped.stdout.index("Imbalance dial") :]
    assert "(continued)" not in dial and dial_cells(dial) == expected_dial_cells(summary)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich: stdout is a terminal
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    text = ANSI.sub("", result.stdout)
    dial = text[text.index("Imbalance dial") :]
    assert "…" not in dial and dial.count("(continued)") == 1
    assert dial_cells(dial) == expected_dial_cells(summary)


def test_no_dial_for_a_single_dataset(summary):
    assert imbalance_frame(summary) is None
    assert render_imbalance_table(summary) is None


def test_run_json_is_the_source_of_dataset_order(tmp_path):
    datasets = ["synthetic(fg_fraction=0.2)", "synthetic(fg_fraction=0.01)"]
    run_dir = write_run(tmp_path, datasets=datasets)
    meta = json.loads((run_dir / "run.json").read_text())
    summary = summarize(load_run(run_dir))
    assert list(dict.fromkeys(summary["dataset"])) == list(meta["datasets"])


def test_tiny_negative_numbers_do_not_print_as_minus_zero():
    from losscmp.render.cells import number as _number

    assert _number(-0.00001) == "0.000"
    assert _number(-0.0123) == "-0.012"


# ---------------------------------------------------------------- thresholds, AP, ECE


def test_binary_table_shows_the_threshold_its_dice_ap_and_ece(summary):
    row = summary.set_index("loss").loc["focal"]
    assert row["threshold_mean"] == pytest.approx(0.4)
    # the fixture puts Dice at the threshold 0.01 above Dice at 0.5, on each split
    assert row["best_dice_t_mean"] == pytest.approx(row["best_dice_mean"] + 0.01)
    assert 0 < row["best_ece_mean"] < row["best_ap_mean"] <= 1
    text = rendered(render_table(summary))
    assert "Dice@thr." in text and "thr." in text and "AP" in text and "ECE" in text
    focal_line = next(line for line in text.splitlines() if " focal" in line)
    assert " 0.40 " in focal_line


def test_metric_ece_ranks_the_lowest_first(run_dir):
    summary = summarize(load_run(run_dir), metric="ece")
    best = summary[summary["is_best"]].iloc[0]
    assert best["score_mean"] == summary["score_mean"].min()
    assert best["loss"] in ("dice", "dice_copy")  # the best Dice has the lowest ECE here
    ordered = summary.sort_values("rank")["score_mean"].tolist()
    assert ordered == sorted(ordered)
    # the table's 'best' is its lowest ECE: the caption says which way is better
    assert headline_caption("ece", summary).startswith(
        "Headline: dataset-level ECE (lower is better) on the test split at each trial's epoch"
    )
    assert "(lower is better)" not in headline_caption("dice", summarize(load_run(run_dir)))


def test_metric_takes_its_name_in_any_case(cli, run_dir):
    """'--metric Dice' was refused (did you mean 'dice'?), as '--losses Dice' no longer is."""
    as_listed = cli("report", run_dir, "--metric", "ece")
    in_capitals = cli("report", run_dir, "--metric", "ECE")
    assert in_capitals.exit_code == 0, in_capitals.output
    assert in_capitals.stdout == as_listed.stdout
    assert summarize(load_run(run_dir), metric="Mcc")["metric"].unique().tolist() == ["mcc"]


def test_threshold_metrics_of_a_multiclass_run_are_refused(tmp_path):
    """The refusal said '(it is computed for binary tasks, by losscmp from schema version 2
    on)': a multiclass run of today's losscmp has none either, and never will."""
    run_dir = write_run(tmp_path, class_names=("background", "pet", "border"))
    with pytest.raises(LosscmpError) as refused:
        summarize(load_run(run_dir), metric="ap")
    # The hint named dice, iou and mcc only, as if the per-image metrics were refused too.
    assert str(refused.value) == (
        "--metric ap: multiclass runs have no AP (a multiclass prediction is the argmax over "
        "the classes: no threshold to choose); use dice, iou, mcc, image_dice or image_iou"
    )


def test_threshold_metrics_of_a_run_before_them_are_refused(tmp_path):
    run_dir = write_run(tmp_path, schema_version=1)
    with pytest.raises(LosscmpError) as refused:
        summarize(load_run(run_dir), metric="dice_t")
    assert str(refused.value) == (
        "--metric dice_t: these runs have no Dice@thr. (it is computed for binary tasks, by "
        "losscmp from schema version 2 on); use dice, iou, mcc, image_dice or image_iou"
    )


def test_ap_of_a_run_whose_validation_split_has_no_foreground_says_so(cli, tmp_path):
    """The refusal said AP 'is computed for binary tasks, by losscmp from schema version 2
    on': this run is both. AP is NaN where a split has no foreground pixel, and the epoch is
    chosen on validation, so AP cannot be the headline; the other scores can."""
    no_foreground = {"val_foreground_fraction": 0.0}
    run_dir = write_run(tmp_path, seeds=(0,), dataset_info=no_foreground, write_csvs=False)
    for path in (run_dir / "trials").iterdir():
        record = json.loads(path.read_text())
        for row in record["epochs"]:
            row["val_ap"] = None  # what metrics.average_precision gives without a positive
        path.write_text(json.dumps(record))
    result = cli("report", run_dir, "--metric", "ap")
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: --metric ap: the validation split of these runs has no foreground "
        "pixel, so AP is undefined there (and cannot choose the epoch); use dice, iou, mcc, "
        "image_dice, image_iou, dice_t, iou_t, mcc_t or ece\n"
    )
    assert cli("report", run_dir, "--metric", "ece").exit_code == 0


# ---------------------------------------------------------------- learning rates


def lr_grid_run(tmp_path, test_rate_quality):
    return write_run(
        tmp_path,
        quality={"dice": 0.8, "focal": 0.6},
        lrs=[1e-3, 1e-2],
        rate_quality={1e-3: 0.0, 1e-2: 0.1},  # validation prefers 1e-2 for both losses
        test_rate_quality=test_rate_quality,
    )


def test_figures_show_each_loss_at_the_rate_the_table_chose(tmp_path):
    """Learning curves averaged over every rate, and the panel took any rate's trial."""
    from losscmp.summary import at_chosen_rates

    results = load_run(lr_grid_run(tmp_path, {1e-3: 0.0, 1e-2: 0.1}))
    shown = at_chosen_rates(results, summarize(results))
    assert set(shown.trials["base_lr"]) == {1e-2} and set(shown.epochs["base_lr"]) == {1e-2}
    assert len(shown.trials) == len(results.trials) // 2
    single = load_run(write_run(tmp_path / "one", quality={"dice": 0.8}))
    assert at_chosen_rates(single, summarize(single)) is single


def test_each_loss_is_reported_at_its_best_validation_rate(tmp_path):
    run_dir = lr_grid_run(tmp_path, {1e-3: 0.0, 1e-2: 0.1})
    summary = summarize(load_run(run_dir))
    assert len(summary) == 4  # every (loss, rate) in the CSV
    chosen = summary[summary["lr_chosen"]].set_index("loss")
    assert chosen["lr"].to_dict() == {"dice": 1e-2, "focal": 1e-2}
    other = summary[~summary["lr_chosen"]].set_index("loss")
    assert (chosen["val_score_mean"] > other["val_score_mean"]).all()
    assert other["rank"].isna().all() and other["score_mean"].notna().all()
    text = rendered(render_table(summary))
    assert "lr" in text and "0.01" in text
    assert text.count(" focal") == 1  # the table shows the chosen rate only
    assert "best mean validation score" in text.replace("\n", " ")


def test_the_rate_choice_ignores_the_test_split(tmp_path):
    """Test prefers the other rate by far: the choice must not move, the test scores must."""
    same = summarize(load_run(lr_grid_run(tmp_path / "a", {1e-3: 0.0, 1e-2: 0.1})))
    flipped_run = lr_grid_run(tmp_path / "b", {1e-3: 0.15, 1e-2: -0.2})
    flipped = summarize(load_run(flipped_run))
    columns = ["loss", "lr", "lr_chosen", "val_score_mean"]
    pd.testing.assert_frame_equal(
        same[columns].sort_values(["loss", "lr"]).reset_index(drop=True),
        flipped[columns].sort_values(["loss", "lr"]).reset_index(drop=True),
    )
    chosen = flipped[flipped["lr_chosen"]].set_index("loss")
    assert chosen["lr"].to_dict() == {"dice": 1e-2, "focal": 1e-2}
    unchosen = flipped[~flipped["lr_chosen"]].set_index("loss")
    assert (unchosen["score_mean"] > chosen["score_mean"]).all()  # test would have chosen 1e-3


def test_a_run_folder_that_takes_no_files_is_still_reported(cli, run_dir, tmp_path, monkeypatch):
    """A run on a read-only disk (an archive, another user's results): its summary.csv
    could not be rewritten, so report exited 2 after printing the table, and --html into a
    writable folder was never written."""
    import errno

    from losscmp import results

    real_write = results.atomic_write_bytes

    def read_only_run(path, data):
        if Path(path).parent in (run_dir, run_dir / "plots"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_write(path, data)

    monkeypatch.setattr(results, "atomic_write_bytes", read_only_run)
    before = (run_dir / "summary.csv").read_bytes() if (run_dir / "summary.csv").exists() else None
    page = tmp_path / "elsewhere" / "page.html"
    page.parent.mkdir()
    result = cli("report", run_dir, "--html", page)
    assert result.exit_code == 0, result.output
    assert "dice" in result.stdout
    assert (
        f"cannot write {run_dir / 'summary.csv'}: Read-only file system; the run's summary.csv "
        "is left as it was" in result.stderr
    )
    assert page.read_text().startswith("<!DOCTYPE html>")
    after = (run_dir / "summary.csv").read_bytes() if (run_dir / "summary.csv").exists() else None
    assert after == before


def test_plots_into_a_run_folder_that_takes_no_files_is_refused_before_any_file(
    cli, run_dir, tmp_path, monkeypatch
):
    """--plots on a read-only run: --csv was written elsewhere, then the figures failed and
    report exited 2 with a file written; it is checked first, as --csv and --html are."""
    import errno
    import tempfile

    from losscmp import results

    real_write, real_mkstemp = results.atomic_write_bytes, tempfile.mkstemp

    def refused(folder):
        if Path(folder).resolve() in (run_dir.resolve(), (run_dir / "plots").resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(folder))

    def write(path, data):
        refused(Path(path).parent)
        real_write(path, data)

    def mkstemp(*args, dir=None, **kwargs):
        refused(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(results, "atomic_write_bytes", write)
    monkeypatch.setattr(results.tempfile, "mkstemp", mkstemp)
    table = tmp_path / "elsewhere.csv"
    result = cli("report", run_dir, "--csv", table, "--plots")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"losscmp: error: --plots {run_dir / 'plots'} is not writable: {run_dir} takes no new "
        "files (Read-only file system); --html FILE holds the figures\n"
    )
    assert not table.exists() and result.stdout == ""


def test_a_report_read_while_the_run_wrote_its_last_trial_leaves_summary_csv_alone(
    cli, run_dir, monkeypatch
):
    """A report racing a run: it read 5 of 6 trial files, the run then wrote the sixth and
    its own summary.csv, and the report's table of 5 landed last, for good."""
    from losscmp import summary as summary_module

    last = sorted((run_dir / "trials").glob("*.json"))[-1]
    held_back = last.read_bytes()
    last.unlink()
    real_build = summary_module.build_report

    def run_finishes_meanwhile(*args, **kwargs):
        report = real_build(*args, **kwargs)
        last.write_bytes(held_back)
        (run_dir / "summary.csv").write_text("the run's own table\n")
        return report

    monkeypatch.setattr(summary_module, "build_report", run_finishes_meanwhile)
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "summary.csv").read_text() == "the run's own table\n"
    assert "changed while this report was read (the run is still writing); the run's " in (
        " ".join(result.stderr.split())
    )

    monkeypatch.setattr(summary_module, "build_report", real_build)
    assert cli("report", run_dir).exit_code == 0
    table = pd.read_csv(run_dir / "summary.csv")
    trials = {path.stem for path in (run_dir / "trials").glob("*.json")}
    assert table["n_seeds"].sum() == len(trials) and set(table["loss"]) == {*QUALITY, "dice_copy"}


def test_the_caption_counts_the_seeds_of_the_rates_the_table_shows(tmp_path):
    """An unfinished --lr-grid run: the rate that was not chosen lacks seed 2. The table
    shows each loss at its chosen rate, three seeds each; the caption said '2–3'."""
    run_dir = write_run(
        tmp_path,
        quality={"dice": 0.8, "focal": 0.6},
        lrs=[1e-3, 1e-2],
        rate_quality={1e-3: 0.0, 1e-2: 0.1},  # validation chooses 1e-2
        write_csvs=False,
    )
    for path in (run_dir / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        if record["seed"] == 2 and record["base_lr"] == 1e-3:
            path.unlink()
    summary = summarize(load_run(run_dir))
    assert sorted(summary["n_seeds"]) == [2, 2, 3, 3]
    assert summary.loc[summary["lr_chosen"], "n_seeds"].tolist() == [3, 3]
    assert "mean ± sd over 3 seed(s);" in headline_caption("dice", summary)


HOLD_LOCK = (
    "import sys, time\n"
    "from losscmp.results import RunStore\n"
    "with RunStore(sys.argv[1]).lock():\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(120)\n"
)


def test_a_run_still_training_is_not_told_to_resume(tmp_path):
    """A report read while a run trained said 'finish it with ... --resume', which that run's
    lock then refused: the note now says the run is still being written, and by whom."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    meta = json.loads((run_dir / "run.json").read_text())
    meta["trials"].append("still-training")
    (run_dir / "run.json").write_text(json.dumps(meta))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        notes = report_notes(load_run(run_dir))
    finally:
        holder.kill()
        holder.wait()
    assert notes == [
        f"{run_dir} is still being written by another losscmp process (pid {holder.pid}): "
        "1 planned trial(s) have no result yet"
    ]
    assert report_notes(load_run(run_dir)) == [
        f"{run_dir} is unfinished: 1 planned trial(s) have no result yet (still-training); "
        f"finish it with: losscmp run --resume {run_dir}"
    ]


def test_a_run_still_training_is_not_said_to_lack_its_newest_trials(tmp_path):
    """Its epochs.csv and images.csv lag its trial files until the run writes them: a report
    read meanwhile noted that each 'lacks 3 trial(s) of trials/ (...every one named...); read
    from trials/ instead (not rewritten: ...)', as if something were broken. The trials are
    read from their files; the one note says the run is still being written."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0, 1))
    for table in ("epochs.csv", "images.csv"):
        frame = pd.read_csv(run_dir / table)
        frame[frame["loss"] != "focal"].to_csv(run_dir / table, index=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        results = load_run(run_dir)
        notes = report_notes(results)
    finally:
        holder.kill()
        holder.wait()
    assert notes == []  # every planned trial has its file: nothing to say but the numbers
    assert sorted(results.epochs["loss"].unique()) == ["dice", "focal"]
    assert len(results.images[results.images["loss"] == "focal"]) > 0
    # Once the writer is gone, lagging tables are a fault, repaired and said.
    (note,) = load_run(run_dir).notes
    assert note.startswith(f"{run_dir}: epochs.csv lacks 2 trial(s) of trials/")
    assert note.endswith("rebuilt from trials/")


class CountedColumns(pd.DataFrame):
    """A frame that counts the reads of its columns by name (its slices are plain frames)."""

    reads: list[str] = []

    @property
    def _constructor(self):
        return pd.DataFrame

    def __getitem__(self, key):
        if isinstance(key, str):
            CountedColumns.reads.append(key)
        return super().__getitem__(key)


def test_a_report_finds_each_trials_image_rows_without_a_pass_over_all_of_them(tmp_path):
    """Each trial's final image rows were found by comparing every row of images.csv with
    it: quadratic in the trials (with the tables' check, a report of 390 trials of 64 test
    images took 5.1 s, 3.4 s now; Pets' 3669 test images would make it minutes). The reads
    do not grow with the trials now, and the table is the same."""
    reads = {}
    for seeds in (range(2), range(8)):
        run_dir = write_run(tmp_path / str(len(seeds)), quality=QUALITY, seeds=seeds)
        results = load_run(run_dir)
        expected = summarize(results)
        results.images = CountedColumns(results.images)
        CountedColumns.reads = []
        pd.testing.assert_frame_equal(summarize(results), expected)
        reads[len(results.trials)] = len(CountedColumns.reads)
    assert list(reads) == [6, 24] and reads[24] == reads[6]


def test_a_combined_table_is_saved_by_any_output_that_holds_the_summary(
    cli, tmp_path, monkeypatch, capsys
):
    """cli.py asked whether 'csv' was among the outputs: a new output holding the summary
    table (its Renderer's holds_summary) still drew 'combined summary not saved'."""
    from losscmp import cli as cli_module
    from losscmp import render

    first = write_run(tmp_path / "a", quality={"dice": 0.8}, seeds=(0,), run_id="20260101-1")
    second = write_run(tmp_path / "b", quality={"focal": 0.6}, seeds=(0,), run_id="20260101-2")
    unsaved = "combined summary not saved in any run folder; add --csv FILE"
    assert unsaved in " ".join(cli("report", first, second).output.split())
    assert unsaved not in cli("report", first, second, "--csv", tmp_path / "t.csv").output
    tsv = render.Renderer("tsv", "losscmp.render.csv", "", "summary.csv", holds_summary=True)
    monkeypatch.setitem(render.RENDERERS, "tsv", tsv)
    for files, noted in (({}, True), ({"tsv": tmp_path / "t.tsv"}, False)):
        capsys.readouterr()
        cli_module._print_report([first, second], metric="dice", files=files, plots=False)
        notes = " ".join(capsys.readouterr().err.split())
        assert ("combined summary not saved" in notes) == noted, files
    assert pd.read_csv(tmp_path / "t.tsv")["loss"].tolist() == ["dice", "focal"]


def test_a_row_with_fewer_seeds_than_the_others_says_how_many(cli, tmp_path):
    """A trial file lost (or runs combined) gave one loss 2 seeds of 3: the caption read
    'mean ± sd over 2–3 seed(s)', and nothing said which row; its status read 'ok'."""
    run_dir = write_run(tmp_path, quality={"dice": 0.8, "focal": 0.6}, seeds=(0, 1, 2))
    (run_dir / "trials" / f"{trial_id('synthetic', 'focal', 2, LR)}.json").unlink()
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = {line.split()[1]: line for line in lines if re.match(r" [12]  ", line)}
    assert rows["dice"].endswith("  ok")
    assert rows["focal"].endswith("  ok, 2 seeds")
    assert "over 2–3 seed(s)" in result.output
    page = tmp_path / "report.html"
    assert cli("report", run_dir, "--html", page).exit_code == 0
    assert ">ok, 2 seeds</td>" in page.read_text()


def test_the_unfinished_note_names_the_trials_that_have_no_result(tmp_path):
    """'1 planned trial(s) have no result yet' left the reader of a 276-trial run to find
    which among the files; the note names them as the run's lines do, the first three."""
    run_dir = write_run(
        tmp_path,
        quality={"dice": 0.8, "focal": 0.6},
        seeds=(0, 1, 2),
        extra_meta={"learning_rates": [LR]},
    )
    (run_dir / "trials" / f"{trial_id('synthetic', 'focal', 2, LR)}.json").unlink()
    resume = f"; finish it with: losscmp run --resume {run_dir}"
    (note,) = [note for note in report_notes(load_run(run_dir)) if " is unfinished: " in note]
    assert note == (
        f"{run_dir} is unfinished: 1 planned trial(s) have no result yet (focal · seed 2)" + resume
    )
    for path in (run_dir / "trials").iterdir():
        if "__dice__" in path.name or "seed0" not in path.name:
            path.unlink()
    (note,) = [note for note in report_notes(load_run(run_dir)) if " is unfinished: " in note]
    assert note == (
        f"{run_dir} is unfinished: 5 planned trial(s) have no result yet (dice · seed 0, "
        "dice · seed 1, focal · seed 1 and 2 more)" + resume
    )
