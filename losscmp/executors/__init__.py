"""Executors by name: ``--executor local`` (this machine, ``--jobs`` processes) or ``ray``.

A new executor is one module with an ``Executor`` subclass plus one line in
``EXECUTORS``: ``--executor`` accepts it and its ``--help`` names it from there.
Importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from losscmp.errors import unknown


class Registered(NamedTuple):
    """One executor: its class, imported only when chosen (Ray is an optional extra), and
    what ``run --help`` says of it: where it runs the jobs, what ``--jobs`` counts there,
    and what ``--jobs`` and ``--threads`` are when not given."""

    path: str  # "module:Class"
    where: str
    jobs: str  # what --jobs counts: "worker processes"
    jobs_default: str
    threads_default: str
    threads: str = ""  # what --threads is besides a trial's torch threads, if anything


# The first is the default (RunConfig.executor): its defaults are shown first, unnamed.
EXECUTORS = {
    "local": Registered(
        "losscmp.executors.local:LocalExecutor",
        "this machine",
        jobs="worker processes",
        jobs_default="1; CUDA: --trials-per-gpu x GPUs",
        threads_default="the cores divided among --jobs",
    ),
    "ray": Registered(
        "losscmp.executors.ray:RayExecutor",
        "a Ray cluster",
        jobs="tasks in flight",
        jobs_default="twice what the cluster fits",
        threads_default="1",
        threads="CPUs per Ray task",
    ),
}


def executor_class(name: str):
    if name not in EXECUTORS:
        raise unknown("executor", name, list(EXECUTORS))
    module, _, cls = EXECUTORS[name].path.partition(":")
    return getattr(importlib.import_module(module), cls)


def executors_help() -> str:
    """'local (this machine) or ray (a Ray cluster)': every executor, for ``--help``."""
    named = [f"{name} ({entry.where})" for name, entry in EXECUTORS.items()]
    return " or ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)


def jobs_help() -> str:
    """``--jobs``'s help: what it counts under each executor, and its defaults."""
    counts = ", ".join(
        f"{entry.jobs} with {'--executor ' if i == 0 else ''}{name}"
        for i, (name, entry) in enumerate(EXECUTORS.items())
    )
    return f"Trials (or fused groups) run at once: {counts}. {_defaults('jobs_default')}"


def threads_help() -> str:
    """``--threads``'s help: what else a trial's threads are, and their defaults."""
    also = [entry.threads for entry in EXECUTORS.values() if entry.threads]
    meaning = f" ({'; '.join(also)})" if also else ""
    return f"Torch threads per trial{meaning}. {_defaults('threads_default')}"


def _defaults(field: str) -> str:
    """'\\[default: <the default executor's>; ray: <ray's>]', escaped for Typer's markup."""
    default, *others = EXECUTORS.items()
    shown = [getattr(default[1], field), *(f"{name}: {getattr(e, field)}" for name, e in others)]
    return f"\\[default: {'; '.join(shown)}]"


def create_executor(config):
    """The executor ``config.executor`` names; it checks its own needs (Ray installed...)."""
    return executor_class(config.executor)(config)
