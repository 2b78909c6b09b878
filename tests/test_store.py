"""The run folder as a store (losscmp.results.RunStore): one source of truth (run.json and
trials/), derived tables rebuilt when stale, damaged trial files set aside, one writer.

Most tests use hand-written run folders (tests/run_fixtures.py) and need no training.
The end-to-end ones at the bottom train tiny runs and are marked slow.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from run_fixtures import write_run

from losscmp.errors import LosscmpError
from losscmp.results import (
    IMAGE_NUMBERS,
    RUN_FILE,
    TABLES,
    RunStore,
    RunWriter,
    check_out_dir,
    csv_text,
    enclosing_run_dir,
    read_run_json,
    table_frames,
    trial_id,
)
from losscmp.summary import (
    load_run,
    report_notes,
    resolve_run_dirs,
    summarize,
    unfinished_trials,
)

QUALITY = {"dice": 0.8, "focal": 0.6, "tversky": 0.75}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path, quality=QUALITY, seeds=(0, 1))


def trial_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "trials").glob("*.json"))


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def drop_trial_rows(path: Path, loss: str, seed: int) -> None:
    """What a process killed between a trial file and the table rebuild leaves."""
    frame = pd.read_csv(path)
    keep = ~((frame["loss"] == loss) & (frame["seed"] == seed))
    frame[keep].to_csv(path, index=False)


# --------------------------------------------------------------------------- writing


def test_writer_name_is_the_store():
    assert RunWriter is RunStore


def test_the_run_folder_a_path_lies_inside_is_the_store_s_to_say(tmp_path, monkeypatch):
    """One owner of what a run folder is: report and --resume ask results.py, spelled as
    they were given where the path can say it ('.' inside a run: the absolute folder)."""
    import losscmp.report_args
    import losscmp.runner

    run_dir = write_run(tmp_path / "out")
    monkeypatch.chdir(run_dir / "trials")
    assert enclosing_run_dir(Path("..", "trials", "x.json")) == Path("..")
    assert enclosing_run_dir(Path(".")) == run_dir
    assert enclosing_run_dir(tmp_path) is None
    assert losscmp.report_args.refuse_not_a_run is losscmp.runner.refuse_not_a_run
    assert losscmp.runner.refuse_not_a_run.__module__ == "losscmp.results"


def test_create_makes_a_new_folder_and_refuses_an_existing_one(tmp_path):
    store = RunStore.create(tmp_path / "out", "20260101-000000-aaaaaa")
    assert store.run_dir.is_dir() and list(store.run_dir.iterdir()) == []
    with pytest.raises(LosscmpError, match="exists already"):
        RunStore.create(tmp_path / "out", "20260101-000000-aaaaaa")


def _half_built(out: Path, name: str, files: dict[str, str], age_s: float) -> Path:
    """A hidden ``.<id>.creating`` folder as a start killed before its rename leaves it."""
    folder = out / f".{name}.creating"
    folder.mkdir(parents=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_create_removes_half_built_folders_that_killed_starts_left(tmp_path):
    out = tmp_path / "out"
    meta = json.dumps({"schema_version": 2})
    abandoned = _half_built(out, "a", {RUN_FILE: meta, f".{RUN_FILE}.x1.tmp": "{"}, 3600)
    empty = _half_built(out, "b", {}, 3600)
    # Younger: maybe another process's run in the instant before its rename.
    building = _half_built(out, "c", {RUN_FILE: meta}, 5)
    # Something else than a run's start: not ours to delete.
    foreign = _half_built(out, "d", {RUN_FILE: meta, "notes.txt": "mine"}, 3600)
    RunStore.create(out, "20260101-000000-aaaaaa")
    assert not abandoned.exists() and not empty.exists()
    assert building.exists() and foreign.exists()
    assert sorted(path.name for path in out.iterdir()) == [
        ".c.creating",
        ".d.creating",
        "20260101-000000-aaaaaa",
    ]


def test_write_trial_is_atomic_fsynced_and_rebuilds_the_tables(run_dir, monkeypatch):
    import losscmp.results as results

    synced = []
    real_fsync = os.fsync

    def recording_fsync(handle):
        synced.append("dir" if stat.S_ISDIR(os.fstat(handle).st_mode) else "file")
        real_fsync(handle)

    monkeypatch.setattr(results.os, "fsync", recording_fsync)
    store = RunStore(run_dir)
    record = json.loads(trial_files(run_dir)[0].read_text())
    record["seed"] = 7
    record["trial_id"] = trial_id(record["dataset"], record["loss"], 7, record["base_lr"])
    store.write_trial(record)
    assert (run_dir / "trials" / f"{record['trial_id']}.json").is_file()
    # the trial file and each table: the file, then its folder
    assert synced[:2] == ["file", "dir"] and synced.count("dir") >= 3
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert 7 in set(epochs["seed"])
    assert not [p for p in files_under(run_dir) if p.endswith(".tmp")]
    assert store.check_tables() == {}


def test_a_folder_made_for_a_file_is_durable_too(tmp_path, monkeypatch):
    """A power cut after the first trial file was fsynced, in a trials/ folder that no
    fsynced entry of the run folder named yet, could lose the folder and the trial."""
    import losscmp.results as results

    run_dir = write_run(tmp_path, quality=QUALITY, seeds=(0,))
    record = json.loads(trial_files(run_dir)[0].read_text())
    for path in trial_files(run_dir):
        path.unlink()
    (run_dir / "trials").rmdir()
    synced = []
    real = results._fsync_dir
    monkeypatch.setattr(results, "_fsync_dir", lambda folder: (synced.append(folder), real(folder)))
    RunStore(run_dir).write_trial(record)
    # the run folder (naming the new trials/), then trials/ (naming the file)
    assert synced[:2] == [run_dir, run_dir / "trials"]
    synced.clear()
    store = RunStore.create(tmp_path / "new" / "out", "r1", {"run_id": "r1"})
    assert synced[:2] == [tmp_path, tmp_path / "new"]  # both folders made for --out
    assert store.run_dir.is_dir()


def another_seed(run_dir: Path, seed: int) -> dict:
    """A trial record like the run's first, at another seed."""
    record = json.loads(trial_files(run_dir)[0].read_text())
    record["seed"] = seed
    record["trial_id"] = trial_id(record["dataset"], record["loss"], seed, record["base_lr"])
    return record


def test_a_writer_reads_the_trial_files_once_not_after_each_trial(run_dir, monkeypatch):
    """Each trial's rebuild of the tables read every trial file again: a run of N trials
    read N²/2 files (156 tiny trials: 12,402 reads, 4.7 s of the main process)."""
    import losscmp.results as results

    reads = []
    read = results.read_trial_file
    monkeypatch.setattr(results, "read_trial_file", lambda path: reads.append(path) or read(path))
    store = RunStore(run_dir)
    with store.lock():
        assert len(store.finished_trials()) == len(reads) == 6
        for seed in range(7, 12):
            store.write_trial(another_seed(run_dir, seed))
        assert len(reads) == 6
    # The tables hold what the files give, read back afresh.
    assert store.check_tables() == {} and len(reads) == 6 + 11
    assert sorted(set(pd.read_csv(run_dir / "epochs.csv")["seed"])) == [0, 1, 7, 8, 9, 10, 11]
    # Without the lock another process may write trials/: they are read from the files.
    results.atomic_write_json(
        run_dir / "trials" / f"{another_seed(run_dir, 12)['trial_id']}.json",
        another_seed(run_dir, 12),
    )
    store.rebuild_tables()
    assert 12 in set(pd.read_csv(run_dir / "epochs.csv")["seed"])


def test_a_writer_keeps_its_trial_records_small_between_rebuilds(run_dir):
    """The writer kept every trial record it wrote parsed, for the next rebuild of the
    tables: with a row per test image (twice: best and final epoch) its memory grew by
    ~0.9 MiB per trial of 1000 test images, 160 MiB per 100 trials of a run."""
    import gc
    import tracemalloc

    store = RunStore(run_dir)
    with store.lock():
        store.finished_trials()
        records = []
        for seed in range(7, 17):
            record = another_seed(run_dir, seed)
            rows = record["images"]
            record["images"] = [
                {**rows[0], "which": which, "image": image, "dice": image / 1000}
                for which in ("best", "final")
                for image in range(1000)
            ]
            records.append(record)
        gc.collect()
        tracemalloc.start()
        try:
            for record in records:
                store.write_trial(record, defer_tables=True)
            gc.collect()
            kept_per_trial = tracemalloc.get_traced_memory()[0] / len(records)
        finally:
            tracemalloc.stop()
        assert kept_per_trial < 150 * 2**10  # parsed: ~900 KiB; packed: ~60 KiB
        store.flush_tables()
    images = pd.read_csv(run_dir / "images.csv")
    assert len(images[images["seed"] == 16]) == 2000
    assert images[images["seed"] == 16]["dice"].max() == 999 / 1000


def test_deferred_tables_are_rebuilt_within_a_share_of_the_time(run_dir, monkeypatch):
    """A run of many short trials spent more time rebuilding its tables than training (390
    trials: 175 s of 310); with ``defer_tables`` a rebuild waits until it costs at most
    TABLES_SHARE (5 %) of the time since the last one, and ``flush_tables`` ends it."""
    import losscmp.results as results

    store = RunStore(run_dir)
    now, written = [0.0], []
    store.clock = lambda: now[0]
    write_csv = results.atomic_write_csv

    def slow_write(path, frame) -> None:  # each table takes 0.5 s: a rebuild 1 s
        now[0] += 0.5
        written.append(path.name)
        write_csv(path, frame)

    monkeypatch.setattr(results, "atomic_write_csv", slow_write)
    with store.lock():
        store.finished_trials()
        store.rebuild_tables()  # from 0 s to 1 s
        now[0] = 10.0  # 1 s of 10: deferred
        store.write_trial(another_seed(run_dir, 7), defer_tables=True)
        assert len(written) == 2
        assert "lacks 1 trial(s)" in store.check_tables()["epochs.csv"]
        now[0] = 21.0  # 1 s of 21: rebuilt, from 21 s to 22 s
        store.write_trial(another_seed(run_dir, 8), defer_tables=True)
        assert len(written) == 4 and store.check_tables() == {}
        store.write_trial(another_seed(run_dir, 9), defer_tables=True)  # at once: deferred
        store.write_trial(another_seed(run_dir, 10))  # not deferred: rebuilt (to 23 s)
        assert len(written) == 6 and store.check_tables() == {}
        store.write_trial(another_seed(run_dir, 11), defer_tables=True)
        assert len(written) == 6
        store.flush_tables()
        assert len(written) == 8 and store.check_tables() == {}
        store.flush_tables()  # nothing written since: nothing to do
        assert len(written) == 8


def tables_a_dict_per_row_built(records: list[dict]) -> dict[str, pd.DataFrame]:
    """The tables as the writer built them before: a dict per row, one DataFrame of them."""
    frames = {}
    for spec in TABLES:
        rows = []
        for trial in sorted(records, key=lambda record: record["trial_id"]):
            identity = {
                "dataset": trial["dataset"],
                "loss": trial["loss"],
                "base_lr": trial.get("base_lr"),
                "seed": trial["seed"],
            }
            rows.extend({**identity, **row} for row in trial[spec.name])
        frame = pd.DataFrame(rows)
        for column in spec.columns:
            if column not in frame.columns:
                frame[column] = None
        extra = sorted(set(frame.columns) - set(spec.columns))
        frames[spec.name] = frame[list(spec.columns) + extra]
    return frames


def trial_records(run_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in trial_files(run_dir)]


def odd_trial(record: dict) -> dict:
    """A trial whose columns differ in kind from the others': no threshold (None), a
    column only it has (ints), images with no hd95 and no split, a rate of None."""
    record = json.loads(json.dumps(record))
    record.update(trial_id="zz-odd", base_lr=None)
    for row in record["epochs"]:
        row.update(threshold=None, only_here=3)
    for row in record["images"]:
        row.pop("split", None)
        row["hd95"] = None
    return record


@pytest.mark.parametrize(
    "runs",
    [
        ["binary"],
        ["multiclass"],
        ["older"],
        ["rates"],
        ["binary", "multiclass", "older", "rates", "odd"],
        ["odd"],
        ["older", "rates"],
        [],
    ],
)
def test_tables_are_the_bytes_a_dict_per_row_gave(tmp_path, runs):
    """The tables are built a column at a time, trial by trial (a dict per row of
    images.csv cost GBs at 390 trials of 3669 test images); their text and types stay
    those of a DataFrame of a dict per row: per-class columns, a column an older record
    lacks (missing), a rate of None, ints beside None (floats), an empty run."""
    made = {
        "binary": dict(lrs=[1e-3, 1e-2]),
        "multiclass": dict(class_names=("background", "road", "car")),
        "older": dict(schema_version=1),
        "rates": dict(lrs=[3e-4], diverged={("dice", 1): 2}),
    }
    records = []
    for name in runs:
        if name == "odd":
            records.append(
                odd_trial(records[0] if records else trial_records(write_run(tmp_path / name))[0])
            )
        else:
            records += trial_records(write_run(tmp_path / name, seeds=(0, 1), **made[name]))
    wanted = tables_a_dict_per_row_built(records)
    built = table_frames(sorted(records, key=lambda record: record["trial_id"]))
    for spec in TABLES:
        assert csv_text(built[spec.name]) == csv_text(wanted[spec.name])
        pd.testing.assert_frame_equal(built[spec.name], wanted[spec.name])
    store = RunStore(write_run(tmp_path / "store", seeds=(0,), write_csvs=False))
    store.rebuild_tables(records)
    for spec in TABLES:
        assert (store.run_dir / spec.file).read_text() == csv_text(wanted[spec.name])
    assert store.check_tables(records) == {}


def test_a_rebuild_holds_no_dict_per_row_nor_every_record(run_dir, monkeypatch):
    """A rebuild turned every row of every trial into a dict at once (~670 bytes a row
    of images.csv beside the records; 2.9 million rows at 390 trials of 3669 test
    images), after parsing every record the writer kept packed; --resume parsed every
    trial file at once before packing them."""
    import tracemalloc
    import weakref

    import losscmp.results as results

    class Record(dict):  # a dict that can be watched (weakref) while alive
        pass

    alive, most_alive = set(), []
    unpack = results._unpack

    def watched(parsed: dict) -> Record:
        record = Record(parsed)
        alive.add(id(record))
        weakref.finalize(record, alive.discard, id(record))
        most_alive.append(len(alive))
        return record

    store = RunStore(run_dir)
    with store.lock():
        store.finished_trials()
        for seed in range(7, 11):
            store.write_trial(another_seed(run_dir, seed), defer_tables=True)
        monkeypatch.setattr(results, "_unpack", lambda packed: watched(unpack(packed)))
        store.rebuild_tables()
    assert len(most_alive) == 10 and max(most_alive) <= 2  # the one in use, the next
    # --resume's first look at trials/ (finished_trials) packs each record as it reads it
    alive.clear(), most_alive.clear()
    read = results.read_trial_file
    monkeypatch.setattr(results, "read_trial_file", lambda path: watched(read(path)))
    with RunStore(run_dir).lock() as fresh:
        assert len(fresh.finished_trials()) == 10
    assert len(most_alive) == 10 and max(most_alive) <= 2

    rows = [
        {"which": which, "split": "test", "image": image, **dict.fromkeys(IMAGE_NUMBERS, image / 7)}
        for which in ("best", "final")
        for image in range(10_000)
    ]
    record = {**another_seed(run_dir, 20), "images": rows}
    table_frames([record])  # imports and caches out of the count
    tracemalloc.start()
    try:
        table_frames([record])
        per_row = tracemalloc.get_traced_memory()[1] / len(rows)
    finally:
        tracemalloc.stop()
    # a dict per row: ~670 bytes; a column at a time: ~250 (pandas 3), ~420 (pandas 2.0)
    assert per_row < 500


def test_a_table_as_the_writer_wrote_it_is_not_parsed_to_be_checked(run_dir, monkeypatch):
    """report parsed every table and the writer's text of it, and compared them sorted, to
    find it fresh (390 trials: 1.7 s); a file holding the writer's own text needs none of
    it. Rows in another order are still compared by value, and fresh."""
    import losscmp.results as results

    parsed = []
    read_table = results.read_table_csv
    monkeypatch.setattr(
        results, "read_table_csv", lambda path: parsed.append(path) or read_table(path)
    )
    store = RunStore(run_dir)
    store.rebuild_tables()
    assert store.check_tables() == {} and parsed == []
    epochs = pd.read_csv(run_dir / "epochs.csv")
    epochs[::-1].to_csv(run_dir / "epochs.csv", index=False)
    assert store.check_tables() == {} and parsed == [run_dir / "epochs.csv"]
    drop_trial_rows(run_dir / "epochs.csv", "dice", 0)
    assert "lacks 1 trial(s)" in store.check_tables()["epochs.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(run_dir, monkeypatch):
    import losscmp.results as results

    path = trial_files(run_dir)[0]
    before = path.read_bytes()
    record = json.loads(before)
    record["seconds"] = 99.0

    def broken_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.os, "replace", broken_replace)
    with pytest.raises(OSError):
        RunStore(run_dir).write_trial(record)
    assert path.read_bytes() == before
    assert not [p for p in files_under(run_dir) if p.endswith(".tmp")]


def _full_disk_for(monkeypatch, name_part: str) -> None:
    """Writes of files whose name holds ``name_part`` fail as on a full disk: in fsync,
    where an OSError names no file."""
    import losscmp.results as results

    temps: dict[int, str] = {}
    real_mkstemp, real_fsync = results.tempfile.mkstemp, os.fsync

    def recording_mkstemp(*args, **kwargs):
        handle, temp = real_mkstemp(*args, **kwargs)
        temps[handle] = temp
        return handle, temp

    def failing_fsync(handle):
        if name_part in temps.get(handle, ""):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(handle)

    monkeypatch.setattr(results.tempfile, "mkstemp", recording_mkstemp)
    monkeypatch.setattr(results.os, "fsync", failing_fsync)


def test_a_write_on_a_full_disk_names_its_file(run_dir, monkeypatch):
    """A full disk fails the write or the fsync, whose OSError names no file: 'losscmp run'
    ended in a traceback instead of one line naming it."""
    path = trial_files(run_dir)[0]
    before = path.read_bytes()
    record = json.loads(before)
    record["seconds"] = 99.0
    _full_disk_for(monkeypatch, path.name)
    with pytest.raises(OSError) as raised:
        RunStore(run_dir).write_trial(record)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_bytes() == before
    assert not [p for p in files_under(run_dir) if p.endswith(".tmp")]


def test_write_trial_refuses_a_malformed_record(run_dir):
    record = json.loads(trial_files(run_dir)[0].read_text())
    record["epochs"] = "nope"
    with pytest.raises(ValueError, match="malformed trial record"):
        RunStore(run_dir).write_trial(record)


def test_failed_trials_are_recorded_then_cleared_by_a_result(run_dir):
    store = RunStore(run_dir)
    path = trial_files(run_dir)[0]
    record = json.loads(path.read_text())
    path.unlink()
    store.rebuild_tables()
    store.record_failed(record["trial_id"], "worker died twice (signal 9)")
    assert read_run_json(run_dir)["failed_trials"] == {
        record["trial_id"]: "worker died twice (signal 9)"
    }
    results = load_run(run_dir)
    assert results.failed_trials == {run_dir: {record["trial_id"]: "worker died twice (signal 9)"}}
    notes = report_notes(results)
    assert any("1 trial failed" in note and "--resume" in note for note in notes)
    store.write_trial(record)
    assert read_run_json(run_dir)["failed_trials"] == {}
    assert load_run(run_dir).failed_trials == {}
    assert not any("failed" in note for note in report_notes(load_run(run_dir)))


# --------------------------------------------------------------------------- stale tables


def test_fixture_tables_are_not_stale(run_dir):
    """Order of rows and columns, or an all-empty column, is no disagreement."""
    assert RunStore(run_dir).check_tables() == {}
    assert load_run(run_dir).notes == []


def test_tables_missing_a_trial_are_found_rebuilt_and_said(run_dir):
    expected = summarize(load_run(run_dir))
    drop_trial_rows(run_dir / "epochs.csv", "focal", 1)
    store = RunStore(run_dir)
    assert store.tables_stale()
    assert (
        "lacks 1 trial(s) of trials/ (focal lr 0.003 seed 1 on synthetic)"
        in (store.check_tables()["epochs.csv"])
    )
    results = load_run(run_dir)
    (note,) = results.notes
    assert "epochs.csv lacks 1 trial(s)" in note and "rebuilt from trials/" in note
    pd.testing.assert_frame_equal(summarize(results), expected)
    assert not store.tables_stale()
    assert len(pd.read_csv(run_dir / "epochs.csv").query("loss == 'focal' and seed == 1")) == 4


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        (lambda p: p.unlink(), "is missing"),
        (lambda p: p.write_text(p.read_text() + p.read_text().splitlines()[1]), "repeated row"),
        (lambda p: p.write_text(p.read_text().replace("0.5", "0.25", 1)), "in its values"),
        (lambda p: p.write_text("a,b\n1,2,3,4\n"), "is damaged"),
        (lambda p: p.write_text(cut_before_the_seed(p.read_text())), "lacks"),
    ],
    ids=["empty", "missing", "repeated-row", "changed-value", "garbage", "cut-short"],
)
def test_any_disagreement_is_rebuilt_from_the_trial_files(run_dir, damage, said):
    expected = summarize(load_run(run_dir))
    damage(run_dir / "epochs.csv")
    results = load_run(run_dir)
    assert len(results.notes) == 1 and said in results.notes[0], results.notes
    pd.testing.assert_frame_equal(summarize(results), expected)
    assert RunStore(run_dir).check_tables() == {}


def cut_before_the_seed(text: str) -> str:
    """The table cut short by damage on disk (losscmp's own writes are atomic): one row,
    then the next cut off before its seed."""
    lines = text.splitlines()
    seed_at = lines[0].split(",").index("seed")
    return "\n".join(lines[:2]) + "\n" + ",".join(lines[2].split(",")[:seed_at]) + ","


def test_rows_of_a_trial_without_a_file_are_stale(run_dir):
    trial_files(run_dir)[0].unlink()
    problem = RunStore(run_dir).check_tables()["epochs.csv"]
    assert "has rows of 1 trial(s) with no trial file" in problem


def test_a_locked_run_is_read_from_trials_without_rewriting(run_dir):
    drop_trial_rows(run_dir / "epochs.csv", "dice", 0)
    before = (run_dir / "epochs.csv").read_bytes()
    with RunStore(run_dir).lock():  # another writer (another open file: flock refuses it)
        results = load_run(run_dir)
    (note,) = results.notes
    assert "being written by another process" in note and f"pid {os.getpid()}" in note
    assert (run_dir / "epochs.csv").read_bytes() == before
    assert len(results.epochs.query("loss == 'dice' and seed == 0")) == 4


def test_csv_only_run_with_an_empty_table_is_not_called_unfinished(tmp_path):
    run_dir = write_run(tmp_path)
    for path in trial_files(run_dir):
        path.unlink()
    (run_dir / "epochs.csv").write_bytes(b"")
    with pytest.raises(LosscmpError, match=r"epochs.csv is damaged \(empty: 0 bytes\)") as caught:
        load_run(run_dir)
    assert "no finished trials" not in str(caught.value)


def test_csv_only_run_with_a_repeated_row_is_refused(tmp_path):
    run_dir = write_run(tmp_path)
    for path in trial_files(run_dir):
        path.unlink()
    path = run_dir / "epochs.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[3]]))
    with pytest.raises(
        LosscmpError, match="rows share dataset synthetic, loss dice, base_lr 0.003, seed 0"
    ):
        load_run(run_dir)


# --------------------------------------------------------------------------- damaged trials


DAMAGED = {
    "empty": (b"", "empty: 0 bytes"),
    "corrupt": (b'{"trial_id": "x", "dat', "not valid JSON"),
    "list": (b"[1, 2]", "not a trial record"),
    "no-epochs": (None, "no 'epochs'"),
    "text-in-row": (None, "val_dice='oops'"),
}


def _damage(path: Path, kind: str) -> None:
    content, _ = DAMAGED[kind]
    if content is not None:
        path.write_bytes(content)
        return
    record = json.loads(path.read_text())
    if kind == "no-epochs":
        del record["epochs"]
    else:
        record["epochs"][0]["val_dice"] = "oops"
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("kind", DAMAGED, ids=DAMAGED.keys())
def test_report_names_a_damaged_trial_file_and_how_to_fix_it(run_dir, kind):
    path = trial_files(run_dir)[2]
    _damage(path, kind)
    with pytest.raises(LosscmpError) as caught:
        load_run(run_dir)
    message = str(caught.value)
    assert path.name in message and DAMAGED[kind][1] in message
    assert f"--resume {run_dir}" in message and "\n" not in message


@pytest.mark.parametrize("kind", DAMAGED, ids=DAMAGED.keys())
def test_finished_trials_sets_damaged_files_aside(run_dir, kind):
    paths = trial_files(run_dir)
    damaged = paths[2]
    _damage(damaged, kind)
    content = damaged.read_bytes()
    store = RunStore(run_dir)
    with store.lock():
        done = store.finished_trials()
    assert done == {path.stem for path in paths} - {damaged.stem}
    (item,) = store.quarantined
    assert item.moved_to == run_dir / "trials" / "damaged" / damaged.name
    assert item.moved_to.read_bytes() == content  # kept, never deleted
    assert not damaged.exists()
    (entry,) = read_run_json(run_dir)["damaged_trials"]
    assert entry["file"] == f"trials/damaged/{damaged.name}" and entry["trial_id"] == damaged.stem
    # the rest reads; report says what was set aside, and that the trial is due again
    store.rebuild_tables()
    results = load_run(run_dir)
    assert any("1 damaged trial file(s) were set aside" in note for note in results.notes)
    assert unfinished_trials(results) == {run_dir: 1}


@pytest.mark.parametrize("kind", DAMAGED, ids=DAMAGED.keys())
def test_report_reads_the_rest_of_a_run_with_a_damaged_trial_file(cli, run_dir, tmp_path, kind):
    """One damaged trial file no longer costs the whole report: the table of the good
    trials, a note naming the file and the fix, the trial unfinished; nothing moved."""
    damaged = trial_files(run_dir)[2]
    loss = json.loads(damaged.read_text())["loss"]
    _damage(damaged, kind)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    page = tmp_path / "page.html"
    result = cli("report", run_dir, "--html", page)
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in QUALITY)
    said = result.stderr.replace("\n", " ")
    assert f"{run_dir}: damaged trial file {damaged.name} left out of this report (" in said
    assert DAMAGED[kind][1] in said
    fix = f"'losscmp run --resume {run_dir}' sets it aside in {run_dir / 'trials' / 'damaged'}"
    assert fix in said
    assert "unfinished" not in said  # the damaged file's note is its trial's one note
    # read-only: every file as it was (summary.csv and the lock file are new), nothing moved
    assert {path: path.read_bytes() for path in before} == before
    assert not (run_dir / "trials" / "damaged").exists()
    summary = pd.read_csv(run_dir / "summary.csv").set_index("loss")
    assert summary.loc[loss, "n_seeds"] == 1
    assert (summary.drop(index=loss)["n_seeds"] == 2).all()
    page_text = page.read_text()
    assert f"{damaged.name} left out" in page_text and "sets it aside" in page_text


def _notes(stderr: str) -> list[str]:
    """The report's notes, each on one line (the console wraps them), the 'wrote' line after
    them left out."""
    notes = stderr.split("\nwrote ")[0]
    return [" ".join(note.split()) for note in notes.split("note: ")[1:]]


def test_several_damaged_trial_files_are_named_once_each_with_one_resume(cli, run_dir):
    """Report said the fix twice for each damaged file: its own note, and again an
    'unfinished ... finish it with --resume' note for the same trials. Now a note a file,
    naming it and why, and one --resume at the end counting them."""
    paths = trial_files(run_dir)
    damaged = paths[:2]
    for path in damaged:
        path.write_bytes(b"{")
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    notes = _notes(result.stderr)
    assert notes[:3] == [
        *(
            f"{run_dir}: damaged trial file {path.name} left out of this report (not valid JSON)"
            for path in damaged
        ),
        f"{run_dir}: 'losscmp run --resume {run_dir}' sets its 2 damaged trial files aside in "
        f"{run_dir / 'trials' / 'damaged'} and trains those trials again",
    ]
    assert " ".join(notes).count(f"--resume {run_dir}") == 1, notes


def test_a_run_with_a_damaged_and_a_missing_trial_gives_its_resume_once(cli, run_dir):
    """A damaged file and a trial with no file at all: the damaged file's note gives the
    --resume, the unfinished note (the other trial only) says the same one finishes it."""
    damaged, missing = trial_files(run_dir)[:2]
    damaged.write_bytes(b"")
    missing.unlink()
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    notes = _notes(result.stderr)
    assert " ".join(notes).count(f"--resume {run_dir}") == 1, notes
    unfinished = next(note for note in notes if "unfinished" in note)
    assert unfinished.startswith(f"{run_dir} is unfinished: 1 planned trial(s) have no result")
    assert unfinished.endswith("; the same 'losscmp run --resume' finishes it too")


def test_report_of_a_run_whose_every_trial_file_is_damaged_refuses(cli, run_dir):
    paths = trial_files(run_dir)
    for path in paths:
        path.write_bytes(b"{")
    result = cli("report", run_dir)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"losscmp: error: {paths[0]} is damaged (not valid JSON)")
    assert f"(and {len(paths) - 1} more damaged trial file(s)); 'losscmp run --resume" in (
        result.stderr
    )
    assert len(result.stderr.splitlines()) == 1
    assert not (run_dir / "trials" / "damaged").exists()


def test_a_file_set_aside_twice_keeps_both_copies(run_dir):
    damaged = trial_files(run_dir)[0]
    store = RunStore(run_dir)
    for content in (b"", b"{"):
        damaged.write_bytes(content)
        store.finished_trials()
    kept = sorted(path.read_bytes() for path in (run_dir / "trials" / "damaged").iterdir())
    assert kept == [b"", b"{"]


def test_a_file_set_aside_by_a_killed_resume_is_still_noted(run_dir):
    """Killed between moving a damaged file into trials/damaged/ and noting it in run.json:
    the note was lost for good, and report never said the trial had been trained again."""
    damaged = trial_files(run_dir)[0]
    (run_dir / "trials" / "damaged").mkdir()
    first = run_dir / "trials" / "damaged" / damaged.name
    first.write_bytes(b"")  # moved, not noted
    damaged.write_bytes(b"{")  # and a second copy, set aside now
    store = RunStore(run_dir)
    with store.lock():
        store.finished_trials()
    entries = store.read_meta()["damaged_trials"]
    listed = {entry["file"]: (entry["trial_id"], entry["reason"]) for entry in entries}
    assert listed == {
        f"trials/damaged/{damaged.name}": (damaged.stem, "empty: 0 bytes"),
        f"trials/damaged/{damaged.stem}.1.json": (damaged.stem, "not valid JSON"),
    }
    with store.lock():
        store.finished_trials()
    assert len(store.read_meta()["damaged_trials"]) == 2  # listed once


def test_a_copied_trial_file_is_damaged(run_dir):
    first, second = trial_files(run_dir)[:2]
    second.write_text(first.read_text())
    with pytest.raises(LosscmpError, match=f"{second.name} is damaged .*do not agree"):
        load_run(run_dir)


# --------------------------------------------------------------------------- the lock


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from losscmp.results import RunStore
    with RunStore(sys.argv[1]).lock():
        print("locked", flush=True)
        time.sleep(120)
    """
)
TRY_LOCK = textwrap.dedent(
    """
    import sys
    from losscmp.errors import LosscmpError
    from losscmp.results import RunStore
    try:
        with RunStore(sys.argv[1]).lock():
            print("got it")
    except LosscmpError as error:
        print(error)
        sys.exit(2)
    """
)


def test_a_second_process_cannot_take_the_lock(run_dir):
    with RunStore(run_dir).lock():
        done = subprocess.run(
            [sys.executable, "-c", TRY_LOCK, str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == (
        f"run folder {run_dir} is being written by another losscmp process "
        f"(pid {os.getpid()}); wait for it to finish, or stop it first"
    )
    again = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(run_dir)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and again.stdout.strip() == "got it"


def test_the_lock_dies_with_a_killed_holder(run_dir):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        store = RunStore(run_dir)
        assert store.locked_by() == holder.pid
        refused = pytest.raises(LosscmpError, match=rf"another losscmp process \(pid {holder.pid}")
        with refused, store.lock():
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert store.locked_by() is None
    with store.lock():
        assert store.locked_by() == os.getpid()


def test_the_lock_is_reentrant_for_its_holder(run_dir):
    store = RunStore(run_dir)
    with store.lock(), store.lock():
        store.rebuild_tables()
    assert store.locked_by() is None


def test_the_lock_clears_temp_files_a_killed_writer_left(run_dir):
    leftovers = [
        run_dir / ".epochs.csv.abc123.tmp",
        run_dir / "trials" / ".x.json.def456.tmp",
    ]
    for path in leftovers:
        path.write_text("half")
    with RunStore(run_dir).lock():
        pass
    assert not any(path.exists() for path in leftovers)


def test_the_lock_clears_a_png_a_killed_report_plots_left(run_dir):
    """Killed in 'report --plots' before a figure's rename: plots/ kept the temp file for
    good, since the lock's cleanup did not look there."""
    (run_dir / "plots").mkdir()
    leftover = run_dir / "plots" / ".learning_curves.png.abc123.tmp"
    leftover.write_bytes(b"\x89PNG half")
    with RunStore(run_dir).lock():
        pass
    assert not leftover.exists()


# --------------------------------------------------------------------------- killed at start


def test_a_complete_temporary_run_json_is_used_and_promoted(tmp_path):
    run_dir = write_run(tmp_path)
    meta = (run_dir / RUN_FILE).read_text()
    (run_dir / RUN_FILE).unlink()
    (run_dir / ".run.json.zz9k2a.tmp").write_text(meta)  # killed between fsync and rename
    assert read_run_json(run_dir) == json.loads(meta)
    assert resolve_run_dirs([run_dir]) == [run_dir]
    with RunStore(run_dir).lock():
        pass
    assert json.loads((run_dir / RUN_FILE).read_text()) == json.loads(meta)
    assert not list(run_dir.glob(".run.json.*"))


def test_a_half_written_run_json_is_reported_clearly(tmp_path):
    run_dir = tmp_path / "20260101-120000-dead00"
    run_dir.mkdir()
    (run_dir / ".run.json.k2j4h1.tmp").write_text('{"schema_version": 1, "run_')
    with pytest.raises(LosscmpError, match="half-written run.json: the run was killed while"):
        load_run(run_dir)


# --------------------------------------------------------------------------- --out


def test_out_that_can_be_made_passes_and_leaves_nothing(tmp_path):
    check_out_dir(tmp_path / "a" / "b")
    check_out_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: (tmp / "f").write_text("x") and tmp / "f", "is a file; it must be a folder"),
        (lambda tmp: (tmp / "f").write_text("x") and tmp / "f" / "runs", "is a file, not a folder"),
        (lambda tmp: tmp / ("x" * 300), "longer than"),
        (lambda tmp: Path("/sys/losscmp-probe/runs"), "is not writable"),
        (lambda tmp: (tmp / "l").symlink_to(tmp / "gone") or tmp / "l", "broken link"),
    ],
    ids=["file", "under-a-file", "name-too-long", "unwritable", "broken-link"],
)
def test_out_that_cannot_hold_runs_is_one_line(tmp_path, make, message):
    out = make(tmp_path)
    before = files_under(tmp_path)
    with pytest.raises(LosscmpError, match=message) as caught:
        check_out_dir(out)
    assert "\n" not in str(caught.value)
    assert files_under(tmp_path) == before


# --------------------------------------------------------------------------- datasets' notes


def test_skipped_and_truncated_images_are_repeated_by_report(tmp_path):
    info = {
        "unreadable_count": 1,
        "unreadable": ["images/Bengal_5.jpg"],
        "truncated_count": 2,
        "truncated": ["images/pug_1.jpg", "images/pug_2.jpg"],
    }
    run_dir = write_run(tmp_path, datasets=("pets",), dataset_info=info)
    notes = load_run(run_dir).notes
    assert any("1 unreadable image(s) were left out (images/Bengal_5.jpg)" in n for n in notes)
    assert any("2 truncated image(s)" in note for note in notes)


# --------------------------------------------------------------------------- with the runner

TINY = [
    "--losses",
    "dice,bce",
    "--dataset",
    "synthetic(fg_fraction=0.1,n_train=16,n_val=8)",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--model",
    "tiny",
    "--device",
    "cpu",
]


@pytest.fixture
def tiny_run(cli, tmp_path):
    result = cli("run", *TINY, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def _metrics(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "epochs.csv")
    keep = [c for c in frame.columns if c not in ("seconds",)]
    return frame[keep].sort_values(["loss", "seed", "epoch"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_fused_group_resumed_in_part_gives_the_uninterrupted_numbers(cli, tmp_path):
    """A kill between the trial files of one fused group leaves part of it: the resumed
    run trains the whole planned group again (a fused model's rounding depends on how
    many copies it stacks: with 2 threads, 2 copies of 3 gave a validation Dice of
    0.081658 instead of 0.081812) and writes only the missing trials."""
    fused = [
        *TINY,
        "--losses",
        "dice,focal,tversky",
        "--epochs",
        "2",
        "--fuse",
        "on",
        "--threads",
        "2",
    ]
    assert cli("run", *fused, "--out", tmp_path / "runs").exit_code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    expected, kept = _metrics(run_dir), (run_dir / "trials").glob("*__dice__*.json")
    (kept,) = kept
    kept_before = kept.read_bytes()
    for path in (run_dir / "trials").glob("*.json"):
        if path != kept:
            path.unlink()
    result = cli("run", *fused, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(_metrics(run_dir), expected)
    assert kept.read_bytes() == kept_before  # trained again beside them, not rewritten


@pytest.mark.slow
def test_resume_rebuilds_tables_left_stale_by_a_kill(cli, tiny_run):
    expected = _metrics(tiny_run)
    drop_trial_rows(tiny_run / "epochs.csv", "bce", 0)
    result = cli("run", *TINY, "--resume", tiny_run)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(_metrics(tiny_run), expected)


@pytest.mark.slow
def test_resume_sets_a_damaged_trial_aside_and_trains_it_again(cli, tiny_run):
    expected = _metrics(tiny_run)
    damaged = trial_files(tiny_run)[0]
    damaged.write_bytes(b"")
    result = cli("run", *TINY, "--resume", tiny_run)
    assert result.exit_code == 0, result.output
    assert (tiny_run / "trials" / "damaged" / damaged.name).read_bytes() == b""
    assert json.loads(damaged.read_text())["status"] == "finished"
    pd.testing.assert_frame_equal(_metrics(tiny_run), expected)
    assert "set aside" in result.output


@pytest.mark.slow
def test_resume_of_a_folder_being_written_is_refused(cli, tiny_run):
    with RunStore(tiny_run).lock():
        result = cli("run", *TINY, "--resume", tiny_run)
    assert result.exit_code == 2
    assert "is being written by another losscmp process" in result.stderr
    assert len(result.stderr.splitlines()) == 1  # and no blank line from the progress display


@pytest.mark.slow
def test_report_prints_that_it_rebuilt_a_stale_table(cli, tiny_run):
    drop_trial_rows(tiny_run / "epochs.csv", "dice", 0)
    result = cli("report", tiny_run)
    assert result.exit_code == 0
    assert "rebuilt from trials/" in result.stderr


@pytest.mark.slow
def test_a_run_killed_while_starting_resumes(cli, tiny_run):
    expected = _metrics(tiny_run)
    meta = (tiny_run / RUN_FILE).read_text()
    for path in trial_files(tiny_run):
        path.unlink()
    for name in ("epochs.csv", "images.csv", RUN_FILE):
        (tiny_run / name).unlink()
    (tiny_run / ".run.json.abcdef.tmp").write_text(meta)
    result = cli("run", *TINY, "--resume", tiny_run)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(_metrics(tiny_run), expected)


def _run_process(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "losscmp", "run", *TINY, "--losses", "dice,bce,focal", "--out", out],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _run_folders(out: Path) -> list[Path]:
    """The run folders under ``out``; not the hidden one a run is assembled in before it is
    renamed into place (pathlib's glob matches hidden names: a kill at that instant left
    ``.<id>.creating``, which is no run to resume)."""
    if not out.exists():
        return []
    return [path for path in out.iterdir() if not path.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.parametrize("trials_before_kill", [0, 1, 2])
def test_sigkill_then_resume_ends_as_an_uninterrupted_run(cli, tmp_path, trials_before_kill):
    """Killed right after the Nth trial file appears (often before its table rebuild)."""
    reference = tmp_path / "reference"
    done = cli("run", *TINY, "--losses", "dice,bce,focal", "--out", reference)
    assert done.exit_code == 0, done.output
    (reference_dir,) = reference.iterdir()
    out = tmp_path / "killed"
    process = _run_process(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = list(out.glob("*/trials/*.json")) if out.exists() else []
        if len(found) >= trials_before_kill and (trials_before_kill or _run_folders(out)):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (run_dir,) = _run_folders(out)
    result = cli("run", *TINY, "--losses", "dice,bce,focal", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(_metrics(run_dir), _metrics(reference_dir))
    assert RunStore(run_dir).check_tables() == {}


def test_a_trial_file_of_another_run_is_reported_with_a_note(tmp_path):
    here = write_run(tmp_path / "a", quality={"dice": 0.8}, seeds=(0,))
    other = write_run(tmp_path / "b", quality={"tversky": 0.7}, seeds=(0,))
    (stray,) = (other / "trials").glob("*.json")
    (here / "trials" / stray.name).write_bytes(stray.read_bytes())
    stored = RunStore(here).read()
    assert {record["loss"] for record in stored.records} == {"dice", "tversky"}
    assert any(f"planned trials (e.g. {stray.stem})" in note for note in stored.notes)


@pytest.mark.slow
def test_resume_writes_the_reference_panel_a_kill_before_it_left_out(cli, tiny_run):
    """Killed between the run folder's rename and its first panel: the resumed run had
    every trial but no panel/<split>__<dataset>.npz, so no prediction figure."""
    (reference,) = (tiny_run / "panel").glob("test__*.npz")
    expected = RunStore(tiny_run).read_panel(reference.stem)
    for path in (*trial_files(tiny_run), reference):
        path.unlink()
    result = cli("run", *TINY, "--resume", tiny_run)
    assert result.exit_code == 0, result.output
    restored = RunStore(tiny_run).read_panel(reference.stem)
    assert restored is not None
    assert set(restored) == {"images", "masks"}
    for key, array in expected.items():
        assert (restored[key] == array).all()


@pytest.mark.slow
def test_a_disk_full_mid_run_is_one_line_and_resume_finishes(cli, tmp_path, monkeypatch):
    """The disk filled up at the second trial's file: a traceback (OSError with no file
    name) instead of one line; the first trial is kept and --resume gives the numbers."""
    assert cli("run", *TINY, "--out", tmp_path / "reference").exit_code == 0
    (reference,) = (tmp_path / "reference").iterdir()
    with monkeypatch.context() as patch:
        _full_disk_for(patch, "__bce__")
        result = cli("run", *TINY, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    (run_dir,) = (tmp_path / "runs").iterdir()
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("losscmp: error: ") and "No space left on device" in line
    assert f"are saved in {run_dir}" in line
    # the options in the order --help lists them, not as typed
    options = [*TINY[:4], *TINY[6:10], *TINY[4:6], *TINY[10:]]
    resume = ["--out", str(tmp_path / "runs"), "--resume", str(run_dir)]
    command = shlex.join(["losscmp", "run", *options, *resume])
    assert line.endswith(f"; once it can be written, finish the run with: {command}"), line
    assert ["__dice__" in path.name for path in trial_files(run_dir)] == [True]
    result = cli("run", *TINY, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(_metrics(run_dir), _metrics(reference))


def test_a_run_with_a_damaged_file_and_a_failed_trial_gives_its_resume_once(cli, run_dir):
    """The failed trials' note gave the folder's --resume again under the damaged file's."""
    damaged, failed = trial_files(run_dir)[:2]
    damaged.write_bytes(b"{")
    failed.unlink()
    RunStore(run_dir).update_meta(failed_trials={failed.stem: "worker died twice"})
    result = cli("report", run_dir)
    assert result.exit_code == 0, result.output
    notes = _notes(result.stderr)
    assert " ".join(notes).count(f"--resume {run_dir}") == 1, notes
    (failed_note,) = [note for note in notes if "failed" in note]
    assert failed_note.startswith(f"{run_dir}: 1 trial failed (")
    assert failed_note.endswith(
        "worker died twice); the same 'losscmp run --resume' tries it again too"
    )
