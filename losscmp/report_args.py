"""What ``losscmp report`` is given, checked before pandas, numpy or matplotlib load.

A missing folder, one that holds no run, an unknown ``--metric`` or an output file that
cannot be written are answered from names and the file system alone, so a typo costs a
fraction of a second rather than the import of the summary's libraries. These checks
live here only: ``summary.build_report`` (the library's entry point) and the CLI both
use them, and the CLI runs :func:`check_report_args` before importing anything heavy.

When several things are wrong, the first in this order is named (tests/test_bad_inputs.py):
``--csv`` and ``--html`` naming one file; each file target, in ``RENDERERS`` order
(``--csv``, ``--html``); ``--metric``; each path, in the order given; a file target that
is another run folder's own file; ``--plots`` into a run folder that takes no files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from losscmp.dependencies import check_report_installed
from losscmp.errors import LosscmpError, choice_named, unknown
from losscmp.metric_names import METRICS
from losscmp.results import (
    PLOTS_DIR,
    check_writable_folder,
    has_finished_trial,
    is_run_dir,
    refuse_not_a_run,
    runs_newest_first,
)


def check_report_args(
    paths: Sequence[Path | str], metric: str, targets: Mapping[str, Path], plots: bool = False
) -> dict[Path, Path]:
    """Refuse what ``report`` cannot use, in the order above; each path -> the run folder
    it stands for (:func:`resolve_runs`; :func:`distinct_runs` lists those to read).
    ``targets``: renderer name (``render.RENDERERS``) -> the file asked for; ``plots``:
    whether figures are to be written into each run folder."""
    from losscmp.render import RENDERERS

    check_distinct_targets(targets)
    for name, path in targets.items():
        if str(path) == "-":  # stdout to most tools; here it holds the tables
            raise LosscmpError(
                f"--{name} -: standard output holds the tables; give a file name "
                f"(e.g. {RENDERERS[name].example})"
            )
        RENDERERS[name].check_target(path)
    check_metric(metric)
    stood_for = resolve_runs(paths)
    run_dirs = distinct_runs(stood_for)
    for name, path in targets.items():
        check_not_another_runs_file(name, path, run_dirs)
    if plots:
        for run_dir in run_dirs:
            check_plots_folder(run_dir)
    check_report_installed(targets, plots)
    return stood_for


def check_plots_folder(run_dir: Path) -> None:
    """--plots writes into ``<run>/plots/``: a run on a read-only disk (an archive, another
    user's results) is refused before --csv or --html is written, rather than after."""
    folder = run_dir / PLOTS_DIR
    try:
        check_writable_folder(folder, f"--plots {folder}")
    except LosscmpError as error:
        raise LosscmpError(f"{error}; --html FILE holds the figures") from None


def check_distinct_targets(targets: Mapping[str, Path]) -> None:
    seen: dict[Path, str] = {}
    for name, path in targets.items():
        where = Path(os.path.realpath(path))
        if where in seen:
            raise LosscmpError(f"--{seen[where]} and --{name} name the same file {path}")
        seen[where] = name


def check_not_another_runs_file(name: str, path: Path, run_dirs: Sequence[Path]) -> None:
    """A run folder's own summary.csv or report.html (the names the renderers write there)
    is rewritten by a report of that run alone: another run's table, or a combined one,
    written there would stand in that folder as its run's own."""
    from losscmp.render import RENDERERS

    target = Path(os.path.realpath(path))
    folder = target.parent
    if target.name != RENDERERS[name].example or not is_run_dir(folder):
        return
    reported = [Path(os.path.realpath(run_dir)) for run_dir in run_dirs]
    if reported == [folder]:
        return
    what = "run" if len(reported) == 1 else f"{len(reported)} runs combined"
    raise LosscmpError(
        f"--{name} {path} is the {target.name} of run {folder.name}, not of this report's "
        f"{what}; write elsewhere"
    )


def check_metric(metric: str) -> str:
    """``metric`` as METRICS names it (``Dice``: ``dice``); an unknown name is refused."""
    named = choice_named(metric, METRICS)
    if named is None:
        raise unknown("metric", metric, METRICS)
    return named


def resolve_run_dirs(paths: Sequence[Path | str]) -> list[Path]:
    """Each path is a run folder, or a folder of runs (its newest run is taken)."""
    return distinct_runs(resolve_runs(paths))


def resolve_runs(paths: Sequence[Path | str]) -> dict[Path, Path]:
    """Each path as given -> the run folder it stands for (:func:`resolve_one`). Resolved
    once: a folder's newest run can change meanwhile (its first trial ends), so whatever
    says which run a folder stood for reads it from here."""
    if not paths:
        raise LosscmpError("no run folder given")
    return {path: resolve_one(path) for path in map(Path, paths)}


def distinct_runs(stood_for: Mapping[Path, Path]) -> list[Path]:
    """The run folders of :func:`resolve_runs`, each once (as first named), in order."""
    resolved: dict[Path, Path] = {}  # the folder itself (however it was named) -> as named
    for run_dir in stood_for.values():
        resolved.setdefault(run_dir.resolve(), run_dir)
    return list(resolved.values())


def resolve_one(path: Path) -> Path:
    """The run folder ``path`` stands for: itself, or the newest run in it."""
    refuse_not_a_run(path, str(path), "losscmp report", folder_of_runs=True)
    if is_run_dir(path):
        return path
    # A run just started (or stopped before a trial ended) has nothing to show: the newest
    # run that has is reported instead, and the line above the table says so.
    runs = runs_newest_first(path)
    return next((run for run in runs if has_finished_trial(run)), runs[0])
