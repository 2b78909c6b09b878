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
    where it runs the jobs, as ``--executor``'s help says it."""

    path: str  # "module:Class"
    where: str


EXECUTORS = {
    "local": Registered("losscmp.executors.local:LocalExecutor", "this machine"),
    "ray": Registered("losscmp.executors.ray:RayExecutor", "a Ray cluster"),
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


def create_executor(config):
    """The executor ``config.executor`` names; it checks its own needs (Ray installed...)."""
    return executor_class(config.executor)(config)
