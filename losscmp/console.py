"""Everything the CLI shows: progress bars and tables, drawn with Rich.

Progress goes to stderr and tables to stdout, so ``losscmp run ... > out.txt``
captures just the results.
"""

from __future__ import annotations

import errno
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.color import ColorSystem
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from losscmp.errors import OutputClosed, SpecError
from losscmp.events import BOUNDARIES
from losscmp.spec import split_top_level
from losscmp.timeleft import TimeLeft
from losscmp.trial_names import trial_name, trial_text

# A console's colours, where not given: those of its stream and environment when it draws.
_AUTO_COLORS = object()


class _Console(Console):
    """A console whose stream's reader may go away (``losscmp losses | head``): the command
    stops as Ctrl-C stops it (:class:`OutputClosed`, exit 141). Rich's own answer, exit
    status 1 and stdout (even where stderr closed) pointed at /dev/null, read as failed
    trials and let a run go on: its progress lines then failed again."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Rich reads COLUMNS, LINES, NO_COLOR and the terminal's colours once, here: for
        # ``err``, made at import, that froze the environment of the moment (a program
        # calling the CLI, a test that set TTY_COMPATIBLE=1 and COLUMNS=80), and later runs
        # into a log got colour codes and 80-column lines. What was not given is asked
        # each time instead, as Rich asks ``is_terminal``.
        if not self.is_jupyter:  # (a notebook's own width: JUPYTER_COLUMNS, or Rich's 115)
            self._width = options.get("width")
            self._height = options.get("height")
        self._given_no_color = options.get("no_color")
        if options.get("color_system", "auto") == "auto":
            self._colors = _AUTO_COLORS

    @property
    def _color_system(self) -> ColorSystem | None:
        return self._detect_color_system() if self._colors is _AUTO_COLORS else self._colors

    @_color_system.setter
    def _color_system(self, value: ColorSystem | None) -> None:
        self._colors = value

    @property
    def no_color(self) -> bool:
        if self._given_no_color is not None:
            return self._given_no_color
        return self._environ.get("NO_COLOR", "") != ""

    @no_color.setter
    def no_color(self, value: bool) -> None:
        self._given_no_color = value

    @property
    def is_interactive(self) -> bool:
        """Asked each time, as Rich asks ``is_terminal``: Rich decides it once, when the
        console is made (``err``: at import), so a stream swapped or a TTY_INTERACTIVE or
        TERM set since (a program calling the CLI, the tests) kept the first answer, and a
        log got the live display's last frame glued to its next line."""
        forced = self._environ.get("TTY_INTERACTIVE")
        if forced in ("0", "1"):
            return forced == "1"
        return self.is_terminal and not self.is_dumb_terminal

    @is_interactive.setter
    def is_interactive(self, value: bool) -> None:
        """Rich's ``__init__`` sets its answer of the moment: the property answers instead."""

    def on_broken_pipe(self) -> None:
        _write_to_devnull(self.file)  # later lines, and the exit's flush, fail no more
        if threading.current_thread() is threading.main_thread():
            _stop_for_closed_output()
        # Elsewhere (Rich's refresh thread, on a terminal: no pipe) that thread just ends.


# Whether the main thread's command already stops for a closed output: OutputClosed is
# raised once, as the run's cleanup (its lines on the other stream, often the same closed
# pipe) is not to be stopped again. Per command, not per stream: with ``2>&1 | head`` both
# streams are one pipe, and stderr's next line fails as stdout's did.
_output_closed = False


def command_began() -> None:
    """A command begins: its output is open until a write to it fails. Set for the rest of
    the process, a second command (the Python API, CliRunner) whose reader left too went on
    with exit status 0, a run training on with no one reading. Only the main thread's
    command stops for it (``on_broken_pipe``), so only it begins anew: a program's thread
    beginning a command must not let the main thread's cleanup be stopped again."""
    global _output_closed
    if threading.current_thread() is threading.main_thread():
        _output_closed = False


def _stop_for_closed_output() -> None:
    """Raise :class:`OutputClosed`, unless the command already stops for it."""
    global _output_closed
    if not _output_closed:
        _output_closed = True
        raise OutputClosed


def _write_to_devnull(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null, as Python's note on SIGPIPE
    advises; a stream without one (a test's) is left as it is."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def _stop_drawing(progress: Progress) -> None:
    """Stop a live display, whose last frame a terminal that has gone (closed, its ssh
    session dropped: SIGHUP, being handled) cannot take: the error (EIO) would hide the
    stop being handled, and its exit status, behind a traceback no one sees."""
    try:
        progress.stop()
    except OSError as error:
        if error.errno != errno.EIO:
            raise


err = _Console(stderr=True)
# Logs and pipes get wide lines rather than tables cut into ellipses.
PIPE_WIDTH = 200


def stdout() -> Console:
    """A console on the current stdout (tests swap it), wide when it is not a terminal."""
    console = _Console()
    return console if console.is_terminal else _Console(width=max(console.width, PIPE_WIDTH))


TIME_WIDTH = 8  # H:MM:SS, past ten hours too
LEFT_WIDTH = TIME_WIDTH + 1  # and a rough time left's '~'
BAR_WIDTH = 40
# A trial's status during an evaluation, by ``events.Evaluating``'s split
PASSES = {"val": "validating", "test": "testing", BOUNDARIES: "boundaries"}


def fit_widths(width: int, label: int, status: int, label_floor: int = 0) -> list[int]:
    """The widths of a progress line's label, bar, status, elapsed and remaining time on a
    line of ``width`` cells, given the widest label and status: the times always fit, then
    the label (at most 2/5 of what is left, or more where its ``label_floor`` needs it:
    the cells that keep running trials apart, ``TrialLabel.floor``), then the bar (at
    least 1/5 of it, at most ten cells before the status), then the status; what does not
    fit is cut with '…'."""
    room = max(0, width - 4 - TIME_WIDTH - LEFT_WIDTH)  # four one-cell gaps
    bar_floor = max(1, min(10, room // 5))
    # 2/5 left 15 cells at 60 columns: 'focal @ 0.001 s0' read 'focal @ 0.00…' at each rate.
    label = min(label, max(8, room * 2 // 5, min(label_floor, room - bar_floor)))
    status = min(status, max(0, room - label - bar_floor))
    bar = max(1, min(BAR_WIDTH, room - label - status))
    return [label, bar, status, TIME_WIDTH, LEFT_WIDTH]


INDENT = "  "  # a trial's line under the overall bar's
SPEC_FLOOR = 5  # the cells a spec keeps ('tv…7)') before what follows it is cut


def shorten_spec(spec: str, width: int, shared_from: int | None = None) -> str:
    """``spec`` in at most ``width`` cells, its middle left out: its name, '(', '…' and
    the end of its parameters where they fit ('tversky(…beta=0.7)'), else as much of its
    start as of its end ('synt….01)'). Specs of one loss or dataset differ in their
    values, the last of which ends the spec; an end cut left 'syntheti…' for each.
    ``shared_from`` (``shared_ends``): where the end that the spec shares with another of
    the run begins. Where the cut would keep no more than that end, the parameters after
    the values that differ go instead: 'tversky(alpha=0.3…' beside 'tversky(alpha=0.5…',
    not 'tversky(…beta=0.7)' for each."""
    if cell_len(spec) <= width:
        return spec
    shortened = _cut_middle(spec, width)
    kept_end = len(shortened) - shortened.rfind("…") - 1
    if shared_from is None or kept_end > len(spec) - shared_from:
        return shortened
    end = _parameter_end(spec, shared_from)
    return shortened if end is None else shorten_spec(spec[:end] + "…", width)


def _cut_middle(spec: str, width: int) -> str:
    """``spec`` (too long) in ``width`` cells, its middle left out, as ``shorten_spec``
    says."""
    name, paren, _ = spec.partition("(")
    head = name + paren
    if paren and width >= cell_len(head) + 3:  # '…' and the end, at least 'n)'
        return head + "…" + _last_cells(spec, width - cell_len(head) - 1)
    if width < 3:
        return _cut(spec, width)
    tail = _last_cells(spec, (width - 1) // 2)
    return set_cell_size(spec, width - 1 - cell_len(tail)) + "…" + tail


def shared_ends(specs: Iterable[str]) -> dict[str, int]:
    """For each of ``specs`` that shares its name with others: where the end it shares
    with the most alike of them begins ('tversky(alpha=0.3,beta=0.7)' beside
    'tversky(alpha=0.5,beta=0.7)': at 17, the ',beta=0.7)' after the '3'). A run's specs
    are known up front, so each label's shortening stays the same while the run goes."""
    by_head: dict[str, set[str]] = {}
    for spec in specs:
        name, paren, _ = spec.partition("(")
        if paren:
            by_head.setdefault(name + paren, set()).add(spec)
    ends: dict[str, int] = {}
    for group in by_head.values():
        for spec in group:
            others = [other for other in group if other != spec]
            if others:
                shared = max(len(os.path.commonprefix([spec[::-1], o[::-1]])) for o in others)
                ends[spec] = len(spec) - shared
    return ends


def _parameter_end(spec: str, index: int) -> int | None:
    """Where the parameter of ``spec`` that holds ``spec[index - 1]`` ends (at its ','),
    or None where it is the last (its end is the spec's) or ``spec`` has no parameters."""
    head = spec.partition("(")[0] + "("
    try:
        parameters = split_top_level(spec[len(head) : -1])
    except SpecError:  # not a spec's canonical text
        return None
    end = len(head) - 1
    for parameter in parameters[:-1]:
        end += 1 + len(parameter)
        if end >= index:
            return end
    return None


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, its end cut with '…' where it does not fit (and
    a separator or a spec's '…' before the cut with it: 'dice …', 'tver……' read badly)."""
    if cell_len(text) <= width:
        return text
    kept = set_cell_size(text, max(0, width - 1)).rstrip(" ·@…")
    return kept + "…" if width else ""


def _last_cells(text: str, width: int) -> str:
    """The end of ``text`` that fits in ``width`` cells."""
    start = len(text)
    while start > 0 and cell_len(text[start - 1 :]) <= width:
        start -= 1
    return text[start:]


@dataclass(frozen=True)
class TrialLabel:
    """A running trial's name on its line: loss spec, rate (with --lr-grid), seed, dataset
    (in a run over several) and where it runs ('worker 1'), fitted to the label column.
    Cut at the end, two trials of one loss looked the same on an 80-column terminal: what
    does not fit goes in the order that keeps them apart, where it runs first, then words
    ('s0' for '· seed 0', no seed where it is the run's only one; '@ 0.001' for
    '@ lr 0.001'), then the middle of the loss spec, then the dataset's (or their end where
    another spec of the run ends alike: ``shared_ends``); the column gives
    the label room for its ``floor``, so its end (the rate, the seed) is cut only where
    the terminal has no room for that."""

    loss: str
    seed: int
    lr: float | None = None
    dataset: str | None = None
    where: str | None = None
    sole_seed: bool = False  # the run's only seed: it tells no running trials apart
    # where the end a spec shares with another of the run's begins (shared_ends)
    loss_shared_from: int | None = None
    dataset_shared_from: int | None = None

    def name(self, loss: str | None = None, dataset: str | None = None, terse: int = 0) -> str:
        """The trial as a log line names it (``trial_names.trial_text``); ``loss`` and
        ``dataset`` shortened ones; ``terse`` as ``trial_text`` reads it."""
        return trial_text(
            self.loss if loss is None else loss,
            self.seed,
            self.lr,
            self.dataset if dataset is None else dataset,
            terse=terse,
            sole_seed=self.sole_seed,
        )

    def markup(self) -> str:
        """The whole label as Rich markup, its text escaped."""
        where = f" [dim]({escape(self.where)})[/dim]" if self.where else ""
        return f"{INDENT}{escape(self.name())}{where}"

    def fit(self, width: int) -> Text:
        where = f" ({self.where})" if self.where else ""
        full = INDENT + self.name()
        if cell_len(full + where) <= width:
            return Text.assemble((full, "bold"), (where, "bold dim"))
        return Text(_cut(self._shortened(width), width), style="bold")

    def _shortened(self, width: int) -> str:
        """The label without where it runs, shortened to ``width`` cells as far as its
        words and its loss and dataset specs give way (``fit`` cuts what is left over)."""
        for terse in (0, 1):
            if cell_len(INDENT + self.name(terse=terse)) <= width:
                return INDENT + self.name(terse=terse)
        loss = self._spec(self.loss, width, self.name(terse=2), self.loss_shared_from)
        if self.dataset is None:
            return INDENT + self.name(loss, terse=2)
        dataset = self._spec(
            self.dataset, width, self.name(loss, terse=2), self.dataset_shared_from
        )
        return INDENT + self.name(loss, dataset, terse=2)

    def floor(self) -> int:
        """The cells the label needs to stay apart from other running trials' labels: its
        rate and seed whole, its loss and dataset specs at their shortest (SPEC_FLOOR)."""
        loss = shorten_spec(self.loss, SPEC_FLOOR, self.loss_shared_from)
        dataset = (
            None
            if self.dataset is None
            else shorten_spec(self.dataset, SPEC_FLOOR, self.dataset_shared_from)
        )
        return cell_len(INDENT + self.name(loss, dataset, terse=2))

    @staticmethod
    def _spec(spec: str, width: int, name: str, shared_from: int | None) -> str:
        """``spec``, a part of ``name``, shortened as far as ``name`` needs to fit in
        ``width`` cells (after the indent), but to no fewer than SPEC_FLOOR cells."""
        room = width - cell_len(INDENT + name) + cell_len(spec)
        return shorten_spec(spec, max(min(cell_len(spec), SPEC_FLOOR), room), shared_from)

    def __rich_console__(self, console, options):
        yield self.fit(options.max_width)

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement(1, cell_len(Text.from_markup(self.markup()).plain))


class LabelColumn(TextColumn):
    """A line's label: a trial's fitted to its column (``TrialLabel``), else the text."""

    def __init__(self) -> None:
        super().__init__("[bold]{task.description}")

    def render(self, task):
        label = task.fields.get("label")
        return label if label is not None else super().render(task)


class _FittedLines:
    """A progress table whose columns are fitted to the width it is drawn at, and whose
    lines to its height: running trials beyond what the terminal shows (a fused group's
    23 losses, on 24 rows) are counted on a line of their own. Rich cut them off below a
    bare '...', which said neither how many nor that they still ran."""

    def __init__(self, progress: _FittedProgress, tasks: list) -> None:
        self.progress, self.tasks = progress, tasks

    def __rich_console__(self, console, options):
        shown, hidden = _crop(self.tasks, options.size.height)
        table = self.progress.make_fitted_table(shown)
        labels = [task.fields.get("label") for task in shown]
        widths = fit_widths(
            options.max_width,
            max((Text.from_markup(task.description).cell_len for task in shown), default=0),
            max((_status_width(task) for task in shown), default=0),
            max((label.floor() for label in labels if label is not None), default=0),
        )
        for column, width in zip(table.columns, widths, strict=True):
            column.width = width
        yield table
        if hidden:
            more = f"{INDENT}… and {hidden} more running"
            yield Text(_cut(more, options.max_width), style="dim", no_wrap=True)


def _crop(tasks: list, height: int) -> tuple[list, int]:
    """The lines that fit in ``height`` rows, the first (the overall bar) and the first
    started kept, a row left for the count of those left out; and that count."""
    if len(tasks) <= height:
        return tasks, 0
    kept = max(1, height - 1)
    return tasks[:kept], len(tasks) - kept


class _FittedProgress(Progress):
    """Rich shrinks every column alike when a line is too wide (labels with worker names
    on an 80-column terminal): the bar, elapsed and remaining time went first, down to
    '0…'. Here they keep their width and labels and statuses are cut instead."""

    def make_tasks_table(self, tasks):
        return _FittedLines(self, [task for task in tasks if task.visible])

    def make_fitted_table(self, tasks) -> Table:
        """Rich's table of ``tasks``, its cells cut rather than wrapped."""
        table = super().make_tasks_table(tasks)
        for column in table.columns:
            column.no_wrap, column.overflow = True, "ellipsis"
        return table


def _status_width(task) -> int:
    """The cells a line's status takes: its text, or the wider status it stands in for
    (``status_width``: an evaluation's in place of the epoch's scores, for the bar to keep
    its width). Padding the text instead ended it in '…' where the column cut it."""
    shown = Text.from_markup(task.fields.get("status", "")).cell_len
    return max(shown, task.fields.get("status_width", 0))


def clock_text(seconds: float | None, rough: bool = False) -> str:
    """H:MM:SS, as Rich writes times; '-:--:--' for a time not known yet; '~H:MM:SS' for a
    rough one (``timeleft.TimeLeft.rough``)."""
    if seconds is None:
        return "-:--:--"
    minutes, second = divmod(max(0, round(seconds)), 60)
    hours, minute = divmod(minutes, 60)
    return f"{'~' if rough else ''}{hours}:{minute:02d}:{second:02d}"


class TimeLeftColumn(TimeRemainingColumn):
    """The overall bar's time left from its ``time_left`` field (``timeleft.TimeLeft``);
    a trial's line keeps Rich's estimate, its own steps' rate."""

    def render(self, task) -> Text:
        if "time_left" not in task.fields:
            return super().render(task)
        text = clock_text(task.fields["time_left"], task.fields.get("rough", False))
        return Text(text, style="progress.remaining")


class FittedStatus:
    """A line's status fitted to the status column. The epoch's scores ('epoch 3/8 dice
    0.120 mcc 0.060 loss 0.8488') give way a field at a time from their end, the training
    loss first: cut with '…' at 80 columns they read 'epoch 3/8 loss 0.8488 dic…', the
    validation Dice lost. Any other status is cut where it does not fit."""

    def __init__(self, markup: str) -> None:
        self.text = Text.from_markup(markup)

    def fit(self, width: int) -> Text:
        if self.text.cell_len <= width:
            return self.text
        words = self.text.plain.split(" ")
        scores = words[0] == "epoch"  # not 'diverged at epoch 3', which would lose its end
        for kept in range(len(words) - 2, 1 if scores else len(words), -2):  # 'name value's
            shown = " ".join(words[:kept])
            if cell_len(shown) <= width:
                return self.text[: len(shown)]
        cut = self.text.copy()
        cut.truncate(width, overflow="ellipsis")
        return cut

    def __rich_console__(self, console, options):
        yield self.fit(options.max_width)

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement(1, self.text.cell_len)


class StatusColumn(TextColumn):
    """A line's status (``FittedStatus``)."""

    def __init__(self) -> None:
        super().__init__("{task.fields[status]}")

    def render(self, task):
        return FittedStatus(task.fields["status"])


class TrainingProgress:
    """A listener for run events: an overall bar with the time left, and one line per
    running trial (several at once with ``--jobs`` or fused groups), advanced per step.
    ``clock`` times the trials for the time left (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.progress = _FittedProgress(
            LabelColumn(),
            BarColumn(bar_width=None),  # as wide as fit_widths makes its column
            StatusColumn(),
            TimeElapsedColumn(),
            TimeLeftColumn(),
            console=err,
        )
        self.clock = clock
        self.time_left: TimeLeft | None = None
        self.overall = None
        self.tasks: dict[str, Any] = {}  # trial id -> its line, while it runs
        self.trials: dict[str, Any] = {}  # trial id -> TrialInfo
        self.done_epochs: dict[str, float] = {}  # trial id -> epochs done, fractional
        self.all_done = 0.0  # their sum, kept up to date: the overall bar's progress
        self.epochs = 1
        self.ended = 0
        self.show_dataset = False
        self.sole_seed = False  # one seed for every trial to run: a label may leave it out
        self.shared_loss_ends: dict[str, int] = {}  # shared_ends of the run's loss specs
        self.shared_dataset_ends: dict[str, int] = {}  # and of its dataset specs
        self.run_dir: Path | None = None
        self.drawing = False  # the live display runs: on a terminal Rich animates only

    def __enter__(self) -> TrainingProgress:
        return self  # the display starts with the run: a run refused before leaves no line

    def __exit__(self, *exc: object) -> None:
        if self.drawing:
            _stop_drawing(self.progress)

    def __call__(self, event) -> None:
        if self.time_left is not None:
            self.time_left(event)  # before the handler: a log's line says the time left
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)
        if self.overall is not None and self.time_left is not None:
            self.progress.update(
                self.overall, time_left=self.time_left.seconds(), rough=self.time_left.rough()
            )

    def _on_RunOpened(self, event) -> None:  # noqa: N802 (named after the event class)
        self.run_dir = event.run_dir

    def _on_RunStarted(self, event) -> None:  # noqa: N802
        self.run_dir = event.run_dir
        self.epochs = event.epochs
        self.trials = {info.trial_id: info for info in event.todo}
        self.time_left = TimeLeft(self.trials, event.epochs, self.clock)
        self.show_dataset = len({info.dataset for info in event.todo}) > 1
        self.sole_seed = len({info.seed for info in event.todo}) == 1
        self.shared_loss_ends = shared_ends(info.loss for info in event.todo)
        self.shared_dataset_ends = shared_ends(info.dataset for info in event.todo)
        kept = f" ({_count(event.skipped, 'finished trial')} kept)" if event.skipped else ""
        run_dir = escape(str(event.run_dir))  # '--out a[/b]' is a path, not Rich markup
        err.print(f"run folder: {run_dir}{kept}", highlight=False, soft_wrap=True)
        for selection in event.selections:
            err.print(_selection_line(selection), markup=False, highlight=False, soft_wrap=True)
        if event.todo:
            err.print(f"executing: {event.executor}", highlight=False, soft_wrap=True)
        else:  # a finished run resumed: its report is printed again, nothing trains
            err.print("nothing to train: every planned trial has finished", highlight=False)
        self.overall = self.progress.add_task(
            "all trials", total=len(self.trials) * self.epochs, status=self._tally(), time_left=None
        )
        # A log gets one line per ended trial instead (_on_TrialEnded), where Rich would
        # draw nothing while the run goes, then its last frame. So does a terminal Rich
        # does not animate (TERM=dumb, TTY_INTERACTIVE=0): taken for a live one, it showed
        # nothing from the run's first line to that last frame.
        self.drawing = err.is_interactive
        if self.drawing:
            self.progress.start()

    def _on_RunNote(self, event) -> None:  # noqa: N802
        (print_warning if event.warning else print_note)(event.text)

    def _on_TrialStarted(self, event) -> None:  # noqa: N802
        info = self.trials.get(event.trial_id)
        if info is None or event.trial_id in self.tasks:
            return
        label = self._label(info, event.where)
        self.tasks[event.trial_id] = self.progress.add_task(
            label.markup(), total=self.epochs, status="epoch 1", label=label
        )

    def _on_StepDone(self, event) -> None:  # noqa: N802
        self._advance(event.trial_id, event.epochs_done)

    def _on_Evaluating(self, event) -> None:  # noqa: N802
        """'validating 12/40' while a split is scored (minutes on a CPU, with no step to
        move the bar), 'boundaries  120/3669' while the last epoch's HD95 and NSD are,
        given at least the room of the status it stands in for: from the first epoch's scores
        on, the bar keeps its width."""
        task = self.tasks.get(event.trial_id)
        if task is None:
            return
        done = f"{event.batch:>{len(str(event.batches))}}/{event.batches}"
        status = f"{PASSES.get(event.split, event.split)} {done}"
        (line,) = [line for line in self.progress.tasks if line.id == task]
        self.progress.update(task, status=status, status_width=_status_width(line))

    def _on_EpochDone(self, event) -> None:  # noqa: N802
        record = event.record
        if record["status"] == "diverged":
            status = f"[red]diverged at epoch {record['epoch']}"
        else:
            status = (  # what matters most first: a narrow line keeps its start
                f"epoch {record['epoch']}/{self.epochs} dice {record['val_dice']:.3f} "
                f"mcc {record['val_mcc']:.3f} loss {record['train_loss']:.4f}"
            )
        task = self.tasks.get(event.trial_id)
        if task is not None:  # the scores' own width again, the evaluation's stand-in done
            self.progress.update(task, status=status, status_width=0)
        self._advance(event.trial_id, record["epoch"])

    def _on_TrialRetried(self, event) -> None:  # noqa: N802
        self._advance(event.trial_id, 0.0)
        task = self.tasks.pop(event.trial_id, None)
        if task is not None:
            self.progress.remove_task(task)
        note = escape(f"{self._name(event.trial_id)}: {event.reason}; trying once more")
        err.print(f"[yellow]retry:[/yellow] {note}", highlight=False, soft_wrap=True)

    def _on_TrialEnded(self, event) -> None:  # noqa: N802
        self.ended += 1
        self._advance(event.trial_id, self.epochs)
        task = self.tasks.pop(event.trial_id, None)
        if task is not None:
            self.progress.remove_task(task)
        if event.status == "failed":
            failure = escape(f"{self._name(event.trial_id)}: {event.reason}")
            err.print(f"[red]failed:[/red] {failure}", highlight=False, soft_wrap=True)
        elif not self.drawing:  # a log: no live lines, so this one says that a trial ended
            name = escape(self._name(event.trial_id))
            # One line however long (a loss with parameters, a rate): a log is read by line.
            line = f"{event.status}: {name} ({self._tally()}{self._left()})"
            err.print(line, highlight=False, soft_wrap=True)
        if self.overall is not None:
            self.progress.update(self.overall, status=self._tally())

    def _advance(self, trial_id: str, epochs_done: float) -> None:
        # Each step of each trial comes here: a sum over every trial of the run grew with it.
        self.all_done += epochs_done - self.done_epochs.get(trial_id, 0.0)
        self.done_epochs[trial_id] = epochs_done
        task = self.tasks.get(trial_id)
        if task is not None:
            self.progress.update(task, completed=epochs_done)
        if self.overall is not None:
            # rounded: what adding and taking away fractions of epochs leaves (1e-13) is no
            # progress, and a bar that ends at 344.9999999999 of 345 never reads as done
            self.progress.update(self.overall, completed=round(self.all_done, 9))

    def _tally(self) -> str:
        return f"{self.ended}/{len(self.trials)} trials"

    def _left(self) -> str:
        """', 0:12:00 left' while trials remain and the time left is known (', ~0:12:00
        left' while it is rough), else ''."""
        seconds = self.time_left.seconds() if self.time_left is not None else None
        if seconds is None or self.ended >= len(self.trials):
            return ""
        return f", {clock_text(seconds, self.time_left.rough())} left"

    def _label(self, info, where: str | None = None) -> TrialLabel:
        """The trial's label: its dataset too when the run has several."""
        dataset = info.dataset if self.show_dataset else None
        return TrialLabel(
            info.loss,
            info.seed,
            info.lr,
            dataset,
            where or None,
            self.sole_seed,
            self.shared_loss_ends.get(info.loss),
            self.shared_dataset_ends.get(info.dataset),
        )

    def _name(self, trial_id: str) -> str:
        """As the trial's live line names it, in full: a printed line is never cut (Rich
        prints it as one line, and a terminal wraps it)."""
        info = self.trials.get(trial_id)
        return trial_id if info is None else self._label(info).name()


class AmountColumn(ProgressColumn):
    """Bytes and speed for a download; a count of files for an extraction."""

    def __init__(self) -> None:
        super().__init__()
        self.size, self.speed = DownloadColumn(), TransferSpeedColumn()

    def render(self, task) -> Text:
        if task.fields.get("unit") == "files":
            return Text(f"{task.completed:,.0f}/{task.total or 0:,.0f} files")
        return Text.assemble(self.size.render(task), " ", self.speed.render(task))


class DownloadProgress:
    """A bar per downloaded file (bytes), then per extracted archive (files)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            AmountColumn(),
            console=err,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> DownloadProgress:
        return self  # the bar starts with the first byte: a failure prints only its error

    def __exit__(self, *exc: object) -> None:
        if self.tasks:
            _stop_drawing(self.progress)

    def update(self, name: str, done: int, total: int | None) -> None:
        if not self.tasks:
            self.progress.start()
        if name not in self.tasks:
            # download.extract's label: it counts archive members, not bytes
            unit = "files" if name.startswith("extract ") else "bytes"
            self.tasks[name] = self.progress.add_task(name, total=total, unit=unit)
        self.progress.update(self.tasks[name], completed=done, total=total)


def print_plan(
    plan,
    finished: set[str] = frozenset(),
    choices: list[tuple[str, str, str]] = (),
    execution: str = "",
    resumed: Path | None = None,
) -> None:
    """The planned trials (``--dry-run``); those ``finished`` (a resumed run's) marked;
    ``choices`` (runner.planned_choices): what the run will use where losscmp decides;
    ``execution``: how the trials would run (``runner.planned_execution``); ``resumed``:
    the run folder a --resume writes into."""
    for selection in plan.selections:
        stdout().print(_selection_line(selection), markup=False, soft_wrap=True)
    todo = sum(trial.id not in finished for trial in plan.trials)
    planned = _count(len(plan.trials), "planned trial")
    title = f"{planned} (dry run: nothing trained)"
    if finished:
        title = f"{todo} of {planned} still to train (dry run)"
    out = stdout()
    # One dataset: its spec (often the widest cell) on every row said nothing; the line
    # under the table names it.
    with_dataset = len(plan.dataset_specs) > 1
    table = _plan_table(plan, finished, title, with_ids=True, with_dataset=with_dataset)
    unbounded = out.options.update_width(10**6)  # a measure is capped at the width it gets
    if out.measure(table, options=unbounded).maximum > out.width:
        # Cut to the terminal, every id and every dataset read 'synthetic(fg_fraction…' (an
        # --fg-fraction sweep's rows looked alike): the ids, made of the other columns, go.
        table = _plan_table(plan, finished, title, with_ids=False, with_dataset=with_dataset)
        left_out = Text(f"trial ids not shown at this width ({out.width} columns)", style="dim")
    else:
        left_out = None
    out.print(table)
    if left_out:  # a line of its own: as a caption, a narrow table's width wrapped it
        out.print(left_out, soft_wrap=True)
    # Below a long table (a grid of every loss), the count its title gave has scrolled away.
    stdout().print(_trials_line(plan, todo), markup=False, soft_wrap=True)
    config = plan.config
    chosen = "".join(
        f", {name} {value}" + (f" ({why})" if why else "") for name, value, why in choices
    )
    where = f"results under {config.out}/ (a new run folder)"
    if resumed:  # into its own folder, not a new one beside it
        where = f"results in {resumed}/ (the run resumed)"
    stdout().print(
        f"{_count(config.epochs, 'epoch')}, batch {config.batch_size}, "
        f"image {config.image_size}px, executor {config.executor}{chosen}, {where}",
        markup=False,
        soft_wrap=True,  # one line, however long its path: the terminal wraps it
    )
    if execution:
        stdout().print(f"executing: {execution}", markup=False, soft_wrap=True)


def _trials_line(plan, todo: int) -> str:
    """``345 trials to train: 23 losses × 3 learning rates × 5 seeds on synthetic``, or
    ``2 of 9 trials to train: ...`` for a resumed run."""
    datasets = list(plan.dataset_specs)
    factors = {"loss": len(plan.loss_specs), "learning rate": len(plan.rates)}
    factors |= {"seed": len(plan.seeds), "dataset": len(datasets)}
    total = len(plan.trials)
    count = f"{todo} of {total}" if todo != total else str(total)
    line = f"{count} trial{'' if total == 1 else 's'} to train"
    if math.prod(factors.values()) == total:  # as it is by construction (plan.plan_run)
        shown = [
            _count(number, noun)
            for noun, number in factors.items()
            if noun != "dataset" or number > 1
        ]
        line += ": " + " × ".join(shown)
    return line + (f" on {datasets[0]}" if len(datasets) == 1 else "")


def _plan_table(
    plan, finished: set[str], title: str, with_ids: bool, with_dataset: bool = True
) -> Table:
    """The planned trials, one a row; a dataset or loss spec too wide for its column wraps
    rather than losing its end (the values that tell rows apart)."""
    table = Table(title=title)
    columns = (
        ("#", "dataset", "loss", "lr", "seed") if with_dataset else ("#", "loss", "lr", "seed")
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    if with_ids:
        table.add_column("trial id")
    if finished:
        table.add_column("state")
    for index, trial in enumerate(plan.trials, start=1):
        rate = f"{trial.lr:g}" if trial.lr is not None else "–"
        row = [str(index), *([trial.dataset] if with_dataset else []), trial.loss, rate]
        row += [str(trial.seed)] + ([trial.id] if with_ids else [])
        if finished:
            row.append("finished" if trial.id in finished else "to train")
        table.add_row(*map(escape, row))
    return table


def _selection_line(selection) -> str:
    """What ``all`` or a pattern stood for: ``'*dice*': 6 binary losses: bce_dice, ...``."""
    matched = ", ".join(selection.matched)
    count = len(selection.matched)
    line = f"'{selection.selector}': {count} {selection.mode} loss{'' if count == 1 else 'es'}"
    before = [name for name in selection.matched if name not in selection.added]
    listed = f" ({', '.join(before)} listed before it)" if before else ""
    return f"{line}: {matched}{listed}"


def _count(number: int, noun: str) -> str:
    plural = "es" if noun.endswith("s") else "s"  # losses
    return f"{number} {noun}" + ("" if number == 1 else plural)


def print_tables(tables: list) -> None:
    out = stdout()
    for table in tables:
        out.print(table)


# Notes and paths quote labels and folder names ('scans[v2]', 'a[/b]'): printed as text,
# never read as Rich markup (which drops a [tag] and fails on an unmatched [/tag]).


def print_estimate(text: str) -> None:
    """--estimate's line (``measure.estimate_line``), under the dry run's plan."""
    stdout().print(text, markup=False, soft_wrap=True)


def print_note(text: str) -> None:
    err.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def print_warning(text: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def print_written(paths: list[Path]) -> None:
    """One 'wrote' line a file: ``report --csv RUN/summary.csv`` writes the run's own
    summary.csv twice, the same file, which two lines would count as two."""
    told: set[str] = set()
    for path in paths:
        if os.path.realpath(path) not in told:
            told.add(os.path.realpath(path))
            err.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)


# The failed trials a run's last line names; the rest it counts ('and 4 more').
NAMED_FAILURES = 3


def failed_trials_line(failed: list, plan, resume_command: str) -> str:
    """The last line of a run some of whose trials failed (``failed``: their ``Trial``s):
    how many of the ``plan``'s, which, named as the 'failed:' lines above them (which give
    each reason), and the command that trains them again; '' if none failed."""
    if not failed:
        return ""
    rates, datasets = len(plan.rates), len(plan.dataset_specs)
    names = [
        trial_name(trial.loss, trial.seed, trial.lr, trial.dataset, rates, datasets)
        for trial in failed[:NAMED_FAILURES]
    ]
    if len(failed) > len(names):
        names.append(f"{len(failed) - len(names)} more")
    them = "it" if len(failed) == 1 else "them"
    return (
        f"losscmp: {len(failed)} of {_count(len(plan.trials), 'trial')} failed "
        f"({', '.join(names)}); train {them} again with: {resume_command}"
    )


def print_loss_table(entries: list) -> None:
    out = stdout()
    table = _loss_table(entries, with_parameters=True)
    unbounded = out.options.update_width(10**6)  # a measure is capped at the width it gets
    if out.measure(table, options=unbounded).minimum > out.width:  # the least that breaks no word
        # Cut to an 80-column terminal, every column broke its words mid-way ('ignore_inde'
        # 'x=None'): the parameters, which --show lists, go.
        table = _loss_table(entries, with_parameters=False)
        table.caption = f"parameters not shown at {out.width} columns: losscmp losses --show NAME"
    out.print(table)
    out.print(
        "soft y: whether a binary target may hold probabilities in [0, 1] (soft labels); "
        "multiclass targets are class indices."
    )
    if len(entries) == 1:  # 'losscmp losses tversky': the row has no formula, no paper
        out.print(
            f"'losscmp losses --show {entries[0].name}': its formula, parameters and paper",
            markup=False,
        )


def _loss_table(entries: list, with_parameters: bool) -> Table:
    noun = "loss" if len(entries) == 1 else "losses"
    table = Table(title=f"{len(entries)} {noun}", show_lines=False)
    table.add_column("name", no_wrap=True)
    table.add_column("family")
    table.add_column("modes", max_width=None if with_parameters else len("multiclass"))
    table.add_column("soft y")
    if with_parameters:
        table.add_column("parameters (defaults)", overflow="fold")
    table.add_column("description", overflow="fold", ratio=None if with_parameters else 1)
    for entry in entries:
        defaults = ", ".join(f"{k}={_short(v)}" for k, v in entry.defaults.items())
        table.add_row(
            entry.name,
            entry.family,
            # a space to wrap at where the column is narrow
            "/".join(entry.modes) if with_parameters else " / ".join(entry.modes),
            "yes" if entry.soft_targets else "no",
            *([escape(defaults)] if with_parameters else []),
            escape(entry.description),
        )
    return table


def print_loss_detail(entry) -> None:
    out = stdout()
    out.print(f"[bold]{entry.name}[/bold] — {escape(entry.description)}")
    out.print(f"family: {entry.family}    modes: {', '.join(entry.modes)}")
    if entry.formula:
        out.print(f"formula: {escape(entry.formula)}")
    if entry.reference:
        out.print(f"reference: {escape(entry.reference)}")
    if entry.needs:
        out.print(f"needs: {', '.join(sorted(entry.needs))} (computed by the data pipeline)")
    out.print(f"soft targets: {soft_targets_line(entry)}")
    table = Table(title="parameters")
    for column in ("name", "type", "default"):
        table.add_column(column)
    hints = entry.type_hints()
    for name, param in entry.parameters.items():
        default = "required" if param.default is inspect.Parameter.empty else _short(param.default)
        table.add_row(name, escape(_type_name(hints.get(name))), escape(default))
    stdout().print(table)


def soft_targets_line(entry) -> str:
    if entry.soft_targets:
        return "yes: a binary target may hold probabilities in [0, 1]"
    if "binary" not in entry.modes:
        return "no: multiclass targets are class indices"
    return "no: needs hard 0/1 targets"


def print_dataset_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="datasets")
    for column in ("name", "present", "path", "description", "how to get it"):
        table.add_column(column, overflow="fold")
    for row in rows:
        present = "[green]yes" if row["present"] else "[red]no"
        texts = [str(row.get("path") or "—"), row["description"], row["how_to_get"]]
        table.add_row(row["name"], present, *map(escape, texts))
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
