"""A command's first moments: a stop while its modules load is one line, not a traceback.

``losscmp`` spends a tenth of a second and more importing Typer and Rich, and more
parsing, before a command begins; Ctrl-C there printed Python's KeyboardInterrupt
traceback (or nothing: Typer turns one during parsing into a silent exit 130), and
SIGTERM ended the process without a word. Nothing is written before a command begins,
so until then a stop ends the process on the spot with one line. Standard library only:
it is imported before anything else the command needs.
"""

from __future__ import annotations

import contextlib
import os
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# The handlers guard() replaced, by signal, until began() puts them back.
_replaced: dict[int, object] = {}


def guard() -> None:
    """Until :func:`began`, Ctrl-C, SIGTERM and SIGHUP end the process with one line on
    stderr and status 130, 143 or 129. A signal ignored (Ctrl-C in a background job,
    SIGHUP under nohup) stays ignored."""
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is signal.SIG_IGN or handler is None:  # None: not set from Python
            continue
        _replaced[signum] = handler
        signal.signal(signum, _stop_before_the_command)


def began() -> None:
    """The command begins: a stop is its own to handle again (KeyboardInterrupt, its
    SIGTERM handling). A no-op where guard() was not called (the CLI from a program)."""
    while _replaced:
        signum, handler = _replaced.popitem()
        signal.signal(signum, handler)


def _stop_before_the_command(signum: int, frame) -> None:
    stopped = (
        "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    )
    line = f"losscmp: {stopped} before the command began; nothing was written\n"
    with contextlib.suppress(OSError):  # stderr closed, or its terminal gone: no one to tell
        os.write(2, line.encode())
    os._exit(128 + signum)  # nothing to close or remove yet
