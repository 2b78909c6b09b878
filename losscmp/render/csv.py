"""The summary frame as a CSV file (``report --csv FILE``), in the text of a run's own
summary.csv (``results.csv_text``)."""

from __future__ import annotations

from losscmp.results import csv_text
from losscmp.summary import Report


def content(report: Report) -> str:
    return csv_text(report.summary)
