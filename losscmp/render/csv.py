"""The summary frame as a CSV file (``report --csv FILE``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from losscmp.render import RENDERERS, write_file
from losscmp.summary import Report


def content(report: Report) -> str:
    return summary_text(report.summary)


def summary_text(summary: pd.DataFrame) -> str:
    """The CSV text of a summary frame, as a run's summary.csv holds it (``atomic_write_csv``)."""
    return summary.to_csv(index=False)


def write_summary(summary: pd.DataFrame, path: Path | str) -> Path:
    """Write the summary CSV to ``path`` as ``--csv`` does (``Renderer.write``); a run's own
    summary.csv is written by its store (``RunStore.write_summary``)."""
    return write_file(RENDERERS["csv"].check_target(path), summary_text(summary))
