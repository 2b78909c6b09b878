"""Helpers for tests that watch a losscmp process and its workers from outside."""

from __future__ import annotations

import subprocess
from pathlib import Path


def worker_pids(pid: int) -> list[int]:
    """The worker processes of ``pid`` (not Python's resource tracker, which outlives it)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    children = []
    for child in found.stdout.split():
        try:  # a child may end between pgrep and this read
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"resource_tracker" not in command:
            children.append(int(child))
    return children
