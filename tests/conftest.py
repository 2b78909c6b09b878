"""Shared fixtures: a CLI runner and one smoke run reused by the end-to-end tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"

# Tests run on 2 cores next to each other; one thread each keeps timings stable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Started as a background job of a non-interactive shell (`bash .ci/run &` in a script),
# pytest inherits Ctrl-C ignored, and so would every losscmp it starts: the tests that
# stop a run with a real SIGINT then failed, or waited for ever for a stop that never
# came. Python's own handler, as in a terminal (a started program gets the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _ctrl_c_left_as_found():
    """A test that leaves Ctrl-C ignored or blocked in this process fails itself: every
    losscmp a later test starts inherits both, and its Ctrl-C tests then failed far away
    (a run stopped by SIGINT trained to the end and exited 0)."""
    handler = signal.getsignal(signal.SIGINT)
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    left = signal.getsignal(signal.SIGINT)
    left_blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    signal.signal(signal.SIGINT, handler)
    signal.pthread_sigmask(signal.SIG_BLOCK if blocked else signal.SIG_UNBLOCK, [signal.SIGINT])
    assert (left, left_blocked) == (handler, blocked), "the test left Ctrl-C's handling changed"


@pytest.fixture(autouse=True)
def _own_user_cache(tmp_path_factory, monkeypatch):
    """Each test its own user cache (where the decoded images of a data folder that cannot
    take them go): never the user's ~/.cache, nor an entry another test wrote."""
    monkeypatch.setenv("LOSSCMP_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))


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


def _breaking_loss(name: str, breaks, description: str):
    """Registers ``name``: dice in the first epoch, then ``breaks(value)``; yields the name."""
    from losscmp.losses import LOSS_REGISTRY, create_loss
    from losscmp.losses.base import SegLoss
    from losscmp.registry import Entry

    class Breaking(SegLoss):
        def __init__(self, mode: str = "binary") -> None:
            super().__init__(mode)
            self.inner = create_loss("dice", mode=mode)
            self.progress = 0.0

        def set_progress(self, fraction: float) -> None:
            self.progress = fraction

        def forward(self, logits, target, **maps):
            value = self.inner(logits, target)
            return breaks(value) if self.progress > 0 else value

    LOSS_REGISTRY.add(Entry(name, Breaking, description))
    yield name
    LOSS_REGISTRY._entries.pop(name)


@pytest.fixture
def exploding_loss():
    """A loss that turns NaN in its second epoch, registered for one test."""
    yield from _breaking_loss(
        "exploding",
        lambda value: value * float("nan"),
        "Turns NaN after the first epoch (test only).",
    )


def _broke(value):
    raise ValueError("the loss broke")


@pytest.fixture
def raising_loss():
    """A loss that raises in its second epoch, registered for one test."""
    yield from _breaking_loss("raising", _broke, "Raises after the first epoch (test only).")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache (returned), no network, and no wait: a retry fails
    the test."""
    import socket
    import time

    from huggingface_hub import constants

    from losscmp.model import PROXY_VARIABLES, clear_model_cache

    def no_name_resolves(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def no_wait(seconds):
        raise AssertionError(f"waited {seconds} s to try again")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(socket, "getaddrinfo", no_name_resolves)
    monkeypatch.setattr(time, "sleep", no_wait)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    clear_model_cache()
    yield tmp_path / "hub"
    clear_model_cache()
