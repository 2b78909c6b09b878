"""One exception family for problems a user can cause and fix.

The library raises these; only ``cli.py`` turns them into one line on stderr
and exit status 2. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import signal
import threading
from collections.abc import Iterable
from typing import NoReturn


class LosscmpError(Exception):
    """A user-facing error: bad name, bad parameter, missing data, bad config."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or ``timeout``'s stop) or SIGHUP (the terminal or ssh session
    gone): handled as Ctrl-C is, workers stopped and the run folder left to resume, but
    exit status 128 + ``signum`` (143, 129)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class OutputClosed(KeyboardInterrupt):
    """stdout or stderr closed under the command (its reader gone: ``| head``): handled as
    Ctrl-C is, but exit status 141 (128 + SIGPIPE), as a command killed by SIGPIPE ends,
    and nothing more said on the closed stream. Python ignores SIGPIPE, so the write
    fails instead (console.py raises this where it does)."""


# The signal that stopped the run (stop_on_signal), until the command ends: None if none.
# It is the main thread's command's: Python runs signal handlers in the main thread only,
# and only a command there installs stop_on_signal (cli.py). A command that a program runs
# in another thread neither forgets it nor raises it (_owns_the_stop).
_stop_signal: int | None = None


def stop_on_signal(signum: int, frame: object) -> NoReturn:
    """The run's handler of Ctrl-C, SIGTERM and SIGHUP: KeyboardInterrupt or Terminated,
    the signal recorded first. Python runs a handler between any two bytecodes of the
    main thread, a finalizer's or a garbage-collection callback's too, and an exception
    raised there is printed as "Exception ignored" and dropped: the run trained on to its
    end. The executors' waits raise the recorded stop again (raise_if_stopped)."""
    global _stop_signal
    if _stop_signal is None:  # the first stop names the exit status, as it would have
        _stop_signal = signum
    raise _stop_for(signum)


def raise_if_stopped() -> None:
    """Raise again the stop a signal raised since forget_stop(), should it have been lost;
    in the main thread only: a command in another thread was not stopped by it."""
    if _stop_signal is not None and _owns_the_stop():
        raise _stop_for(_stop_signal)


def forget_stop() -> None:
    """A command begins or ends: a stop recorded before it belongs to no run now. In the
    main thread only: a program's thread beginning or ending a command while the main
    thread's was stopped lost that stop, and the main command then trained on."""
    global _stop_signal
    if _owns_the_stop():
        _stop_signal = None


def _owns_the_stop() -> bool:
    """Whether the command of the calling thread is the one a recorded stop stopped."""
    return threading.current_thread() is threading.main_thread()


def _stop_for(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


class GpuErrorState(Exception):
    """The GPU cannot be used any more by this process (a device-side assert, an illegal
    memory access: CUDA's "sticky" errors fail every later CUDA call): the run stops, its
    finished trials kept, the job that met it recorded as failed with ``reason``.
    ``state``: what the GPU answers now."""

    def __init__(self, reason: str, state: str) -> None:
        super().__init__(f"the GPU is in an error state ({state})")
        self.reason, self.state = reason, state


class UnknownNameError(LosscmpError):
    """A name (loss, dataset, preset, metric, parameter) that is not registered."""


class ParameterError(LosscmpError):
    """A parameter with a wrong name, type or value."""


class ConfigError(LosscmpError):
    """A missing or invalid config file."""


class DatasetError(LosscmpError):
    """Missing, malformed or unusable data."""


class SpecError(LosscmpError):
    """A spec string such as ``focal(gamma=1)`` that does not parse."""


# How alike a name and a choice must be (difflib's ratio) to be taken as a misspelling of
# it before a choice that begins it: 'lr_grid' and 'lr-grid' 0.86.
NEAR_SPELLING = 0.8
# The least alike a suggestion may be.
CLOSE_SPELLING = 0.6


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` most likely meant, whatever the case, or None: a near spelling
    first ('lr_grid': 'lr-grid', not 'lr', which begins it); else the one choice that
    begins ``name`` or that it begins ('out-dir': 'out'; 'epoch': 'epochs'); else the
    closest in spelling."""
    by_lower = {choice.lower(): choice for choice in choices}
    typed = name.lower()
    near = difflib.get_close_matches(typed, list(by_lower), n=1, cutoff=NEAR_SPELLING)
    related = [low for low in by_lower if typed.startswith(low) or low.startswith(typed)]
    close = difflib.get_close_matches(typed, list(by_lower), n=1, cutoff=CLOSE_SPELLING)
    meant = near or (related if len(related) == 1 else close)
    return by_lower[meant[0]] if meant else None


def choice_named(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` spells in any case (``CPU``: ``cpu``), as listed; None for
    another name. A choice is recorded as listed, so run.json and the tables name it one
    way whatever was typed, and two runs combine."""
    by_lower = {choice.lower(): choice for choice in choices}
    return by_lower.get(name.lower())


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the choice ``name`` most likely meant
    (:func:`closest`), or ``""``."""
    meant = closest(name, choices)
    return f" (did you mean '{meant}'?)" if meant is not None else ""


def suggest_pattern(pattern: str, names: Iterable[str]) -> str:
    """A did-you-mean for an fnmatch pattern that matches none of ``names``: its literal
    core (``dcie`` in ``*dcie*``) respelt as the closest name or ``_``-separated part of
    one, where the pattern so respelt matches a name; ``""`` otherwise."""
    names = list(names)
    core = pattern.strip("*?")
    if not core or set(core) & set("*?[]"):
        return ""
    parts = {part for name in names for part in (name, *name.split("_")) if part}
    for match in difflib.get_close_matches(core.lower(), sorted(parts), n=3, cutoff=0.6):
        respelt = pattern.replace(core, match, 1)
        if any(fnmatch.fnmatchcase(name, respelt) for name in names):
            return f" (did you mean '{respelt}'?)"
    return ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard 'unknown <kind>' error with a suggestion and the options."""
    choices = sorted(choices)
    listed = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    return UnknownNameError(
        f"unknown {kind} '{name}'{suggest(name, choices)}; choose from: {listed}"
    )


def install_hint(extra: str) -> str:
    """``pip install 'ray>=2.10'``: what the ``extra`` of losscmp's metadata asks for. Not
    ``losscmp[ray]``: from a checkout (``pip install -e .``) that would fetch whatever the
    package index calls losscmp."""
    marker = f'extra == "{extra}"'
    wanted = [line.split(";")[0].strip() for line in _declared() if line.endswith(marker)]
    if not wanted:  # losscmp run from its source tree without being installed
        return f"pip install -e '.[{extra}]' in the losscmp checkout"
    return "pip install " + " ".join(f"'{requirement}'" for requirement in wanted)


def dependency_hint(packages: Iterable[str]) -> str:
    """``pip install 'albumentations>=1.4.24'``: these of losscmp's own dependencies (not an
    extra's), each as its metadata declares it, so the floor has one source: pyproject.toml."""
    declared = {_package_name(line): line.strip() for line in _declared() if ";" not in line}
    wanted = [declared.get(_package_name(package)) for package in packages]
    if None in wanted:  # losscmp run from its source tree without being installed
        return "pip install -e . in the losscmp checkout"
    return "pip install " + " ".join(f"'{requirement}'" for requirement in wanted)


def _declared() -> list[str]:
    """The requirements of the installed losscmp's metadata; none where it is not installed."""
    from importlib import metadata

    try:
        return metadata.requires("losscmp") or []
    except metadata.PackageNotFoundError:
        return []


def _package_name(requirement: str) -> str:
    """``Segmentation_Models.PyTorch>=0.6``: ``segmentation-models-pytorch`` (PEP 503's form)."""
    name = re.match(r"[A-Za-z0-9._-]*", requirement.strip()).group()
    return re.sub(r"[-_.]+", "-", name).lower()
