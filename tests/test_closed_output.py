"""A reader that goes away (``losscmp ... | head``) or a terminal that closes (SIGHUP): the
command stops as Ctrl-C stops it, with no traceback and 128 + the signal as its status.
Through the installed command's entry point, in real pipes."""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import worker_pids

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"

LOSSCMP = [sys.executable, "-m", "losscmp"]
SIGPIPE_STATUS = 128 + signal.SIGPIPE  # 141: what a shell reports for `yes | head`


def _readerless_pipe() -> int:
    """The writing end of a pipe whose reader is gone before any process starts on it.
    Closed after Popen returned, the reader was a race: a pause of this process (a busy
    machine, a long run's garbage collection) let a short listing fit into the pipe's
    buffer and end 0, and a process forked meanwhile kept the reading end open."""
    reader, writer = os.pipe()
    os.close(reader)
    return writer


def _with_stdout_closed(*args) -> subprocess.CompletedProcess:
    """``losscmp ARGS`` whose stdout's reader is gone before it writes: its stderr kept."""
    stdout = _readerless_pipe()
    try:
        process = subprocess.Popen(
            [*LOSSCMP, *map(str, args)], stdout=stdout, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(stdout)
    _, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


def _with_stderr_closed(*args) -> int:
    """The status of ``losscmp ARGS`` whose stderr's reader is gone before it writes."""
    stderr = _readerless_pipe()
    try:
        process = subprocess.Popen(
            [*LOSSCMP, *map(str, args)], stdout=subprocess.DEVNULL, stderr=stderr
        )
    finally:
        os.close(stderr)
    return process.wait(timeout=120)


@pytest.mark.parametrize(
    "command",
    [["losses"], ["datasets"], ["losses", "dice"], ["--help"], ["run", "--help"], []],
    ids=["losses", "datasets", "losses-dice", "help", "run-help", "no-command"],
)
def test_a_listing_cut_short_by_its_reader_ends_quietly_with_status_141(command):
    """`losscmp losses | head -3`: Rich's answer to the closed pipe was exit status 1 (the
    status of a run with failed trials); Python's advice is to end as SIGPIPE would. Help
    (`losscmp --help | head -1`, and bare `losscmp`, which shows it) is drawn by Typer's own
    Rich console, which still answered 1."""
    ended = _with_stdout_closed(*command)
    assert (ended.returncode, ended.stderr) == (SIGPIPE_STATUS, "")


class _ReaderGoneAfterTheHelp(io.StringIO):
    """A stdout whose reader left once Rich's help was written: the newline click writes
    after it (``echo`` of the help text, empty as Rich drew it) meets the closed pipe."""

    def write(self, text):
        if text == "\n":
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        return super().write(text)


def test_help_whose_reader_leaves_before_its_last_newline_ends_with_status_141(monkeypatch):
    """`losscmp --help | head -3` where head left between Rich's help and click's closing
    newline: Typer made the failed newline exit 1."""
    from losscmp import cli

    stdout = _ReaderGoneAfterTheHelp()
    monkeypatch.setattr(sys, "stdout", stdout)
    code = cli.app(["--help"], prog_name="losscmp", standalone_mode=False)
    assert code == SIGPIPE_STATUS
    assert "Benchmark segmentation losses fairly" in stdout.getvalue()


class _ReaderGone(io.StringIO):
    """A stdout whose reader left before anything was written."""

    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def _losses_with_stdout(monkeypatch, stdout) -> int | None:
    """``losscmp losses dice`` called from a program, its stdout ``stdout``: its status."""
    from losscmp import cli

    with monkeypatch.context() as patched:
        patched.setattr(sys, "stdout", stdout)
        return cli.app(["losses", "dice"], prog_name="losscmp", standalone_mode=False)


def test_each_command_of_a_program_stops_for_its_own_closed_output(monkeypatch):
    """The CLI called twice in one process (the Python API): the first command's closed
    stdout was remembered for the whole process, and a later command whose reader left
    too went on as if it had been read, status 0 (a run trained on, unread)."""
    assert _losses_with_stdout(monkeypatch, _ReaderGone()) == SIGPIPE_STATUS
    read = io.StringIO()
    assert _losses_with_stdout(monkeypatch, read) in (None, 0)
    last_line = "'losscmp losses --show dice': its formula, parameters and paper"
    assert read.getvalue().splitlines()[-1] == last_line
    assert _losses_with_stdout(monkeypatch, _ReaderGone()) == SIGPIPE_STATUS


def test_a_run_whose_stdout_closes_keeps_its_trials_and_says_how_to_report(tmp_path):
    """`losscmp run ... | head`: the table, printed last, met the closed pipe; the run
    ended with status 1 and no word of its saved trials. Now stderr, still open, says
    where they are; `report` cut short the same way ends the same way."""
    args = ["--config", SMOKE, "--epochs", "1", "--out", tmp_path, "--threads", "1"]
    ended = _with_stdout_closed("run", *args)
    assert ended.returncode == SIGPIPE_STATUS, ended.stderr
    (run_dir,) = tmp_path.iterdir()
    assert "Traceback" not in ended.stderr
    assert ended.stderr.splitlines()[-1].startswith(
        f"losscmp: stopped: its output was closed; every trial is saved in {run_dir}; "
        f"losscmp report {run_dir} prints the table"
    )
    assert len(list((run_dir / "trials").glob("*.json"))) == 3
    report = _with_stdout_closed("report", run_dir)
    assert (report.returncode, report.stderr) == (SIGPIPE_STATUS, "")


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_run_piped_through_head_stops_as_ctrl_c_does(cli, tmp_path, jobs):
    """`losscmp run ... 2>&1 | head`: the next line after the reader left failed (Rich
    then pointed stdout, not the closed stderr, at /dev/null and exited 1; MLflow's run
    marked failed). Now the run stops there as Ctrl-C stops it: finished trials kept, the
    workers stopped, the folder one --resume finishes. Two seeds: with --jobs 2 a seed's
    first two trials end together, and the line of the second may be in the pipe before its
    reader leaves; the next line to fail is then a later trial's, still before the last."""
    args = ["--config", SMOKE, "--epochs", "2", "--seeds", "2", "--out", tmp_path, "--jobs", jobs]
    process = subprocess.Popen(
        [*LOSSCMP, "run", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # 2>&1: one pipe, one reader
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not process.stdout.readline().startswith("finished:"):
        pass
    workers = worker_pids(process.pid)
    process.stdout.close()  # head has its lines
    assert process.wait(timeout=60) == SIGPIPE_STATUS
    (run_dir,) = tmp_path.iterdir()
    trials = [json.loads(path.read_text()) for path in (run_dir / "trials").glob("*.json")]
    assert 1 <= len(trials) < 6 and all(trial["status"] == "finished" for trial in trials)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    result = cli("run", *args, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert len(list((run_dir / "trials").glob("*.json"))) == 6


@pytest.mark.mlflow
def test_a_run_whose_stderr_closes_is_killed_in_mlflow_not_failed(tmp_path, monkeypatch):
    """The closed stderr ended the run with Rich's SystemExit(1), which the runner took for
    a crash: MLflow's parent run was marked FAILED. It is a stop, as Ctrl-C's is."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    out = tmp_path / "out"
    args = ["--config", SMOKE, "--epochs", "1", "--out", out, "--tracking", "mlflow"]
    assert _with_stderr_closed("run", *args) == SIGPIPE_STATUS
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("losscmp")
    (parent,) = client.search_runs([experiment.experiment_id])
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_sighup_stops_a_run_as_sigterm_does(tmp_path):
    """The terminal closed or the ssh session dropped: SIGHUP ended the run on the spot
    without a word; now it is told as SIGTERM is, with status 129."""
    args = ["--config", SMOKE, "--epochs", "3", "--out", tmp_path, "--threads", "1"]
    process = subprocess.Popen(
        [*LOSSCMP, "run", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/trials/*.json")):
        time.sleep(0.1)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGHUP
    (run_dir,) = tmp_path.iterdir()
    assert stderr.splitlines()[-1].startswith(
        f"losscmp: terminated (SIGHUP); finished trials are saved in {run_dir}. Finish the "
        "run with: losscmp run "
    )


@pytest.mark.slow
def test_a_terminal_that_goes_away_stops_the_run_as_sigterm_does(tmp_path):
    """The run's terminal closed: SIGHUP, and each write to it failing (EIO). The progress
    display's last frame then met EIO while the stop was handled, and the run ended with
    status 1 and a traceback; now 129, its finished trials kept."""
    args = ["--config", SMOKE, "--epochs", "3", "--out", tmp_path, "--threads", "1"]
    terminal, its_end = pty.openpty()
    process = subprocess.Popen(
        [*LOSSCMP, "run", *map(str, args)],
        stdin=its_end,
        stdout=its_end,
        stderr=its_end,
        start_new_session=True,
    )
    os.close(its_end)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/trials/*.json")):
        os.read(terminal, 65536)  # the bars drawn, as a terminal reads them
    os.close(terminal)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=60) == 128 + signal.SIGHUP
    (run_dir,) = tmp_path.iterdir()
    assert len(list((run_dir / "trials").glob("*.json"))) in (1, 2)


@pytest.mark.slow
def test_sighup_ignored_as_nohup_leaves_it_is_left_ignored(tmp_path):
    """`nohup losscmp run ...`: a hang-up must not stop the run that nohup protects."""
    args = ["--config", SMOKE, "--epochs", "1", "--out", tmp_path, "--threads", "1"]
    process = subprocess.Popen(
        [*LOSSCMP, "run", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/trials/*.json")):
        time.sleep(0.05)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=120) == 0
    (run_dir,) = tmp_path.iterdir()
    assert len(list((run_dir / "trials").glob("*.json"))) == 3
