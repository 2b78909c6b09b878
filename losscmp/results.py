"""The run folder as a small store: what ``run`` writes and ``report`` reads.

One source of truth, derived tables rebuilt from it:

- ``run.json`` and ``trials/<trial-id>.json`` are the truth. Each is written
  atomically (temp file, fsync, rename, fsync of the folder), so a killed
  process leaves the old file or the new one, never half of one.
- ``epochs.csv`` and ``images.csv`` are derived: rebuilt from the trial files
  after every trial (a run of so many trials that this would cost more than
  ``TABLES_SHARE`` of its time: every few trials, and at its end), on
  ``--resume`` and by ``report`` whenever they disagree with ``trials/`` (a
  process killed between a trial file and the rebuild leaves them stale;
  :meth:`RunStore.check_tables` finds that).
- A trial file that cannot be read back (0 bytes, corrupt JSON, wrong shape)
  is *damaged*: ``report`` leaves it out, reads the rest and names it in a note
  (it refuses only when every trial file is damaged), moving nothing; on ``--resume``
  :meth:`RunStore.finished_trials` moves it into ``trials/damaged/`` (never
  deletes it), records it in run.json and the trial is trained again.
- One writer at a time: :meth:`RunStore.lock` takes an exclusive ``flock`` on
  ``<run>/.losscmp.lock``; a second writer gets one line naming the first's pid.
  The lock dies with its process, so a killed run never leaves a stale lock.
- A run.json that is not what losscmp wrote (not JSON, an unknown schema version, a
  field of another type after a hand edit) is named as damaged, field by field.
- A run killed while writing its first run.json leaves only a temporary one:
  when that is complete, reading and ``--resume`` use it (the lock promotes
  it); when not, the folder is reported as "killed while starting".

This module is the only one that reads or writes a run folder; it imports
pandas and numpy only inside the functions that need them. See
docs/architecture.md for the layout.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import itertools
import json
import math
import os
import re
import secrets
import stat
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from losscmp.errors import LosscmpError, ParameterError
from losscmp.metric_names import BINARY_SCORE_NAMES, IMAGE_SCORE_NAMES, SCORE_NAMES
from losscmp.trial_names import trial_name

# 2: a test split (test_* epoch columns), thresholds, AP and ECE, the learning rate in a
# trial's identity (base_lr). Version 1 folders (validation only) are still read.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
RUN_FILE = "run.json"
TRIALS_DIR = "trials"
DAMAGED_DIR = "damaged"  # under trials/: damaged trial files set aside by --resume
DAMAGED_NAMED = 3  # damaged trial files a report names, a note each; the rest it counts
PANEL_DIR = "panel"
RECORD_DIRS = (TRIALS_DIR, PANEL_DIR)  # a run's records besides run.json: no output goes there
REPORT_PAGE = "report.html"  # the run's self-contained report, written after every run
SUMMARY_FILE = "summary.csv"  # derived: the report's table of this run
PLOTS_DIR = "plots"  # derived: report --plots
LOCK_FILE = ".losscmp.lock"
TABLES_LOCK_FILE = ".losscmp-tables.lock"
TEMP_SUFFIX = ".tmp"
BUILDING_SUFFIX = ".creating"  # a run folder is assembled as .<id>.creating, then renamed
# Building takes milliseconds; one this old was left by a process killed in that instant.
ABANDONED_BUILD_AGE_S = 600
TRIAL_STATUSES = ("finished", "diverged")
# A writer of many trials (``write_trial(..., defer_tables=True)``) rebuilds the derived
# tables after a trial only while that costs at most this share of its time: a rebuild
# rewrites every row of every trial so far, so one after each trial made a large run's
# bookkeeping grow with the square of its trials.
TABLES_SHARE = 0.05
SPLIT_SCORES = [*SCORE_NAMES, *IMAGE_SCORE_NAMES]
# Binary tasks: at the threshold chosen on validation that epoch, and threshold-free.
BINARY_SCORES = list(BINARY_SCORE_NAMES)
EPOCH_COLUMNS = [
    "dataset",
    "loss",
    "base_lr",
    "seed",
    "epoch",
    "train_loss",
    *(f"val_{name}" for name in SPLIT_SCORES),
    *(f"test_{name}" for name in SPLIT_SCORES),
    "threshold",
    *(f"{split}_{name}" for split in ("val", "test") for name in BINARY_SCORES),
    "lr",
    "seconds",
    "status",
]
IMAGE_COLUMNS = [
    "dataset", "loss", "base_lr", "seed", "which", "split", "image", "dice", "iou", "hd95", "nsd"
]  # fmt: skip
# split: val or test (the dataset's reported split); empty in rows written before it was
# recorded, which were all of validation images.
TEXT_COLUMNS = ("dataset", "loss", "status", "which", "split")


def shell_path(path: Path | str) -> str:
    """``path`` as one word of a command a note gives to paste ('losscmp run --resume X'):
    as it is where a shell reads it so, else in double quotes, which nest inside the
    single quotes such notes put around a command (shlex.quote's single quotes would not)."""
    text = str(path)
    if re.fullmatch(r"[\w@%+=:,./-]+", text, flags=re.ASCII):
        return text
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def slug(text: str) -> str:
    """A filesystem-safe form of a loss or dataset label."""
    cleaned = re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")
    return cleaned[:80] or "x"


def trial_id(dataset: str, loss: str, seed: int, lr: float | None = None) -> str:
    """Readable and unique: slugs can collide (cut, symbols folded); the hash cannot.

    ``lr`` (the trial's learning rate; schema 2) is part of the identity; version 1
    trials had none.
    """
    if lr is None:
        digest = hashlib.sha1(f"{dataset}\0{loss}".encode()).hexdigest()[:8]
        return f"{slug(dataset)}__{slug(loss)}__seed{seed}__{digest}"
    digest = hashlib.sha1(f"{dataset}\0{loss}\0{float(lr)!r}".encode()).hexdigest()[:8]
    return f"{slug(dataset)}__{slug(loss)}__lr{float(lr):g}__seed{seed}__{digest}"


def planned_trial_names(meta: dict[str, Any]) -> dict[str, str]:
    """run.json's planned trials by id, named as the run's lines name them: loss and seed,
    the rate and the dataset where the run had several (``trial_names.trial_name``).
    Rebuilt from the losses, datasets, seeds and rates it stores, as the plan made the
    ids; a trial id it cannot rebuild (a hand-made run.json) is not among them."""
    losses, datasets = meta.get("losses") or {}, meta.get("datasets") or {}
    rates = meta.get("learning_rates") or [None]  # version 1 ids hold no rate
    return {
        trial_id(dataset, loss, seed, rate): trial_name(
            loss, seed, rate, dataset, len(rates), len(datasets)
        )
        for dataset, loss, seed, rate in itertools.product(
            datasets, losses, meta.get("seeds") or [], rates
        )
    }


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be fsynced)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def make_folder(folder: Path) -> None:
    """``mkdir -p`` whose new folders survive a power cut: the folder holding each new one
    is fsynced, as a rename's is (else the first trial file, fsynced in a trials/ folder
    that no durable entry names, could vanish with that folder)."""
    folder = Path(folder)
    if folder.is_dir():
        return
    make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        if not folder.is_dir():
            raise
        return  # another process made it (and synced its parent)
    _fsync_dir(folder.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path = Path(path)
    make_folder(path.parent)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), 0o666 & ~_UMASK)  # mkstemp's 0600 is too private
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        if error.filename is None:  # a write or fsync (a full disk): say which file
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, not thread-safe


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json_text(payload))


def _pack(record: dict[str, Any]) -> bytes:
    """A trial record as a writer keeps it between rebuilds of the tables: compact JSON,
    compressed (~18x smaller than the parsed dicts); :func:`_unpack` gives it back equal."""
    return zlib.compress(json.dumps(record, separators=(",", ":")).encode(), 1)


def _unpack(packed: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(packed))


def json_text(payload: Any) -> str:
    """The text of a run folder's JSON files (a tracker copies trial records with it)."""
    return json.dumps(payload, indent=2, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def csv_text(frame) -> str:
    """A table's text as the run folder's CSV files hold it (summary.csv too) and
    ``report --csv`` writes it: the one statement of their format."""
    return frame.to_csv(index=False)


def atomic_write_csv(path: Path, frame) -> None:
    atomic_write_text(path, csv_text(frame))


def _temp_files(folder: Path, name: str | None = None) -> list[Path]:
    """Temporary files an atomic write left behind in ``folder`` (for ``name`` only if given)."""
    prefix = f".{name}." if name else "."
    try:
        return sorted(
            path
            for path in folder.iterdir()
            if path.name.startswith(prefix) and path.name.endswith(TEMP_SUFFIX)
        )
    except OSError:
        return []


# --------------------------------------------------------------------------- --out


def check_out_dir(out: Path | str) -> None:
    """Refuse an ``--out`` that cannot hold run folders, or that would put the run where it
    does not belong: the working folder itself (an empty name), or inside another run's
    folder (a --resume meant). Writes nothing that stays."""
    if not str(out).strip():  # ' ' too: a folder named by a blank no one means
        raise ParameterError("--out is empty; give the folder that holds run folders")
    out = Path(out)
    where = f"--out {out}"
    absolute = Path(os.path.abspath(out))
    try:
        name_max = os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for name in absolute.parts:
        if len(name.encode()) > name_max:
            raise ParameterError(
                f"{where} cannot be created: the name '{name[:40]}...' is longer than "
                f"{name_max} bytes"
            )
    if _path_kind(absolute) == "file":
        raise ParameterError(f"{where} is a file; it must be a folder for run folders")
    if _is_run_dir_here(absolute):
        raise ParameterError(
            f"{where} is a run folder (it has a run.json); a new run would be made inside it "
            f"(did you mean --resume {out}?)"
        )
    check_writable_folder(absolute, where)


def _is_run_dir_here(path: Path) -> bool:
    try:
        return is_run_dir(path)
    except OSError:  # unreadable: check_writable_folder says what is wrong with it
        return False


def check_writable_folder(folder: Path | str, where: str) -> None:
    """Refuse ``where`` unless ``folder`` is, or can be made as, a folder that takes new
    files: it, or else its nearest existing ancestor, is probed with a temporary file,
    removed at once. ``where`` starts each message (e.g. ``--out results``)."""
    probe = Path(os.path.abspath(folder))
    while True:
        kind = _path_kind(probe)
        if kind == "dir":
            break
        if kind == "file":
            raise ParameterError(f"{where} cannot be created: {probe} is a file, not a folder")
        if kind == "broken link":
            raise ParameterError(f"{where} cannot be created: {probe} is a broken link")
        if probe == probe.parent:
            raise ParameterError(f"{where} cannot be created: no existing folder above it")
        probe = probe.parent
    try:
        handle, temp = tempfile.mkstemp(dir=probe, prefix=".losscmp-probe-")
    except OSError as error:
        reason = error.strerror or str(error)
        # The kernel's reason can mislead alone (/proc answers 'No such file or directory')
        raise ParameterError(
            f"{where} is not writable: {probe} takes no new files ({reason})"
        ) from None
    os.close(handle)
    os.unlink(temp)


def _path_kind(path: Path) -> str:
    """dir, file, missing or broken link; 'file' too where a parent is not a folder."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        try:
            os.lstat(path)
        except OSError:
            return "missing"
        return "broken link"
    except NotADirectoryError:
        return "missing"  # a parent is a file: found when the walk reaches it
    except OSError:
        return "missing"
    return "dir" if stat.S_ISDIR(mode) else "file"


# --------------------------------------------------------------------------- run.json


def started_elsewhere(meta: dict[str, Any]) -> str | None:
    """The folder a run was started in (run.json's ``working_dir``), where it is not the
    current one: relative data paths were read from there."""
    started_in = meta.get("working_dir")
    return started_in if started_in and started_in != str(Path.cwd()) else None


def _written_elsewhere(run_dir: Path, holder: int | None) -> str:
    by = f" (pid {holder})" if holder else ""
    return (
        f"run folder {run_dir} is being written by another losscmp process{by}; "
        "wait for it to finish, or stop it first"
    )


def read_run_json(run_dir: Path) -> dict[str, Any]:
    """run.json checked (an object with this schema version); LosscmpError naming it if not.

    A run killed while writing its first run.json has only a temporary copy:
    when that copy is complete it is returned (``RunStore.lock`` promotes it).
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        temps = _temp_files(run_dir, RUN_FILE) if run_dir.is_dir() else []
        if not temps:
            raise LosscmpError(f"{run_dir} is not a losscmp run folder (no {RUN_FILE})")
        meta = _complete_temp_meta(temps)
        if meta is None:
            raise LosscmpError(
                f"{run_dir} holds only a half-written {RUN_FILE}: the run was killed while "
                "starting, before any trial finished; nothing to report or resume: start it "
                "again (this folder can be deleted)"
            )
        return meta
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LosscmpError(f"{path} cannot be read ({error.strerror or error})") from None
    return _parse_meta(path, data)


def _parse_meta(path: Path, data: bytes) -> dict[str, Any]:
    if not data.strip():
        raise LosscmpError(f"{path} is damaged (empty: {len(data)} bytes)")
    try:
        meta = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LosscmpError(f"{path} is damaged (not valid JSON)") from None
    if not isinstance(meta, dict):
        raise LosscmpError(f"{path} is damaged (not a JSON object)")
    version = meta.get("schema_version")
    if version not in READABLE_SCHEMAS:
        readable = " and ".join(map(str, READABLE_SCHEMAS))
        newer = isinstance(version, int) and version > max(READABLE_SCHEMAS)
        raise LosscmpError(
            f"{path} has schema version {version!r}; this losscmp reads versions {readable}"
            + (" (the run was made by a newer losscmp: update this one)" if newer else "")
        )
    problem = _meta_shape_problem(meta)
    if problem:
        raise LosscmpError(f"{path} is damaged ({problem})")
    return meta


_TEXT, _NUMBER, _FLAG, _NULL = (str,), (int, float), (bool,), (type(None),)
# The JSON types of the run.json fields that readers rely on; any may be absent (older
# runs lack some). A hand edit of another type is named as damage, not a traceback.
META_VALUES: dict[str, tuple[type, ...]] = {
    "run_id": _TEXT,
    "command": _TEXT + _NULL,
    "device": _TEXT,
    "git_commit": _TEXT + _NULL,
    "git_dirty": _FLAG + _NULL,
    "started_at": _TEXT,
    "finished_at": _TEXT + _NULL,
    "resumed_at": _TEXT + _NULL,
    "resume_command": _TEXT + _NULL,
    "working_dir": _TEXT,
}
# Containers: field -> (list or dict, the types of its items).
META_CONTAINERS: dict[str, tuple[type, tuple[type, ...]]] = {
    "config": (dict, _TEXT + _NUMBER + _FLAG + _NULL + (list,)),
    "option_sources": (dict, _TEXT),
    "model": (dict, _TEXT + _NUMBER + _NULL + (list,)),
    "losses": (dict, (dict,)),
    "datasets": (dict, (dict,)),
    "trials": (list, _TEXT),
    "seeds": (list, (int,)),
    "learning_rates": (list, _NUMBER),
    "execution": (dict, _TEXT + _NUMBER + _FLAG + _NULL),
    "versions": (dict, _TEXT),
    "failed_trials": (dict, _TEXT),
    "damaged_trials": (list, (dict,)),
    "tracking": (dict, (dict,)),
}
# The fields of the objects inside run.json that readers rely on.
EXECUTION_VALUES: dict[str, tuple[type, ...]] = {
    "executor": _TEXT,
    "jobs": (int,),
    "threads": (int,),
    "fused": _FLAG,
    "ray_address": _TEXT + _NULL,
    "fused_adamw": _FLAG,
    "fused_per_copy": _FLAG,
    "fused_own_weights": _FLAG,
    "fused_group_size": (int,),
}
LOSS_VALUES: dict[str, tuple[type, ...]] = {"name": _TEXT, "params": (dict,)}
DATASET_VALUES: dict[str, tuple[type, ...]] = {
    "spec": _TEXT,
    "mode": _TEXT,
    "class_names": (list,),
    "fingerprint": _TEXT,
}


def _meta_shape_problem(meta: dict[str, Any]) -> str | None:
    """What in run.json is not of the type losscmp wrote (a hand edit), or None."""
    checks = [("", meta, META_VALUES), ("'execution' ", meta.get("execution"), EXECUTION_VALUES)]
    for name, fields in (("losses", LOSS_VALUES), ("datasets", DATASET_VALUES)):
        if isinstance(meta.get(name), dict):
            checks += [(f"'{name}' {key!r} ", entry, fields) for key, entry in meta[name].items()]
    problems = (_fields_problem(where, values, shape) for where, values, shape in checks)
    shape_problem = _containers_problem(meta) or next(filter(None, problems), None)
    return shape_problem or _group_size_problem(meta.get("execution"))


def _group_size_problem(execution: dict[str, Any] | None) -> str | None:
    """A fused group's cap that no losscmp writes: JSON's true passes the type check as 1
    (groups of one, which round otherwise than the run's), and one below 1 left a resumed
    run's missing trials untrained, exit status 0."""
    size = (execution or {}).get("fused_group_size", 1)
    if isinstance(size, bool) or size < 1:
        return f"'execution' 'fused_group_size' is {_json_kind(size)}, not a count of 1 or more"
    return None


def _containers_problem(meta: dict[str, Any]) -> str | None:
    for name, (container, item_types) in META_CONTAINERS.items():
        if name not in meta:
            continue
        value = meta[name]
        if not isinstance(value, container):
            return f"'{name}' is {_json_kind(value)}, not {_json_kind(container())}"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if not isinstance(item, item_types):
                where = f"item {key}" if isinstance(value, list) else repr(key)
                return f"'{name}' holds {_json_kind(item)} at {where}"
    return None


def _fields_problem(
    where: str, fields: dict[str, Any] | None, shape: dict[str, tuple[type, ...]]
) -> str | None:
    for name, types in shape.items():
        if fields and name in fields and not isinstance(fields[name], types):
            return f"{where}'{name}' is {_json_kind(fields[name])}"
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return "a list" if isinstance(value, list) else "an object"


def _complete_temp_meta(temps: Sequence[Path]) -> dict[str, Any] | None:
    """The newest temporary run.json that parses as a whole run.json, or None."""
    for temp in sorted(temps, key=_mtime, reverse=True):
        try:
            return _parse_meta(temp, temp.read_bytes())
        except (LosscmpError, OSError):
            continue
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def is_run_dir(path: Path) -> bool:
    """A folder with a run.json, or with only the temporary one a killed start leaves."""
    path = Path(path)
    return (path / RUN_FILE).is_file() or (path.is_dir() and bool(_temp_files(path, RUN_FILE)))


def enclosing_run_dir(path: Path) -> Path | None:
    """The run folder that ``path`` lies inside, spelled as ``path`` is where it can be
    ('.' has no parents to spell it with); None if none."""
    folders = [*path.parents, *path.absolute().parents]
    return next((folder for folder in folders if is_run_dir(folder)), None)


def check_record_folders(run_dir: Path) -> None:
    """Refuse a run whose trials/ or panel/ is there but is no folder (a file put in its
    place): a resume found no finished trial in it, trained every one again and failed
    with a traceback writing the first."""
    for name in RECORD_DIRS:
        path = Path(run_dir) / name
        if _path_kind(path) in ("file", "broken link"):
            raise LosscmpError(
                f"{path} is not a folder: the run's records go there; move it aside to "
                "resume the run"
            )


def runs_newest_first(folder: Path) -> list[Path]:
    """The run folders (with a run.json) directly inside ``folder``, the newest first.

    Newest by run.json's start time: a run folder renamed by hand ('baseline') would come
    after every run id (YYYYmmdd-HHMMSS-...) by name. Then by name (the run id), then by
    when run.json was last written.
    """
    return sorted(
        runs_in(folder),
        key=lambda run: (_started(run), run.name, _mtime(run / RUN_FILE)),
        reverse=True,
    )


def folders_of_runs_in(folder: Path) -> list[Path]:
    """The subfolders of ``folder`` that hold run folders (results/pets/, results/synthetic/:
    an --out per experiment), the one with the newest run first, then by name."""
    try:
        children = [child for child in Path(folder).iterdir() if not child.name.startswith(".")]
    except OSError:
        return []
    newest = {child: max(map(_started, runs_in(child)), default=None) for child in children}
    holding = [child for child, started in newest.items() if started is not None]
    return sorted(holding, key=lambda child: (-newest[child], child.name))


def has_finished_trial(run_dir: Path) -> bool:
    """Whether a report of ``run_dir`` has anything to show: a trial file, or (a run made
    before trial files) an epochs table."""
    run_dir = Path(run_dir)
    if any((run_dir / TRIALS_DIR).glob("*.json")):
        return True
    epochs = run_dir / EPOCH_TABLE.file  # defined below; read when called
    try:
        with epochs.open("rb") as table:
            table.readline()  # the header: a run writes it as its folder is made
            return bool(table.readline().strip())
    except OSError:
        return False


def runs_in(folder: Path) -> list[Path]:
    """The run folders (with a run.json) directly inside ``folder``; none if unreadable."""
    try:
        return [
            child
            for child in Path(folder).iterdir()
            if not child.name.startswith(".") and (child / RUN_FILE).is_file()  # not .creating
        ]
    except OSError:
        return []


# The subfolders holding runs that a refusal names; the rest it counts.
NAMED_FOLDERS = 5


def refuse_not_a_run(path: Path, given_as: str, retry: str, folder_of_runs: bool) -> None:
    """Refuse a ``path`` that stands for no run: missing, a file, a file or folder inside a
    run (run.json, trials/), a folder holding no run, or one whose subfolders hold runs (an
    --out per experiment). With ``folder_of_runs`` the folder runs are made in (``--out``)
    stands for its newest run (``report``); without, it is refused too (``--resume``).

    ``given_as``: how the line names ``path`` ('--resume X', or 'X'); ``retry``: the
    command the "did you mean" puts before a path ('losscmp report', '--resume'). One place
    for both commands, so a path wrong for both is told alike."""
    path = Path(path)
    if is_run_dir(path):
        return
    if not path.exists():
        raise LosscmpError(f"{given_as} does not exist")
    runs = runs_newest_first(path)
    if runs and folder_of_runs:
        return
    if runs:
        raise LosscmpError(
            f"{given_as} is a folder of runs, not a run folder (did you mean "
            f"'{retry} {shell_path(runs[0])}', its newest run?)"
        )
    enclosing = enclosing_run_dir(path)
    if enclosing is not None:
        what = "a file" if path.is_file() else "a folder"
        raise LosscmpError(
            f"{given_as} is {what} inside the run folder {enclosing} "
            f"(did you mean '{retry} {shell_path(enclosing)}'?)"
        )
    expected = f"expected a folder with {RUN_FILE}"
    if folder_of_runs:
        expected += ", or one holding such folders"
    if not path.is_dir():
        raise LosscmpError(
            f"{given_as} is a file, not a run folder ({expected}; 'losscmp run' makes them)"
        )
    holding = folders_of_runs_in(path)  # the one with the newest run first
    if holding:
        raise LosscmpError(
            f"{given_as} is not a run folder, but its subfolders hold runs: "
            f"{_listed(holding)} (did you mean {_newest_in(holding, retry, folder_of_runs)}?)"
        )
    raise LosscmpError(
        f"{given_as} is not a losscmp run folder ({expected}; 'losscmp run' makes them)"
    )


def _listed(folders: Sequence[Path]) -> str:
    """'a, b and c' of the folders' names, the first NAMED_FOLDERS by name, the rest counted."""
    names = sorted(shell_path(folder.name) for folder in folders)
    if len(names) > NAMED_FOLDERS:
        names = [*names[: NAMED_FOLDERS - 1], f"{len(names) - NAMED_FOLDERS + 1} more"]
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def _newest_in(holding: Sequence[Path], retry: str, folder_of_runs: bool) -> str:
    """The command to retry with: the subfolder with the newest run, where a folder of runs
    stands for its newest; else that run itself."""
    if folder_of_runs:
        return f"'{retry} {shell_path(holding[0])}'"
    newest = runs_newest_first(holding[0])[0]
    return f"'{retry} {shell_path(newest)}', the newest run in them"


def _started(run_dir: Path) -> float:
    """run.json's ``started_at`` as a timestamp; -inf where it cannot be read."""
    try:
        started = json.loads((run_dir / RUN_FILE).read_bytes()).get("started_at")
        return datetime.fromisoformat(started).timestamp()
    except (OSError, ValueError, TypeError, AttributeError):
        return -math.inf


# --------------------------------------------------------------------------- trial records


@dataclass(frozen=True)
class DamagedTrial:
    """A trial file that cannot be read back, and why."""

    path: Path  # where it was found (trials/<name>.json)
    reason: str
    in_rows: bool = False  # the file reads, but a row of its epochs/images is wrong
    moved_to: Path | None = None  # trials/damaged/... once set aside

    @property
    def message(self) -> str:
        if self.in_rows:
            return f"{self.path.parent} is damaged ({self.path.name}: {self.reason})"
        return f"{self.path} is damaged ({self.reason})"


@dataclass
class TrialScan:
    """The trial files of a run: good records by trial id, and the damaged files."""

    records: dict[str, Any] = field(default_factory=dict)  # parsed, or packed if asked
    damaged: list[DamagedTrial] = field(default_factory=list)


class _Damage(Exception):
    def __init__(self, reason: str, in_rows: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.in_rows = reason, in_rows


EPOCH_NUMBERS = ("train_loss", "lr", "seconds", "threshold")  # plus every val_*, test_* column
IMAGE_NUMBERS = ("dice", "iou", "hd95", "nsd")


# A trial record's own numbers (null where they do not apply): whether each is whole.
TRIAL_NUMBERS = {
    "seconds": False,
    "best_epoch": True,
    "diverged_epoch": True,
    "gpu_peak_mib": False,
}


def check_trial_record(record: Any, expected_id: str | None = None) -> None:
    """Raise ``_Damage`` unless ``record`` has the shape every reader relies on."""
    if not isinstance(record, dict):
        raise _Damage(f"not a trial record: a JSON {type(record).__name__}")
    for key in ("trial_id", "dataset", "loss", "seed", "status", "epochs", "images"):
        if key not in record:
            raise _Damage(f"not a trial record: no '{key}'")
    for key in ("trial_id", "dataset", "loss", "status"):
        if not isinstance(record[key], str) or not record[key]:
            raise _Damage(f"'{key}' is {record[key]!r}, not a name")
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _Damage(f"'seed' is {seed!r}, not a whole number >= 0")
    if record["status"] not in TRIAL_STATUSES:
        raise _Damage(f"'status' is {record['status']!r}, not one of {', '.join(TRIAL_STATUSES)}")
    base_lr = record.get("base_lr")
    if base_lr is not None and not (
        _is_number_or_null(base_lr) and math.isfinite(base_lr) and base_lr > 0
    ):
        raise _Damage(f"'base_lr' is {base_lr!r}, not a positive number")
    expected = trial_id(record["dataset"], record["loss"], seed, base_lr)
    if record["trial_id"] != expected or (expected_id is not None and expected_id != expected):
        raise _Damage(
            "its trial_id, file name, dataset, loss, learning rate and seed do not agree "
            "(a copied or renamed trial file?)"
        )
    for key, whole in TRIAL_NUMBERS.items():
        value = record.get(key)
        if value is not None and not (_is_number_or_null(value, whole) and 0 <= value < 1e15):
            raise _Damage(f"'{key}' is {value!r}, not a {'whole ' if whole else ''}number >= 0")
    if not isinstance(record.get("loss_params", {}), dict):
        raise _Damage(f"'loss_params' is {record['loss_params']!r}, not an object")
    if record["status"] == "finished" and not record["epochs"]:
        raise _Damage("a finished trial with no epochs")
    _check_rows(record["epochs"], "epochs", ("epoch",), EPOCH_NUMBERS, ("val_", "test_"))
    _check_rows(record["images"], "images", ("which", "image"), IMAGE_NUMBERS, None)
    for row in record["images"]:
        if row.get("which") not in ("best", "final"):
            raise _Damage(f"images row has which={row.get('which')!r}", in_rows=True)
        if row.get("split", "val") not in ("val", "test"):
            raise _Damage(f"images row has split={row.get('split')!r}", in_rows=True)


def _check_rows(
    rows: Any,
    key: str,
    identity: tuple[str, ...],
    numbers: tuple[str, ...],
    prefix: tuple[str, ...] | None,
) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise _Damage(f"'{key}' is not a list of rows")
    seen = set()
    for index, row in enumerate(rows, start=1):
        ident = tuple(row.get(name) for name in identity)
        if any(value is None for value in ident):
            raise _Damage(f"{key} row {index} has no {' or '.join(identity)}", in_rows=True)
        if ident in seen:
            raise _Damage(f"{key} row {index} repeats {_describe(identity, ident)}", in_rows=True)
        seen.add(ident)
        for name, value in row.items():
            numeric = name in numbers or name in ("epoch", "image")
            numeric = numeric or (prefix is not None and str(name).startswith(prefix))
            if numeric and not _is_number_or_null(value, whole=name in ("epoch", "image")):
                raise _Damage(
                    f"{key} row {index} has {name}={value!r}, not a number "
                    f"(column {name} must hold numbers)",
                    in_rows=True,
                )
            if numeric and _is_infinite(value):
                raise _Damage(f"{key} row {index} has {name}={value!r}, not finite", in_rows=True)


def _describe(names: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in zip(names, values, strict=True))


def _is_number_or_null(value: Any, whole: bool = False) -> bool:
    if value is None:
        return not whole
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not whole or (isinstance(value, int) or (math.isfinite(value) and value.is_integer()))


def _is_infinite(value: Any) -> bool:
    """inf or -inf: no score, loss, rate or time the trainer writes is (a score it could
    not compute is NaN or null), and a hand-edited 'Infinity' would otherwise be the best
    validation epoch of its trial, silently choosing where the report reads test."""
    return isinstance(value, float) and math.isinf(value)


def read_trial_file(path: Path) -> dict[str, Any]:
    """One trial record; ``_Damage`` when it cannot be read back."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _Damage(f"cannot be read: {error.strerror or error}") from None
    if not data.strip():
        raise _Damage(f"empty: {len(data)} bytes")
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Damage("not valid JSON") from None
    check_trial_record(record, expected_id=path.stem)
    return record


def _damage_reason(path: Path) -> str:
    """Why a file set aside in trials/damaged/ was damaged, read again from it."""
    try:
        read_trial_file(path)
    except _Damage as damage:
        return damage.reason
    return "damaged"


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableSpec:
    """A derived table: its file, the trial record's key and what a reader relies on."""

    name: str  # the file's stem and the trial record's key
    columns: Sequence[str]  # the writer's columns, in order
    key: tuple[str, ...]  # one row per key
    required: tuple[str, ...]  # must be present
    filled: tuple[str, ...]  # must have a value in every row
    numeric: tuple[str, ...]  # must hold numbers when present
    numeric_prefix: tuple[str, ...] | None = None  # ... and every column starting with one

    @property
    def file(self) -> str:
        return f"{self.name}.csv"


EPOCH_TABLE = TableSpec(
    name="epochs",
    columns=EPOCH_COLUMNS,
    key=("dataset", "loss", "base_lr", "seed", "epoch"),
    required=("dataset", "loss", "seed", "epoch", "val_dice"),
    filled=("dataset", "loss", "seed", "epoch"),
    numeric=("base_lr", "seed", "epoch", "train_loss", "lr", "seconds", "threshold"),
    numeric_prefix=("val_", "test_"),
)
IMAGE_TABLE = TableSpec(
    name="images",
    columns=IMAGE_COLUMNS,
    key=("dataset", "loss", "base_lr", "seed", "which", "image"),
    required=("dataset", "loss", "seed", "which"),
    filled=("dataset", "loss", "seed", "which"),
    numeric=("base_lr", "seed", "image", "dice", "iou", "hd95", "nsd"),
)
TABLES = (EPOCH_TABLE, IMAGE_TABLE)


class _TableColumns:
    """One table's columns, gathered trial by trial: each trial's rows become one short
    array per column (numbers as float64 or int64, anything else as objects), so a table is
    never held as a dict per row (~0.6 KB each: images.csv has one per test image per trial,
    twice). :meth:`frame` gives the frame ``pandas.DataFrame`` makes of those dicts."""

    def __init__(self) -> None:
        self.chunks: dict[str, list] = {}
        self.length = 0

    def add(self, identity: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
        import numpy as np

        if not rows:
            return
        for key in set(identity).union(*rows) - self.chunks.keys():
            # a column new here is missing (NaN) in every row before, as in a dict per row
            self.chunks[key] = [np.full(self.length, math.nan)] if self.length else []
        for key, chunks in self.chunks.items():
            # a row's own value wins over the trial's, as in {**identity, **row}
            missing = identity.get(key, math.nan)
            chunks.append(_column_chunk([row.get(key, missing) for row in rows]))
        self.length += len(rows)

    def frame(self):
        import pandas as pd

        return pd.DataFrame({key: _joined(chunks) for key, chunks in self.chunks.items()})


def _column_chunk(values: list[Any]):
    """A trial's values of one column: a float64 (int64) array when all are floats (ints),
    so that numbers cost 8 bytes; else the objects themselves, repeated text held once."""
    import numpy as np

    kinds = set(map(type, values))
    with contextlib.suppress(OverflowError):
        if kinds == {float}:
            return np.array(values, dtype=np.float64)
        if kinds == {int}:
            return np.array(values, dtype=np.int64)
    seen: dict[str, str] = {}
    chunk = np.empty(len(values), dtype=object)
    chunk[:] = [seen.setdefault(value, value) if type(value) is str else value for value in values]
    return chunk


def _joined(chunks: list):
    """A column from its chunks, typed as pandas types the same values in one list:
    numbers only join as numbers (ints with floats become floats, as pandas makes them);
    otherwise pandas infers the type of all values together (e.g. floats and None: float)."""
    import numpy as np

    if all(chunk.dtype != object for chunk in chunks):
        return np.concatenate(chunks)
    return np.concatenate([chunk.astype(object) for chunk in chunks]).tolist()


def _ordered(frame, columns: Sequence[str]):
    """Known columns first in a fixed order, extra ones (per-class) after, sorted."""
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    extra = sorted(set(frame.columns) - set(columns))
    return frame[list(columns) + extra]


def table_frames(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Each table (by name) as the writer builds it from trial records given in trial id
    order; one pass, so ``records`` may be read one at a time."""
    columns = {spec.name: _TableColumns() for spec in TABLES}
    for record in records:
        identity = {
            "dataset": record["dataset"],
            "loss": record["loss"],
            "base_lr": record.get("base_lr"),
            "seed": record["seed"],
        }
        for spec in TABLES:
            columns[spec.name].add(identity, record[spec.name])
    return {spec.name: _ordered(columns[spec.name].frame(), spec.columns) for spec in TABLES}


def _by_trial_id(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda record: record["trial_id"])


def read_table_csv(path: Path):
    """A table CSV with text columns as text; LosscmpError naming the file when damaged."""
    import pandas as pd

    text = {column: "str" for column in TEXT_COLUMNS}
    try:
        with warnings.catch_warnings():
            # index_col=False: a row with an extra field must not become the index
            # (shifting every column); pandas warns instead, which we refuse.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, index_col=False, dtype=text)
    except pd.errors.EmptyDataError:
        raise LosscmpError(f"{path} is damaged (empty: no header)") from None
    except pd.errors.ParserWarning:
        raise LosscmpError(f"{path} is damaged (a row has more fields than the header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise LosscmpError(f"{path} is damaged ({str(error).splitlines()[0]})") from None


def checked_table(frame, spec: TableSpec, source: Path):
    """Required columns present and filled, numeric columns numbers, one row per key;
    else a LosscmpError naming ``source``."""
    import pandas as pd

    missing = [column for column in spec.required if column not in frame.columns]
    if missing:
        raise LosscmpError(f"{source} is damaged (no column {', '.join(missing)})")
    for column in spec.filled:
        empty = int(frame[column].isna().sum())
        if empty:
            raise LosscmpError(f"{source} is damaged ({empty} row(s) with no {column})")
    numeric = [
        column
        for column in frame.columns
        if column in spec.numeric
        or (spec.numeric_prefix is not None and str(column).startswith(spec.numeric_prefix))
    ]
    converted = {}
    for column in numeric:
        try:
            converted[column] = pd.to_numeric(frame[column], errors="raise")
        except (ValueError, TypeError) as error:
            reason = str(error).splitlines()[0] if str(error) else "not a number"
            raise LosscmpError(
                f"{source} is damaged (column {column} must hold numbers: {reason})"
            ) from None
    for column, values in converted.items():
        infinite = int(values.isin([math.inf, -math.inf]).sum())
        if infinite:
            raise LosscmpError(f"{source} is damaged ({infinite} row(s) with an infinite {column})")
    frame = frame.assign(**converted)
    key = [column for column in spec.key if column in frame.columns]
    repeated = frame[frame.duplicated(key, keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        raise LosscmpError(
            f"{source} is damaged ({len(repeated)} rows share "
            f"{_describe(key, [first[column] for column in key])}; each must appear once)"
        )
    return frame


def _canonical_csv(frame, spec: TableSpec) -> str:
    """Order-free text of a table: empty columns dropped, columns and rows sorted."""
    frame = frame.dropna(axis=1, how="all")
    frame = frame[sorted(frame.columns)]
    key = [column for column in spec.key if column in frame.columns]
    frame = frame.sort_values(key, kind="stable") if key else frame
    return frame.to_csv(index=False)


def _trial_keys(frame) -> set[tuple]:
    columns = ["dataset", "loss", "seed"]
    if frame.empty or not set(columns) <= set(frame.columns):
        return set()
    rates = frame["base_lr"] if "base_lr" in frame.columns else [None] * len(frame)
    return {
        (str(d), str(loss), _seed_key(seed), _rate_text(rate))
        for (d, loss, seed), rate in zip(frame[columns].itertuples(False), rates, strict=True)
    }


def _seed_key(seed: Any) -> int | str:
    """A row cut short (a table truncated on disk) has no seed: its key then matches no
    trial, so the table counts as stale and is rebuilt, instead of failing here."""
    try:
        return int(seed)
    except (TypeError, ValueError):
        return str(seed)


def _rate_text(rate: Any) -> str:
    try:
        return "" if rate is None or math.isnan(float(rate)) else f"{float(rate):g}"
    except (TypeError, ValueError):
        return str(rate)


def _name_trials(keys: Iterable[tuple]) -> str:
    keys = sorted(keys)
    shown = ", ".join(
        f"{loss}{f' lr {rate}' if rate else ''} seed {seed} on {dataset}"
        for dataset, loss, seed, rate in keys[:3]
    )
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def _remove_abandoned_builds(out: Path) -> None:
    """Delete the hidden half-built run folders that killed starts left in ``out``.

    Only old ones holding nothing but run.json and its temporary copies: a younger
    one may be another process's run in the instant before its rename."""
    now = time.time()
    for folder in out.glob(f".*{BUILDING_SUFFIX}"):
        try:
            if not folder.is_dir() or folder.is_symlink():
                continue
            if now - folder.stat().st_mtime < ABANDONED_BUILD_AGE_S:
                continue
            files = list(folder.iterdir())
            ours = {folder / RUN_FILE, *_temp_files(folder, RUN_FILE)}
            if not set(files) <= ours:
                continue
            for path in files:
                path.unlink()
            folder.rmdir()
        except OSError:
            continue  # another process removed it, or it is not ours to remove


# --------------------------------------------------------------------------- panels


def _load_npz(path: Path) -> dict[str, Any]:
    """Every array of an .npz archive; ``_Damage`` when it is not one. Checked as a zip
    first: numpy reads any other file as a pickle and, refused, advises trusting it."""
    import zipfile
    import zlib

    import numpy as np

    try:
        if not zipfile.is_zipfile(path):
            raise _Damage("not an .npz archive")
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if "allow_pickle" in str(error):
            raise _Damage("it holds Python objects, not plain arrays") from None
        raise _Damage(str(error).splitlines()[0] if str(error) else "unreadable") from None


# What a panel file holds: array name -> its dimensions (k images of H x W, 3 colours).
PANEL_ARRAYS = {"images": ("k", "H", "W", 3), "masks": ("k", "H", "W"), "pred": ("k", "H", "W")}


def panel_problem(arrays: dict[str, Any]) -> str | None:
    """What in a panel's arrays is not what losscmp writes (a hand edit, another file
    under its name), or None: a reader indexes them as images without looking."""
    import numpy as np

    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):  # a member that is not a .npy: raw bytes
            return f"'{name}' is not an array"
    seen: dict[str, Any] = {}  # k, H, W -> (size, the array that set it)
    for name, dims in PANEL_ARRAYS.items():
        if name not in arrays:
            continue
        array = arrays[name]
        wanted = f"not ({', '.join(map(str, dims))})"
        if array.dtype.kind not in "biuf":
            return f"'{name}' holds {array.dtype} values, not numbers"
        if array.ndim != len(dims) or 0 in array.shape:
            return f"'{name}' has shape {array.shape}, {wanted}"
        for dim, size in zip(dims, array.shape, strict=True):
            if isinstance(dim, int) and size != dim:
                return f"'{name}' has shape {array.shape}, {wanted}"
            first = seen.setdefault(str(dim), (size, name))
            if first[0] != size:
                other = arrays[first[1]].shape
                return f"'{name}' has shape {array.shape} where '{first[1]}' has {other}"
    split = arrays.get("split")
    if split is not None and (np.ndim(split) != 0 or str(split) not in ("val", "test")):
        return f"'split' is {split!r}, not 'val' or 'test'"
    return None


# --------------------------------------------------------------------------- the store


@dataclass
class StoredRun:
    """One run folder read back: run.json, good trial records, the tables, notes to show,
    and the failed trials no record has replaced ({id: reason}): data, not a note, so each
    output says them its own way (``losscmp run``'s last line names them; report notes them)."""

    run_dir: Path
    meta: dict[str, Any]
    records: list[dict[str, Any]]
    epochs: Any  # pandas.DataFrame, checked
    images: Any  # pandas.DataFrame, checked
    notes: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # The damaged trial files left out (``read(damaged_ok=True)`` only); their trials are
    # unfinished until ``--resume`` sets the files aside and trains them again.
    damaged: list[DamagedTrial] = field(default_factory=list)


class RunStore:
    """Reads and writes one run folder (see the module docstring for the guarantees)."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.trials_dir = self.run_dir / TRIALS_DIR
        self.damaged_dir = self.trials_dir / DAMAGED_DIR
        self.plots_dir = self.run_dir / PLOTS_DIR
        self.lock_path = self.run_dir / LOCK_FILE
        self.quarantined: list[DamagedTrial] = []  # set aside by the last finished_trials()
        self._lock_handle: int | None = None
        self._lock_depth = 0
        # While this store holds the lock it is the folder's only writer: the good trial
        # records it read or wrote stay true, and a rebuild need not read trials/ again.
        # Kept packed (_pack): parsed, a record's per-image rows cost ~0.5 KB each, and a
        # run of hundreds of trials on 1000 test images grew by 160 MiB per 100 trials.
        self._records: dict[str, bytes] | None = None
        self.clock = time.monotonic  # times the rebuilds (tests set their own)
        self._tables_cost = 0.0  # seconds the last rebuild of the tables took
        self._tables_built_at: float | None = None  # when it ended (self.clock)
        self._tables_behind = 0  # trials written since, not in the tables yet

    @classmethod
    def create(
        cls, out: Path | str, run_id: str | None = None, meta: dict[str, Any] | None = None
    ) -> RunStore:
        """A new run folder ``out/<run_id>`` (``out`` is made if missing), holding ``meta``
        as its run.json from the first instant it exists: it is built under a hidden
        name and renamed, so a kill leaves no folder that ``--resume`` could not read
        (the hidden ones such kills left are deleted here, once abandoned)."""
        run_dir = Path(out) / (run_id or new_run_id())
        building = run_dir.with_name(f".{run_dir.name}{BUILDING_SUFFIX}")
        try:
            make_folder(Path(out))
            _remove_abandoned_builds(Path(out))
            if run_dir.exists():
                raise FileExistsError
            building.mkdir()
            if meta is not None:
                cls(building).write_meta(meta)
            os.rename(building, run_dir)
            _fsync_dir(run_dir.parent)
        except FileExistsError:
            raise LosscmpError(f"run folder {run_dir} exists already") from None
        except OSError as error:
            raise LosscmpError(
                f"cannot create run folder {run_dir}: {error.strerror or error}"
            ) from None
        return cls(run_dir)

    # ----------------------------------------------------------------- lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunStore]:
        """Exclusive, non-blocking: a second writer (any process) gets a LosscmpError.

        Re-entrant within one store object. On entry, a complete temporary
        run.json left by a killed start is promoted and stale temp files removed.
        """
        if self._lock_handle is not None:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        if not self.run_dir.is_dir():
            raise LosscmpError(f"{self.run_dir} is not a folder")
        try:
            handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise LosscmpError(
                f"cannot write into run folder {self.run_dir}: {error.strerror or error}"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(handle)
            os.close(handle)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LosscmpError(
                    f"cannot lock run folder {self.run_dir}: {error.strerror or error}"
                ) from None
            raise LosscmpError(_written_elsewhere(self.run_dir, holder)) from None
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self._lock_handle, self._lock_depth = handle, 1
        try:
            self._recover()
            yield self
        finally:
            self._lock_handle, self._lock_depth, self._records = None, 0, None
            with contextlib.suppress(OSError):
                os.ftruncate(handle, 0)
            os.close(handle)  # releases the flock

    def refuse_if_locked(self) -> None:
        """Refuse as ``lock`` would, without taking the lock: a dry run writes nothing."""
        holder = self.locked_by()
        if holder is not None:  # -1: locked by a process that wrote no pid
            raise LosscmpError(_written_elsewhere(self.run_dir, holder if holder > 0 else None))

    def locked_by(self) -> int | None:
        """The pid of the process holding the lock, or None when the folder is free."""
        if self._lock_handle is not None:
            return os.getpid()
        try:
            handle = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(handle) or -1
        else:
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
        finally:
            os.close(handle)

    def _recover(self) -> None:
        """Under the lock: promote a complete temporary run.json, drop stale temp files."""
        meta_path = self.run_dir / RUN_FILE
        temps = _temp_files(self.run_dir, RUN_FILE)
        if temps and not meta_path.is_file():
            meta = _complete_temp_meta(temps)
            if meta is not None:
                atomic_write_json(meta_path, meta)
        # plots/ too: a killed 'report --plots' left its half-written PNG there for good
        for folder in (self.run_dir, self.trials_dir, self.run_dir / PANEL_DIR, self.plots_dir):
            for temp in _temp_files(folder):
                if temp.name.startswith(".losscmp"):
                    continue
                with contextlib.suppress(OSError):
                    temp.unlink()

    # ----------------------------------------------------------------- run.json

    def read_meta(self) -> dict[str, Any]:
        return read_run_json(self.run_dir)

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / RUN_FILE, {"schema_version": SCHEMA_VERSION, **meta})

    def update_meta(self, **changes: Any) -> None:
        meta = self.read_meta()
        meta.update(changes)
        atomic_write_json(self.run_dir / RUN_FILE, meta)

    def record_failed(self, trial: str, reason: str) -> None:
        """A trial that could not be trained (its worker died twice): run.json's
        ``failed_trials`` {id: reason}; ``--resume`` retries it, and a later
        ``write_trial`` of it removes the entry."""
        meta = self.read_meta()
        failed = dict(meta.get("failed_trials") or {})
        failed[trial] = str(reason)
        self.update_meta(failed_trials=failed)

    def failed_trials(self) -> dict[str, str]:
        """run.json's failed trials that no record has replaced since: {id: reason}, the
        trials ``--resume`` trains again (a ``write_trial`` that could not update run.json
        leaves a trained trial's entry behind: its record counts)."""
        meta = self.read_meta()
        if not _recorded_failures(meta):
            return {}
        return _pending_failures(meta, set(self.scan_trials().records))

    # ----------------------------------------------------------------- trials

    def scan_trials(self, *, packed: bool = False) -> TrialScan:
        """Read every ``trials/*.json``; moves nothing. ``packed``: each record kept packed
        (:func:`_pack`) as soon as it is read, never all of them parsed at once."""
        scan = TrialScan()
        if not self.trials_dir.is_dir():
            return scan
        for path in sorted(self.trials_dir.glob("*.json")):
            if not path.is_file():
                continue
            try:
                record = read_trial_file(path)
            except _Damage as damage:
                scan.damaged.append(DamagedTrial(path, damage.reason, damage.in_rows))
                continue
            scan.records[path.stem] = _pack(record) if packed else record
        return scan

    def load_trials(self) -> list[dict[str, Any]]:
        """Every trial record, sorted by id; LosscmpError naming a damaged file."""
        scan = self.scan_trials()
        if scan.damaged:
            raise LosscmpError(self._damaged_message(scan.damaged))
        return [scan.records[key] for key in sorted(scan.records)]

    def _damaged_message(self, damaged: Sequence[DamagedTrial]) -> str:
        more = f" (and {len(damaged) - 1} more damaged trial file(s))" if len(damaged) > 1 else ""
        return (
            f"{damaged[0].message}{more}; 'losscmp run --resume {shell_path(self.run_dir)}' sets "
            f"damaged files aside in {self.damaged_dir} and trains those trials again"
        )

    def _damaged_notes(self, damaged: Sequence[DamagedTrial]) -> list[str]:
        """The notes of a report that left damaged trial files out: one a file (the first
        DAMAGED_NAMED; the rest counted), naming it and what is wrong, and the one
        ``--resume`` that sets them aside: in the note of a lone file, else in a last note
        counting them (a command for each file said the same line again and again)."""
        resume = f"'losscmp run --resume {shell_path(self.run_dir)}'"
        aside = f"aside in {self.damaged_dir}"
        named = [
            f"{self.run_dir}: damaged trial file {item.path.name} left out of this report "
            f"({item.reason})"
            for item in damaged[:DAMAGED_NAMED]
        ]
        if len(damaged) <= 1:  # none, or a lone file: its note gives the command
            return [
                f"{note}; {resume} sets it {aside} and trains that trial again" for note in named
            ]
        unnamed = len(damaged) - len(named)
        more = f" ({unnamed} not named above)" if unnamed else ""
        return [
            *named,
            f"{self.run_dir}: {resume} sets its {len(damaged)} damaged trial files{more} "
            f"{aside} and trains those trials again",
        ]

    def finished_trials(self) -> set[str]:
        """Ids of the trials with a good file. Damaged files are moved into
        ``trials/damaged/`` (never deleted), listed in ``self.quarantined`` and
        in run.json's ``damaged_trials``, so their trials are trained again.
        Call it under :meth:`lock`."""
        locked = self._lock_handle is not None
        scan = self.scan_trials(packed=locked)
        self.quarantined = [self._set_aside(item) for item in scan.damaged]
        if locked:
            self._records = scan.records
        with contextlib.suppress(LosscmpError, OSError):
            self._list_set_aside()
        return set(scan.records)

    def _list_set_aside(self) -> None:
        """Add to run.json's ``damaged_trials`` every file in ``trials/damaged/`` it does not
        list yet: those just moved, and any that a kill between its move and this note
        left unlisted (its reason read again from the file)."""
        if not self.damaged_dir.is_dir():
            return
        meta = self.read_meta()
        entries = list(meta.get("damaged_trials") or [])
        listed = {entry.get("file") for entry in entries if isinstance(entry, dict)}
        reasons = {item.moved_to: item.reason for item in self.quarantined}
        new = [
            {
                "file": str(path.relative_to(self.run_dir)),
                # a second copy is <trial-id>.<n>.json; trial ids end in their hash
                "trial_id": re.sub(r"\.\d+$", "", path.stem),
                "reason": reasons.get(path) or _damage_reason(path),
                "at": now_iso(),
            }
            for path in sorted(self.damaged_dir.glob("*.json"))
            if str(path.relative_to(self.run_dir)) not in listed
        ]
        if new:
            self.update_meta(damaged_trials=entries + new)

    def _set_aside(self, item: DamagedTrial) -> DamagedTrial:
        make_folder(self.damaged_dir)
        target = self.damaged_dir / item.path.name
        counter = 1
        while target.exists():
            target = self.damaged_dir / f"{item.path.stem}.{counter}{item.path.suffix}"
            counter += 1
        os.replace(item.path, target)
        _fsync_dir(self.trials_dir)
        _fsync_dir(self.damaged_dir)
        return DamagedTrial(item.path, item.reason, item.in_rows, moved_to=target)

    def write_trial(self, record: dict[str, Any], *, defer_tables: bool = False) -> None:
        """Check, write atomically (fsynced), forget a failure of this trial, rebuild tables.

        ``defer_tables`` (a run writing many trials): rebuild them only while that costs at
        most ``TABLES_SHARE`` of the time since the last rebuild; the writer calls
        :meth:`flush_tables` once it is done. Tables left behind are stale, as after a
        crash between a trial file and its tables: ``report`` and ``--resume`` rebuild them.
        """
        text = json_text(record)
        written = json.loads(text)  # the record as a reader of the file gets it
        try:
            check_trial_record(written)
        except _Damage as damage:
            raise ValueError(f"refusing to write a malformed trial record: {damage}") from None
        atomic_write_text(self.trials_dir / f"{record['trial_id']}.json", text)
        if self._records is not None:
            self._records[written["trial_id"]] = _pack(written)
        with contextlib.suppress(LosscmpError, OSError):
            failed = self.read_meta().get("failed_trials") or {}
            if record["trial_id"] in failed:
                failed = {key: value for key, value in failed.items() if key != record["trial_id"]}
                self.update_meta(failed_trials=failed)
        self._tables_behind += 1
        if not defer_tables or self._tables_due():
            self.rebuild_tables()

    def _tables_due(self) -> bool:
        """Whether a rebuild now keeps the time spent on them within ``TABLES_SHARE``."""
        if self._tables_built_at is None:
            return True
        since = self.clock() - self._tables_built_at
        return self._tables_cost <= TABLES_SHARE * (since + self._tables_cost)

    def flush_tables(self) -> None:
        """Rebuild the tables if trials were written since they were last rebuilt."""
        if self._tables_behind:
            self.rebuild_tables()

    # ----------------------------------------------------------------- tables

    def rebuild_tables(self, records: Sequence[dict[str, Any]] | None = None) -> None:
        """Regenerate epochs.csv and images.csv from the good trial files.

        Rebuilds are serialised (a blocking flock), so the last one to finish
        has read every trial file written before it started.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started = self.clock()
        with self._tables_lock():
            frames = table_frames(
                self._good_records() if records is None else _by_trial_id(records)
            )
            for spec in TABLES:
                atomic_write_csv(self.run_dir / spec.file, frames[spec.name])
        self._tables_built_at = self.clock()
        self._tables_cost, self._tables_behind = self._tables_built_at - started, 0

    def _good_records(self) -> Iterator[dict[str, Any]]:
        """The good trial records in trial id order, one at a time (never all parsed at
        once): under the lock, those read once and written since; else read from trials/."""
        if self._lock_handle is None:
            yield from self._read_good_records()
            return
        if self._records is None:
            packed = {}
            for record in self._read_good_records():
                packed[record["trial_id"]] = _pack(record)
                yield record
            self._records = packed
            return
        for trial_id in sorted(self._records):
            yield _unpack(self._records[trial_id])

    def _read_good_records(self) -> Iterator[dict[str, Any]]:
        """The good records of trials/, read one file at a time, in trial id order."""
        if not self.trials_dir.is_dir():
            return
        for path in sorted(self.trials_dir.glob("*.json"), key=lambda path: path.stem):
            try:
                record = read_trial_file(path) if path.is_file() else None
            except _Damage:
                continue  # left for scan_trials to name (and --resume to set aside)
            if record is not None:
                yield record

    @contextlib.contextmanager
    def _tables_lock(self) -> Iterator[None]:
        """Blocking and short: serialises the writes of the tables derived from trials/."""
        handle = os.open(
            self.run_dir / TABLES_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def check_tables(self, records: Sequence[dict[str, Any]] | None = None) -> dict[str, str]:
        """Each table that disagrees with the trial files: {file name: what is wrong}.

        Compares contents (rows in any order, numbers as read back), so a table
        written by another pandas version is not stale; a missing trial, an
        extra or repeated row, a changed value, a damaged or empty file is.
        """
        records = self._read_good_records() if records is None else _by_trial_id(records)
        return self._checked_tables(records)[0]

    def _checked_tables(self, records: Iterable[dict[str, Any]]) -> tuple[dict[str, str], dict]:
        """:meth:`check_tables`'s problems, and each table's frame built from ``records``
        (in trial id order)."""
        problems, frames = {}, table_frames(records)
        for spec in TABLES:
            problem = self._table_problem(
                self.run_dir / spec.file, csv_text(frames[spec.name]), spec
            )
            if problem:
                problems[spec.file] = problem
        return problems, frames

    def _table_problem(self, path: Path, text: str, spec: TableSpec) -> str | None:
        """What is wrong with the table at ``path``, which the writer would write as ``text``."""
        import pandas as pd

        if not path.is_file():
            return "is missing"
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        with contextlib.suppress(OSError):
            if path.read_bytes() == text.encode():
                return None  # the writer's own text: nothing to compare row by row
        expected = pd.read_csv(
            io.StringIO(text), index_col=False, dtype={column: "str" for column in TEXT_COLUMNS}
        )
        try:
            actual = read_table_csv(path)
        except LosscmpError as error:
            return f"is damaged ({str(error).partition('(')[2].rstrip(')')})"
        key = [column for column in spec.key if column in actual.columns]
        if len(key) == len(spec.key) and actual.duplicated(key).any():
            return f"has {int(actual.duplicated(key).sum())} repeated row(s)"
        have, want = _trial_keys(actual), _trial_keys(expected)
        if want - have:
            return f"lacks {len(want - have)} trial(s) of trials/ ({_name_trials(want - have)})"
        if have - want:
            return (
                f"has rows of {len(have - want)} trial(s) with no trial file "
                f"({_name_trials(have - want)})"
            )
        if len(actual) != len(expected):
            return f"has {len(actual)} rows where trials/ gives {len(expected)}"
        try:
            same = _canonical_csv(actual, spec) == _canonical_csv(expected, spec)
        except (TypeError, ValueError):
            same = False
        return None if same else "differs from trials/ in its values"

    def tables_stale(self) -> bool:
        return bool(self.check_tables())

    # ----------------------------------------------------------------- panels

    def write_panel(self, name: str, **arrays) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.run_dir / PANEL_DIR / f"{name}.npz", buffer.getvalue())

    def panel_file(self, name: str) -> Path:
        return self.run_dir / PANEL_DIR / f"{name}.npz"

    def has_panel(self, name: str) -> bool:
        """Whether ``panel/<name>.npz`` is there and reads back."""
        try:
            return self.read_panel(name) is not None
        except LosscmpError:
            return False

    def read_panel(self, name: str) -> dict[str, Any] | None:
        """The arrays of ``panel/<name>.npz``, each of the shape losscmp writes (see
        :func:`panel_problem`); None when absent; LosscmpError when damaged."""
        path = self.panel_file(name)
        if not path.is_file():
            return None
        try:
            arrays = _load_npz(path)
            problem = panel_problem(arrays)
        except _Damage as damage:
            problem = damage.reason
        if problem:
            raise LosscmpError(
                f"{path} is damaged ({problem}); delete it to draw the other figures"
            )
        return arrays

    # ----------------------------------------------------------------- what report writes

    def write_report_page(self, html: str) -> Path:
        """``<run>/report.html``, written atomically (a reader sees the old page or the new)."""
        return self._write_derived(REPORT_PAGE, html.encode("utf-8"))

    def write_summary(self, frame, trial_ids: Iterable[str] | None = None) -> Path:
        """``<run>/summary.csv``: the report's table, derived (rebuilt by every report).

        ``trial_ids``: the trial files the table was built from. A report read while the
        run was still writing could otherwise land its table after the run's own final
        one and leave summary.csv a trial short; under the tables lock (which serialises
        these writes) a table whose trials/ has changed since is refused.
        """
        try:
            with self._tables_lock():
                if trial_ids is not None and self._trial_file_ids() not in (
                    set(),
                    set(trial_ids),
                ):
                    raise LosscmpError(
                        f"trials/ of {self.run_dir} changed while this report was read "
                        "(the run is still writing)"
                    )
                return self._write_derived(SUMMARY_FILE, csv_text(frame).encode())
        except OSError as error:  # the lock file of a read-only folder
            path = self.run_dir / SUMMARY_FILE
            raise LosscmpError(f"cannot write {path}: {error.strerror or error}") from None

    def _trial_file_ids(self) -> set[str]:
        if not self.trials_dir.is_dir():
            return set()
        return {path.stem for path in self.trials_dir.glob("*.json") if path.is_file()}

    def write_figure(self, name: str, png: bytes) -> Path:
        """``<run>/plots/<name>``: a figure of ``report --plots``."""
        return self._write_derived(f"{PLOTS_DIR}/{name}", png)

    def _write_derived(self, name: str, data: bytes) -> Path:
        path = self.run_dir / name
        try:
            atomic_write_bytes(path, data)
        except OSError as error:
            raise LosscmpError(f"cannot write {path}: {error.strerror or error}") from None
        return path

    # ----------------------------------------------------------------- reading a run

    def read(self, *, repair: bool = True, damaged_ok: bool = False) -> StoredRun:
        """The run as ``report`` needs it, tables checked against the trial files.

        When trials/ holds records they are the truth: a table that disagrees
        is rebuilt (``repair``, when the folder is not locked by a writer and
        is writable) and the frames always come from the records; a note says
        what was wrong. A run with tables but no trial files is read from the
        tables, which must then be whole (no empty file, no repeated row).
        A damaged trial file is a LosscmpError naming it; with ``damaged_ok`` (``report``)
        it is left out and named in a note instead, unless every trial file is damaged.
        Then nothing is moved and the tables are not rewritten: they may hold the only
        readable copy of a damaged trial's rows, and ``--resume`` rebuilds them.
        """
        import pandas as pd

        meta = self.read_meta()
        scan = self.scan_trials()
        if scan.damaged and not (damaged_ok and scan.records):
            raise LosscmpError(self._damaged_message(scan.damaged))
        records = [scan.records[key] for key in sorted(scan.records)]
        notes = self._damaged_notes(scan.damaged)
        if records:
            problems, built = self._checked_tables(records)  # sorted by id above
            if problems and not scan.damaged and not self._behind_its_writer(problems):
                notes.append(self._repair_note(problems, records, repair))
            frames = {
                spec.name: checked_table(built[spec.name], spec, self.trials_dir) for spec in TABLES
            }
        else:
            frames = {spec.name: self._legacy_table(spec) for spec in TABLES}
            if frames["epochs"] is None:
                raise LosscmpError(self._why_no_trials(meta))
            if frames["images"] is None:
                frames["images"] = pd.DataFrame()
        present = {record["trial_id"] for record in records}
        notes += self._history_notes(meta, present)
        failed = _pending_failures(meta, present)
        epochs, images = frames["epochs"], frames["images"]
        return StoredRun(self.run_dir, meta, records, epochs, images, notes, failed, scan.damaged)

    def _behind_its_writer(self, problems: dict[str, str]) -> bool:
        """The tables only lag the trial files of a run another process is writing: it
        writes them as it goes, so nothing is wrong (the report says the run is still
        being written); a note listing every trial they lack only alarmed."""
        lagging = all(
            problem == "is missing" or problem.startswith("lacks ") for problem in problems.values()
        )
        writer = self.locked_by() if lagging else None
        return writer is not None and writer != os.getpid()

    def _repair_note(self, problems: dict[str, str], records, repair: bool) -> str:
        wrong = "; ".join(f"{name} {problem}" for name, problem in problems.items())
        if not repair:
            return f"{self.run_dir}: {wrong}; the table is read from trials/ instead"
        try:
            with self.lock():
                self.rebuild_tables(records)
        except LosscmpError:
            holder = self.locked_by()
            by = f" (pid {holder})" if holder and holder > 0 else ""
            if holder:
                return (
                    f"{self.run_dir}: {wrong}; read from trials/ instead (not rewritten: the "
                    f"run is being written by another process{by})"
                )
            return f"{self.run_dir}: {wrong}; read from trials/ instead (folder not writable)"
        except OSError as error:
            return (
                f"{self.run_dir}: {wrong}; read from trials/ instead (not rewritten: "
                f"{error.strerror or error})"
            )
        return f"{self.run_dir}: {wrong}; rebuilt from trials/"

    def _legacy_table(self, spec: TableSpec):
        """A table of a run without trial files (older runs, hand-made folders), checked."""
        path = self.run_dir / spec.file
        if not path.is_file():
            return None
        if path.stat().st_size == 0:
            raise LosscmpError(
                f"{path} is damaged (empty: 0 bytes) and {self.trials_dir} holds no trial file "
                "to rebuild it from"
            )
        frame = read_table_csv(path)
        if frame.empty and spec.name == "epochs":
            return None  # a header only: written before any trial finished
        return checked_table(frame, spec, path)

    def _why_no_trials(self, meta: dict[str, Any]) -> str:
        """A run without a finished trial: one that ended with every trial failed (one loss
        raising fails a whole fused group) says so; others are running or were stopped."""
        failed = meta.get("failed_trials")
        if not (meta.get("finished_at") and isinstance(failed, dict) and failed):
            return (
                f"{self.run_dir} has no finished trials yet (still running, or stopped "
                f"before one ended; if stopped, finish it with: losscmp run --resume "
                f"{shell_path(self.run_dir)})"
            )
        first, reason = next(iter(failed.items()))
        name = planned_trial_names(meta).get(first, first)  # as the run's lines named it
        return (
            f"{self.run_dir} has no finished trials: {len(failed)} trial(s) failed (e.g. "
            f"{name}: {reason}); 'losscmp run --resume {shell_path(self.run_dir)}' tries them "
            "again"
        )

    def _history_notes(self, meta: dict[str, Any], present: set[str]) -> list[str]:
        notes = []
        damaged = [
            entry
            for entry in meta.get("damaged_trials") or []
            if isinstance(entry, dict) and entry.get("file")
        ]
        if damaged:
            retrained = sum(entry.get("trial_id") in present for entry in damaged)
            first = damaged[0]
            notes.append(
                f"{self.run_dir}: {len(damaged)} damaged trial file(s) were set aside by "
                f"--resume (e.g. {first['file']}: {first.get('reason', 'damaged')}); "
                f"{retrained} of them trained again since"
            )
        planned = meta.get("trials")
        unplanned = sorted(present - set(planned)) if isinstance(planned, list) else []
        if unplanned:
            notes.append(
                f"{self.run_dir}: {len(unplanned)} trial file(s) in trials/ are not among "
                f"run.json's planned trials (e.g. {unplanned[0]}); reported with the run"
            )
        return notes


def _recorded_failures(meta: dict[str, Any]) -> dict[str, Any]:
    """run.json's ``failed_trials`` as written ({id: reason}); {} where absent or malformed."""
    failed = meta.get("failed_trials")
    return failed if isinstance(failed, dict) else {}


def _pending_failures(meta: dict[str, Any], present: set[str]) -> dict[str, str]:
    """The recorded failures no trial record (``present``: their ids) has replaced since."""
    failed = _recorded_failures(meta)
    return {trial: str(reason) for trial, reason in failed.items() if trial not in present}


def _read_pid(handle: int) -> int | None:
    try:
        os.lseek(handle, 0, os.SEEK_SET)
        text = os.read(handle, 64).decode(errors="replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# The name the runner used before the store; same object.
RunWriter = RunStore
