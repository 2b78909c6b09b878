"""Executors by name: ``--executor local`` (this machine, ``--jobs`` processes) or ``ray``.

A new executor is one module with an ``Executor`` subclass plus one line here.
Importing this package imports no torch.
"""

from __future__ import annotations

import importlib

from losscmp.errors import unknown

# name -> "module:class", imported only when chosen (Ray is an optional extra).
EXECUTORS = {
    "local": "losscmp.executors.local:LocalExecutor",
    "ray": "losscmp.executors.ray:RayExecutor",
}


def executor_class(name: str):
    if name not in EXECUTORS:
        raise unknown("executor", name, list(EXECUTORS))
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def create_executor(config):
    """The executor ``config.executor`` names; it checks its own needs (Ray installed...)."""
    return executor_class(config.executor)(config)
