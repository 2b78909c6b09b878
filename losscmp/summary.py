"""Run folders -> one summary frame: what every output of ``report`` shows.

Each output is a renderer over the frame this module builds (``losscmp.render``:
terminal, CSV, HTML, figures), so they all show the same numbers.

Reads run folders only through ``losscmp.results.RunStore`` (run.json and
trials/ are the truth; epochs.csv / images.csv that disagree with them are
rebuilt and the disagreement becomes a note in ``RunResults.notes``; see
docs/architecture.md) and never imports torch or the training code, so
``losscmp report`` stays quick.

Definitions the table and CSV rely on:

- A trial's **best epoch** is the epoch with the best validation headline
  metric (``val_<metric>`` in epochs.csv: the highest, the lowest for ECE; the
  first among equals); all ``best_*`` columns are read at that epoch, on the
  test split where the run has one, so they describe one model snapshot.
  **Final** is the last validated epoch. The headline is the dataset-level
  score (counts summed over the test split) at the best epoch, unless
  ``metric`` names another.
- The interval and the paired test against the best (see ``losscmp.stats``)
  work on the per-seed headline scores: a t-interval over seeds and a paired
  t-test over seeds, Holm-adjusted. One seed gives neither.
- images.csv gives the boundary metric: HD95 (and NSD when present) at the
  final epoch, averaged over the test images (validation ones in runs without a
  test split, or written before images.csv recorded its split), then over seeds.
- **Diverged** trials (status ``diverged`` in trials/) are left out of every
  mean; the row's status says how many seeds diverged and the first epoch. A
  loss ranks after every loss with fewer diverged seeds (as a learning rate
  does: a mean over the survivors would reward instability). A loss whose
  every seed diverged keeps a row with empty scores and no rank.
- **Combining runs**: several run folders are reported together when every
  run has the same datasets (same labels and identical dataset info: sizes,
  image size, foreground fractions) and the same result-affecting settings
  (everything in the config except the loss list, the number of seeds and the
  purely practical fields, plus the resolved model); ``seed`` counts, because
  it also seeds the data.
  No (dataset, loss, seed) trial may appear twice. Otherwise a
  ``LosscmpError`` says which setting differs.
- **Imbalance dial**: datasets whose specs differ only in ``fg_fraction``
  form a dial; :func:`imbalance_frame` gives each loss's headline score per
  fraction.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from losscmp import selection, stats
from losscmp.config import flag_name, rate_text, separate_fused_copies
from losscmp.devices import rounding_key
from losscmp.errors import LosscmpError, SpecError
from losscmp.metric_names import (
    BINARY_METRICS,
    METRIC_TITLES,
    METRICS,
    PLAIN_METRICS,
    score_range,
)
from losscmp.report_args import (
    check_metric,
    resolve_run_dirs,
)
from losscmp.results import (
    RunStore,
    is_run_dir,
    planned_trial_names,
    runs_newest_first,
    shell_path,
    trial_id,
)
from losscmp.spec import Spec, parse_spec

# Config fields that may differ between runs reported together: what was
# compared (losses, seeds count) and where/how it ran, not what it computed.
COMBINABLE_CONFIG_FIELDS = frozenset(
    {"losses", "seeds", "dataset", "fg_fraction", "out", "num_workers", "device", "data_dir"}
    | {"tracking"}  # where the run was mirrored to
    # How trials were spread over processes and machines: never a trial's numbers.
    | {"executor", "jobs", "trials_per_gpu", "ray_address"}
    # Threads per trial and fusion as asked for: what they resolved to is run.json's
    # execution, whose differences change the rounding only and are noted (_rounding_notes).
    | {"threads", "fuse"}
)
# Dataset info fields that name a location rather than the data itself.
LOCATION_INFO_FIELDS = frozenset({"source", "path", "data_dir", "root"})
# ... and those that say how this run loaded the data: the first run of a folder or pets
# dataset writes its decode cache, the next ones hit it (the fingerprint compares the data).
LOADING_INFO_FIELDS = frozenset({"cache", "cache_dir", "cache_data_folder", "load_seconds"})
# A mask's label for pixels to ignore: losscmp.data.base.IGNORE_INDEX, kept here so that a
# report imports no dataset code (render/figures.py reads it too).
IGNORE_LABEL = 255
# The metrics with best/final columns in the table (the headline's own are the first ones).
TABLE_METRICS = ("dice", "iou", "mcc")
# best_dice_t_mean is Dice at the chosen threshold, not a class named "t".
PER_CLASS_COLUMN = re.compile(r"best_dice_(?!t_mean\Z)(.+)_mean")
# Binary columns shown beside the headline when present: chosen threshold, Dice there, AP, ECE.
THRESHOLD_TABLE_METRICS = ("dice_t", "ap", "ece")
# The caption's advice where every loss has one seed (one_seed_advice says when it differs).
ONE_SEED_ADVICE = "use --seeds 3 or more"


@dataclass
class RunResults:
    """Everything ``report`` needs from one run folder (or several combined)."""

    run_dirs: list[Path]
    metas: list[dict[str, Any]]
    datasets: dict[str, dict[str, Any]]
    trials: pd.DataFrame
    epochs: pd.DataFrame
    images: pd.DataFrame
    losses: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the reader found and fixed or could not: stale tables rebuilt, damaged
    # trial files set aside by --resume, skipped images. The CLI prints each as a
    # note under the table.
    notes: list[str] = field(default_factory=list)
    # Per run folder, its failed trials no record has replaced ({id: reason}); a note
    # of report_notes, which 'losscmp run' leaves out: its last line names them.
    failed_trials: dict[Path, dict[str, str]] = field(default_factory=dict)
    # Per run folder, the ids of its damaged trial files a report left out (a note names
    # them; their trials count as unfinished): trials/ still holds those files.
    damaged_trials: dict[Path, list[str]] = field(default_factory=dict)

    @property
    def run_ids(self) -> list[str]:
        return [
            meta.get("run_id", path.name)
            for meta, path in zip(self.metas, self.run_dirs, strict=True)
        ]


@dataclass(frozen=True)
class Report:
    """What every renderer gets: the (combined) runs, their summary frame, the headline."""

    results: RunResults
    summary: pd.DataFrame
    metric: str

    @property
    def caption(self) -> str:
        return headline_caption(
            self.metric,
            self.summary,
            seed_advice=self.seed_advice,
            every_rate_in=self.every_rate_in,
        )

    @property
    def seed_advice(self) -> str:
        return one_seed_advice(self.results)

    @property
    def every_rate_in(self) -> str:
        return every_rate_file(self.results)

    @property
    def notes(self) -> list[str]:
        return report_notes(self.results)


def build_report(paths: Sequence[Path | str], metric: str = "dice") -> Report:
    """Find, read, combine and summarise runs: the one entry point of every output."""
    metric = check_metric(metric)
    runs = [load_run(run_dir, damaged_ok=True) for run_dir in resolve_run_dirs(paths)]
    results = combine_runs(runs)
    summary = summarize(results, metric)
    results.notes += unscored_notes(summary)
    return Report(results, summary, metric)


def unscored_notes(summary: pd.DataFrame) -> list[str]:
    """Per loss (at its chosen rate) with finished seeds that have no headline score at
    their chosen epoch (NaN in the record), what its mean, interval and test leave out:
    otherwise a loss could rank first on fewer seeds than its row counts, saying 'ok'."""
    notes = []
    rows = selection.chosen_rows(summary)
    several = rows["dataset"].nunique() > 1
    for row in rows.itertuples(index=False):
        unscored = int(row.n_seeds - row.n_diverged - row.n_scored)
        if unscored <= 0:
            continue
        where = f" on '{row.dataset}'" if several else ""
        title = METRIC_TITLES[row.metric]
        has = "has" if unscored == 1 else "have"
        seeds = "1 seed" if row.n_scored == 1 else f"{row.n_scored} seeds"
        mean = f"its mean is over {seeds}" if row.n_scored else "it has no mean"
        notes.append(
            f"{row.loss}{where}: {unscored} of its {row.n_seeds} seeds {has} no "
            f"{split_word(summary)} {title} at its chosen epoch (NaN in the run's records); "
            f"{mean}"
        )
    return notes


def report_notes(results: RunResults, *, failed_trials: bool = True) -> list[str]:
    """Everything a reader should know besides the numbers, each once: what the reader
    repaired or could not, failed (unless ``failed_trials`` is False: the caller names
    them itself) and unfinished trials. A folder's ``--resume`` command is given once:
    its damaged files' notes (the store's) come first and give it, later notes refer to it."""
    notes = run_notes(results)
    resume_given = set(results.damaged_trials)
    if failed_trials:
        notes += failed_trial_notes(results, resume_given)
        resume_given |= set(results.failed_trials)
    for path, ids in unfinished_trial_ids(results).items():
        # A damaged file's trial has its own note above: counted again it read as another.
        ids = [trial for trial in ids if trial not in results.damaged_trials.get(path, [])]
        if not ids:
            continue
        missing = f"{len(ids)} planned trial(s) have no result yet"
        writer = _other_writer(path)
        if writer is not None:  # a run still training: no resume
            by = f" (pid {writer})" if writer > 0 else ""
            notes.append(f"{path} is still being written by another losscmp process{by}: {missing}")
            continue
        meta = results.metas[results.run_dirs.index(path)]
        # run.json restores the rest of the command
        command = "finish it with: losscmp run --resume {path}"
        fix = _resume_again(path, resume_given, command, "finishes it too")
        notes.append(f"{path} is unfinished: {missing} ({_some_trials(ids, meta)}); {fix}")
    return notes


def _resume_again(path: Path, resume_given: set[Path], command: str, does: str) -> str:
    """A note's fix: its ``command`` (``{path}``: the folder), or, where an earlier note
    gave the folder's --resume, that the same command ``does`` this too."""
    if path in resume_given:
        return f"the same 'losscmp run --resume' {does}"
    return command.format(path=shell_path(path))


# Unfinished trials a note names; the rest it counts (a stopped run of 345 may lack 300).
NAMED_TRIALS = 3


def _some_trials(ids: list[str], meta: dict[str, Any]) -> str:
    """'dice @ lr 0.01 · seed 2', or the first NAMED_TRIALS 'and 12 more': a count alone
    left a reader of a 276-trial run to find the missing row among the files."""
    names = planned_trial_names(meta)
    shown = ", ".join(names.get(trial, trial) for trial in ids[:NAMED_TRIALS])
    more = len(ids) - NAMED_TRIALS
    return f"{shown} and {more} more" if more > 0 else shown


def _other_writer(run_dir: Path) -> int | None:
    """The pid of another process writing the run (still training it), else None."""
    writer = RunStore(run_dir).locked_by()
    return writer if writer is not None and writer != os.getpid() else None


def failed_trial_notes(results: RunResults, resume_given: set[Path] = frozenset()) -> list[str]:
    """Per run folder with failed trials: how many, the first named as the run's lines
    named it ('bce · seed 0') with its reason, and how to train them again (where an
    earlier note gave that folder's --resume, in ``resume_given``, that it does)."""
    notes = []
    for path, meta in zip(results.run_dirs, results.metas, strict=True):
        failed = results.failed_trials.get(path)
        if not failed:
            continue
        first, reason = next(iter(failed.items()))
        name = planned_trial_names(meta).get(first, first)
        several = len(failed) > 1
        counted = f"{len(failed)} trials failed (e.g. " if several else "1 trial failed ("
        them = "them" if several else "it"
        command = f"'losscmp run --resume {{path}}' tries {them} again"
        fix = _resume_again(path, resume_given, command, f"tries {them} again too")
        notes.append(f"{path}: {counted}{name}: {reason}); {fix}")
    return notes


def unfinished_trials(results: RunResults) -> dict[Path, int]:
    """Per run folder, how many planned trials (run.json's ``trials``) have no result yet,
    but those that failed (their own note counts them: the same trial twice read as two)."""
    return {run_dir: len(ids) for run_dir, ids in unfinished_trial_ids(results).items()}


def unfinished_trial_ids(results: RunResults) -> dict[Path, list[str]]:
    """Per run folder, the ids of :func:`unfinished_trials`, in run.json's order."""
    done = set(results.trials["trial_id"])
    missing = {}
    for run_dir, meta in zip(results.run_dirs, results.metas, strict=True):
        failed = set(results.failed_trials.get(run_dir, {}))
        ids = [trial for trial in meta.get("trials") or [] if trial not in done | failed]
        if ids:
            missing[run_dir] = ids
    return missing


# --------------------------------------------------------------------------- finding runs


def source_lines(stood_for: Mapping[Path, Path], results: RunResults) -> list[str]:
    """What the paths alone do not say about the table: which run a folder of runs stood
    for (its newest, of how many; ``stood_for``: each path given -> the run folder read,
    ``report_args.resolve_runs``), and, for a combined table, each run's losses and seeds
    (the table merges their rows)."""
    lines = []
    for path, run_dir in stood_for.items():
        if path.is_dir() and not is_run_dir(path):
            lines.append(f"{path}: {_which_run(path, run_dir)}")
    if len(results.run_dirs) > 1:
        parts = []
        for run_dir, meta in zip(results.run_dirs, results.metas, strict=True):
            run_id = meta.get("run_id", run_dir.name)
            trials = results.trials[results.trials["run_id"] == run_id]
            seeds = sorted(int(seed) for seed in trials["seed"].dropna().unique())
            rates = sorted(float(rate) for rate in trials["base_lr"].dropna().unique())
            said = [
                ", ".join(dict.fromkeys(trials["loss"])),
                f"seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))}",
                *([f"lr {', '.join(map(rate_text, rates))}"] if rates else []),
            ]
            parts.append(f"{run_dir} ({'; '.join(said)})")
        lines.append(f"{len(parts)} runs combined in one table: " + "; ".join(parts))
    return lines


def _which_run(folder: Path, taken: Path) -> str:
    """Why ``taken``, the run read for ``folder``, is the one of its runs reported. Not
    resolved again: the newest run's first trial may have ended since ``taken`` was read."""
    runs = runs_newest_first(folder)
    names = [run.name for run in runs]
    newer = runs[: names.index(taken.name)] if taken.name in names else []
    if len(runs) == 1:
        return f"its one run, {taken.name}"
    if not newer:
        return f"its newest run, {taken.name} (of {len(runs)} runs there)"
    return (
        f"its newest run with a finished trial, {taken.name} (of {len(runs)} runs there; "
        f"newer, without one yet: {', '.join(run.name for run in newer)})"
    )


# --------------------------------------------------------------------------- loading


def load_run(run_dir: Path | str, *, repair: bool = True, damaged_ok: bool = False) -> RunResults:
    """Read one run folder through the store; a clear LosscmpError when it is not a readable run.

    The trial files are the truth: epochs.csv / images.csv that disagree with
    them are rebuilt (``repair``) and the disagreement is listed in ``notes``;
    a damaged trial file is an error naming it (``run --resume`` sets it aside), or with
    ``damaged_ok`` (``report``) left out and named in a note, unless every one is damaged.
    """
    run_dir = Path(run_dir)
    stored = RunStore(run_dir).read(repair=repair, damaged_ok=damaged_ok)
    meta = stored.meta
    trials = _trial_frame(stored.records)
    epochs, images = stored.epochs, stored.images
    if trials.empty:
        trials = _trials_from_epochs(epochs)
    # Version 1 trials trained at the run's one --lr and did not record it.
    trials["base_lr"] = trials["base_lr"].astype(float).fillna(_run_lr(meta))
    datasets = dict(meta.get("datasets") or {})
    return RunResults(
        run_dirs=[run_dir],
        metas=[meta],
        datasets=datasets,
        trials=trials.assign(run_id=meta.get("run_id", run_dir.name)),
        epochs=epochs,
        images=images,
        losses=dict(meta.get("losses") or {}),
        notes=[*stored.notes, *_dataset_notes(datasets)],
        failed_trials={run_dir: stored.failed} if stored.failed else {},
        damaged_trials={run_dir: [item.path.stem for item in stored.damaged]}
        if stored.damaged
        else {},
    )


def _dataset_notes(datasets: dict[str, dict[str, Any]]) -> list[str]:
    """Images a dataset lacked, skipped or decoded only in part (pets: see losscmp.data.pets)."""
    notes = []
    for label, info in datasets.items():
        if not isinstance(info, dict):
            continue
        unreadable = int(info.get("unreadable_count") or 0)
        truncated = int(info.get("truncated_count") or 0)
        missing = int(info.get("missing_file_count") or 0)
        if missing:
            shown = ", ".join(map(str, info.get("missing_files") or []))
            notes.append(
                f"dataset '{label}': {missing} listed file(s) are missing from the folder, so "
                "their images were left out" + (f" ({shown})" if shown else "")
            )
        if unreadable:
            shown = ", ".join(map(str, info.get("unreadable") or []))
            notes.append(
                f"dataset '{label}': {unreadable} unreadable image(s) were left out"
                + (f" ({shown})" if shown else "")
            )
        if truncated:
            shown = ", ".join(map(str, info.get("truncated") or []))
            notes.append(
                f"dataset '{label}': {truncated} truncated image(s) were used as far as "
                "they decode" + (f" ({shown})" if shown else "")
            )
        notes += _merged_labels_note(label, info)
    return notes


def _merged_labels_note(label: str, info: dict[str, Any]) -> list[str]:
    """A folder read as binary whose masks hold several labels (losscmp.data.folder.
    merged_labels): class indices read so, num_classes forgotten, train a binary run that
    looks like any other."""
    merged = [value for value in info.get("merged_labels") or [] if isinstance(value, int)]
    if not merged:
        return []
    classes = [value for value in merged if value != IGNORE_LABEL]
    values = ", ".join(map(str, merged[:-1])) + f" and {merged[-1]}"
    return [
        f"dataset '{label}': its masks hold the labels {values}, all read as one foreground "
        f"(binary, num_classes=2); if they are classes, give num_classes={max(classes) + 1} "
        f"({IGNORE_LABEL} then marks pixels to ignore)"
    ]


def run_notes(results: RunResults) -> list[str]:
    """The notes of a (combined) result, each once, for printing under the table."""
    return list(dict.fromkeys(results.notes))


def _run_lr(meta: dict[str, Any]) -> float:
    rate = (meta.get("config") or {}).get("lr")
    return float(rate) if isinstance(rate, int | float) else math.nan


def _trial_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    columns = [
        "trial_id", "dataset", "loss", "base_lr", "seed", "status", "diverged_epoch", "seconds"
    ]  # fmt: skip
    rows = [{column: record.get(column) for column in columns} for record in records]
    return pd.DataFrame(rows, columns=columns)


def _trials_from_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Trial status when trials/ is absent: a 'diverged' epoch row marks a diverged trial."""
    rows = []
    if "base_lr" not in epochs.columns:
        epochs = epochs.assign(base_lr=math.nan)
    keys = ["dataset", "loss", "base_lr", "seed"]
    for (dataset, loss, rate, seed), group in epochs.groupby(keys, sort=False, dropna=False):
        statuses = group.get("status", pd.Series(dtype=object))
        diverged = group.loc[statuses == "diverged", "epoch"]
        rate = None if pd.isna(rate) else float(rate)
        rows.append(
            {
                "trial_id": trial_id(dataset, loss, int(seed), rate),
                "dataset": dataset,
                "loss": loss,
                "base_lr": rate,
                "seed": seed,
                "status": "diverged" if len(diverged) else "finished",
                "diverged_epoch": int(diverged.min()) if len(diverged) else None,
                "seconds": group["seconds"].sum() if "seconds" in group else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- combining


def combine_runs(runs: Sequence[RunResults]) -> RunResults:
    """One RunResults from several comparable runs; LosscmpError saying why when not."""
    if not runs:
        raise LosscmpError("no runs to report")
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    for other in runs[1:]:
        _check_comparable(first, other)
    trials = pd.concat([run.trials for run in runs], ignore_index=True)
    _check_no_repeated_trials(pd.concat([trials, *_damaged_stand_ins(runs)]), runs)
    return RunResults(
        run_dirs=[path for run in runs for path in run.run_dirs],
        metas=[meta for run in runs for meta in run.metas],
        datasets=dict(first.datasets),
        trials=trials,
        epochs=pd.concat([run.epochs for run in runs], ignore_index=True),
        images=pd.concat([run.images for run in runs], ignore_index=True),
        losses={label: info for run in runs for label, info in run.losses.items()},
        notes=[note for run in runs for note in run.notes] + _rounding_notes(runs),
        failed_trials={path: failed for run in runs for path, failed in run.failed_trials.items()},
        damaged_trials={path: ids for run in runs for path, ids in run.damaged_trials.items()},
    )


def _rounding_notes(runs: Sequence[RunResults]) -> list[str]:
    """Combinable runs may still have rounded differently: on another kind of device, at
    another thread count, fused or not. Said, since it moves scores by about a seed's spread."""
    setups = {run.run_ids[0]: _rounding_setup(run.metas[0]) for run in runs}
    differing = [
        name
        for name in ("device", "threads", "fused")
        if len({setup[name] for setup in setups.values() if setup[name] is not None}) > 1
    ]
    if not differing:
        return []
    shown = "; ".join(
        f"{run_id}: " + ", ".join(f"{name} {setup[name]}" for name in differing)
        for run_id, setup in setups.items()
    )
    return [
        f"the combined runs differ in {', '.join(differing)} ({shown}): that changes the "
        "floating-point order, which training amplifies (on the demo, about one seed's "
        "spread); for the closest comparison, run every loss with the same setting"
    ]


def _rounding_setup(meta: dict[str, Any]) -> dict[str, Any]:
    """What decided a run's floating-point order besides its config (None: not recorded)."""
    execution = meta.get("execution") or {}
    return {
        # A CPU with another instruction set (or another GPU) rounds differently too;
        # "cpu: x86_64" alone (a run from before that was kept) is compared as it is.
        "device": rounding_key(str(meta.get("device", ""))) or meta.get("device") or None,
        "threads": execution.get("threads"),
        "fused": _fusion_rounded_otherwise(meta, execution),
    }


def _fusion_rounded_otherwise(meta: dict[str, Any], execution: dict[str, Any]) -> bool:
    """Whether fusion gave the run other numbers than ``--fuse off``: not where its copies
    were models of their own (fused.SeparateCopies, the CPU since ``fused_own_weights``)."""
    # Runs from before fusion was recorded were not fused (runner.stored_execution).
    if not execution.get("fused", False):
        return False
    device_type = str(meta.get("device", "")).split(":")[0]
    own = execution.get("fused_per_copy"), execution.get("fused_own_weights")
    return not separate_fused_copies(*own, device_type)


def _check_comparable(first: RunResults, other: RunResults) -> None:
    names = f"{first.run_ids[0]} and {other.run_ids[0]}"
    _check_same_splits(first, other, names)
    first_setup, other_setup = _setup(first), _setup(other)
    if set(first.datasets) != set(other.datasets):
        raise LosscmpError(
            f"cannot combine runs {names}: different datasets ("
            + _datasets_shown(first, first_setup)
            + " vs "
            + _datasets_shown(other, other_setup)
            + ")"
        )
    # The setup first: another --image-size or --limit gives other images too, and that is
    # the difference to name. The first seed last: a generated set's images come from it,
    # which _why_other_images explains beside the data's difference.
    _refuse_other_setup(first_setup, other_setup, names, {"seed"})
    for label, info in first.datasets.items():
        theirs = other.datasets[label]
        ignored = LOCATION_INFO_FIELDS | LOADING_INFO_FIELDS
        if "fingerprint" not in info or "fingerprint" not in theirs:
            ignored = ignored | {"fingerprint"}  # a run made before fingerprints were kept
        difference = _first_difference(info, theirs, ignored)
        if difference.startswith("fingerprint "):
            raise LosscmpError(
                f"cannot combine runs {names}: dataset '{label}' holds other images in each "
                f"(data fingerprint {info['fingerprint']} vs {theirs['fingerprint']})"
                + _why_other_images(info, first.metas[0], other.metas[0])
            )
        if difference:
            raise LosscmpError(
                f"cannot combine runs {names}: dataset '{label}' differs in {difference}"
            )
    _refuse_other_setup(first_setup, other_setup, names, ())


def _setup(run: RunResults) -> dict[str, Any]:
    """A run's options, with its resolved model (run.json "model": model=auto picks by
    device). A grid run's --lr is left out: it trained at its grid's rates only."""
    setup = {**(run.metas[0].get("config") or {}), "model": _model(run.metas[0])}
    if setup.get("lr_grid"):
        setup["lr"] = None
    return setup


def _refuse_other_setup(
    first: dict[str, Any], other: dict[str, Any], names: str, ignored: Iterable[str]
) -> None:
    ignored = COMBINABLE_CONFIG_FIELDS | set(ignored)
    key = _first_different_key(first, other, ignored)
    if key is None:
        return
    shown = [_setting_shown(key, setup, first, other) for setup in (first, other)]
    # Alike as options yet unlike inside (a model preset defined otherwise): show the values.
    difference = " vs ".join(shown) if shown[0] != shown[1] else None
    raise LosscmpError(
        f"cannot combine runs {names}: "
        f"{difference or _first_difference(first, other, ignored)}; "
        "a fair comparison needs the same setup"
    )


def _setting_shown(key: str, setup: dict[str, Any], *both: dict[str, Any]) -> str:
    """One run's value of ``key`` as the user set it: ``--epochs 2``; learning rates as
    ``a rate grid (--lr-grid 0.001,0.01)`` or ``one rate (--lr 0.003)`` beside a grid."""
    if key in LEARNING_RATE_FIELDS and any(run.get("lr_grid") for run in both):
        return _rates_shown(setup)
    return _option_shown(key, setup.get(key))


# A run trains at --lr, or at each rate of --lr-grid and never at --lr: the two are
# compared as one setting, shown as the user set it.
LEARNING_RATE_FIELDS = ("lr", "lr_grid")


def _rates_shown(setup: dict[str, Any]) -> str:
    """``a rate grid (--lr-grid 0.001,0.01)`` or ``one rate (--lr 0.003)``."""
    grid = setup.get("lr_grid")
    if grid:
        return f"a rate grid ({flag_name('lr_grid')} {_values_shown(grid)})"
    return f"one rate ({flag_name('lr')} {_values_shown(setup.get('lr'))})"


def _option_shown(key: str, value: Any) -> str:
    """The option as a flag with its value: ``--epochs 2``, ``--no-amp``, ``--limit none``."""
    if isinstance(value, bool):
        return flag_name(key) if value else flag_name(f"no_{key}")
    return f"{flag_name(key)} {_values_shown(value)}"


def _values_shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict) and "preset" in value:  # a resolved model: its preset's name
        return str(value["preset"])
    if isinstance(value, list):
        return ",".join(_values_shown(item) for item in value)
    return rate_text(value) if isinstance(value, float) else str(value)


def _datasets_shown(run: RunResults, setup: dict[str, Any]) -> str:
    """A run's datasets, and the --fg-fraction sweep that made them where there was one."""
    shown = ", ".join(sorted(run.datasets))
    sweep = setup.get("fg_fraction")
    return f"{shown} from {_option_shown('fg_fraction', sweep)}" if sweep else shown


def _check_same_splits(first: RunResults, other: RunResults, names: str) -> None:
    """A run made before the test split (schema 1) has validation scores only: beside a
    run scored on test its losses would have no headline, under a caption saying test."""
    older = [run for run in (first, other) if run.metas[0].get("schema_version") == 1]
    if len(older) != 1:
        return
    newer = other if older[0] is first else first
    raise LosscmpError(
        f"cannot combine runs {names}: {older[0].run_ids[0]} was made before losscmp kept a "
        f"test split (schema 1: its scores are on validation) and {newer.run_ids[0]} is "
        "scored on test; report them separately"
    )


def _why_other_images(info: dict[str, Any], first: dict[str, Any], other: dict[str, Any]) -> str:
    """Generated data is drawn from a run's first seed (losscmp.data.synthetic): runs with
    another --seed hold other images, a surprise to whoever meant to add seeds."""
    seeds = [(meta.get("config") or {}).get("seed") for meta in (first, other)]
    if info.get("source") != "generated" or seeds[0] == seeds[1]:
        return ""
    return (
        f": its images are generated from a run's first seed (--seed {seeds[0]} vs "
        f"{seeds[1]}); to add seeds to a run, run its command again with more --seeds and "
        "--resume RUN_DIR"
    )


def _model(meta: dict[str, Any]) -> Any:
    return meta.get("model") or (meta.get("config") or {}).get("model")


def _first_difference(left: dict, right: dict, ignored: Iterable[str]) -> str:
    """'key (a vs b)' for the first key whose values differ, or ''."""
    key = _first_different_key(left, right, ignored)
    return "" if key is None else f"{key} ({left.get(key)!r} vs {right.get(key)!r})"


def _first_different_key(left: dict, right: dict, ignored: Iterable[str]) -> str | None:
    ignored = set(ignored)
    for key in sorted((set(left) | set(right)) - ignored):
        if left.get(key) != right.get(key):
            return key
    return None


def _damaged_stand_ins(runs: Sequence[RunResults]) -> list[pd.DataFrame]:
    """For a run's damaged trial file (left out of the report), another run's row of that
    trial, as this run's: a repeat as much as two readable files. Unchecked, the other
    run's silently took the damaged one's place, until --resume trained it again and the
    runs no longer combined."""
    stand_ins = []
    for run in runs:
        damaged = {trial for ids in run.damaged_trials.values() for trial in ids}
        for other in runs:
            if other is not run and damaged:
                found = other.trials[other.trials["trial_id"].isin(damaged)]
                stand_ins.append(found.assign(run_id=run.run_ids[0]))
    return stand_ins


def _check_no_repeated_trials(trials: pd.DataFrame, runs: Sequence[RunResults]) -> None:
    repeated = trials[trials.duplicated(["dataset", "loss", "base_lr", "seed"], keep=False)]
    if repeated.empty:
        return
    row = repeated.iloc[0]
    run_ids = sorted(set(repeated["run_id"].astype(str)))
    names, copies = ", ".join(run_ids), ""
    if len(run_ids) == 1:  # one run's folder copied (a backup, a download): name the folders
        folders = [run.run_dirs[0] for run in runs if run.run_ids[0] == run_ids[0]]
        names = " and ".join(map(str, folders))
        copies = f" (both are run {run_ids[0]}: copies of one run)"
    raise LosscmpError(
        f"cannot combine runs {names}: each has loss '{row['loss']}' seed {row['seed']} "
        f"on '{row['dataset']}'{copies}; report one of them, or runs with different losses"
    )


# --------------------------------------------------------------------------- summarising


def summarize(runs: RunResults | Sequence[RunResults], metric: str = "dice") -> pd.DataFrame:
    """One row per (dataset, loss), best first within each dataset.

    Columns: ``dataset, loss, metric, rank``; the headline ``score_mean,
    score_std, ci_low, ci_high`` (over seeds); ``p_value, p_holm,
    indistinguishable_from_best`` (paired test against the best); ``n_seeds,
    n_diverged, status, diverged_epoch, best_epoch`` (mean over seeds),
    ``seconds`` (mean per trial); ``best_<m>_mean/_std`` and
    ``final_<m>_mean/_std`` for m in dice, iou, mcc, image_dice, image_iou and, binary,
    dice_t, iou_t, mcc_t, ap, ece (read on ``headline_split``: test where the run has
    one, else validation, at the epoch chosen on validation / the last epoch);
    ``threshold_mean`` (binary: the validation-chosen threshold at the chosen epoch);
    ``lr, val_score_mean, lr_chosen`` (one row per learning rate; rank, p and the table
    use the chosen rows; see ``losscmp.selection``);
    ``final_hd95_mean/_std`` (and ``final_nsd_*`` when images.csv has it) over the
    ``images_split`` images;
    ``is_best, fg_fraction, dial_group``; multiclass adds
    ``best_dice_<class>_mean/_std`` and ``final_dice_<class>_mean/_std``.
    """
    metric = check_metric(metric)
    results = runs if isinstance(runs, RunResults) else combine_runs(list(runs))
    _check_metric_recorded(results, metric)
    frames = [_summarize_dataset(results, dataset, metric) for dataset in dataset_order(results)]
    return pd.concat(frames, ignore_index=True)


def _check_metric_recorded(results: RunResults, metric: str) -> None:
    """Threshold scores, AP and ECE exist for binary runs of schema 2 only; AP, where
    validation has a foreground pixel too (the epoch is chosen on validation)."""
    if metric not in BINARY_METRICS or _recorded(results, metric):
        return
    title = METRIC_TITLES[metric]
    modes = {info.get("mode") for info in results.datasets.values()}
    if modes == {"multiclass"}:  # the schema version is beside the point
        raise LosscmpError(
            f"--metric {metric}: multiclass runs have no {title} (a multiclass prediction "
            f"is the argmax over the classes: no threshold to choose); use "
            f"{_listed(PLAIN_METRICS)}"
        )
    # ECE comes from the same histogram as AP: recorded, the run scored AP and found no
    # positive pixel to rank (metrics.average_precision).
    if metric == "ap" and _recorded(results, "ece"):
        recorded = [name for name in METRICS if _recorded(results, name)]
        raise LosscmpError(
            f"--metric ap: the validation split of these runs has no foreground pixel, so "
            f"{title} is undefined there (and cannot choose the epoch); use {_listed(recorded)}"
        )
    raise LosscmpError(
        f"--metric {metric}: these runs have no {title} (it is computed for "
        f"binary tasks, by losscmp from schema version 2 on); use {_listed(PLAIN_METRICS)}"
    )


def _recorded(results: RunResults, metric: str) -> bool:
    """Whether any validation row holds ``metric``."""
    column = f"val_{metric}"
    return column in results.epochs.columns and bool(results.epochs[column].notna().any())


def _listed(names: Sequence[str]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


def at_chosen_rates(results: RunResults, summary: pd.DataFrame) -> RunResults:
    """``results`` with each loss's trials at the learning rate ``summary`` chose only:
    what the figures beside the table show. Unchanged where one rate was trained."""
    if not selection.several_rates(summary) or "base_lr" not in results.trials.columns:
        return results
    chosen = selection.chosen_rows(summary)[["dataset", "loss", "lr"]]
    keys = chosen.rename(columns={"lr": "base_lr"})
    return dataclasses.replace(
        results,
        trials=results.trials.merge(keys, on=["dataset", "loss", "base_lr"]),
        epochs=results.epochs.merge(keys, on=["dataset", "loss", "base_lr"]),
    )


def dataset_order(results: RunResults) -> list[str]:
    # The trials too: a trial that diverged before its first epoch has no epoch rows.
    present = list(dict.fromkeys([*results.trials["dataset"], *results.epochs["dataset"]]))
    listed = [label for label in results.datasets if label in present]
    return listed + [label for label in present if label not in listed]


def _summarize_dataset(results: RunResults, dataset: str, metric: str) -> pd.DataFrame:
    trials = _trial_outcomes(results, dataset, metric)
    rates = selection.choose_rates(trials, metric)  # on validation scores only
    chosen = rates[rates["lr_chosen"]]
    at_chosen = trials.merge(chosen[["loss", "lr"]], on=["loss", "lr"])
    finished = at_chosen[at_chosen["status"] != "diverged"]
    per_seed = at_chosen[["loss", "seed"]].assign(score=finished.get(f"best_{metric}", math.nan))
    bounds = score_range(metric)
    better = selection.higher_is_better(metric)
    diverged = at_chosen["status"].eq("diverged").groupby(at_chosen["loss"]).sum().to_dict()
    comparison = stats.compare_losses(
        per_seed, bounds=bounds, higher_is_better=better, diverged=diverged
    )
    rows = []
    for loss in comparison.index:
        rate = chosen.loc[chosen["loss"] == loss].iloc[0]
        mine = at_chosen[at_chosen["loss"] == loss]
        rows.append(_loss_row(loss, mine, comparison.loc[loss]) | _rate_columns(rate))
    for rate in rates[~rates["lr_chosen"]].itertuples(index=False):
        mine = trials[(trials["loss"] == rate.loss) & _same_rate(trials["lr"], rate.lr)]
        alone = _seeds_only(mine, metric, bounds)
        rows.append(_loss_row(rate.loss, mine, alone) | _rate_columns(rate._asdict()))
    summary = pd.DataFrame(rows)
    summary.insert(0, "dataset", dataset)
    summary.insert(2, "metric", metric)
    has_best = bool(comparison["mean"].notna().any())
    summary["is_best"] = [has_best and index == 0 for index in range(len(summary))]
    summary["n_rates"] = summary.groupby("loss")["lr"].transform("nunique")
    summary["headline_split"] = selection.reported_split(_dataset_epochs(results, dataset), metric)
    summary["images_split"] = _images_split(results.images, dataset)
    summary["fg_fraction"] = _fg_fraction(dataset, results.datasets.get(dataset, {}))
    summary["dial_group"] = _dial_group(dataset)
    class_names = results.datasets.get(dataset, {}).get("class_names") or []
    return _order_class_columns(summary, class_names)


def _dataset_epochs(results: RunResults, dataset: str) -> pd.DataFrame:
    return results.epochs[results.epochs["dataset"] == dataset]


def _same_rate(rates: pd.Series, rate: float) -> pd.Series:
    return rates.isna() if pd.isna(rate) else rates == rate


def _rate_columns(rate) -> dict[str, Any]:
    """The learning-rate columns of a summary row: the rate, its validation score, chosen."""
    return {
        "lr": rate["lr"],
        "val_score_mean": rate["val_score_mean"],
        "lr_chosen": bool(rate["lr_chosen"]),
    }


def _seeds_only(trials: pd.DataFrame, metric: str, bounds) -> pd.Series:
    """A rate that was not chosen: its mean and interval over seeds, no rank and no test."""
    finished = trials[trials["status"] != "diverged"]
    values = finished.get(f"best_{metric}", pd.Series(dtype=float)).astype(float)
    seeds = stats.summarize_seeds(values.to_numpy(), bounds=bounds)
    return pd.Series(
        {
            "n_seeds": seeds.n,
            "rank": pd.NA,
            "mean": seeds.mean,
            "std": seeds.std,
            "ci_low": seeds.ci_low,
            "ci_high": seeds.ci_high,
            "p_value": math.nan,
            "p_holm": math.nan,
            "indistinguishable_from_best": pd.NA,
        }
    )


def _order_class_columns(summary: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class columns last, in the dataset's class order (background first)."""
    ordered = [
        f"{when}_dice_{name}_{stat}"
        for when in ("best", "final")
        for name in class_names
        for stat in ("mean", "std")
    ]
    per_class = [column for column in ordered if column in summary.columns]
    others = [column for column in summary.columns if column not in per_class]
    return summary[others + per_class]


def _trial_outcomes(results: RunResults, dataset: str, metric: str) -> pd.DataFrame:
    """One row per (loss, seed): status, best-epoch and final-epoch scores, time, hd95."""
    trials = results.trials[results.trials["dataset"] == dataset]
    epochs = _dataset_epochs(results, dataset)
    split = selection.reported_split(epochs, metric)
    images = _final_images(results.images, dataset)
    epoch_columns, image_columns = _Columns(epochs), _Columns(images)
    rows = [
        _trial_row(trial, epoch_columns, epoch_rows, metric, split)
        | _final_image_means(image_columns, image_rows)
        for trial, epoch_rows, image_rows in zip(
            trials.itertuples(index=False),
            _rows_per_trial(trials, epochs),
            _rows_per_trial(trials, images),
            strict=True,
        )
    ]
    frame = pd.DataFrame(rows)
    # Where no trial validated a single epoch (every one diverged at once), the columns a
    # validated epoch gives are still there, empty: the table shows each loss diverged.
    for column in ("best_epoch", "val_score", f"best_{metric}", f"final_{metric}"):
        if column not in frame.columns:
            frame[column] = math.nan
    return frame


class _Columns:
    """A frame's columns as numpy arrays, read at a trial's row positions: a pandas object
    per trial cost most of the time of a report of hundreds of trials."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.values = {name: frame[name].to_numpy() for name in frame.columns}
        self._floats: dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def floats(self, name: str) -> np.ndarray:
        if name not in self._floats:
            self._floats[name] = self.values[name].astype(float)
        return self._floats[name]


def _rows_per_trial(trials: pd.DataFrame, frame: pd.DataFrame) -> list[np.ndarray]:
    """Each trial's rows in ``frame`` (positions, in the frame's order): its loss and seed,
    at its learning rate (a version 1 table has no rate: one per run). One grouping for all
    trials: a pass over the frame per trial made a report quadratic in the trials."""
    none = np.empty(0, dtype=np.intp)
    keys = ["loss", "seed"]
    if frame.empty or not set(keys) <= set(frame.columns):
        return [none] * len(trials)
    groups = frame.groupby(keys, sort=False).indices
    rates = frame["base_lr"].astype(float).to_numpy() if "base_lr" in frame.columns else None
    found = []
    for key, rate in zip(
        trials[keys].itertuples(index=False, name=None), trials["base_lr"], strict=True
    ):
        rows = groups.get(key, none)
        if rates is not None:
            rows = rows[np.isnan(rates[rows]) | (rates[rows] == rate)]
        found.append(rows)
    return found


def _trial_row(trial, epochs: _Columns, rows: np.ndarray, metric: str, split: str) -> dict:
    """One trial (``rows``: its positions in ``epochs``): its epoch chosen on validation,
    scores read there on ``split`` (test where the run has one); ``final_*`` at the last
    epoch, on the same split."""
    headline = f"val_{metric}"
    row: dict[str, Any] = {
        "loss": trial.loss,
        "lr": trial.base_lr,
        "seed": trial.seed,
        "status": trial.status or "finished",
        "diverged_epoch": trial.diverged_epoch,
        "seconds": _trial_seconds(trial, epochs, rows),
    }
    validated = rows[~np.isnan(epochs.floats(headline)[rows])] if headline in epochs else rows[:0]
    if not len(validated):
        return row
    best = validated[selection.chosen_epoch(epochs.floats(headline)[validated], metric)]
    final = validated[np.argmax(epochs.floats("epoch")[validated])]
    row["best_epoch"] = epochs.values["epoch"][best]
    row["val_score"] = epochs.values[headline][best]  # what the learning rate is chosen by
    if "threshold" in epochs:
        row["threshold"] = epochs.values["threshold"][best]
    for column in _score_columns(epochs.values):
        name = column.removeprefix("val_")
        reported = epochs.values[selection.reported_column(epochs.values, name, split)]
        row[f"best_{name}"] = reported[best]
        row[f"final_{name}"] = reported[final]
    return row


def _trial_seconds(trial, epochs: _Columns, rows: np.ndarray) -> float:
    """The trial's wall time; the sum of its epochs' when trials/ did not record it."""
    if trial.seconds is not None and not pd.isna(trial.seconds):
        return float(trial.seconds)
    return float(np.nansum(epochs.floats("seconds")[rows])) if "seconds" in epochs else math.nan


def _score_columns(columns: Collection[str]) -> list[str]:
    snapshot = [f"val_{name}" for name in METRICS if f"val_{name}" in columns]
    per_class = sorted(
        column for column in columns if column.startswith("val_dice_") and column not in snapshot
    )
    return snapshot + per_class


def _images_split(images: pd.DataFrame, dataset: str) -> str | None:
    """The split of the dataset's per-image rows: ``test`` when every final row is of test
    images; ``validation`` (rows before the split was recorded were); None without rows."""
    if images.empty or "which" not in images:
        return None
    final = images[(images["dataset"] == dataset) & (images["which"] == "final")]
    if final.empty:
        return None
    splits = final.get("split", pd.Series(index=final.index, dtype=object))
    return selection.TEST if (splits == "test").all() else selection.VALIDATION


def _final_images(images: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The dataset's rows of images.csv at the final epoch (none in a table without them)."""
    if images.empty or not {"dataset", "which"} <= set(images.columns):
        return images.iloc[:0]
    return images[(images["dataset"] == dataset) & (images["which"] == "final")]


def _final_image_means(images: _Columns, rows: np.ndarray) -> dict[str, float]:
    """Mean over a trial's ``rows`` of the final images (test where the run has them) of
    the boundary metrics; none where they have no value."""
    means = {}
    for name in ("hd95", "nsd"):
        values = images.floats(name)[rows] if name in images else None
        if values is not None and not np.isnan(values).all():
            means[f"final_{name}"] = np.nanmean(values)  # the sum and count Series.mean takes
    return means


def _loss_row(loss: str, trials: pd.DataFrame, comparison: pd.Series) -> dict[str, Any]:
    finished = trials[trials["status"] != "diverged"]
    row: dict[str, Any] = {
        "loss": loss,
        "rank": comparison["rank"],
        "score_mean": comparison["mean"],
        "score_std": comparison["std"],
        "ci_low": comparison["ci_low"],
        "ci_high": comparison["ci_high"],
        "p_value": comparison["p_value"],
        "p_holm": comparison["p_holm"],
        "indistinguishable_from_best": _optional_bool(comparison["indistinguishable_from_best"]),
        "n_seeds": len(trials),
        "n_diverged": len(trials) - len(finished),
        # The seeds the mean is over: a finished trial may have no headline score (NaN)
        "n_scored": int(comparison["n_seeds"]),
        "status": _status(trials),
        "diverged_epoch": _first_divergence(trials),
        "best_epoch": finished["best_epoch"].mean() if "best_epoch" in finished else math.nan,
        "threshold_mean": finished["threshold"].mean() if "threshold" in finished else math.nan,
        "seconds": trials["seconds"].mean(),
    }
    # Every column at once: the same sums as column by column, without pandas' overhead
    # of a Series each (which made these loops a good part of a large report's summary).
    outcomes = finished[_outcome_columns(trials)].astype(float)
    means, stds = outcomes.mean(), outcomes.std(ddof=1).where(outcomes.count() > 1)
    for column in outcomes.columns:
        row[f"{column}_mean"] = means[column]
        row[f"{column}_std"] = stds[column]
    return row


def _outcome_columns(trials: pd.DataFrame) -> list[str]:
    return [
        column
        for column in trials.columns
        if column.startswith(("best_", "final_")) and column != "best_epoch"
    ]


def _first_divergence(trials: pd.DataFrame) -> float:
    epochs = trials.loc[trials["status"] == "diverged", "diverged_epoch"].dropna()
    return float(epochs.min()) if len(epochs) else math.nan


def _status(trials: pd.DataFrame) -> str:
    diverged = int((trials["status"] == "diverged").sum())
    if diverged == 0:
        return "finished"
    epoch = _first_divergence(trials)
    at = f" at epoch {int(epoch)}" if not math.isnan(epoch) else ""
    if diverged == len(trials):
        return f"diverged{at}"
    return f"{diverged}/{len(trials)} seeds diverged{at}"


def _dataset_spec(label: str) -> Spec | None:
    try:
        return parse_spec(label)
    except SpecError:
        return None


def _fg_fraction(label: str, info: dict[str, Any]) -> float:
    spec = _dataset_spec(label)
    if spec is not None and "fg_fraction" in spec.params:
        return float(spec.params["fg_fraction"])
    requested = info.get("requested_fg_fraction")
    return float(requested) if requested is not None else math.nan


def _dial_group(label: str) -> str:
    """The dataset label without its fg_fraction: datasets sharing it form a dial."""
    spec = _dataset_spec(label)
    if spec is None:
        return label
    return Spec(spec.name, {k: v for k, v in spec.params.items() if k != "fg_fraction"}).label


def imbalance_frame(summary: pd.DataFrame) -> pd.DataFrame | None:
    """Loss × foreground fraction of the headline mean (and sd), or None without a dial.

    Returns a frame with columns ``dial_group, loss, fg_fraction, score_mean,
    score_std, rank`` (the loss's rank at that fraction, as its table ranks it) for the
    largest group of datasets that differ only in fg_fraction.
    """
    known = selection.chosen_rows(summary).dropna(subset=["fg_fraction"])
    if known.empty:
        return None
    fractions = known.groupby("dial_group")["fg_fraction"].nunique()
    if fractions.max() < 2:
        return None
    group = fractions.idxmax()
    dial = known[known["dial_group"] == group]
    columns = ["dial_group", "loss", "fg_fraction", "score_mean", "score_std", "rank"]
    return dial[columns].sort_values(["loss", "fg_fraction"]).reset_index(drop=True)


def headline_caption(
    metric: str,
    summary: pd.DataFrame,
    hidden: Collection[str] = (),
    seed_advice: str = ONE_SEED_ADVICE,
    every_rate_in: str = "summary.csv",
) -> str:
    """The comparison's caption: how its numbers were read, and what the abbreviations of
    its columns stand for. ``hidden``: the summary columns (``Column.key``) the table leaves
    out, e.g. on a narrow terminal, whose abbreviations it then does not explain.
    ``seed_advice``: how to get more than one seed (:func:`one_seed_advice`);
    ``every_rate_in``: the file listing every learning rate (:func:`every_rate_file`)."""
    summary = selection.chosen_rows(summary)  # the rows the table shows, one rate a loss
    seeds = int(summary["n_seeds"].max()) if len(summary) else 0
    fewest = int(summary["n_seeds"].min()) if len(summary) else 0
    # Combined or unfinished runs may give the losses different numbers of seeds.
    seeds_text = f"{fewest}–{seeds}" if fewest != seeds else str(seeds)
    title = METRIC_TITLES[metric]
    per_image = metric.startswith("image_")
    headline = f"mean per-image {title.removeprefix('image ')}" if per_image else title
    if not selection.higher_is_better(metric):  # ECE: 'best' and the ranks are the lowest
        headline += " (lower is better)"
    where = "" if per_image else "dataset-level "
    split = split_word(summary)
    caption = (
        f"Headline: {where}{headline} on the {split} split at each trial's "
        f"epoch chosen on validation, mean ± sd over {seeds_text} seed(s); "
        f"CI: {stats.CI_METHOD}; p: {stats.TEST_METHOD}; "
        f"≈ = indistinguishable from the best (p ≥ {stats.ALPHA}). "
    )
    others = [
        METRIC_TITLES[name]
        for name in TABLE_METRICS
        if name != metric and f"best_{name}_mean" not in hidden
    ]
    if others:
        verb, their = ("are", "their") if len(others) > 1 else ("is", "its")
        caption += (
            f"{and_list(others)} '{split}' {verb} read at that same epoch (one model snapshot "
            f"per trial), not at {their} own maximum. "
        )
    caption += selection.caption_text(summary, metric, METRIC_TITLES[metric], hidden, every_rate_in)
    if "final_hd95_mean" not in hidden:
        caption += _hd95_caption(summary)
    if seeds < 2:
        caption += f" One seed gives no interval or test: {seed_advice}."
    else:
        caption += _missing_statistics_caption(summary)
    return caption


def _missing_statistics_caption(summary: pd.DataFrame) -> str:
    """Why some rows of a table with several seeds show '–' for CI or p: combined or
    unfinished runs give a loss one seed, or fewer than two in common with the best."""
    one_seed = bool((summary["n_seeds"] == 1).any())
    # Several seeds, one score: the others diverged or have none (unscored_notes)
    scored = summary.get("n_scored", summary["n_seeds"])
    one_score = bool(((summary["n_seeds"] > 1) & (scored == 1)).any())
    scoreless = summary["score_mean"].isna()
    every_seed_diverged = bool((scoreless & (summary["n_diverged"] == summary["n_seeds"])).any())
    # A loss with no score has nothing to test, and no loss scored leaves no best
    untested = summary["p_value"].isna() & ~scoreless & summary["rank"].ne(1).fillna(True)
    reasons = []
    if one_seed or one_score:
        reasons.append(_no_interval_reason(one_seed, one_score))
    if untested.any():
        reasons.append("no test where fewer than two seeds are in common with the best")
    if every_seed_diverged:
        reasons.append("a loss that diverged on every seed has no score")
    return f" –: {'; '.join(reasons)}." if reasons else ""


def _no_interval_reason(one_seed: bool, one_score: bool) -> str:
    scored = "a score on one seed only (the others diverged or have none)"
    if one_seed and one_score:
        return f"a loss with one seed, or with {scored}, has no interval"
    return f"a loss with {'one seed' if one_seed else scored} has no interval"


def every_rate_file(results: RunResults) -> str:
    """What lists every learning rate's row: the run's summary.csv, which ``report`` writes
    for one run only; a combined report writes none unless asked to (``--csv FILE``)."""
    return "summary.csv" if len(results.run_dirs) == 1 else "--csv FILE"


def one_seed_advice(results: RunResults) -> str:
    """How the runs get more than one seed a loss: a run that asked for several and was
    stopped (or lost trials) before a second one finished is finished with --resume, not
    told to ask for the seeds it asked for; else more seeds, where they were set."""
    short = _short_of_seeds(results)
    if short:
        asked = max(len(meta["seeds"]) for meta in short.values())
        if len(short) == 1:
            how = f"'losscmp run --resume {shell_path(next(iter(short)))}'"
        else:  # --resume takes one folder: a command per run
            folders = ", ".join(str(path) for path in short)
            how = f"'losscmp run --resume' on each folder ({folders})"
        run = "the run" if len(short) == 1 else "the runs"
        return f"{run} asked for {asked} seeds and not every trial finished; {how} trains the rest"
    source = seeds_source(results.metas)
    if source:  # the file's key, not a flag the command line did not have
        return f"set 'seeds' to 3 or more in {source}"
    return ONE_SEED_ADVICE


def _short_of_seeds(results: RunResults) -> dict[Path, dict[str, Any]]:
    """The run folders (and their run.json) that asked for several seeds and have trials
    unfinished or failed, and that no other process is still training."""
    unfinished = unfinished_trials(results)
    return {
        path: meta
        for path, meta in zip(results.run_dirs, results.metas, strict=True)
        if len(meta.get("seeds") or []) > 1
        and (path in unfinished or results.failed_trials.get(path))
        and _other_writer(path) is None
    }


def seeds_source(metas: Sequence[dict[str, Any]]) -> str | None:
    """The config file that set the seeds of every run (run.json's ``option_sources``:
    ``config file X``), so the caption names its key rather than a flag the command line
    did not have; None where a flag or the default set them, or the runs differ."""
    sources = {(meta.get("option_sources") or {}).get("seeds") for meta in metas}
    return sources.pop() if len(sources) == 1 else None


def and_list(names: list[str]) -> str:
    """'IoU', 'IoU and MCC', 'Dice, IoU and MCC'."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)


def _hd95_caption(summary: pd.DataFrame) -> str:
    if "final_hd95_mean" not in summary or summary["final_hd95_mean"].isna().all():
        return ""
    splits = set(summary.get("images_split", pd.Series(dtype=object)).dropna())
    images = "test" if splits == {selection.TEST} else "validation"
    if not per_class_columns(summary):
        return f" HD95: pixels, at the last epoch, mean over the {images} images."
    # Multiclass (train.boundary_scores): a class predicted where the image has none, or
    # missed, weighs a diagonal in an image's mean; nothing else said so.
    return (
        f" HD95: pixels, at the last epoch, mean over the {images} images of each one's mean "
        "over the foreground classes in its mask or prediction (a class in only one of them "
        "counts as the image's diagonal)."
    )


def split_word(summary: pd.DataFrame) -> str:
    """How column titles name the split the headline is read on: "test", or "val." for
    runs without a test split (schema 1)."""
    splits = set(summary.get("headline_split", pd.Series(dtype=object)).dropna())
    return "test" if splits == {selection.TEST} else "val."


def per_class_columns(summary: pd.DataFrame) -> list[str]:
    """The ``best_dice_<class>_mean`` columns of a multiclass summary, in class order."""
    return [column for column in summary.columns if PER_CLASS_COLUMN.fullmatch(column)]


def _optional_bool(value: Any) -> bool | None:
    return None if pd.isna(value) else bool(value)
