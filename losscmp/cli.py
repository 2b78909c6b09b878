"""The ``losscmp`` command: parse, call the library, print. Nothing else.

Heavy imports (torch, smp, pandas) happen inside the commands, so ``losscmp
--help`` stays fast. Every ``LosscmpError`` becomes one line on stderr and
exit status 2.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import inspect
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from losscmp import startup
from losscmp.errors import (
    GpuErrorState,
    LosscmpError,
    OutputClosed,
    Terminated,
    closest,
    forget_stop,
    stop_on_signal,
)
from losscmp.executors import executors_help, jobs_help, threads_help
from losscmp.metric_names import BINARY_METRICS, PLAIN_METRICS
from losscmp.tracking import trackers_help

try:  # typer >= 0.20 ships its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption, UsageError
except ImportError:
    from click.exceptions import NoArgsIsHelpError, NoSuchOption, UsageError

# The metavar of an option that takes no value (--amp, --help): none shown after it.
NO_VALUE_METAVAR = ""


class _FlagHelp:
    """A command whose --help is shown as the flag it is: Typer 0.29 shows a flag's type
    as its metavar, and '--help <bool>' read as if --help took a value. Typer makes the
    help option itself, so its metavar is set here; the other flags (--amp, --dry-run,
    --estimate, --plots) set ``metavar=NO_VALUE_METAVAR`` where they are declared. Its
    help cut short by its reader (``| head``) ends as other output does: status 141,
    nothing said."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = NO_VALUE_METAVAR
            if not hasattr(option.callback, "__wrapped__"):  # click keeps one option: once
                option.callback = _quiet_when_output_closed(option.callback)
        return option

    def format_help(self, ctx, formatter):
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                _show_argument_plainly(param)
        return self._format_help_quietly(ctx, formatter)

    def _format_help_quietly(self, ctx, formatter):
        """Typer draws the help with a Rich console of its own, whose answer to a closed
        stdout (``losscmp --help | head -1``) is SystemExit(1), the status of a run with
        failed trials: the help ends as every other closed output does (141, nothing said).
        Rich raises SystemExit nowhere else, and drawing the help does nothing else that
        exits."""
        try:
            return super().format_help(ctx, formatter)
        except SystemExit:
            raise typer.Exit(OUTPUT_CLOSED_STATUS) from None


def _show_argument_plainly(argument) -> None:
    """An argument in the help as its metavar alone, as click writes it: Typer 0.29 adds
    its Python type ('PATH <list[str]>') and braces a required one in the usage line
    ('{PATH}...', which reads as a set of choices)."""
    name = argument.metavar or argument.name.upper()
    piece = name if argument.required else f"[{name}]"
    if argument.nargs != 1:
        piece += "..."
    argument.display_type_rich = lambda ctx: None
    argument.get_usage_pieces = lambda ctx: [piece]


def _quiet_when_output_closed(show_help):
    """The --help option's callback, ending with 141 where the reader left between Rich's
    help and the newline click writes after it: Typer made that EPIPE exit 1 too."""

    @functools.wraps(show_help)
    def callback(ctx, param, value):
        try:
            return show_help(ctx, param, value)
        except BrokenPipeError:
            raise typer.Exit(OUTPUT_CLOSED_STATUS) from None

    return callback


class _Command(_FlagHelp, typer.core.TyperCommand):
    pass


class _Group(_FlagHelp, typer.core.TyperGroup):
    pass


app = typer.Typer(
    name="losscmp",
    cls=_Group,
    help="Benchmark segmentation losses fairly: same U-Net, same data, one table per run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(
    cls=_Group, help="List the datasets, or download one.", no_args_is_help=False
)
app.add_typer(datasets_app, name="datasets")


# What a path the user gave can do wrong: its permissions, its name, a full or read-only disk.
PATH_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)


# A closed stdout or stderr (`| head`): 128 + SIGPIPE, as the shell reports a command that
# SIGPIPE killed (Python ignores SIGPIPE, so the write fails instead).
OUTPUT_CLOSED_STATUS = 128 + int(signal.SIGPIPE)
# A run that ended with trials failed (after their retry): its table lacks them. Mistakes
# are 2; Ctrl-C 130, SIGTERM 143, SIGHUP 129 and a closed stdout or stderr 141
# (_stop_status).
FAILED_TRIALS_STATUS = 1
# The signals that stop a command as Ctrl-C does (Terminated): a scheduler's or timeout's
# stop, and the terminal or ssh session going away. Either ended it on the spot, unsaid.
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def user_errors(command):
    """Turn a LosscmpError, or a path the user gave that cannot be read or written, into
    one stderr line and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        startup.began()  # a stop from here on is the command's to say
        from losscmp import console  # every command prints with it: no extra import

        console.command_began()
        try:
            return command(*args, **kwargs)
        except LosscmpError as error:
            typer.echo(f"losscmp: error: {_one_plain_line(str(error))}", err=True)
            raise typer.Exit(2) from None
        except OSError as error:
            if error.filename is None or error.errno not in PATH_ERRNOS:
                raise
            message = _one_plain_line(f"{error.filename}: {error.strerror}")
            typer.echo(f"losscmp: error: {message}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as stop:
            # Here, not in run_command(): Typer turns a KeyboardInterrupt that leaves the
            # command into a silent exit 130 before run_command() could say anything.
            if not isinstance(stop, OutputClosed):  # `| head` had what it wanted: unsaid
                _tell(f"losscmp: {_stopped(stop)}")
            raise typer.Exit(_stop_status(stop)) from None

    return wrapper


def _one_plain_line(message: str) -> str:
    """A message that quotes what the user typed, with its control characters escaped: one
    line, whatever was typed (a newline, a terminal escape sequence)."""
    return CONTROL_CHARACTERS.sub(
        lambda found: found.group().encode("unicode_escape").decode("ascii"), message
    )


def _tell(line: str) -> None:
    """``line`` on stderr, if it is still open: a closed pipe or a hung-up terminal (EIO)
    has no one to tell, and its error would replace the stop being told with a traceback."""
    with contextlib.suppress(OSError):
        typer.echo(line, err=True)


@contextlib.contextmanager
def _terminating_signals_as_interrupt():
    """SIGTERM (``kill``, ``timeout``, a batch scheduler) and SIGHUP (the terminal closed,
    the ssh session dropped) stop a run as Ctrl-C does: the workers stopped, their shared
    memory freed, the resume line printed where it can be; by default either would end
    this process on the spot and say nothing. Ctrl-C's KeyboardInterrupt, where Python's
    own, is raised by the same handler, which records each stop: one dropped inside a
    finalizer still stops the run at the executor's next wait (errors.stop_on_signal)."""
    previous = {}
    forget_stop()
    try:
        for signum in TERMINATING_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                previous[signum] = signal.signal(signum, stop_on_signal)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a program's
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, stop_on_signal)
    except ValueError:  # not the main thread (losscmp called from a program): left alone
        yield
        return
    try:
        yield
    finally:
        # Held back while they are put back: one landing midway ran the handler, which left
        # its stop recorded and the handlers after it in place, to stop a later run at once.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, previous)
        try:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            forget_stop()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # reaches the handler put back


@app.command(cls=_Command)
@user_errors
@_terminating_signals_as_interrupt()  # from its first import on: else it ended unsaid
def run(
    losses: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="Losses with parameters ('dice,focal(gamma=1)'), 'all' (every loss of the "
            "data's mode), patterns ('*dice*'). "
            "\\[default: dice,focal,tversky]",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="synthetic (default), pets, 'pets(mode=trimap)', folder:PATH, ..."
        ),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(metavar="PATH", help="Where the dataset lives.")
    ] = None,
    fg_fraction: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="Synthetic foreground fractions to sweep, e.g. '0.005,0.02,0.1' ('none': the "
            "dataset's own, over a config file's sweep).",
        ),
    ] = None,
    # Numbers arrive as text for config.normalise to read, so that a bad one is refused in
    # the words used for the same value in a config file.
    epochs: Annotated[
        # "\\[": Rich would read "[default: 8]" as markup and drop it from the help.
        str | None, typer.Option(metavar="N", help="Training epochs per trial. \\[default: 8]")
    ] = None,
    batch_size: Annotated[
        str | None, typer.Option(metavar="N", help="Batch size. \\[default: 16]")
    ] = None,
    image_size: Annotated[
        str | None,
        typer.Option(metavar="N", help="Square image side, a multiple of 32. \\[default: 64]"),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(metavar="N", help="Trials per loss, each with its own seed. \\[default: 1]"),
    ] = None,
    seed: Annotated[
        str | None, typer.Option(metavar="N", help="First seed. \\[default: 0]")
    ] = None,
    lr: Annotated[
        str | None, typer.Option(metavar="X", help="AdamW learning rate. \\[default: 0.003]")
    ] = None,
    lr_grid: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="Learning rates to train every loss at, e.g. '1e-3,3e-3,1e-2'; each loss is "
            "reported at its best rate on validation (replaces --lr; 'none': --lr alone, "
            "over a config file's grid).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="PRESET", help="Model preset: auto, tiny, small, medium. \\[default: auto]"
        ),
    ] = None,
    encoder_weights: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="'imagenet' to start from pretrained weights. \\[default: none]",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps. \\[default: auto]"),
    ] = None,
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            metavar=NO_VALUE_METAVAR,
            help="bf16 autocast on CUDA GPUs that have bf16. \\[default: on]",
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(metavar="DIR", help="Parent folder of run folders. \\[default: results]"),
    ] = None,
    config: Annotated[
        str | None,  # text, not Path: click reads an empty name as '.', the working folder
        typer.Option(
            metavar="FILE",
            help="YAML file with these options (but --config, --resume, --dry-run, --estimate); "
            "flags win. A run's run.json runs it again.",
        ),
    ] = None,
    limit: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help="Use N images in all (a fixed subset, at least 3: split into train, "
            "validation and test).",
        ),
    ] = None,
    num_workers: Annotated[
        str | None,
        typer.Option(metavar="N", help="Data loader processes per trial process. \\[default: 0]"),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help=f"{executors_help()}. \\[default: local]",
        ),
    ] = None,
    jobs: Annotated[
        str | None,
        typer.Option(
            "--jobs",
            "-j",
            metavar="N",
            help=jobs_help(),
        ),
    ] = None,
    threads: Annotated[
        str | None,
        typer.Option(
            metavar="N",
            help=threads_help(),
        ),
    ] = None,
    fuse: Annotated[
        str | None,
        typer.Option(
            metavar="MODE",
            help="Train the losses of a seed as one stacked model: auto (on CUDA), on, off. "
            "\\[default: auto]",
        ),
    ] = None,
    trials_per_gpu: Annotated[
        str | None,
        typer.Option(
            metavar="N", help="Worker processes per GPU when --jobs is not given. \\[default: 1]"
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDR",
            help="Ray cluster to join (else $RAY_ADDRESS, else a local Ray is started).",
        ),
    ] = None,
    tracking: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help=f"{trackers_help()}. \\[default: none]",
        ),
    ] = None,
    resume: Annotated[
        str | None,  # text, not Path: click reads an empty name as '.', the working folder
        typer.Option(
            metavar="RUN_DIR", help="Finish an interrupted run folder; skips finished trials."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",  # a flag alone: no '--no-dry-run' half, no '[default: no-dry-run]'
            metavar=NO_VALUE_METAVAR,
            show_default=False,
            help="Make every check a run makes (data loaded, losses tried), print "
            "the planned trials and exit.",
        ),
    ] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",  # a flag alone, as --dry-run
            metavar=NO_VALUE_METAVAR,
            show_default=False,
            help="Do what --dry-run does, then time a few real training steps of each kind "
            "of job and print about how long the run takes here (those steps cost time: "
            "seconds on a CPU for a small run, half a minute for 23 losses of a tiny model).",
        ),
    ] = False,
) -> None:
    """Train the U-Net once per loss (and seed), then print the comparison table."""
    began = time.monotonic()  # --estimate counts a run's start from here
    dry_run = dry_run or estimate  # an estimate is a dry run that also times a few steps
    from losscmp.config import build_config
    from losscmp.plan import plan_run
    from losscmp.runner import resume_config

    resume = _path_option("resume", resume, "the run folder to finish")
    flags = {
        "losses": losses,
        "dataset": dataset,
        "data_dir": data_dir,
        "fg_fraction": fg_fraction,
        "epochs": epochs,
        "batch_size": batch_size,
        "image_size": image_size,
        "seeds": seeds,
        "seed": seed,
        "lr": lr,
        "lr_grid": lr_grid,
        "model": model,
        "encoder_weights": encoder_weights,
        "device": device,
        "amp": amp,
        "out": out,
        "limit": limit,
        "num_workers": num_workers,
        "executor": executor,
        "jobs": jobs,
        "threads": threads,
        "fuse": fuse,
        "trials_per_gpu": trials_per_gpu,
        "ray_address": ray_address,
        "tracking": tracking,
    }
    if resume is not None:
        run_config = resume_config(resume, config, flags)
    else:
        run_config = build_config(config, **flags)
    from losscmp import console
    from losscmp.runner import fused_group_size, prepare

    with _relative_paths_explained(resume, run_config):
        plan = plan_run(run_config)
        prepared = prepare(
            plan,
            resuming=resume is not None,
            done=_finished(resume),
            dry_run=dry_run,
            group_size=fused_group_size(resume),
        )
    if dry_run:
        finished, choices, execution = _dry_run_checks(prepared, resume)
        console.print_plan(plan, finished, choices, execution, resumed=resume)
        if estimate:
            console.print_estimate(_dry_run_estimate(prepared, began, resume, finished))
        return
    # What finishes a run folder: this command, resuming it (printed wherever it stops)
    resuming = functools.partial(_command_line, config, flags)
    run_dir = _train(prepared, _command_line(config, flags, resume), resuming, resume)
    failed = _failed_trials(prepared.plan, run_dir)
    command = resuming(resume or run_dir)  # trains them again
    failed_line = _one_plain_line(console.failed_trials_line(failed, prepared.plan, command))
    if len(failed) < len(prepared.plan.trials):  # a table to print: some trials trained
        _report_run(prepared, run_dir, command, failed_line)
    if failed:
        # A script (CI, a batch scheduler) learns from the status that the table lacks
        # trials; the line says which and how to train them (the same command, resuming).
        typer.echo(failed_line, err=True)
        raise typer.Exit(FAILED_TRIALS_STATUS)


def _failed_trials(plan, run_dir: Path) -> list:
    """The planned trials that failed (their worker died twice, they raised) and have not
    been trained since, in the plan's order."""
    from losscmp.results import RunStore

    failed = RunStore(run_dir).failed_trials()
    return [trial for trial in plan.trials if trial.id in failed]


def _report_run(prepared, run_dir: Path, command: str, failed_line: str) -> None:
    """The table of the run just trained, its summary.csv and report.html. Stopped (Ctrl-C,
    SIGTERM), it says how to get them, and still names the run's failed trials
    (``failed_line``, if any): they are recorded as failed whatever the report did;
    ``command`` resumes the run, which writes its report.html too."""
    try:
        _print_report(
            [run_dir],
            metric="dice",
            files={},
            plots=False,
            run_page=True,
            failures_told=bool(failed_line),
        )
    except KeyboardInterrupt as stop:
        from losscmp.results import shell_path

        trained = "the trials that trained are" if failed_line else "every trial is"
        _tell(
            # the command last and unquoted: its own quotes (a dataset spec) would nest
            f"losscmp: {_stopped(stop)}; {trained} saved in {run_dir}; losscmp report "
            f"{shell_path(run_dir)} prints the table, and this writes its report.html too: "
            f"{command}"
        )
        if failed_line:  # last, as a run not stopped prints it
            _tell(failed_line)
        raise typer.Exit(_stop_status(stop)) from None
    prepared.tracker.attach(run_dir)  # the report files, now that they exist


def _train(prepared, command: str, resuming: Callable[[Path], str], resume: Path | None) -> Path:
    """Train with the progress display. Stopped once the run folder exists (Ctrl-C,
    SIGTERM), the last line says where the finished trials are and gives the command that
    finishes the run (``resuming(run_dir)``, whole, to copy): printed
    once the display has stopped, so that a terminal shows it below the bars."""
    from losscmp import console
    from losscmp.runner import execute

    progress = console.TrainingProgress()
    try:
        with progress:
            return execute(prepared, run_dir=resume, listener=progress, command=command)
    except KeyboardInterrupt as stop:
        run_dir = progress.run_dir or resume
        if run_dir is None:  # stopped before the folder was made: nothing to resume
            raise
        _tell(
            f"losscmp: {_stopped(stop)}; finished trials are saved in {run_dir}. "
            f"Finish the run with: {resuming(run_dir)}"
        )
        raise typer.Exit(_stop_status(stop)) from None
    except GpuErrorState as broken:
        # One line, not a failure for each trial left: each would meet the same error at
        # its first CUDA call. The resume is a new process, with a new CUDA context.
        run_dir = progress.run_dir or resume
        typer.echo(
            f"losscmp: {_one_plain_line(str(broken))}: the run stopped, as this process can "
            "train nothing more; the trial that met it is recorded as failed, finished "
            f"trials are saved in {run_dir}. Finish the run with: {resuming(run_dir)}",
            err=True,
        )
        raise typer.Exit(FAILED_TRIALS_STATUS) from None
    except OSError as error:
        _say_how_to_resume(error, progress.run_dir, resuming)
        raise


def _stopped(stop: KeyboardInterrupt) -> str:
    if isinstance(stop, OutputClosed):
        return "stopped: its output was closed"
    if isinstance(stop, Terminated):
        return f"terminated ({signal.Signals(stop.signum).name})"
    return "interrupted"


def _stop_status(stop: KeyboardInterrupt) -> int:
    """128 + the signal, as the shell reports a command the signal killed."""
    if isinstance(stop, OutputClosed):
        return OUTPUT_CLOSED_STATUS
    if isinstance(stop, Terminated):
        return 128 + int(stop.signum)
    return 128 + int(signal.SIGINT)


def _say_how_to_resume(
    error: OSError, run_dir: Path | None, resuming: Callable[[Path], str]
) -> None:
    """A run folder that stopped taking files mid-run (a full disk): one line that says
    the finished trials are kept and how to finish, instead of a bare error."""
    if run_dir is None or error.filename is None or error.errno not in PATH_ERRNOS:
        raise error
    raise LosscmpError(
        f"{error.filename}: {error.strerror}; the trials finished before it are saved in "
        f"{run_dir}; once it can be written, finish the run with: {resuming(run_dir)}"
    ) from None


@contextlib.contextmanager
def _relative_paths_explained(resume: Path | None, config):
    """A resumed run's data not found from here may be a relative path read from another
    folder than the run was started in: say where that was."""
    from losscmp.errors import DatasetError

    try:
        yield
    except DatasetError as error:
        started_in = _started_elsewhere(resume)
        if started_in is None or not _names_relative_paths(config):
            raise
        raise DatasetError(
            f"{error} (this run was started in {started_in}: relative paths are read from "
            "the folder you run losscmp in)"
        ) from None


def _names_relative_paths(config) -> bool:
    """Whether the run reads its data through a relative path: --data-dir, or a dataset's
    own path (folder:PATH)."""
    paths = [config.data_dir, config.dataset_spec.params.get("path")]
    return any(
        isinstance(path, str) and not Path(path).expanduser().is_absolute() for path in paths
    )


def _started_elsewhere(resume: Path | None) -> str | None:
    """The folder a resumed run was started in, where it is not this one."""
    if resume is None:
        return None
    from losscmp.results import read_run_json, started_elsewhere

    return started_elsewhere(read_run_json(resume))


def _finished(resume: Path | None) -> set[str]:
    """The trials a resumed run has finished (read only: --resume sets damaged files aside
    later, under the run's lock)."""
    from losscmp.results import RunStore

    return set(RunStore(resume).scan_trials().records) if resume is not None else set()


def _dry_run_checks(prepared, resume: Path | None) -> tuple[set[str], list, str]:
    """What a real --resume checks before it writes; the trials the run has finished,
    what the run would use where losscmp decides (``runner.planned_choices``) and how the
    others would run (``runner.planned_execution``)."""
    from losscmp.console import print_note
    from losscmp.results import RunStore, read_run_json
    from losscmp.runner import (
        check_resumable,
        execution_notes,
        planned_choices,
        planned_execution,
    )

    with prepared.executor:  # started by prepare, as for a real run: stopped unused
        meta = read_run_json(resume) if resume is not None else None
        if meta is not None:
            RunStore(resume).refuse_if_locked()  # as the run would be, by its lock
            check_resumable(meta, prepared, resume)
        for note in execution_notes(prepared, meta):
            print_note(note)
        if resume is None:
            return set(), planned_choices(prepared), planned_execution(prepared)
        finished = _finished(resume)
        return (
            finished,
            planned_choices(prepared, meta, finished),
            planned_execution(prepared, finished, meta),
        )


def _dry_run_estimate(prepared, began: float, resume: Path | None, finished) -> str:
    """About how long the trials not ``finished`` take here (``measure.estimate_line``)."""
    from losscmp.measure import estimate_line
    from losscmp.results import read_run_json

    meta = read_run_json(resume) if resume is not None else None
    return estimate_line(prepared, began, finished, meta)


def _command_line(config: str | None, flags: dict, resume: Path | None) -> str:
    """The ``losscmp run`` command with the options given, as a shell line (the same
    whether it came from a shell, ``python -m losscmp`` or a test's CliRunner)."""
    import shlex

    parts = ["losscmp", "run"]
    if config is not None:
        parts += ["--config", str(config)]
    for name, value in flags.items():
        option = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(option if value else option.replace("--", "--no-", 1))
        elif value is not None:
            parts += [option, str(value)]
    if resume is not None:
        parts += ["--resume", str(resume)]
    return shlex.join(parts)


def with_file_options(command: Callable) -> Callable:
    """Give ``command`` (which takes them as ``**files``) a ``--<name> FILE`` option for each
    file output in ``render.RENDERERS``, before its ``plots``: Typer reads the options from
    the signature, so a new output is its module and its line there, no option here."""
    from losscmp.render import RENDERERS

    signature = inspect.signature(command, eval_str=True)  # this module defers annotations
    own = [param for param in signature.parameters.values() if param.kind != param.VAR_KEYWORD]
    place = [param.name for param in own].index("plots")
    options = [
        inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            # Text, not Path: click reads an empty name as '.', the working folder.
            annotation=Annotated[
                str | None,
                typer.Option(metavar="FILE", help=f"Also write {renderer.description} to FILE."),
            ],
        )
        for name, renderer in RENDERERS.items()
    ]
    command.__signature__ = signature.replace(parameters=[*own[:place], *options, *own[place:]])
    return command


@app.command(cls=_Command)
@user_errors
@with_file_options
def report(
    paths: Annotated[
        list[str],  # text, not Path: click reads an empty name as '.', the working folder
        typer.Argument(metavar="PATH", help="Run folders, or a folder of runs (newest)."),
    ],
    metric: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help=f"Headline metric: {', '.join(PLAIN_METRICS)}; binary runs also "
            f"{', '.join(BINARY_METRICS)} (_t: at the validation-chosen threshold).",
        ),
    ] = "dice",
    plots: Annotated[
        bool,
        typer.Option(
            "--plots",  # a flag alone: no '--no-plots' half, no '[default: no-plots]'
            metavar=NO_VALUE_METAVAR,
            show_default=False,
            help="Write PNG figures into <run>/plots/.",
        ),
    ] = False,
    **files: str | None,
) -> None:
    """Print the comparison table of finished runs from their files alone."""
    targets = {name: _path_option(name, text, "a file name") for name, text in files.items()}
    folders = [_path_option("PATH", text, "a run folder, or a folder of runs") for text in paths]
    _print_report(folders, metric=metric, files=targets, plots=plots)


def _path_option(option: str, text: str | None, wanted: str) -> Path | None:
    """The path the user typed for ``option`` (an option's name, or an argument's metavar).
    An empty or blank one is refused: click's Path would read '' as '.', the working folder
    (which --resume would finish, 'datasets download' fill), and ' ' names a folder no one
    means."""
    if text is None:
        return None
    if not text.strip():
        named = option if option.isupper() else f"--{option.replace('_', '-')}"
        raise LosscmpError(f"{named} is empty; give {wanted}")
    return Path(text)


def _print_report(
    paths: list[Path],
    metric: str,
    files: dict[str, Path | None],
    plots: bool,
    run_page: bool = False,
    failures_told: bool = False,
) -> None:
    """Print the tables and notes; write summary.csv (one run), the files asked for
    (``files``: renderer name -> path) and, with ``run_page``, ``<run>/report.html``;
    ``failures_told``: the caller's last line names the failed trials, so no note does."""
    from losscmp.report_args import check_report_args, distinct_runs

    targets = {name: path for name, path in files.items() if path is not None}
    # Every mistake in the command is refused before pandas and the renderers load.
    stood_for = check_report_args(paths, metric, targets, plots)

    from losscmp import console
    from losscmp.render import RENDERERS, summary_options, terminal
    from losscmp.results import RunStore
    from losscmp.summary import build_report, report_notes, source_lines

    report = build_report(distinct_runs(stood_for), metric=metric)
    run_dirs = report.results.run_dirs
    for line in source_lines(stood_for, report.results):
        console.print_note(line)
    all_columns = _all_columns_at(run_dirs, targets, run_page)
    console.print_tables(terminal.render(report, all_columns))
    for note in report_notes(report.results, failed_trials=not failures_told):
        console.print_note(note)
    written = []
    if len(run_dirs) == 1:  # a combined table belongs to no single run folder
        written += _write_run_summary(RunStore(run_dirs[0]), report, targets)
    elif not summary_options(targets):
        add = " or ".join(summary_options(RENDERERS))
        console.print_note(f"combined summary not saved in any run folder; add {add} FILE")
    for name, path in targets.items():
        written.append(RENDERERS[name].write(report, path))
    if run_page:
        from losscmp.render import html as html_output

        written.append(html_output.write_run_page(report))
    if plots:
        from losscmp.render import figures

        for run_dir in run_dirs:
            written.extend(figures.write_plots(run_dir, metric=metric))
        if len(run_dirs) > 1:  # the combined table's figures belong to no run folder either
            console.print_note(
                "--plots drew each run's own figures (its losses only) into its folder; "
                "--html FILE draws the combined ones"
            )
    console.print_written(written)


def _all_columns_at(run_dirs: list[Path], targets: dict[str, Path], run_page: bool) -> str:
    """Where a narrow terminal's left-out columns are, for the line under the table: the
    run's summary.csv (and its report.html, written now or before), the files asked for;
    a combined report writes no file of its own, so its line names the options that do."""
    from losscmp.render import RENDERERS, terminal

    places = [str(path) for path in targets.values()]
    if len(run_dirs) == 1:
        run_files = ["summary.csv"]
        if run_page or (run_dirs[0] / "report.html").is_file():
            run_files.append("report.html")
        places = [f"the run's {' and '.join(run_files)}", *places]
    elif not places:
        places = ["add " + " or ".join(f"--{name} FILE" for name in RENDERERS)]
    return f"{', '.join(places)}, or {terminal.WIDER_TERMINAL}"


def _write_run_summary(store, report, targets: dict[str, Path]) -> list[Path]:
    """The run's summary.csv, derived like its tables: a run folder that takes no files (a
    read-only disk, another user's results) or is still being written is still reported,
    and --csv/--html still written elsewhere; a note says summary.csv was left as it was."""
    from losscmp import console
    from losscmp.render import summary_options

    # The trial files the table was read from, damaged ones left out included: they are
    # still in trials/, and write_summary refuses a table whose trials/ has changed since.
    trial_files = set(report.results.trials["trial_id"])
    trial_files |= set(report.results.damaged_trials.get(store.run_dir, []))
    try:
        return [store.write_summary(report.summary, trial_files)]
    except LosscmpError as error:
        held = summary_options(targets)
        also = f" ({held[0]} holds this table)" if held else ""
        console.print_note(f"{error}; the run's summary.csv is left as it was{also}")
        return []


@app.command("losses", cls=_Command)
@user_errors
def losses_command(
    pattern: Annotated[
        str | None,
        typer.Argument(
            metavar="PATTERN",
            help="Filter names, e.g. '*dice*' ('all': every loss), a family ('overlap'), a "
            "mode ('binary'), or several: 'dice,*tversky*'.",
        ),
    ] = None,
    show: Annotated[
        str | None, typer.Option(metavar="NAME", help="Show one loss: formula, parameters, paper.")
    ] = None,
) -> None:
    """List the registered losses, or show one in detail."""
    from losscmp import console
    from losscmp.losses import get_loss_entry, loss_to_show, losses_listed

    if show is not None:
        if pattern is not None:
            raise LosscmpError(f"give a pattern ('{pattern}') or --show NAME, not both")
        console.print_loss_detail(loss_to_show(show))
        return
    names, notes = losses_listed(pattern)
    console.print_loss_table([get_loss_entry(name) for name in names])
    for note in notes:
        console.print_note(note)


ROOT_HELP = "Folder holding the datasets (or the pets folder itself). \\[default: datasets]"


@datasets_app.callback(invoke_without_command=True)
@user_errors
def datasets_default(
    ctx: typer.Context,
    root: Annotated[
        str | None, typer.Option(metavar="DIR", help=ROOT_HELP, show_default=False)
    ] = None,
) -> None:
    """List the datasets, whether each is present, and how to get it."""
    root = _path_option("root", root, "the folder that holds the datasets")
    if ctx.invoked_subcommand is None:
        _list_datasets(root)
    ctx.obj = root  # 'datasets --root DIR list' lists DIR, as 'datasets list --root DIR' does


@datasets_app.command("list", cls=_Command)
@user_errors
def datasets_list(
    ctx: typer.Context,
    root: Annotated[
        str | None, typer.Option(metavar="DIR", help=ROOT_HELP, show_default=False)
    ] = None,
) -> None:
    """List the datasets, whether each is present, and how to get it."""
    _list_datasets(_path_option("root", root, "the folder that holds the datasets") or ctx.obj)


def _list_datasets(data_dir: Path | None) -> None:
    from losscmp import console
    from losscmp.data import DATASETS_DIR, dataset_status

    console.print_dataset_table(dataset_status(data_dir or DATASETS_DIR))


class _DownloadCommand(_Command):
    """``datasets download``, whose help names the datasets that download and where each
    goes: their registry entries say, read when the help is shown (the registry imports
    numpy, which no other command's start or help needs)."""

    def format_help(self, ctx, formatter):
        helps = _download_help()
        for param in self.params:
            param.help = helps.get(param.name, getattr(param, "help", None))
        super().format_help(ctx, formatter)


def _download_help() -> dict[str, str]:
    """NAME's and --data-dir's help: the datasets that download, each one's folder."""
    from losscmp.data import downloadable

    folders = downloadable()
    if len(folders) == 1:
        default = str(next(iter(folders.values())))
    else:
        default = "; ".join(f"{name}: {folder}" for name, folder in folders.items())
    return {
        "name": f"Dataset to fetch: {' or '.join(folders)}.",
        "data_dir": f"Target folder. \\[default: {default}]",
    }


@datasets_app.command("download", cls=_DownloadCommand)
@user_errors
def datasets_download(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Dataset to fetch.")],
    data_dir: Annotated[
        str | None, typer.Option(metavar="DIR", help="Target folder.", show_default=False)
    ] = None,
) -> None:
    """Download, verify (sha256) and extract a dataset; resumes a partial download."""
    if ctx.obj is not None:
        raise LosscmpError(
            f"--root {ctx.obj} is read by 'losscmp datasets' and 'datasets list'; "
            "'datasets download' puts the data in --data-dir"
        )
    target = _path_option("data_dir", data_dir, "the folder to download into")
    from losscmp import console
    from losscmp.data import download_dataset

    notices: list[str] = []
    try:  # outside the progress display: the line goes below its last frame, not above
        with console.DownloadProgress() as progress:
            path = download_dataset(name, target, progress=progress.update, notice=notices.append)
    except KeyboardInterrupt as stop:
        _tell(f"losscmp: {_stopped(stop)}; run the same command again to resume the download")
        raise typer.Exit(_stop_status(stop)) from None
    for line in notices:
        console.print_note(line)
    if not notices:  # "already downloaded": nothing was written
        console.print_written([path])


def run_command() -> None:
    """Run the command sys.argv names and exit with its status; click's usage errors
    (unknown option, bad flag type) become one line too."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as request:
        # Typer's rich help is printed while the error is made (its text is then empty);
        # click's plain help is the error's text, not yet printed.
        if request.format_message():
            typer.echo(request.format_message())
        code = 0
    except UsageError as error:
        command = _command_named(error.ctx) if error.ctx else _command_typed()
        typer.echo(f"losscmp: error: {_usage_message(error)} (see '{command} --help')", err=True)
        code = 2
    except typer.Abort:
        _tell("losscmp: interrupted")
        code = 130
    except KeyboardInterrupt as stop:
        _tell(f"losscmp: {_stopped(stop)}")
        code = _stop_status(stop)
    sys.exit(code or 0)


def _usage_message(error: UsageError) -> str:
    """click's words, but an unknown option's suggestion worded as every other one: the one
    option closest in name (``errors.closest``). click's compared whole options, '--'
    included, and offered '(Possible options: --fuse, --jobs, --out)' for '--bogus'."""
    if not isinstance(error, NoSuchOption) or error.ctx is None:
        return error.format_message()
    options = {
        option.lstrip("-"): option
        for param in error.ctx.command.get_params(error.ctx)  # --help too
        for option in (*param.opts, *param.secondary_opts)
        if option.startswith("--")
    }
    meant = closest(error.option_name.lstrip("-"), options)
    return error.message + (f" (did you mean '{options[meant]}'?)" if meant else "")


def _command_named(ctx: typer.Context) -> str:
    """``losscmp report`` as every other hint names the program: click's ``command_path``
    began 'python -m losscmp' under ``python -m``, while an option's missing value (no
    context yet, :func:`_command_typed`) said 'losscmp', in one session."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return " ".join(["losscmp", *reversed(names)])


def _command_typed() -> str:
    """``losscmp run`` for an error click raises before the command's context exists (an
    option's missing value), so the hint points at that command's help."""
    commands = typer.main.get_command(app).commands
    typed = sys.argv[1] if len(sys.argv) > 1 else ""
    return f"losscmp {typed}" if typed in commands else "losscmp"


def run_command_then_exit_fast() -> None:
    """The installed command and ``python -m losscmp``: ``run_command``, then a quick exit.

    Once torch, pandas and matplotlib are loaded, tearing the interpreter down module
    by module takes 1.5-3 s on 2 cores, longer than many commands' own work. Everything
    the commands write is closed and renamed into place before they return, so after
    the exit handlers (MLflow, multiprocessing, logging) and a flush there is nothing
    left to finalize.
    """
    try:
        run_command()
        code = 0
    except SystemExit as done:
        if done.code is not None and not isinstance(done.code, int):
            raise
        code = done.code or 0
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # closed (`| head`): what it held has no reader
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run_command_then_exit_fast()
