"""The summary frame as a CSV file (``report --csv FILE``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from losscmp.errors import LosscmpError
from losscmp.render import RENDERERS
from losscmp.results import atomic_write_csv
from losscmp.summary import Report


def write(report: Report, path: Path | str) -> Path:
    return write_summary(report.summary, path)


def write_summary(summary: pd.DataFrame, path: Path | str) -> Path:
    """Write the summary CSV atomically (a killed process leaves the old file or the new);
    a run's own summary.csv is written by its store (``RunStore.write_summary``)."""
    path = RENDERERS["csv"].check_target(path)
    try:
        atomic_write_csv(path, summary)
    except OSError as error:
        raise LosscmpError(f"cannot write {path}: {error.strerror or error}") from None
    return path
