"""Outputs of ``losscmp report``: one renderer per output, all over one summary frame.

- ``terminal``: Rich tables (always printed);
- ``figures``: PNG figures into each run folder (``--plots``);
- the file outputs in :data:`RENDERERS`, one per ``report`` option that names a
  file (``--csv FILE``, ``--html FILE``).

A new file output is one module here defining
``content(report: losscmp.summary.Report) -> str | bytes`` (the file's text or bytes), plus
one line in :data:`RENDERERS`: ``Renderer.write`` checks the target, writes the content
atomically (making a missing folder) and turns a failed write into one line, for every
output alike; ``report`` takes its ``--<name> FILE`` option from there (cli.py's
``with_file_options``, its help from ``description``); one whose file holds the summary table
says so (``holds_summary``): a combined report written there counts as saved. Modules
are imported when used, so a CSV never imports matplotlib; a target is refused
(``Renderer.check_target``) from this module alone, so a bad ``--csv`` never imports
pandas.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from losscmp.errors import LosscmpError


@dataclass(frozen=True)
class Renderer:
    """One file output: the ``report`` option that asks for it and the module that writes it."""

    name: str  # its option: --<name> FILE
    module: str
    description: str  # what it writes, for the option's help: "Also write <this> to FILE."
    example: str  # the file of this kind a run folder holds itself, e.g. summary.csv
    # Its file holds the summary table itself (a run's summary.csv): where a combined
    # report's table is saved, which no run folder keeps.
    holds_summary: bool = False
    # The top-level modules beyond pandas it imports (its figures' matplotlib and Pillow):
    # ``report`` checks they are installed before any output is written.
    modules: tuple[str, ...] = ()

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)

    def check_target(self, path: Path | str) -> Path:
        """Refuse a target that cannot be written, before anything else is; where to write."""
        return check_file_target(path, f"--{self.name}", self.example)

    def write(self, report, path: Path | str) -> Path:
        """Write this output of ``report`` (``summary.Report``) to ``path``; where it went.
        The target is checked before the module renders anything."""
        path = self.check_target(path)
        return write_file(path, self.load().content(report))


RENDERERS: dict[str, Renderer] = {
    renderer.name: renderer
    for renderer in (
        Renderer(
            "csv",
            "losscmp.render.csv",
            "the summary table",
            "summary.csv",
            holds_summary=True,
        ),
        Renderer(
            "html",
            "losscmp.render.html",
            "one self-contained HTML page (tables, figures, setup)",
            "report.html",
            modules=("matplotlib", "PIL"),
        ),
    )
}


def summary_options(names: Iterable[str]) -> list[str]:
    """The options among renderers ``names`` whose file holds the summary table."""
    return [f"--{name}" for name in names if RENDERERS[name].holds_summary]


def check_file_target(path: Path | str, option: str, example: str) -> Path:
    """Refuse an output file that cannot be written, or that a run folder keeps its records
    in, before anything else is written. Returns where to write (a link's target)."""
    from losscmp.results import RECORD_DIRS, check_writable_folder, is_run_dir

    path = Path(path)
    if path.is_symlink():
        path = path.resolve()  # the file it points to, not a new file in the link's place
    if path.is_dir():
        raise LosscmpError(f"{option} {path} is a folder; give a file name, e.g. {path / example}")
    if path.exists() and not path.is_file():
        raise LosscmpError(f"{option} {path} is not a regular file; give a file name")
    parent = path.parent
    if path.exists() and path.name != example and is_run_dir(parent):
        raise LosscmpError(f"{option} {path} is a file of the run folder {parent}; write elsewhere")
    for folder in Path(os.path.abspath(path)).parents:
        if folder.name in RECORD_DIRS and is_run_dir(folder.parent):
            raise LosscmpError(
                f"{option} {path} is inside {folder.name}/ of the run folder {folder.parent}, "
                "among its records; write elsewhere"
            )
    check_writable_folder(parent, f"{option} {path}")
    return path


def write_file(path: Path, content: str | bytes) -> Path:
    """Write a checked target (``check_file_target``) atomically: its folder made if missing
    (the check accepts one that can be made), a killed process leaves the old file or the
    new, and a failed write (a full disk) is one line, not a traceback."""
    from losscmp import results

    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        results.atomic_write_bytes(path, data)
    except OSError as error:
        raise LosscmpError(f"cannot write {path}: {error.strerror or error}") from None
    return path
