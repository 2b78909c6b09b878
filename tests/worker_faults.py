"""Stand-ins for worker processes that fail on their own, importable by a spawned child."""

from __future__ import annotations

import os


def cannot_start(conn, index: int, device_type: str) -> None:
    """A worker that dies before it is ready (a broken install, out of memory at import)."""
    os._exit(3)
