"""benchmarks/gpu.sh and the scripts it runs, checked on the CPU.

The script is meant to run once, on a lent GPU machine with no network and a few
minutes: its dry run (GPU_DRY_RUN=1) runs every step here at tiny sizes, and its early
checks must stop it, in one line, before any step when something every step needs is
missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.sh"


def gpu_sh(logs: Path, *steps: str, env: dict | None = None, timeout: int = 300):
    environment = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SCRIPT), str(logs), *steps],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def executors_module():
    spec = importlib.util.spec_from_file_location(
        "bench_executors", REPO / "benchmarks" / "executors.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_segmentation_models_pytorch_it_stops_before_any_step(tmp_path):
    """A GPU image without smp and no .whl carried: one line of advice, exit 1, no step."""
    fake = tmp_path / "site" / "segmentation_models_pytorch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named timm.layers')\n")
    logs = tmp_path / "logs"
    no_wheels = tmp_path / "no-wheels"  # a .whl/ of this checkout would install smp
    no_wheels.mkdir()
    env = {"GPU_DRY_RUN": "1", "PYTHONPATH": str(tmp_path / "site"), "GPU_WHEELS": str(no_wheels)}
    result = gpu_sh(logs, env=env, timeout=120)
    assert result.returncode == 1
    assert "make gpu-wheels" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("gpu.sh: the check before the steps")
    assert sorted(path.name for path in logs.iterdir()) == ["gpu.txt"]
    assert not re.search(r"^step ", (logs / "gpu.txt").read_text(), re.MULTILINE)


def test_an_unknown_step_stops_it_before_anything_runs(tmp_path):
    result = gpu_sh(tmp_path, "tests", "executor", env={"GPU_DRY_RUN": "1"}, timeout=60)
    assert result.returncode == 1
    assert result.stderr == "gpu.sh: unknown step 'executor' (tests, executors, trial, compile)\n"
    assert (tmp_path / "gpu.txt").read_text() == result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a CUDA device here")
def test_without_a_cuda_device_it_stops_before_any_step(tmp_path):
    """nvidia-smi answers but torch sees no GPU (a driver/runtime mismatch, or this
    machine): the check says so instead of every step failing on its own."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'name, memory.total [MiB], driver_version'\n")
    smi.chmod(0o755)
    logs = tmp_path / "logs"
    result = gpu_sh(logs, env={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=120)
    assert result.returncode == 1
    assert "torch sees no CUDA device" in result.stdout
    assert not re.search(r"^step ", (logs / "gpu.txt").read_text(), re.MULTILINE)


def fake_python(tmp_path: Path, body: str) -> Path:
    """An executable standing in for the interpreter: ``body`` is its bash."""
    python = tmp_path / "python"
    python.write_text(f"#!/bin/bash\n{body}\n")
    python.chmod(0o755)
    return python


def test_the_steps_run_issue_9s_figures_first(tmp_path):
    """By default the executors and the trial benchmark (issue 9's two figures) run before
    the CUDA tests and torch.compile: a lent machine's deadline cuts the last steps, and
    the caps of all four add up to more than twice the deadline."""
    calls = tmp_path / "calls"
    python = fake_python(tmp_path, f'[[ $1 == -c ]] && exit 0\necho "$*" >>{calls}')
    no_wheels = tmp_path / "no-wheels"
    no_wheels.mkdir()
    env = {"GPU_DRY_RUN": "1", "PYTHON": str(python), "GPU_WHEELS": str(no_wheels)}
    result = gpu_sh(tmp_path / "logs", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    ran = [line.split()[:2] for line in calls.read_text().splitlines()]
    assert ran == [
        ["benchmarks/executors.py", "gpu"],
        ["benchmarks/trial.py", "--device"],
        ["-m", "pytest"],
        ["benchmarks/trial.py", "--device"],
    ]
    assert "--compile" in calls.read_text().splitlines()[-1]


@pytest.mark.slow
def test_a_check_that_hangs_stops_the_script_within_the_deadline(tmp_path):
    """The check before the steps imports torch and starts CUDA: on a GPU that hangs there
    (deaf to SIGTERM, as a process inside a CUDA call is) the script stops GRACE seconds
    after the check's cap, with a line saying so, rather than at the machine's limit with
    nothing said."""
    python = fake_python(tmp_path, 'trap "" TERM\nsleep 300')
    no_wheels = tmp_path / "no-wheels"
    no_wheels.mkdir()
    logs = tmp_path / "logs"
    env = {"GPU_DRY_RUN": "1", "PYTHON": str(python), "GPU_WHEELS": str(no_wheels)}
    result = gpu_sh(logs, env={**env, "GPU_DEADLINE_S": "5"}, timeout=60)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("gpu.sh: the check before the steps hung and was cut at its time cap")
    )
    assert not re.search(r"^step ", (logs / "gpu.txt").read_text(), re.MULTILINE)


@pytest.mark.slow
def test_a_step_that_ignores_its_caps_stop_is_killed_within_the_deadline(tmp_path):
    """A step's process that does not end on SIGTERM (losscmp's handler waiting on a hung
    GPU, here one that ignores the signal) is killed GRACE seconds after its cap: the
    script still ends, says which step it cut, and prints its closing summary."""
    python = tmp_path / "python"  # passes the check; any step then hangs, deaf to SIGTERM
    python.write_text('#!/bin/bash\n[[ $1 == -c ]] && exit 0\ntrap "" TERM\nsleep 300\n')
    python.chmod(0o755)
    no_wheels = tmp_path / "no-wheels"
    no_wheels.mkdir()
    logs = tmp_path / "logs"
    env = {"GPU_DRY_RUN": "1", "PYTHON": str(python), "GPU_WHEELS": str(no_wheels)}
    result = gpu_sh(logs, "trial", env={**env, "GPU_DEADLINE_S": "31"}, timeout=120)
    assert result.returncode == 1
    summary = (logs / "gpu.txt").read_text()
    assert re.search(
        r"^step trial: killed 10 s after its time cap \(exit 137\), 4\d s$", summary, re.M
    )
    assert "=== summary" in result.stdout


@pytest.mark.slow
def test_a_failed_side_is_reported_and_the_others_go_on(tmp_path):
    """A side that fails (here: refused options, exit 2) is left out with its reason; the
    figures of the others are kept, and written to --json after every run."""
    module = executors_module()
    common = ["--dataset", "synthetic(n_train=8,n_val=4,n_test=4)", "--model", "tiny"]
    common += ["--image-size", "32", "--epochs", "1", "--device", "cpu", "--losses", "dice"]
    sides = {"refused": [*common, "--batch-size", "0"], "fine": common}
    written = tmp_path / "figures.json"
    results = module.compare(sides, 1, tmp_path, lambda found: module.write_json(written, found))
    assert "exit 2" in results["refused"]["failed"]
    assert "median_s" not in results["refused"]
    assert results["fine"]["median_s"] > 0
    assert results["fine"]["execution"] == "cpu, 1 process(es)"
    assert json.loads(written.read_text())["fine"]["runs"] == results["fine"]["runs"]


def test_a_side_past_its_cap_is_stopped_and_the_others_go_on(tmp_path, monkeypatch):
    """A run that hangs (here: an interpreter deaf to SIGTERM, whose child outlives it, as
    a worker process may) is stopped at the side's cap and reported failed, instead of
    holding the executors step, and every side after it, until gpu.sh's cap for the step."""
    module = executors_module()
    children = tmp_path / "children"
    hangs = f'trap "" TERM\nsleep 60 &\necho $! >>{children}\nwait'
    monkeypatch.setattr(sys, "executable", str(fake_python(tmp_path, hangs)))
    written = tmp_path / "figures.json"
    sides = {"hangs": ["--losses", "dice"], "hangs too": ["--losses", "bce"]}
    started = time.monotonic()
    try:
        results = module.compare(sides, 1, tmp_path, partial(module.write_json, written), cap=1)
    finally:
        for child in children.read_text().split() if children.exists() else []:
            os.kill(int(child), signal.SIGKILL)
    assert time.monotonic() - started < 30  # two sides, each 1 s and 10 s to SIGKILL
    for name in sides:
        assert results[name]["failed"].startswith("cut at its 1 s cap: "), results[name]
    assert json.loads(written.read_text()) == results


@pytest.mark.slow
def test_ray_many_measures_the_drivers_own_cpu_and_memory(tmp_path, capsys):
    """executors.py ray-many: the main process's CPU seconds and peak memory, written by
    the run itself at exit (its workers' are not its own), and the overhead per trial."""
    module = executors_module()
    common = ["--dataset", "synthetic(n_train=8,n_val=4,n_test=4)", "--model", "tiny"]
    common += ["--image-size", "32", "--epochs", "1", "--device", "cpu", "--losses", "dice,bce"]
    sides = {"--jobs 2": [*common, "-j", "2"], "--jobs 1": common}
    results = module.compare(sides, 1, tmp_path, driver=True)
    for result in results.values():
        (driver,) = result["driver"]
        assert result["trials"] == 2
        assert 0.5 < driver["cpu_s"] < result["runs"][0] * 2  # imports torch: over a second
        assert 100 < driver["peak_mib"] < 4096
        (between,) = result["between"]
        assert abs(between) < result["runs"][0]  # a slot's time per trial less the trial's
    module.print_many_table(results, "--jobs 2")
    header, *rows = capsys.readouterr().out.strip().splitlines()[-3:]
    assert header.split()[:4] == ["side", "trials", "median", "s"]
    assert [row.split()[0:3] for row in rows] == [["--jobs", "2", "2"], ["--jobs", "1", "2"]]
    assert rows[0].split()[5] == "+0.000"  # the baseline against itself
    assert len(rows[0].split()) == 9


def run_folder(root: Path, statuses: list[str], failed: dict) -> Path:
    """The run.json and trial records a finished run leaves, as the benchmark reads them."""
    (root / "trials").mkdir(parents=True)
    trials = [f"t{index}" for index in range(len(statuses) + len(failed))]
    meta = {"trials": trials, "failed_trials": failed, "device": "cpu: x86_64"}
    meta["execution"] = {"jobs": 2, "fused": False}
    (root / "run.json").write_text(json.dumps(meta))
    for trial, status in zip(trials, statuses, strict=False):
        (root / "trials" / f"{trial}.json").write_text(json.dumps({"status": status}))
    return root


def test_a_run_with_a_failed_trial_is_no_figure_and_a_diverged_one_is_named(tmp_path):
    """A run whose trial failed exits 0, and sooner than a healthy one: its time would
    read as fast. A diverged trial is the loss's doing, on every side: it is named."""
    module = executors_module()
    healthy = run_folder(tmp_path / "ok", ["finished", "finished"], {})
    module.check_finished(healthy)
    assert module.execution_of(healthy) == "cpu, 2 process(es)"
    with pytest.raises(module.SideFailed, match="1 trial.s. failed.*out of memory"):
        module.check_finished(
            run_folder(tmp_path / "failed", ["finished"], {"t1": "out of memory"})
        )
    diverged = run_folder(tmp_path / "diverged", ["finished", "diverged"], {})
    module.check_finished(diverged)
    assert module.execution_of(diverged) == "cpu, 2 process(es), 1 trial(s) diverged"


@pytest.mark.slow
def test_the_dry_run_runs_every_step_on_the_cpu(tmp_path):
    """GPU_DRY_RUN=1: every step, the figures each one writes, exit 0 (about 70 s here)."""
    logs = tmp_path / "logs"
    result = gpu_sh(logs, env={"GPU_DRY_RUN": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    expected = {"gpu.txt", "cuda-tests.log", "executors.log", "executors.json", "trial.log"}
    assert {path.name for path in logs.iterdir()} == expected | {"trial-compile-default.log"}
    summary = (logs / "gpu.txt").read_text()
    closing = result.stdout.split("=== summary")[-1]  # what a lent machine's reply keeps
    for step in ("tests", "executors", "trial", "compile default"):
        assert f"step {step}: exit 0" in summary
        assert f"step {step}: exit 0" in closing
    assert "best way: fused" in closing or "best way: --trials-per-gpu" in closing
    assert "losscmp throughput / plain loop" in closing
    figures = json.loads((logs / "executors.json").read_text())
    assert list(figures) == [
        "1 loss alone",
        "sequential",
        "fused",
        "--trials-per-gpu 2",
        "--trials-per-gpu 4",
    ]
    assert all(side["median_s"] > 0 for side in figures.values())
    assert figures["fused"]["execution"] == "cpu, 1 process(es), fused"
    assert "best way:" in (logs / "executors.log").read_text()
    assert "skipped" in (logs / "cuda-tests.log").read_text()  # no CUDA here
    assert "losscmp throughput / plain loop" in (logs / "trial.log").read_text()
    compiled = (logs / "trial-compile-default.log").read_text()
    assert "compiled plain loop throughput / plain loop" in compiled
