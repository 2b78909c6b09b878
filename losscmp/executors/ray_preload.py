"""Imported by each worker process a local Ray starts, before it takes a task (Ray's
``preload_python_modules``, set by ``ray._join`` where every worker will train): what a
task imports on first use (torch, smp, scipy, losscmp's training code), so that a
worker does it while the driver still imports torch and loads the data, as ``--jobs``
workers do, instead of in its first task. Best effort: a failure here (Ray logs an
ImportError; anything else would end the worker) leaves the task to import, and fail,
where it reports to the run."""

import contextlib

with contextlib.suppress(Exception):
    import losscmp.executors.ray  # noqa: F401 (the task's own module, before its first task)
    from losscmp.worker import import_job_modules

    import_job_modules()
