"""Stand-ins for worker processes that fail on their own, importable by a spawned child."""

from __future__ import annotations

import os


def cannot_start(conn, index: int, device_type: str) -> None:
    """A worker that dies before it is ready (a broken install, out of memory at import)."""
    os._exit(3)


def silent_orphan(conn, index: int, device_type: str) -> None:
    """A worker busy for a minute without a message to its main process (a model build, a
    long step): only the parent watch can end it once its main process is gone."""
    import time

    from losscmp.executors.local import _exit_with_parent

    _exit_with_parent()
    conn.send(("ready", os.getpid()))
    time.sleep(60)
