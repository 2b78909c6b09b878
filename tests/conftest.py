"""Shared fixtures: a CLI runner and one smoke run reused by the end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"

# Tests run on 2 cores next to each other; one thread each keeps timings stable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def cli():
    from losscmp.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def smoke_run(cli, tmp_path_factory):
    """One `losscmp run --config configs/smoke.yaml` shared by the read-only tests."""
    out = tmp_path_factory.mktemp("smoke")
    result = cli("run", "--config", SMOKE, "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return result, run_dir
