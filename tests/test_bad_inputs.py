"""Bad inputs, one table: each is refused with exit status 2, one line on stderr, no
traceback, and nothing left behind (no run folder; a named run folder unchanged).

Every case goes through ``losscmp.cli.run_command`` (what the installed command runs, so click's
usage errors are covered too) inside ``typer.testing.CliRunner``'s isolation, with
the working directory in a fresh temporary folder, so a stray write anywhere shows.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE
from fixtures_data import encode, make_folder
from run_fixtures import write_run
from typer.testing import CliRunner


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def invoke_command(*args: str) -> Outcome:
    """Run ``losscmp ARGS`` as the console script does, capturing its streams."""
    from losscmp.cli import run_command

    runner = CliRunner()
    saved = sys.argv
    with runner.isolation() as streams:
        sys.argv = ["losscmp", *map(str, args)]
        try:
            run_command()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        finally:
            sys.argv = saved
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr = streams[0].getvalue(), streams[1].getvalue()
    return Outcome(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``root`` with (size, mtime) for files; dataset caches left out."""
    state: dict[str, tuple[int, int] | None] = {}
    for path in sorted(root.rglob("*")):
        if ".losscmp-cache" in path.parts:
            continue
        if path.is_file():
            stat = path.stat()
            state[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
        else:
            state[str(path.relative_to(root))] = None
    return state


# --------------------------------------------------------------------------- input makers


def folder(tmp: Path, count: int = 4, **options) -> Path:
    root = tmp / "data"
    make_folder(root, count=count, **options)
    return root


def folder_with(change: Callable[[Path], None], **options) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        root = folder(tmp, **options)
        change(root)
        return ["--dataset", f"folder:{root}"]

    return make


def _not_an_image(root: Path) -> None:
    (root / "images" / "case_001.jpg").write_bytes(b"not a picture")


def _zero_bytes(root: Path) -> None:
    (root / "images" / "case_002.jpg").write_bytes(b"")


def _truncated(root: Path) -> None:
    jpeg = root / "images" / "case_001.jpg"
    noise = np.random.default_rng(1).integers(0, 255, (40, 56, 3), np.uint8)
    data = encode(noise, "JPEG")
    jpeg.write_bytes(data[: len(data) * 2 // 3])


def _other_size(root: Path) -> None:
    (root / "masks" / "case_001.png").write_bytes(encode(np.zeros((10, 10), np.uint8), "PNG"))


def _unmatched_image(root: Path) -> None:
    (root / "masks" / "case_003.png").unlink()


def _unmatched_mask(root: Path) -> None:
    (root / "masks" / "extra.png").write_bytes(encode(np.zeros((40, 56), np.uint8), "PNG"))


def _duplicate_stem(root: Path) -> None:
    (root / "images" / "case_000.png").write_bytes(encode(np.zeros((4, 4, 3), np.uint8), "PNG"))


def _no_foreground(root: Path) -> None:
    for mask in (root / "masks").iterdir():
        mask.write_bytes(encode(np.zeros((40, 56), np.uint8), "PNG"))


def _class_value(root: Path) -> None:
    bad = np.zeros((40, 56), np.uint8)
    bad[5:9, 5:9] = 7
    (root / "masks" / "case_002.png").write_bytes(encode(bad, "PNG"))


def folder_class_values(tmp: Path) -> list[str]:
    root = folder(tmp, num_classes=3)
    _class_value(root)
    return ["--dataset", f"folder(path={root},num_classes=3)"]


def folder_ignore_border_and_loss_ignore_index(tmp: Path) -> list[str]:
    """Masks that mark ignored pixels with 255, and a loss told to ignore another label."""
    root = folder(tmp, num_classes=3)
    mask = root / "masks" / "case_002.png"
    bordered = np.zeros((40, 56), np.uint8)
    bordered[0, :] = 255
    bordered[10:20, 10:20] = 2
    mask.write_bytes(encode(bordered, "PNG"))
    dataset = f"folder(path={root},num_classes=3)"
    return ["--dataset", dataset, "--losses", "ce(ignore_index=1)"]


def folder_no_masks(tmp: Path) -> list[str]:
    root = tmp / "data"
    (root / "images").mkdir(parents=True)
    return ["--dataset", f"folder:{root}"]


def folder_empty(tmp: Path) -> list[str]:
    root = tmp / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return ["--dataset", f"folder:{root}"]


def folder_is_file(tmp: Path) -> list[str]:
    (tmp / "data.txt").write_text("x")
    return ["--dataset", f"folder:{tmp / 'data.txt'}"]


def folder_huge_mask(tmp: Path) -> list[str]:
    """A 20000 x 20000 mask (48 kB as a 1-bit PNG): more pixels than Pillow opens."""
    from PIL import Image

    root = folder(tmp)
    Image.new("1", (20000, 20000)).save(root / "masks" / "case_000.png")
    return ["--dataset", f"folder:{root}"]


def folder_one_pair(tmp: Path) -> list[str]:
    return ["--dataset", f"folder:{folder(tmp, count=1)}"]


def folder_spec(params: str, **options) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        root = folder(tmp, **options)
        return ["--dataset", f"folder(path={root},{params})"]

    return make


def config_file(text: str | bytes, *extra: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / "config.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return ["--config", str(path), *extra]

    return make


def config_folder(tmp: Path) -> list[str]:
    (tmp / "configs").mkdir()
    return ["--config", str(tmp / "configs")]


def out_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("x")
    return ["--out", str(tmp / "taken")]


def out_under_file(tmp: Path) -> list[str]:
    (tmp / "taken").write_text("x")
    return ["--out", str(tmp / "taken" / "runs")]


def out_name_too_long(tmp: Path) -> list[str]:
    return ["--out", str(tmp / ("x" * 300) / "runs")]


# A hand-written run folder (tests/run_fixtures.py) for --resume and report.
def run_folder(tmp: Path, **options) -> Path:
    return write_run(tmp / "runs", quality={"dice": 0.8, "focal": 0.6}, seeds=(0,), **options)


def out_run_folder(tmp: Path) -> list[str]:
    run_dir = run_folder(tmp)
    return ["--out", str(run_dir), "--dry-run"]


def two_seed_run(tmp: Path) -> Path:
    return write_run(tmp / "runs", quality={"dice": 0.8}, seeds=(0, 1), config={"seeds": 2})


def edit_meta(change: Callable[[dict], None]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        run_dir = run_folder(tmp)
        meta = json.loads((run_dir / "run.json").read_text())
        change(meta)
        (run_dir / "run.json").write_text(json.dumps(meta))
        return run_dir

    return make


def replace_run_json(content: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        run_dir = run_folder(tmp)
        (run_dir / "run.json").write_bytes(content)
        return run_dir

    return make


def half_written(tmp: Path) -> Path:
    run_dir = tmp / "runs" / "20260101-120000-dead00"
    run_dir.mkdir(parents=True)
    (run_dir / ".run.json.k2j4h1.tmp").write_text('{"schema_version": 1, "run_id": "2026')
    return run_dir


def trials_replaced_by_a_file(tmp: Path) -> Path:
    run_dir = run_folder(tmp)
    shutil.rmtree(run_dir / "trials")
    (run_dir / "trials").write_text("not a folder\n")
    return run_dir


def bare_folder(tmp: Path) -> Path:
    (tmp / "runs" / "nothing").mkdir(parents=True)
    return tmp / "runs" / "nothing"


def damage_trial(
    content: bytes | Callable[[dict], object], every: bool = False
) -> Callable[[Path], Path]:
    """A run whose first trial file (``every``: each one) is overwritten with ``content``,
    or with what ``content`` makes of its record. Report reads around a damaged file among
    readable ones, naming it in a note; it refuses a run with none readable."""

    def make(tmp: Path) -> Path:
        run_dir = run_folder(tmp)
        paths = sorted((run_dir / "trials").glob("*.json"))
        for path in paths if every else paths[:1]:
            if callable(content):
                record = json.loads(path.read_text())
                path.write_text(json.dumps(content(record)))
            else:
                path.write_bytes(content)
        return run_dir

    return make


def renamed_trial(tmp: Path) -> Path:
    run_dir = run_folder(tmp)
    first, second = sorted((run_dir / "trials").glob("*.json"))
    second.write_text(first.read_text())  # a copy under another trial's name
    return run_dir


def swapped_trials(tmp: Path) -> Path:
    run_dir = run_folder(tmp)
    first, second = sorted((run_dir / "trials").glob("*.json"))
    first_text = first.read_text()
    first.write_text(second.read_text())  # each a copy under the other trial's name
    second.write_text(first_text)
    return run_dir


def csv_only(change: Callable[[Path], None]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        run_dir = run_folder(tmp)
        for path in (run_dir / "trials").iterdir():
            path.unlink()
        change(run_dir / "epochs.csv")
        return run_dir

    return make


def _empty_file(path: Path) -> None:
    path.write_bytes(b"")


def _duplicate_row(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[1]]))


def _first_epoch(column: str, value: float) -> Callable[[dict], dict]:
    def change(record: dict) -> dict:
        record["epochs"][0][column] = value
        return record

    return change


# What a trial file is overwritten with (or made of its record) and the reason then given.
TRIAL_DAMAGES: list[tuple[str, bytes | Callable[[dict], object], str]] = [
    ("corrupt", b"{oops", "not valid JSON"),
    ("empty", b"", "(empty: 0 bytes)"),
    ("shape", b"[1, 2]", "not a trial record"),
    ("bad-status", lambda record: {**record, "status": "great"}, "'status' is 'great'"),
    (
        "seconds-text",
        lambda record: {**record, "seconds": "abc"},
        "'seconds' is 'abc', not a number",
    ),
    (
        "diverged-epoch-huge",
        lambda record: {**record, "diverged_epoch": 1e400},
        "'diverged_epoch' is inf",
    ),
    ("best-epoch-fraction", lambda record: {**record, "best_epoch": 1.5}, "not a whole number"),
    # A hand-edited Infinity would be its trial's best validation epoch
    (
        "val-score-inf",
        _first_epoch("val_dice", math.inf),
        "epochs row 1 has val_dice=inf, not finite",
    ),
]


def _infinite_score(path: Path) -> None:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    rows[0]["val_dice"] = "inf"
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def incomparable(tmp: Path) -> list[str]:
    first = write_run(tmp / "runs", quality={"dice": 0.8}, run_id="20260101-1-a")
    second = write_run(
        tmp / "runs", quality={"focal": 0.6}, run_id="20260101-2-b", config={"epochs": 9}
    )
    return ["report", str(first), str(second)]


def _set(key: str, value) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        meta[key] = value

    return change


def _set_execution(key: str, value) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        meta["execution"][key] = value

    return change


def _set_dataset(key: str, value) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        for info in meta["datasets"].values():
            info[key] = value

    return change


def _set_config(key: str, value) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        meta["config"][key] = value

    return change


def resume(make_run: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return ["--resume", str(make_run(tmp)), *extra]

    return make


def report(make_run: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return ["report", str(make_run(tmp)), *extra]

    return make


def report_a_file(tmp: Path) -> list[str]:
    """A file that is no run's: 'no losscmp run found in table.csv' read as if it were a
    folder that holds none."""
    (tmp / "table.csv").write_text("loss,dice\n")
    return ["report", str(tmp / "table.csv")]


def report_inside_run(name: str) -> Callable[[Path], list[str]]:
    """A file or subfolder of a run folder given where the run folder was meant."""

    def make(tmp: Path) -> list[str]:
        return ["report", str(run_folder(tmp) / name)]

    return make


def report_over_another_runs(name: str, option: str, combined: bool = False):
    """A report of one run (or of two combined) writing over another run folder's own
    summary.csv or report.html, which would then hold a table that is not its run's."""

    def make(tmp: Path) -> list[str]:
        other = write_run(tmp / "runs", quality={"bce": 0.7}, seeds=(0,), run_id="other")
        reported = [run_folder(tmp), *([other] if combined else [])]
        (other / name).write_text("the other run's own file")
        return ["report", *map(str, reported), option, str(other / name)]

    return make


def report_csv_folder(tmp: Path) -> list[str]:
    run_dir = run_folder(tmp)
    (tmp / "elsewhere").mkdir()
    return ["report", str(run_dir), "--csv", str(tmp / "elsewhere")]


def report_csv_over(name: str) -> Callable[[Path], list[str]]:
    """--csv aimed at one of the run folder's own records (a typo that would destroy it)."""

    def make(tmp: Path) -> list[str]:
        run_dir = run_folder(tmp)
        return ["report", str(run_dir), "--csv", str(run_dir / name)]

    return make


def report_csv_fifo(tmp: Path) -> list[str]:
    os.mkfifo(tmp / "pipe")
    return ["report", str(run_folder(tmp)), "--csv", str(tmp / "pipe")]


def report_into_run(name: str, option: str) -> Callable[[Path], list[str]]:
    """A new file among a run folder's records (a page named like a trial breaks the run)."""

    def make(tmp: Path) -> list[str]:
        run_dir = run_folder(tmp)
        (run_dir / "panel").mkdir(exist_ok=True)
        (run_dir / "trials" / "damaged").mkdir(exist_ok=True)
        return ["report", str(run_dir), option, str(run_dir / name)]

    return make


def report_same_file(tmp: Path) -> list[str]:
    target = str(tmp / "out.txt")
    return ["report", str(run_folder(tmp)), "--csv", target, "--html", target]


def report_html_under_file(tmp: Path) -> list[str]:
    (tmp / "notes").write_text("mine")
    return ["report", str(run_folder(tmp)), "--html", str(tmp / "notes" / "page.html")]


# --------------------------------------------------------------------------- the table

Args = list[str] | Callable[[Path], list[str]]
CASES: list[tuple[str, Args, str]] = [
    # losses: names, syntax, parameters
    ("loss-unknown", ["--losses", "dcie"], "unknown loss 'dcie' (did you mean 'dice'?)"),
    ("loss-upper-case", ["--losses", "DICEE"], "unknown loss 'DICEE' (did you mean 'dice'?)"),
    ("loss-param-unknown", ["--losses", "focal(gama=1)"], "has no parameter 'gama'"),
    ("loss-param-text", ["--losses", "tversky(alpha=x)"], "alpha='x' is not a number"),
    ("loss-param-bool", ["--losses", "focal(gamma=true)"], "gamma=True is not"),
    ("loss-param-negative", ["--losses", "tversky(alpha=-0.5)"], "alpha must be >= 0"),
    ("loss-negative-zero", ["--losses", "dice(smooth=0),dice(smooth=-0.0)"], "listed twice"),
    (
        "loss-weights-all-zero",
        ["--losses", "bce_dice(lambda_ce=0,lambda_dice=0)"],
        "lambda_ce and lambda_dice cannot both be 0",
    ),
    ("loss-gamma-negative", ["--losses", "focal(gamma=-1)"], "gamma must be >= 0"),
    ("loss-gamma-inf", ["--losses", "focal(gamma=inf)"], "gamma=inf must be a finite number"),
    ("loss-gamma-nan", ["--losses", "focal(gamma=nan)"], "gamma=nan must be a finite number"),
    ("loss-smooth-overflow", ["--losses", "dice(smooth=1e400)"], "must be a finite number"),
    ("loss-smooth-minus-inf", ["--losses", "dice(smooth=-inf)"], "must be a finite number"),
    ("loss-list-inf", ["--losses", "dice(class_weights=[1,inf])"], "must be a finite number"),
    ("loss-unclosed", ["--losses", "dice,focal(gamma=1"], "unclosed '(' or '['"),
    ("loss-unbalanced", ["--losses", "dice)"], "unbalanced ')'"),
    ("loss-unclosed-quote", ["--losses", "dice(reduction='image)"], "unclosed quote"),
    ("loss-bad-name", ["--losses", "1dice"], "'1dice' is not a valid name"),
    ("loss-param-syntax", ["--losses", "dice(smooth)"], "must look like key=value"),
    ("loss-param-twice", ["--losses", "dice(smooth=1,smooth=2)"], "given twice"),
    ("loss-empty-list", ["--losses", ","], "no names given"),
    ("loss-listed-twice", ["--losses", "dice,focal,dice"], "'dice' is listed twice"),
    ("loss-same-as-default", ["--losses", "tversky,tversky(alpha=0.3,beta=0.7)"], "same loss"),
    ("loss-same-canonical", ["--losses", "dice(smooth=1),dice(smooth=1.0)"], "listed twice"),
    ("loss-class-weights", ["--losses", "dice(class_weights=[1,2])"], "class_weights has 2"),
    # synthetic dataset
    ("dataset-unknown", ["--dataset", "synthetik"], "unknown dataset 'synthetik'"),
    ("dataset-param-unknown", ["--dataset", "synthetic(bogus=1)"], "no parameter 'bogus'"),
    ("losses-newline", ["--losses", "dice\nfokal"], "'dice\\nfokal' is not a valid name"),
    ("config-too-deep", config_file("a: " + "[" * 5000 + "]" * 5000), "nested too deeply"),
    (
        "folder-without-path",
        ["--dataset", "folder"],
        "dataset 'folder' needs path: e.g. folder(path=...)",
    ),
    ("dataset-param-text", ["--dataset", "synthetic(n_train=many)"], "is not a whole number"),
    ("fg-param-range", ["--dataset", "synthetic(fg_fraction=2)"], "fg_fraction=2"),
    ("fg-param-nan", ["--dataset", "synthetic(fg_fraction=nan)"], "must be a finite number"),
    ("fg-param-inf", ["--dataset", "synthetic(fg_fraction=inf)"], "must be a finite number"),
    ("synthetic-n-train-0", ["--dataset", "synthetic(n_train=0)"], "must be at least 1"),
    ("synthetic-classes", ["--dataset", "synthetic(num_classes=99)"], "num_classes=99"),
    (
        "synthetic-too-big",
        ["--dataset", "synthetic(n_train=1000000000000)"],
        "of memory, more than the",
    ),
    # folder datasets
    ("folder-missing", lambda tmp: ["--dataset", f"folder:{tmp / 'nowhere'}"], "does not exist"),
    ("folder-empty-path", ["--dataset", "folder:"], "path is empty"),
    ("folder-is-a-file", folder_is_file, "is not a folder"),
    ("folder-huge-mask", folder_huge_mask, "case_000.png is too large for Pillow to open"),
    (
        "folder-name-too-long",
        lambda tmp: ["--dataset", f"folder:{tmp / ('x' * 300)}"],
        "File name too long",
    ),
    ("folder-no-masks", folder_no_masks, "(missing masks/)"),
    ("folder-no-images", folder_empty, "no images in"),
    ("folder-one-pair", folder_one_pair, "not enough for a train, a validation and a test split"),
    ("folder-unmatched-image", folder_with(_unmatched_image), "have no mask"),
    ("folder-unmatched-mask", folder_with(_unmatched_mask), "have no image: extra.png"),
    ("folder-duplicate-stem", folder_with(_duplicate_stem), "share a name"),
    ("folder-not-an-image", folder_with(_not_an_image), "not images: images/case_001.jpg"),
    ("folder-zero-bytes", folder_with(_zero_bytes), "not images: images/case_002.jpg"),
    ("folder-truncated", folder_with(_truncated), "truncated (the file ends"),
    ("folder-size-mismatch", folder_with(_other_size), "differ in size"),
    ("folder-no-foreground", folder_with(_no_foreground), "no foreground pixel"),
    ("folder-num-classes", folder_spec("num_classes=1"), "num_classes=1 must be 2 to 255"),
    ("folder-val-fraction", folder_spec("val_fraction=1.5"), "val_fraction=1.5 must be in"),
    ("folder-val-fraction-nan", folder_spec("val_fraction=nan"), "must be a finite number"),
    ("folder-class-values", folder_class_values, "values >= num_classes=3"),
    (
        "folder-jpeg-multiclass",
        folder_spec("num_classes=3", mask_format="JPEG"),
        "JPEG mask",
    ),
    # pets
    (
        "pets-missing",
        lambda tmp: ["--dataset", "pets", "--data-dir", str(tmp / "nowhere")],
        "losscmp datasets download pets",
    ),
    ("pets-mode", ["--dataset", "pets(mode=bogus)"], "mode='bogus' is not one of"),
    ("pets-mode-typo", ["--dataset", "pets(mode=trimp)"], "(did you mean 'trimap'?)"),
    ("loss-choice-typo", ["--losses", "dice(reduction=bach)"], "(did you mean 'batch'?)"),
    ("pets-border-trimap", ["--dataset", "pets(mode=trimap,border=fg)"], "border applies"),
    # --fg-fraction
    ("fg-duplicate", ["--fg-fraction", "0.05,0.05"], "lists 0.05 more than once"),
    ("fg-duplicate-spelling", ["--fg-fraction", "0.05,0.2,0.050"], "more than once"),
    ("fg-too-large", ["--fg-fraction", "0.95"], "must lie in (0, 0.9)"),
    ("fg-zero", ["--fg-fraction", "0"], "must lie in (0, 0.9)"),
    ("fg-nan", ["--fg-fraction", "nan"], "must lie in (0, 0.9)"),
    ("fg-text", ["--fg-fraction", "abc"], "--fg-fraction must be numbers, got 'abc'"),
    (  # the sweep replaced the dataset's fraction without a word
        "fg-beside-the-datasets-own",
        ["--fg-fraction", "0.01", "--dataset", "synthetic(fg_fraction=0.02)"],
        "--fg-fraction and the fg_fraction in --dataset both given: the sweep trains each of its "
        "fractions and replaces the dataset's; give one",
    ),
    (  # the file's option is quoted: "'dataset''s fg_fraction" read as a typo
        "fg-in-a-config-beside-the-datasets-own",
        config_file("dataset: synthetic(fg_fraction=0.02)\nfg_fraction: [0.01, 0.05]\n"),
        "config.yaml: 'fg_fraction' and the fg_fraction in 'dataset' both given",
    ),
    (  # a --dataset flag's fraction, replaced by the file's sweep
        "dataset-flag-fraction-under-a-config-sweep",
        config_file("fg_fraction: [0.01]\n", "--dataset", "synthetic(fg_fraction=0.02)"),
        "config.yaml: 'fg_fraction' and the fg_fraction in --dataset both given",
    ),
    ("fg-empty", ["--fg-fraction", ""], "--fg-fraction needs at least one fraction"),
    ("fg-not-synthetic", ["--fg-fraction", "0.1", "--dataset", "pets"], "--dataset synthetic only"),
    # numbers
    ("epochs-zero", ["--epochs", "0"], "--epochs must be between 1 and 100000, got 0"),
    ("epochs-huge", ["--epochs", "1000000000"], "between 1 and 100000, got 1000000000"),
    ("batch-zero", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("batch-cannot-fit", ["--batch-size", "1000000000000"], "one batch of 1000000000000"),
    ("image-size-50", ["--image-size", "50"], "must be a multiple of 32"),
    (  # 0 and -32 are multiples of 32: the message says which are meant
        "image-size-0",
        ["--image-size", "0"],
        "--image-size must be a multiple of 32 (U-Net): 32, 64, 96, ..., got 0",
    ),
    ("image-size-negative", ["--image-size", "-32"], "multiple of 32 (U-Net): 32, 64, 96"),
    ("image-size-cannot-fit", ["--image-size", "1048576"], "of memory, more than the"),
    ("seeds-zero", ["--seeds", "0"], "--seeds must be between 1 and 100000, got 0"),
    ("seeds-huge", ["--seeds", "1000000000"], "--seeds must be between 1 and 100000"),
    ("seeds-many-trials", ["--seeds", "99999", "--losses", "dice,bce"], "199998 trials"),
    ("seed-negative", ["--seed", "-1"], "--seed must be between 0 and 9223372036854775807"),
    ("seed-above-2-64", ["--seed", str(2**64)], "between 0 and 9223372036854775807, got 1844"),
    ("seed-overflow", ["--seed", str(2**63 - 1), "--seeds", "2"], "(last seed"),
    ("lr-zero", ["--lr", "0"], "--lr must be a positive finite number, got 0"),
    ("lr-negative", ["--lr", "-0.1"], "--lr must be a positive finite number"),
    ("lr-inf", ["--lr", "inf"], "--lr must be a positive finite number, got inf"),
    ("lr-nan", ["--lr", "nan"], "--lr must be a positive finite number"),
    ("lr-overflow", ["--lr", "1e400"], "--lr must be a positive finite number, got 1e400"),
    ("lr-text", ["--lr", "fast"], "--lr must be a number, got 'fast'"),
    (
        "lr-list",
        ["--lr", "0.001,0.01"],
        "got '0.001,0.01'; to train at several learning rates use --lr-grid",
    ),
    ("lr-grid-zero", ["--lr-grid", "1e-3,0"], "--lr-grid values must be positive finite numbers"),
    ("lr-grid-repeat", ["--lr-grid", "1e-3,0.001"], "--lr-grid lists 0.001 more than once"),
    (
        "lr-grid-printed-alike",
        ["--lr-grid", "1e-3,1.0000001e-3"],
        "error: --lr-grid rates 0.001 and 0.0010000001 both print as 0.001, so their trials",
    ),
    (
        "lr-grid-three-printed-alike",
        ["--lr-grid", "1e-3,1.0000001e-3,1.0000002e-3"],
        "rates 0.001, 0.0010000001 and 0.0010000002 all print as 0.001, so their trials",
    ),
    ("lr-grid-text", ["--lr-grid", "fast"], "error: --lr-grid must be numbers, got 'fast'"),
    ("lr-grid-empty", ["--lr-grid", ""], "error: --lr-grid needs at least one learning rate"),
    ("lr-grid-commas", ["--lr-grid", ", ,"], "--lr-grid needs at least one learning rate"),
    (
        "lr-beside-lr-grid",
        ["--lr", "0.01", "--lr-grid", "1e-3,1e-2"],
        "error: --lr and --lr-grid both given: the grid trains each of its rates",
    ),
    ("device", ["--device", "tpu"], "--device must be one of"),
    ("device-gpu", ["--device", "gpu"], "got 'gpu' (did you mean 'cuda'?)"),
    (
        "device-index",
        ["--device", "cuda:1"],
        "got 'cuda:1' (to train on GPU 1: CUDA_VISIBLE_DEVICES=1 losscmp run ... --device cuda)",
    ),
    (  # the suggestion ignores case ('GPU': 'cuda'); so does the GPU's index hint
        "device-index-upper-case",
        ["--device", "CUDA:1"],
        "got 'CUDA:1' (to train on GPU 1: CUDA_VISIBLE_DEVICES=1 losscmp run ... --device cuda)",
    ),
    ("model", ["--model", "huge"], "--model must be one of auto, tiny, small, medium"),
    ("model-too-small-images", ["--model", "small", "--image-size", "32"], "too small"),
    ("encoder-weights", ["--encoder-weights", "foo"], "--encoder-weights must be one of imagenet"),
    (
        "encoder-weights-typo",
        ["--encoder-weights", "imagenett"],
        "got 'imagenett' (did you mean 'imagenet'?)",
    ),
    ("limit-zero", ["--limit", "0"], "--limit must be at least 3"),
    (
        "limit-two",
        ["--limit", "2"],
        "--limit must be at least 3 (one image each to train, validate and test), got 2",
    ),
    ("workers-negative", ["--num-workers", "-1"], "--num-workers must be between 0 and 256"),
    ("workers-huge", ["--num-workers", "100000"], "--num-workers must be between 0 and 256"),
    ("fuse-true", ["--fuse", "true"], "got 'true' (did you mean 'on'?)"),
    ("fuse-no", ["--fuse", "no"], "got 'no' (did you mean 'off'?)"),
    ("jobs-zero", ["--jobs", "0"], "--jobs must be between 1 and 1024, got 0"),
    (
        "jobs-short-equals",  # '-j=2' is '-j' given '=2': make's and ninja's habit
        ["-j=2"],
        "--jobs must be a whole number or none, got '=2' (a short option takes its value "
        "after a space or none: -j 2, -j2, or --jobs=2)",
    ),
    ("jobs-huge", ["--jobs", "100000"], "--jobs must be between 1 and 1024"),
    ("threads-huge", ["--threads", "100000"], "--threads must be between 1 and 1024"),
    ("trials-per-gpu-zero", ["--trials-per-gpu", "0"], "--trials-per-gpu must be between 1"),
    # numbers typed as text: worded as in a config file
    ("epochs-text", ["--epochs", "abc"], "error: --epochs must be a whole number, got 'abc'"),
    ("epochs-overflow", ["--epochs", "1e400"], "--epochs must be a whole number, got '1e400'"),
    ("seed-float", ["--seed", "1.5"], "error: --seed must be a whole number, got 1.5"),
    # click's own parsing
    ("usage-unknown-option", ["--bogus"], "No such option: --bogus (see '"),  # nothing close
    (  # click offered '(Possible options: --jobs, --out)': '--job' and '--out' share '--' and 'o'
        "usage-misspelled-option",
        ["--job", "2"],
        "No such option: --job (did you mean '--jobs'?) (see '",
    ),
    ("usage-option-with-a-suffix", ["--out-dir", "x"], "--out-dir (did you mean '--out'?)"),
    ("usage-misspelled-switch", ["--dryrun"], "--dryrun (did you mean '--dry-run'?) (see '"),
    ("usage-misspelled-estimate", ["--estimat"], "--estimat (did you mean '--estimate'?)"),
    (  # '--lr' begins it, but '--lr-grid' is one letter pair away (a config file's key)
        "usage-underscored-option",
        ["--lr_grid", "1e-3,1e-2"],
        "No such option: --lr_grid (did you mean '--lr-grid'?) (see '",
    ),
    ("usage-misspelled-help", ["--hlep"], "No such option: --hlep (did you mean '--help'?)"),
    ("usage-missing-value", ["--losses"], "requires an argument. (see 'losscmp run --help')"),
    # --out
    ("out-is-a-file", out_file, "is a file"),
    ("out-under-a-file", out_under_file, "is a file"),
    ("out-unwritable", ["--out", "/sys/losscmp-out"], "not writable"),
    (
        # /proc's own reason alone ('No such file or directory') blamed a folder that exists
        "out-in-proc",
        ["--out", "/proc/losscmp-out"],
        "--out /proc/losscmp-out is not writable: /proc takes no new files (No such file or "
        "directory)",
    ),
    ("out-name-too-long", out_name_too_long, "longer than"),
    ("out-empty", ["--out", ""], "--out is empty"),
    # was: trained into a folder named ' ' (blanks are no folder anyone means)
    ("out-blank", ["--out", " "], "--out is empty"),
    # was: ". is not a losscmp run folder": click's Path read '' as '.', the working folder,
    # which --resume '' (an unset $RUN) would have finished had it been a run folder
    ("resume-empty-name", ["--resume", ""], "--resume is empty; give the run folder to finish"),
    ("resume-blank", ["--resume", " "], "--resume is empty"),
    ("report-empty-path", ["report", ""], "PATH is empty; give a run folder, or a folder of runs"),
    ("datasets-root-empty", ["datasets", "--root", ""], "--root is empty; give the folder"),
    ("datasets-list-root-blank", ["datasets", "list", "--root", " "], "--root is empty"),
    (  # was: the download started into the working folder (its .downloads/ left behind)
        "download-data-dir-empty",
        ["datasets", "download", "pets", "--data-dir", ""],
        "--data-dir is empty; give the folder to download into",
    ),
    ("out-a-run-folder", out_run_folder, "is a run folder (it has a run.json)"),
    # config files
    ("config-missing", lambda tmp: ["--config", str(tmp / "missing.yaml")], "not found"),
    ("config-folder", config_folder, "is a folder"),
    ("config-invalid-yaml", config_file("losses: [dice\nepochs: 2\n"), "is not valid YAML"),
    ("config-list", config_file("- dice\n"), "must hold a mapping"),
    (  # was: 'is not valid YAML at line 1'
        "config-unquoted-pattern",
        config_file("losses: [*dice*, focal]\n"),
        "config.yaml is not valid YAML at line 1: a bare '*' starts a YAML alias; quote a "
        "pattern, as in losses: ['*dice*']",
    ),
    ("config-undefined-alias", config_file("losses: [focal, *dice]\n"), "quote a pattern"),
    (  # was: 'is not valid YAML at line 1', the tab unseen in an editor
        "config-tab",
        config_file("epochs:\t2\n"),
        "config.yaml is not valid YAML at line 1: a tab (column 8), which YAML does not take "
        "as indentation or spacing; use spaces",
    ),
    ("config-scalar", config_file("42\n"), "not the value 42"),
    ("config-key-twice", config_file("epochs: 1\nepochs: 2\n"), "'epochs' is given twice"),
    ("config-key-dashed-twice", config_file("batch-size: 4\nbatch_size: 8\n"), "given twice"),
    ("config-lr-text", config_file("lr: fast\n"), "'lr' must be a number"),
    ("config-dotted-text", config_file("out: ._\nlr: ._\n"), "'lr' must be a number"),
    ("config-unknown-key", config_file("epochz: 3\n"), "unknown option 'epochz'"),
    (
        "config-resume-key",
        config_file("resume: runs/x\n"),
        "'resume' is a command-line option only (--resume)",
    ),
    ("config-dry-run-key", config_file("dry-run: true\n"), "command-line option only"),
    (
        "config-estimate-key",
        config_file("estimate: true\n"),
        "'estimate' is a command-line option only (--estimate)",
    ),
    (
        "config-negative-epochs",
        config_file("epochs: -2\n"),
        "config.yaml: 'epochs' must be between 1 and 100000, got -2",
    ),
    ("config-epochs-text", config_file("epochs: abc\n"), "'epochs' must be a whole number, got"),
    ("config-limit-two", config_file("limit: 2\n"), "config.yaml: 'limit' must be at least 3"),
    ("config-lr-list", config_file("lr: [0.001, 0.01]\n"), "use --lr-grid"),
    ("config-lr-grid-empty", config_file("lr_grid: []\n"), "'lr_grid' needs at least one"),
    (
        "config-lr-beside-lr-grid",
        config_file("lr: 0.01\nlr_grid: [0.001, 0.01]\n"),
        "config.yaml: 'lr' and 'lr_grid' both given",
    ),
    (
        "lr-flag-over-a-config-grid",
        config_file("lr_grid: [0.001, 0.01]\n", "--lr", "0.5"),
        "config.yaml: --lr and 'lr_grid' both given",
    ),
    (
        "config-seed-overflow",
        config_file(f"seed: {2**63 - 1}\nseeds: 2\n"),
        "config.yaml: 'seed' 9223372036854775807 with 'seeds' 2",
    ),
    ("config-binary", config_file(b"\xff\xfe\x00losses"), "not a UTF-8 text file"),
    ("config-weight-decay-nan", config_file("weight_decay: .nan\n"), "'weight_decay' must be"),
    ("config-weight-decay-neg", config_file("weight_decay: -1\n"), "'weight_decay' must be"),
    ("config-loss-no-name", config_file("losses: [{gamma: 1}]\n"), "needs a 'name'"),
    ("config-fractional-epochs", config_file("epochs: 1.5\n"), "config file"),
    ("config-amp-text", config_file("amp: maybe\n"), "'amp' must be true or false"),
    (  # YAML 1.1 reads on/off/yes/no as booleans: was 'must be a string, got True'
        "config-executor-on",
        config_file("executor: on\n"),
        "config.yaml: 'executor' must be one of local, ray, got 'on'",
    ),
    (
        "config-tracking-off",
        config_file("tracking: off\n"),
        "config.yaml: 'tracking' must be one of mlflow or none, got 'off'",
    ),
    (  # was: 'epochs' must be a whole number, got None
        "config-key-without-value",
        config_file("epochs:\n"),
        "config.yaml: 'epochs' has no value: give a whole number, or leave the key out "
        "for the default (8)",
    ),
    ("config-model-null", config_file("model: null\n"), "'model' has no value: give a string"),
    (  # was: 'losses' must be a list of loss names or a comma-separated string
        "config-losses-without-value",
        config_file("losses:\n"),
        "config.yaml: 'losses' has no value: give a list of loss names or a comma-separated "
        "string, or leave the key out for the default (dice,focal,tversky)",
    ),
    # was: config file . is a folder; give a YAML file (click's Path read '' as '.')
    ("config-empty-name", lambda tmp: ["--config", ""], "--config is empty; give a YAML file"),
    # was: YAML's true read as the learning rate 1.0, and trained at it
    ("config-lr-grid-true", config_file("lr_grid: true\n"), "'lr_grid' must be numbers, got True"),
    (  # was: 'fg_fraction' values must lie in (0, 0.9), got 1.0 (a 1.0 no one wrote)
        "config-fg-fraction-false-in-list",
        config_file("fg_fraction: [0.1, false]\n"),
        "'fg_fraction' must be numbers, got [0.1, False]",
    ),
    (  # was: ... is not valid YAML at line 2 (and no word of why)
        "config-two-documents",
        config_file("epochs: 1\n---\nepochs: 2\n"),
        "config.yaml is not valid YAML at line 2: a second document ('---') begins there; "
        "a config file is one mapping",
    ),
    (  # was: 'losses' must be a list of loss names or a comma-separated string (a list)
        "config-losses-empty-list",
        config_file("losses: []\n"),
        "config.yaml: 'losses' lists no loss: give at least one, or leave the key out for the "
        "default (dice,focal,tversky)",
    ),
    ("config-bad-losses", config_file("losses: dice,focal(gamma=1\n"), "config file"),
    (
        "flag-error-not-blamed-on-config",
        config_file("epochs: 1\n", "--losses", "dice,focal(gamma=1"),
        "error: --losses: unclosed",
    ),
    # --resume
    ("resume-missing", lambda tmp: ["--resume", str(tmp / "nope")], "nope does not exist"),
    (
        "resume-a-folder-of-runs",  # the --out folder, not the run in it
        resume(lambda tmp: run_folder(tmp).parent),
        "runs is a folder of runs, not a run folder (did you mean '--resume ",
    ),
    ("resume-not-a-run", resume(bare_folder), "is not a losscmp run folder"),
    # was: "the resumed run's run.json is damaged: config: ...": it is sound; the option
    # given now is what clashes with the run's own
    (
        "resume-model-too-big-for-the-runs-images",
        resume(run_folder, "--model", "small"),
        "error: the resumed run's config: 'image_size' 32 is too small for the small model",
    ),
    (
        "resume-data-dir-on-synthetic",
        resume(run_folder, "--data-dir", "data"),
        "error: the resumed run's config: --data-dir is read by 'dataset' pets only",
    ),
    (  # was: .../run.json is not a losscmp run folder (no run.json)
        "resume-a-run-json",
        resume(lambda tmp: run_folder(tmp) / "run.json"),
        "run.json is a file inside the run folder ",
    ),
    (  # was: .../trials is not a losscmp run folder (no run.json)
        "resume-a-runs-trials",
        resume(lambda tmp: run_folder(tmp) / "trials"),
        "trials is a folder inside the run folder ",
    ),
    (  # was: ... is not a losscmp run folder (no run.json)
        "resume-a-file",
        lambda tmp: ["--resume", config_file("epochs: 1\n")(tmp)[1]],
        "config.yaml is a file, not a run folder",
    ),
    ("resume-half-written", resume(half_written), "half-written run.json"),
    (  # was: every trial trained again, then a traceback writing the first (FileExistsError)
        "resume-trials-a-file",
        resume(trials_replaced_by_a_file),
        "trials is not a folder: the run's records go there; move it aside",
    ),
    ("resume-run-json-corrupt", resume(replace_run_json(b"{oops")), "not valid JSON"),
    ("resume-run-json-empty", resume(replace_run_json(b"")), "is damaged (empty"),
    ("resume-schema", resume(edit_meta(_set("schema_version", 9))), "schema version 9"),
    (
        "resume-run-json-threads",
        resume(edit_meta(_set("execution", {"threads": "two"}))),
        "'execution' 'threads' is the text 'two'",
    ),
    (  # was: exit 0 with the missing trials untrained
        "resume-run-json-fused-group-size",
        resume(edit_meta(_set_execution("fused_group_size", -1))),
        "'execution' 'fused_group_size' is the number -1, not a count of 1 or more",
    ),
    (  # was: read as 1, groups of one that round otherwise than the run's
        "resume-run-json-fused-group-size-true",
        resume(edit_meta(_set_execution("fused_group_size", True))),
        "'execution' 'fused_group_size' is true, not a count of 1 or more",
    ),
    ("resume-run-json-trial-ids", resume(edit_meta(_set("trials", [1]))), "holds the number 1"),
    (
        "report-run-json-class-names",
        report(edit_meta(_set_dataset("class_names", 2))),
        "'class_names' is the number 2",
    ),
    (
        "resume-config-key",
        resume(edit_meta(_set_config("surprise", 1))),
        "its config has 'surprise', an option this losscmp does not know",
    ),
    (
        "resume-config-value",
        resume(edit_meta(_set_config("epochs", "many"))),
        "run.json is damaged: config",
    ),
    ("resume-changes-epochs", resume(run_folder, "--epochs", "9"), "changes epochs"),
    ("resume-drops-seeds", resume(two_seed_run, "--seeds", "1"), "can gain seeds, not lose"),
    ("resume-another-out", resume(run_folder, "--out", "elsewhere"), "--out elsewhere would be"),
    # report
    (
        "loss-ignore-index-beside-the-masks-own",
        folder_ignore_border_and_loss_ignore_index,
        "marks the pixels to ignore with 255",
    ),
    ("report-missing", lambda tmp: ["report", str(tmp / "nope")], "does not exist"),
    ("report-no-runs", lambda tmp: ["report", str(tmp)], "work is not a losscmp run folder"),
    ("report-a-file", report_a_file, "table.csv is a file, not a run folder (expected a folder"),
    (
        "report-a-file-of-a-run",
        report_inside_run("run.json"),
        "run.json is a file inside the run folder ",
    ),
    (
        "report-a-subfolder-of-a-run",
        report_inside_run("trials"),
        "trials is a folder inside the run folder ",
    ),
    ("report-name-too-long", lambda tmp: ["report", str(tmp / ("x" * 300))], "name too long"),
    ("report-metric", report(run_folder, "--metric", "dise"), "did you mean 'dice'"),
    ("report-csv-folder", report_csv_folder, "is a folder; give a file name"),
    ("report-csv-empty", report(run_folder, "--csv", ""), "error: --csv is empty; give a file"),
    ("report-html-empty", report(run_folder, "--html", ""), "error: --html is empty"),
    # was: the table written to a file named ' ' in the working folder
    ("report-csv-blank", report(run_folder, "--csv", " "), "error: --csv is empty"),
    # '-' is stdout to most tools: written as a file named '-' in the working folder
    (
        "report-csv-dash",
        report(run_folder, "--csv", "-"),
        "error: --csv -: standard output holds the tables; give a file name",
    ),
    ("report-html-dash", report(run_folder, "--html", "-"), "error: --html -: standard output"),
    ("report-csv-over-run-json", report_csv_over("run.json"), "is a file of the run folder"),
    ("report-csv-over-epochs", report_csv_over("epochs.csv"), "is a file of the run folder"),
    ("report-csv-fifo", report_csv_fifo, "is not a regular file"),
    ("report-csv-unwritable", report(run_folder, "--csv", "/sys/summary.csv"), "not writable"),
    (
        "report-html-unwritable",
        report(run_folder, "--html", "/sys/losscmp/page.html"),
        "not writable",
    ),
    ("report-html-under-a-file", report_html_under_file, "is a file, not a folder"),
    ("report-csv-into-trials", report_into_run("trials/page.json", "--csv"), "among its records"),
    ("report-html-into-panel", report_into_run("panel/x.html", "--html"), "among its records"),
    (
        "report-csv-into-damaged",
        report_into_run("trials/damaged/x.json", "--csv"),
        "inside trials/ of the run folder",
    ),
    ("report-csv-and-html-same", report_same_file, "--csv and --html name the same file"),
    (
        "report-csv-over-another-runs-summary",
        report_over_another_runs("summary.csv", "--csv"),
        "summary.csv is the summary.csv of run other, not of this report's run; write elsewhere",
    ),
    (
        "report-html-over-another-runs-page",
        report_over_another_runs("report.html", "--html"),
        "report.html is the report.html of run other, not of this report's run; write",
    ),
    (
        "report-csv-of-combined-runs-over-one-runs-summary",
        report_over_another_runs("summary.csv", "--csv", combined=True),
        "is the summary.csv of run other, not of this report's 2 runs combined; write",
    ),
    ("report-half-written", report(half_written), "half-written run.json"),
    ("report-run-json-corrupt", report(replace_run_json(b"[1, 2")), "not valid JSON"),
    ("report-run-json-empty", report(replace_run_json(b"")), "is damaged (empty"),
    ("report-schema", report(edit_meta(_set("schema_version", 9))), "schema version 9"),
    ("report-run-json-run-id", report(edit_meta(_set("run_id", 5))), "'run_id' is the number"),
    ("report-run-json-trials", report(edit_meta(_set("trials", "x"))), "not a list"),
    (
        "report-run-json-losses",
        report(edit_meta(_set("losses", {"dice": 5}))),
        "'losses' holds the number 5 at 'dice'",
    ),
    *[
        (f"report-every-trial-{name}", report(damage_trial(content, every=True)), message)
        for name, content, message in TRIAL_DAMAGES
    ],
    ("report-every-trial-copied", report(swapped_trials), "do not agree"),
    ("report-csv-only-empty", report(csv_only(_empty_file)), "empty: 0 bytes"),
    ("report-csv-only-repeated-row", report(csv_only(_duplicate_row)), "rows share"),
    ("report-csv-only-inf", report(csv_only(_infinite_score)), "with an infinite val_dice"),
    ("report-incomparable", incomparable, "cannot combine runs"),
]


def _case_id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


def test_the_table_has_enough_distinct_cases():
    names = [_case_id(case) for case in CASES]
    assert len(names) == len(set(names))
    assert len(names) >= 60


@pytest.mark.parametrize(("name", "args", "message"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_refused_cleanly(tmp_path, monkeypatch, name, args, message):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = args(work) if callable(args) else list(args)
    if argv and argv[0] in ("report", "datasets"):
        command = argv
    else:
        # A resumed run stays in its folder: another --out would be refused for itself.
        out = [] if {"--out", "--resume"} & set(argv) else ["--out", str(work / "results")]
        own = {"--epochs", "--config", "--resume"}  # these bring their own epochs
        quick = [] if own & set(argv) else ["--epochs", "1"]
        device = [] if "--device" in argv else ["--device", "cpu"]
        command = ["run", *out, *quick, *device, *argv]
    before = snapshot(work)
    result = invoke_command(*command)
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("losscmp: error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(work) == before, "the command left files behind or changed some"


# A damaged trial file: report reads the rest of the run and names the file, with its reason,
# in a note; the folder is left as it is (--resume sets the file aside and trains it again).
DAMAGED_TRIAL_CASES = [
    *[
        (f"report-trial-{name}", damage_trial(content), message)
        for name, content, message in TRIAL_DAMAGES
    ],
    ("report-trial-copied", renamed_trial, "do not agree"),
]


@pytest.mark.parametrize(
    ("name", "make_run", "message"), DAMAGED_TRIAL_CASES, ids=[c[0] for c in DAMAGED_TRIAL_CASES]
)
def test_a_damaged_trial_file_is_named_and_the_rest_reported(
    tmp_path, monkeypatch, name, make_run, message
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_dir = make_run(work)
    trials = snapshot(run_dir / "trials")
    result = invoke_command("report", str(run_dir))
    assert result.code == 0, (result.stdout, result.stderr)
    said = " ".join((result.stdout + result.stderr).split())
    assert message in said, said
    assert "sets them aside" in said or "sets it aside" in said, said
    assert "Traceback" not in said
    assert snapshot(run_dir / "trials") == trials, "report moved or changed a trial file"


def test_pretrained_weights_offline_are_refused_at_once(tmp_path, monkeypatch, offline_hub):
    """Offline, the hub's client retried each file five times, 1 to 8 s apart: ~30 s
    without a word before the error. Now one line at once, naming the cache."""
    monkeypatch.chdir(tmp_path)
    args = ["--config", SMOKE, "--epochs", "1", "--out", tmp_path / "runs"]
    result = invoke_command("run", *args, "--encoder-weights", "imagenet")
    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stderr.strip() == (
        "losscmp: error: could not load 'imagenet' encoder weights for the tiny model: "
        "huggingface.co cannot be reached (no internet access?); they are downloaded once "
        f"into {offline_hub}, then read from there"
    )
    assert not (tmp_path / "runs").exists()


def test_resume_of_a_folder_of_runs_names_its_newest_run(tmp_path, monkeypatch):
    """--resume given --out's folder (as 'report' takes it) rather than the run in it: the
    line names the run to resume, the newest by its start, not by its name."""
    monkeypatch.chdir(tmp_path)
    write_run("runs", quality={"dice": 0.8}, seeds=(0,), run_id="20260102-090000-bbbbbb")
    newer = write_run(
        "runs",
        quality={"dice": 0.8},
        seeds=(0,),
        run_id="20260101-120000-aaaaaa",
        extra_meta={"started_at": "2026-01-03T12:00:00+00:00"},
    )
    result = invoke_command("run", "--resume", "runs")
    assert result.code == 2
    assert result.stderr == (
        "losscmp: error: --resume runs is a folder of runs, not a run folder (did you mean "
        f"'--resume {newer}', its newest run?)\n"
    )


def test_resume_of_a_folder_of_folders_of_runs_names_the_newest_run(tmp_path, monkeypatch):
    """results/ holding an --out per experiment (results/pets/, results/synthetic/): the
    line names the newest run among them, as for a folder of runs."""
    monkeypatch.chdir(tmp_path)
    write_run("results/pets", quality={"dice": 0.8}, seeds=(0,), run_id="20260101-120000-aaaaaa")
    newest = write_run(
        "results/synthetic",
        quality={"dice": 0.8},
        seeds=(0,),
        run_id="20260102-120000-bbbbbb",
        extra_meta={"started_at": "2026-01-02T12:00:00+00:00"},
    )
    result = invoke_command("run", "--resume", "results")
    assert result.code == 2
    assert result.stderr == (
        "losscmp: error: --resume results is not a run folder, but its subfolders hold runs: "
        f"pets and synthetic (did you mean '--resume {newest}', the newest run in them?)\n"
    )


def test_resume_of_a_runs_file_names_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = write_run("runs", quality={"dice": 0.8}, seeds=(0,), run_id="20260101-120000-aa")
    result = invoke_command("run", "--resume", f"{run_dir}/trials")
    assert result.code == 2
    assert result.stderr == (
        f"losscmp: error: --resume {run_dir}/trials is a folder inside the run folder "
        f"{run_dir} (did you mean '--resume {run_dir}'?)\n"
    )


# A path that stands for no run, as each command is given it: the two commands once told
# these by the same steps in two places, worded differently ('--resume X is a file, not a
# run folder (a folder with run.json, ...)' beside 'X is a file, not a run folder
# (expected a folder with run.json, ...)'; an empty folder said 'no losscmp run found in X'
# to report and 'X is not a losscmp run folder (no run.json)' to --resume).
NOT_A_RUN = {
    "missing": ("nope", "{given} does not exist"),
    "a file": ("notes.txt", "{given} is a file, not a run folder (expected a folder with "
               "run.json{either}; 'losscmp run' makes them)"),
    "a file of a run": ("runs/r1/run.json", "{given} is a file inside the run folder runs/r1 "
                        "(did you mean '{retry} runs/r1'?)"),
    "a folder of a run": ("runs/r1/trials", "{given} is a folder inside the run folder "
                          "runs/r1 (did you mean '{retry} runs/r1'?)"),
    "empty": ("empty", "{given} is not a losscmp run folder (expected a folder with "
              "run.json{either}; 'losscmp run' makes them)"),
}  # fmt: skip


@pytest.mark.parametrize("kind", NOT_A_RUN)
def test_report_and_resume_word_a_path_that_is_no_run_alike(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    write_run("runs", quality={"dice": 0.8}, seeds=(0,), run_id="r1")
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "empty").mkdir()
    path, message = NOT_A_RUN[kind]
    report = invoke_command("report", path)
    resume = invoke_command("run", "--resume", path)
    assert (report.code, resume.code) == (2, 2)
    either = ", or one holding such folders"
    assert (
        report.stderr
        == "losscmp: error: "
        + message.format(given=path, retry="losscmp report", either=either)
        + "\n"
    )
    assert (
        resume.stderr
        == "losscmp: error: "
        + message.format(given=f"--resume {path}", retry="--resume", either="")
        + "\n"
    )


def test_resume_of_folders_of_runs_names_the_newest_run_as_a_shell_reads_it(tmp_path, monkeypatch):
    """The run to resume, pasted into a shell: a folder with a space is quoted."""
    monkeypatch.chdir(tmp_path)
    newest = write_run("results/my runs", quality={"dice": 0.8}, seeds=(0,), run_id="r1")
    result = invoke_command("run", "--resume", "results")
    assert result.code == 2
    assert result.stderr == (
        "losscmp: error: --resume results is not a run folder, but its subfolders hold runs: "
        f'"my runs" (did you mean \'--resume "{newest}"\', the newest run in them?)\n'
    )


# --------------------------------------------------------------------------- which error wins

# ``report`` given several wrong things names the first of them in this order (the order
# the checks had when they lived in summary.py and the renderers; losscmp.report_args now):
# an empty --csv, an empty --html, --csv and --html naming one file, --csv's target,
# --html's target, --metric, then each path in the order given (missing, or holding no
# run), and only then what is inside the runs (a damaged run.json).
PRECEDENCE = [
    (
        ["--csv", "", "--html", "", "--metric", "dise", "{missing}"],
        "--csv is empty; give a file name",
    ),
    (
        ["--html", "", "--csv", "{folder}", "--metric", "dise", "{missing}"],
        "--html is empty; give a file name",
    ),
    (
        ["--csv", "{tmp}/same", "--html", "{tmp}/same", "--metric", "dise", "{missing}"],
        "--csv and --html name the same file {tmp}/same",
    ),
    (
        ["--html", "/sys/x/page.html", "--csv", "{folder}", "--metric", "dise", "{missing}"],
        "--csv {folder} is a folder; give a file name, e.g. {folder}/summary.csv",
    ),
    (
        ["--html", "{folder}", "--metric", "dise", "{missing}"],
        "--html {folder} is a folder; give a file name, e.g. {folder}/report.html",
    ),
    (
        ["--metric", "dise", "{missing}", "{folder}"],
        "unknown metric 'dise' (did you mean 'dice'?); choose from: ap, dice, dice_t, ece, "
        "image_dice, image_iou, iou, iou_t, mcc, mcc_t",
    ),
    (["{damaged}", "{missing}", "{folder}"], "{missing} does not exist"),
    (
        ["{damaged}", "{folder}", "{missing}"],
        "{folder} is not a losscmp run folder (expected a folder with run.json, or one "
        "holding such folders; 'losscmp run' makes them)",
    ),
]


@pytest.mark.parametrize(("args", "message"), PRECEDENCE, ids=range(len(PRECEDENCE)))
def test_report_names_the_first_of_several_errors(tmp_path, args, message):
    damaged = replace_run_json(b"[1, 2")(tmp_path)
    names = {"tmp": tmp_path, "missing": tmp_path / "nope", "folder": tmp_path / "empty"}
    (tmp_path / "empty").mkdir()
    fill = {**names, "damaged": damaged}
    result = invoke_command("report", *(arg.format(**fill) for arg in args))
    assert result.code == 2, result.stdout
    assert result.stderr == f"losscmp: error: {message.format(**fill)}\n"


def test_report_of_a_folder_whose_subfolders_hold_runs_names_them(tmp_path, monkeypatch):
    """'losscmp report results' where each experiment has its own --out (results/pets/,
    results/synthetic/) said only 'no losscmp run found in results'."""
    for name in ("synthetic", "pets", "my runs"):
        write_run(tmp_path / "results" / name, quality={"dice": 0.8})
    (tmp_path / "results" / "notes").mkdir()
    monkeypatch.chdir(tmp_path)
    result = invoke_command("report", "results")
    assert result.code == 2
    assert result.stderr == (
        "losscmp: error: results is not a run folder, but its subfolders hold runs: "
        '"my runs", pets and synthetic (did you mean \'losscmp report "results/my runs"\'?)\n'
    )


def test_report_of_a_run_folders_file_names_the_run_to_report(tmp_path, monkeypatch):
    """'losscmp report run.json' (or '.' in trials/) said 'no losscmp run found', though
    the run folder was one level up; it names that folder, spelled as it was given."""
    run_dir = run_folder(tmp_path)
    monkeypatch.chdir(run_dir)
    result = invoke_command("report", "run.json")
    assert result.code == 2
    assert result.stderr == (
        "losscmp: error: run.json is a file inside the run folder . "
        "(did you mean 'losscmp report .'?)\n"
    )
    monkeypatch.chdir(run_dir / "trials")
    result = invoke_command("report", ".")
    assert result.stderr == (
        f"losscmp: error: . is a folder inside the run folder {run_dir} "
        f"(did you mean 'losscmp report {run_dir}'?)\n"
    )
