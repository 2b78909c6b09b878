"""Everything the CLI shows: progress bars and tables, drawn with Rich.

Progress goes to stderr and tables to stdout, so ``losscmp run ... > out.txt``
captures just the results.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from losscmp.runner import RunListener

err = Console(stderr=True)
# Logs and pipes get wide lines rather than tables cut into ellipses.
PIPE_WIDTH = 200


def stdout() -> Console:
    """A console on the current stdout (tests swap it), wide when it is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, PIPE_WIDTH))


class TrainingProgress(RunListener):
    """One bar per trial, advanced per step, with the last epoch's metrics beside it."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=err,
        )
        self.task = None
        self.epochs = 1
        self.epoch = 1
        self.show_dataset = False
        self.run_dir: Path | None = None

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_start(self, run_dir: Path, trials: list, skipped: list) -> None:
        self.run_dir = run_dir
        self.show_dataset = len({trial.dataset for trial in trials}) > 1
        note = f" ({len(skipped)} finished trials kept)" if skipped else ""
        err.print(f"run folder: {run_dir}{note}")

    def on_trial_start(self, trial, index: int, total: int, epochs: int) -> None:
        self.epochs = epochs
        label = f"[{index}/{total}] {trial.loss} · seed {trial.seed}"
        if self.show_dataset:
            label += f" · {trial.dataset}"
        self.task = self.progress.add_task(label, total=None, status="epoch 1")
        self.epoch = 1

    def on_step(self, trial, step: int, steps: int) -> None:
        done = (self.epoch - 1) * steps + step
        self.progress.update(self.task, total=self.epochs * steps, completed=done)

    def on_epoch(self, trial, record: dict[str, Any]) -> None:
        self.epoch = record["epoch"] + 1
        if record["status"] == "diverged":
            status = f"[red]diverged at epoch {record['epoch']}"
        else:
            status = (
                f"epoch {record['epoch']}/{self.epochs} loss {record['train_loss']:.4f} "
                f"dice {record['val_dice']:.3f} mcc {record['val_mcc']:.3f}"
            )
        self.progress.update(self.task, status=status)

    def on_trial_end(self, trial, record: dict[str, Any]) -> None:
        total = next(task.total for task in self.progress.tasks if task.id == self.task) or 0
        self.progress.update(self.task, completed=total)


class DownloadProgress:
    """A byte-counting bar per downloaded file."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> DownloadProgress:
        return self  # the bar starts with the first byte: a failure prints only its error

    def __exit__(self, *exc: object) -> None:
        if self.tasks:
            self.progress.stop()

    def update(self, name: str, done: int, total: int | None) -> None:
        if not self.tasks:
            self.progress.start()
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


def print_plan(plan) -> None:
    table = Table(title=f"{len(plan.trials)} planned trials (dry run: nothing trained)")
    for column in ("#", "dataset", "loss", "seed", "trial id"):
        table.add_column(column)
    for index, trial in enumerate(plan.trials, start=1):
        table.add_row(str(index), trial.dataset, trial.loss, str(trial.seed), trial.id)
    stdout().print(table)
    config = plan.config
    stdout().print(
        f"{config.epochs} epochs, batch {config.batch_size}, image {config.image_size}px, "
        f"model {config.model}, device {config.device}, results under {config.out}/"
    )


def print_tables(tables: list) -> None:
    out = stdout()
    for table in tables:
        out.print(table)


def print_note(text: str) -> None:
    err.print(f"[yellow]note:[/yellow] {text}", highlight=False, soft_wrap=True)


def print_written(paths: list[Path]) -> None:
    for path in paths:
        err.print(f"wrote {path}", highlight=False, soft_wrap=True)


def print_loss_table(entries: list) -> None:
    table = Table(title=f"{len(entries)} losses", show_lines=False)
    for column in ("name", "family", "modes", "parameters (defaults)", "description"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        defaults = ", ".join(f"{k}={_short(v)}" for k, v in entry.defaults.items())
        table.add_row(entry.name, entry.family, "/".join(entry.modes), defaults, entry.description)
    stdout().print(table)


def print_loss_detail(entry) -> None:
    out = stdout()
    out.print(f"[bold]{entry.name}[/bold] — {entry.description}")
    out.print(f"family: {entry.family}    modes: {', '.join(entry.modes)}")
    if entry.formula:
        out.print(f"formula: {entry.formula}")
    if entry.reference:
        out.print(f"reference: {entry.reference}")
    if entry.needs:
        out.print(f"needs: {', '.join(sorted(entry.needs))} (computed by the data pipeline)")
    table = Table(title="parameters")
    for column in ("name", "type", "default"):
        table.add_column(column)
    hints = entry.type_hints()
    for name, param in entry.parameters.items():
        default = "required" if param.default is inspect.Parameter.empty else _short(param.default)
        table.add_row(name, _type_name(hints.get(name)), default)
    stdout().print(table)


def print_dataset_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="datasets")
    for column in ("name", "present", "path", "description", "how to get it"):
        table.add_column(column, overflow="fold")
    for row in rows:
        present = "[green]yes" if row["present"] else "[red]no"
        table.add_row(
            row["name"], present, str(row.get("path") or "—"), row["description"], row["how_to_get"]
        )
    stdout().print(table)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def _type_name(hint: Any) -> str:
    if hint is None:
        return ""
    from losscmp.registry import describe_type

    return describe_type(hint)
