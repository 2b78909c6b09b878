"""``--executor ray`` on a real local Ray (2 CPUs, one per module, no mocks).

Same numbers as the local executor; a task whose worker is killed is retried
once, then its trial is recorded as failed while the others finish; without
Ray installed, one line says how to get it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
TIMING_COLUMNS = {"seconds"}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module, without GPUs even on a GPU machine; the executor joins
    it and leaves it running."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


def test_ray_gives_the_numbers_of_the_local_sequential_run(cli, ray_cluster, tmp_path):
    args = ("run", "--config", SMOKE, "--threads", "1")
    local = cli(*args, "--out", tmp_path / "local")
    assert local.exit_code == 0, local.output
    on_ray = cli(*args, "--executor", "ray", "--jobs", "2", "--out", tmp_path / "ray")
    assert on_ray.exit_code == 0, on_ray.output

    (local_dir,) = (tmp_path / "local").iterdir()
    (ray_dir,) = (tmp_path / "ray").iterdir()
    expected, got = _epochs(local_dir), _epochs(ray_dir)
    assert len(got) == 3 * 2  # losses x epochs
    assert got == expected
    meta = json.loads((ray_dir / "run.json").read_text())
    assert meta["execution"]["executor"] == "ray"
    assert meta.get("failed_trials", {}) == {}
    assert ray_cluster.is_initialized()  # a Ray the executor did not start is left running


def test_tasks_no_node_can_run_are_refused_before_any_folder(cli, ray_cluster, tmp_path):
    out = tmp_path / "runs"
    result = cli("run", "--config", SMOKE, "--executor", "ray", "--threads", "4", "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "losscmp: error: --threads 4: no node of the Ray cluster has 4 CPUs "
        "(the largest has 2); lower --threads"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "refusal"),
    [
        (
            "threads: 4",
            "'threads' 4: no node of the Ray cluster has 4 CPUs (the largest has 2); "
            "lower 'threads'",
        ),
        ("device: cuda", "'device' cuda: the Ray cluster has no GPU; use 'device' cpu"),
    ],
)
def test_a_config_files_option_no_node_can_run_is_named_as_the_file_gives_it(
    cli, ray_cluster, tmp_path, option, refusal
):
    """--threads and --device were named as flags even where the config file gave them."""
    config = tmp_path / "ray.yaml"
    config.write_text(SMOKE.read_text().replace("device: cpu", option) + "executor: ray\n")
    out = tmp_path / "runs"
    result = cli("run", "--config", config, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"losscmp: error: config file {config}: {refusal}"
    assert not out.exists()


def test_a_resumed_runs_threads_no_node_has_are_named_as_the_runs_own(cli, ray_cluster, tmp_path):
    """A resumed run keeps the threads in its run.json, which no flag lowers: the refusal
    said '--threads 4 ... lower --threads', and --threads 1 would be refused as a change."""
    args = ("--config", SMOKE, "--losses", "dice", "--epochs", "1")
    assert cli("run", *args, "--threads", "4", "--out", tmp_path).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    next((run_dir / "trials").glob("*.json")).unlink()
    result = cli("run", "--resume", run_dir, "--executor", "ray")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "losscmp: error: the run's 'threads' 4: no node of the Ray cluster has 4 CPUs "
        "(the largest has 2); a resumed run keeps its threads: resume it on a cluster "
        "with such a node"
    )


def test_the_clusters_devices_decide_not_the_drivers(cli, ray_cluster, tmp_path):
    """A cluster without GPUs: auto is the CPU there whatever this machine has, and
    --device cuda is refused before any folder."""
    from losscmp.config import RunConfig
    from losscmp.executors.ray import RayExecutor

    assert RayExecutor(RunConfig()).resolve_device("auto") == torch.device("cpu")
    out = tmp_path / "runs"
    result = cli("run", "--config", SMOKE, "--executor", "ray", "--device", "cuda", "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "losscmp: error: --device cuda: the Ray cluster has no GPU; use --device cpu"
    )
    assert not out.exists()


GPU_CLUSTER = """
import ray, torch
from losscmp.config import RunConfig
from losscmp.executors.ray import RayExecutor
# A cluster that reports two H100s, from a driver that has no GPU (CI's machine).
ray.init(num_cpus=1, num_gpus=2, resources={"accelerator_type:H100": 2},
         include_dashboard=False, log_to_driver=False, configure_logging=False)
executor = RayExecutor(RunConfig())
for name in ("auto", "cuda", "cpu"):
    device = executor.resolve_device(name)
    print(name, device.type, executor.describe_device(device), sep="|")
ray.shutdown()
# A Ray the run starts itself is this machine: torch's devices decide, not Ray's count
# (which comes from the NVIDIA driver, whether or not torch can use the GPUs).
init = ray.init
ray.init = lambda **options: init(**options, num_gpus=2)
executor = RayExecutor(RunConfig())
print("local auto", executor.resolve_device("auto").type, sep="|")
try:
    executor.resolve_device("cuda")
except Exception as error:
    print("local cuda", error, sep="|")
executor.close()
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="asserts what a machine without CUDA gets")
def test_a_driver_without_a_gpu_trains_on_the_clusters_gpus():
    pytest.importorskip("ray")

    process = _python_starting_its_own_ray("-c", GPU_CLUSTER, timeout=180)
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines() == [
        "auto|cuda|cuda: Ray cluster, 2 GPUs (H100)",
        "cuda|cuda|cuda: Ray cluster, 2 GPUs (H100)",
        "cpu|cpu|cpu: Ray cluster",  # the nodes' processors, which Ray does not name
        "local auto|cpu",
        "local cuda|--device cuda: no CUDA device is available here",
    ]


PRELOADED_WORKERS = """
import sys, ray
from losscmp.config import RunConfig
from losscmp.executors.ray import RayExecutor

@ray.remote(num_cpus=1)
def imported_before_this_task():
    return sorted({"segmentation_models_pytorch", "scipy.ndimage"} & set(sys.modules))

executor = RayExecutor(RunConfig(device="cpu", threads=1))
executor.start_early(10_000)  # more jobs than this machine has CPUs: every worker trains
print(*ray.get(imported_before_this_task.remote()))
executor.close()
"""


def test_a_local_rays_workers_import_the_training_code_before_their_first_task():
    """A task imported torch, smp and scipy in its first task, after the driver had
    submitted it: a local Ray whose every worker trains has them import it as they start,
    while the driver still imports torch and loads the data, as --jobs workers do."""
    pytest.importorskip("ray")
    process = _python_starting_its_own_ray("-c", PRELOADED_WORKERS, timeout=180)
    assert process.returncode == 0, process.stderr
    assert process.stdout.splitlines() == ["scipy.ndimage segmentation_models_pytorch"]


@pytest.mark.parametrize(
    ("machine", "options", "jobs_at_most", "preloads"),
    [
        ({"CPU": 2.0}, {}, 8, True),
        ({"CPU": 2.0}, {"jobs": 2}, 8, True),
        ({"CPU": 2.0}, {}, 2, True),
        ({"CPU": 2.0}, {}, 1, False),  # one job: the other worker would import for nothing
        ({"CPU": 2.0}, {"jobs": 1}, 8, False),
        ({"CPU": 2.0}, {"threads": 2}, 8, False),  # one task at a time uses both CPUs
        ({"CPU": 64.0}, {}, 8, False),  # 56 idle workers importing torch beside the driver
        ({"CPU": 2.0, "GPU": 1.0}, {}, 8, False),  # tasks wait for the GPU, not a CPU
        ({"CPU": 2.0, "GPU": 1.0}, {"device": "cpu"}, 8, True),
        (None, {}, 8, False),  # this Ray cannot say what it would have
    ],
)
def test_workers_import_as_they_start_only_where_each_will_train(
    machine, options, jobs_at_most, preloads, monkeypatch
):
    pytest.importorskip("ray")
    from losscmp.config import RunConfig
    from losscmp.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor, "_this_machine", lambda: machine and [machine])
    config = RunConfig(**options)
    assert ray_executor._every_worker_trains(config, jobs_at_most) is preloads


def test_this_machine_is_counted_as_ray_counts_it_without_starting_ray():
    """The resources a local Ray would have, from Ray's own reckoning in its private module
    (ResourceAndLabelSpec from Ray 2.49, ResourceSpec before): not None, which would start
    a Ray for a dry run and leave a local Ray's workers to import in their first task."""
    ray = pytest.importorskip("ray")
    from losscmp.executors import ray as ray_executor

    machine = ray_executor._this_machine()
    assert machine is not None
    assert machine[0]["CPU"] == ray._private.utils.get_num_cpus()


def test_tasks_read_the_data_the_driver_loaded_not_the_dataset(ray_cluster, tmp_path):
    """The dataset folder is deleted once the driver has loaded it: the tasks still train,
    from the copy in Ray's object store (no node needs the data on its disk)."""
    import shutil

    from fixtures_data import make_folder

    from losscmp.config import build_config
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    root = tmp_path / "cases"
    make_folder(root, count=16, val_count=6, test_count=6, shape=(48, 48))
    options = {
        "losses": "dice,bce", "dataset": f"folder:{root}", "epochs": 2, "model": "tiny",
        "device": "cpu", "threads": 1, "image_size": 64,
    }  # fmt: skip
    plain = execute(prepare(plan_run(build_config(**options, out=str(tmp_path / "plain")))))
    config = build_config(**options, executor="ray", jobs=2, out=str(tmp_path / "ray"))
    prepared = prepare(plan_run(config))
    shutil.rmtree(root)
    run_dir = execute(prepared)
    assert "failed_trials" not in json.loads((run_dir / "run.json").read_text())
    assert _epochs(run_dir) == _epochs(plain)
    (kept,) = prepared.datasets.values()
    assert kept.train_images.flags.writeable is False  # the driver keeps the stored copy


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the Ray worker in /proc")
def test_a_killed_task_is_retried_once_then_its_trial_is_recorded_as_failed(
    cli, ray_cluster, tmp_path, monkeypatch
):
    """Kill the Ray worker running a trial, as the OOM killer would: dice on both
    attempts (recorded as failed), focal on its first only (finished by the retry)."""
    from losscmp.events import TrialRetried, TrialStarted
    from losscmp.executors.ray import RayExecutor

    kills = {"dice": 2, "focal": 1}
    seen = []
    run = RayExecutor.run

    def run_and_kill(self, jobs, context, emit):
        def spy(event):
            seen.append(event)
            loss = getattr(event, "trial_id", "").split("__")[1:2]
            if isinstance(event, TrialStarted) and kills.get(loss[0], 0):
                kills[loss[0]] -= 1
                _kill_process_titled(f"ray::losscmp {event.trial_id}")
            emit(event)

        return run(self, jobs, context, spy)

    monkeypatch.setattr(RayExecutor, "run", run_and_kill)
    result = cli(
        "run", "--config", SMOKE, "--threads", "1", "--executor", "ray", "--jobs", "2",
        "--out", tmp_path,
    )  # fmt: skip

    assert result.exit_code == 1, result.output  # 1: a trial failed
    assert kills == {"dice": 0, "focal": 0}
    (run_dir,) = tmp_path.iterdir()
    assert result.stderr.splitlines()[-1] == (
        "losscmp: 1 of 3 trials failed (dice · seed 0); train it again with: losscmp run "
        f"--config {SMOKE} --out {tmp_path} --executor ray --jobs 2 --threads 1 "
        f"--resume {run_dir}"
    )
    meta = json.loads((run_dir / "run.json").read_text())
    (dice,) = [trial for trial in meta["trials"] if "__dice__" in trial]
    assert list(meta["failed_trials"]) == [dice]
    assert "died" in meta["failed_trials"][dice]
    retried = [event.trial_id.split("__")[1] for event in seen if isinstance(event, TrialRetried)]
    assert sorted(retried) == ["dice", "focal"]  # once each: no third attempt
    finished = {row["loss"] for row in _epochs(run_dir).values()}
    assert finished == {"focal", "tversky"}
    assert len(list((run_dir / "trials").glob("*.json"))) == 2
    # Ray's own dozen lines on the killed worker went to stdout, into a redirected table
    assert "(raylet)" not in result.stdout and "A worker died" not in result.stdout


@pytest.mark.parametrize(
    ("losses", "jobs", "in_flight"),
    [
        # --jobs 1 ran every task at once from the first task's first item on: the stall
        # check reused the name of the cap on running tasks for its time limit (1800).
        ("dice,focal", ["--jobs", "1"], 1),
        # No --jobs submitted all 5 at once; now twice what the 2 CPUs fit.
        ("dice,focal,tversky,bce,jaccard", [], 4),
    ],
)
def test_jobs_caps_the_tasks_in_flight(
    cli, ray_cluster, tmp_path, monkeypatch, losses, jobs, in_flight
):
    from losscmp.executors.ray import RayExecutor

    running = []  # how many tasks were in flight when each item came
    run = RayExecutor.run

    def run_and_count(self, jobs, context, emit):
        def spy(event):
            running.append(len(self.running))
            emit(event)

        return run(self, jobs, context, spy)

    monkeypatch.setattr(RayExecutor, "run", run_and_count)
    args = ("run", "--config", SMOKE, "--losses", losses, "--epochs", "1", "--threads", "1")
    result = cli(*args, "--executor", "ray", *jobs, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert len(running) > 2 and max(running) == in_flight
    assert set(running) <= set(range(1, in_flight + 1))  # fewer only once none is left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the Ray worker in /proc")
def test_a_stalled_task_is_cancelled_and_retried_with_the_same_numbers(
    cli, ray_cluster, tmp_path, monkeypatch
):
    """A task whose worker hung (here stopped by SIGSTOP) used to hold the run for ever: once
    silent for the stall limit it is force-cancelled and submitted once more. It is stopped
    as it starts, before its first progress event (as a hang loading the data or
    initialising CUDA would stop it): the task's first item, sent as it starts, arms the
    watch; a task waiting for room on the cluster sends none."""
    import threading

    import losscmp.executors.base as base
    import losscmp.executors.ray as ray_executor
    from losscmp.events import TrialRetried

    limit = 20  # a healthy task is silent for a few seconds at most (building its model)
    monkeypatch.setattr(base, "STALL_LIMIT_S", limit)
    seen, stopped = [], []
    run, next_item = ray_executor.RayExecutor.run, ray_executor._next_item

    def run_and_stop(self, jobs, context, emit):
        def stop_focal_as_it_starts(stream):
            item = next_item(stream)
            job = self.running[stream][0]
            if item[0] == "started" and "__focal__" in job.name and not stopped:
                stopped.append(_kill_process_titled(f"ray::losscmp {job.name}", signal.SIGSTOP))
            return item

        def spy(event):
            seen.append(event)
            emit(event)

        monkeypatch.setattr(ray_executor, "_next_item", stop_focal_as_it_starts)
        return run(self, jobs, context, spy)

    monkeypatch.setattr(ray_executor.RayExecutor, "run", run_and_stop)
    # Without the watchdog the run would wait for ever: the stopped worker is killed later
    # instead, so the test fails (a death, not a stall) rather than hangs.
    rescue = threading.Timer(6 * limit, lambda: [os.kill(pid, signal.SIGKILL) for pid in stopped])
    rescue.start()
    try:
        args = ("run", "--config", SMOKE, "--threads", "1")
        result = cli(*args, "--executor", "ray", "--jobs", "2", "--out", tmp_path / "ray")
    finally:
        rescue.cancel()
    assert result.exit_code == 0, result.output
    (focal,) = {e.trial_id for e in seen if "__focal__" in getattr(e, "trial_id", "")}
    retried = [(event.trial_id, event.reason) for event in seen if isinstance(event, TrialRetried)]
    assert retried == [(focal, "worker stalled: nothing for 20 s (hung?); killed")]
    (ray_dir,) = (tmp_path / "ray").iterdir()
    assert json.loads((ray_dir / "run.json").read_text()).get("failed_trials", {}) == {}
    assert cli(*args, "--out", tmp_path / "local").exit_code == 0
    (local_dir,) = (tmp_path / "local").iterdir()
    assert _epochs(ray_dir) == _epochs(local_dir)


def test_the_ray_a_run_starts_is_stopped_before_the_command_exits(tmp_path):
    """Without --ray-address a local Ray is started for the run; it is stopped in the
    background while the report is written, and the command waits for it to exit."""
    pytest.importorskip("ray")
    before = _ray_processes()
    command = ["-m", "losscmp", "run", "--config", str(SMOKE), "--epochs", "1"]
    process = _python_starting_its_own_ray(
        *command, "--losses", "dice,focal", "--executor", "ray", "--out", str(tmp_path), timeout=300
    )
    assert process.returncode == 0, process.stderr
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["execution"]["executor"] == "ray" and meta["finished_at"]
    assert (run_dir / "report.html").is_file()
    assert {row["loss"] for row in _epochs(run_dir).values()} == {"dice", "focal"}
    assert _ray_processes() - before == set()  # its GCS and raylet are gone


CTRL_C_AS_THE_PROCESS_EXITS = """
import atexit, os, time
# Registered first, so it runs last, after the executor's: as the finalizers after Ray's.
atexit.register(lambda: (print("exiting", flush=True), time.sleep(60)))
from losscmp.executors import ray as ray_executor
ray_executor._shut_down_in_background()  # as a run's close() does (no Ray here to stop)
"""


def test_a_ctrl_c_as_the_process_exits_after_its_run_prints_no_traceback():
    """The report was written; a Ctrl-C during the seconds Ray's exit handlers and the
    finalizers take printed 'Exception ignored in atexit callback' and a traceback."""
    pytest.importorskip("ray")
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_AS_THE_PROCESS_EXITS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_without_ray_settings(),
    )
    assert process.stdout.readline() == "exiting\n"
    process.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):  # the exit goes on, unbothered
        process.wait(timeout=1)
    process.kill()
    assert process.communicate()[1] == ""


def test_an_address_where_nothing_listens_is_refused_at_once(tmp_path):
    """Ray's own connect retries for minutes; the driver probes the address first: one
    line, exit 2, seconds, and no run folder."""
    pytest.importorskip("ray")
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "losscmp", "run", "--config", str(SMOKE), "--epochs", "1"]
    process = subprocess.run(
        [*command, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert process.returncode == 2, process.stderr
    (line,) = process.stderr.strip().splitlines()
    where = f"--executor ray: could not join the Ray cluster at 127.0.0.1:{port}"
    assert line.startswith(f"losscmp: error: {where}: nothing answers at ")
    assert line.endswith(f":{port} (Connection refused)")
    assert not out.exists()


def test_the_probed_endpoint_is_the_one_ray_connects_to():
    pytest.importorskip("ray")
    from losscmp.executors.ray import RAY_CLIENT_PORT, _endpoint

    assert _endpoint("local") is None  # a new local Ray: nothing to probe
    assert _endpoint("ray://head.example") == ("head.example", RAY_CLIENT_PORT)
    assert _endpoint("ray://10.0.0.5:9999") == ("10.0.0.5", 9999)
    assert _endpoint("10.0.0.5:6380") == ("10.0.0.5", 6380)
    with pytest.raises(ValueError, match="Port could not be cast"):  # refused as typed
        _endpoint("head:not-a-port")


def _python_starting_its_own_ray(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """``python args`` in the repository, without $RAY_ADDRESS: a new local Ray, not a
    cluster the environment names."""
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env
    )


def _ray_processes() -> set[int]:
    """Process ids of Ray's per-cluster daemons (GCS server, raylet) on this machine."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            program = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if Path(program.decode(errors="replace")).name in {"gcs_server", "raylet"}:
            pids.add(int(entry.name))
    return pids


def test_without_ray_the_install_hint_is_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "runs"
    hide_ray = (
        "import sys; sys.modules['ray'] = None; from losscmp.cli import run_command; run_command()"
    )
    command = [sys.executable, "-c", hide_ray, "run", "--config", str(SMOKE), "--epochs", "1"]
    process = subprocess.run(
        [*command, "--executor", "ray", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == [
        "losscmp: error: --executor ray needs Ray: pip install 'ray>=2.10'"
    ]
    assert not out.exists() or not any(out.iterdir())


def _epochs(run_dir: Path) -> dict[tuple, dict[str, str]]:
    """epochs.csv rows by (dataset, loss, seed, epoch), timing columns left out."""
    with open(run_dir / "epochs.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {
        (row["dataset"], row["loss"], row["seed"], row["epoch"]): {
            key: value for key, value in row.items() if key not in TIMING_COLUMNS
        }
        for row in rows
    }


def _kill_process_titled(title: str, sig=signal.SIGKILL) -> int:
    """SIGKILL (or send ``sig`` to) the process whose title is ``title`` (Ray titles a busy
    worker ``ray::<task name>``; the executor names tasks ``losscmp <job>``); its pid."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.split("\0")[0].strip() == title:
            pids.append(int(entry.name))
    assert len(pids) == 1, f"{title}: {pids}"
    os.kill(pids[0], sig)
    return pids[0]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1:99999", "port out of range 0-65535"),
        ("ray://10.0.0.1:70000", "port out of range 0-65535"),
        ("127.0.0.1:abc", "port could not be cast to integer value as 'abc'"),
    ],
)
def test_an_address_with_an_impossible_port_is_refused_at_once(address, why):
    """Ray waited minutes on such an address, deaf to Ctrl-C; it is refused as typed (by
    the check a run makes before ray.init, as for an address where nothing listens)."""
    pytest.importorskip("ray")
    from losscmp.errors import LosscmpError
    from losscmp.executors.ray import _check_answers

    with pytest.raises(LosscmpError) as refused:
        _check_answers(address)
    assert str(refused.value) == f"{address!r} is not a Ray address ({why})"


def test_rays_advice_names_the_flag_of_losscmp_not_its_own():
    """'--ray-address auto' with no cluster on this machine: Ray says to set its CLI's
    '--address' flag, which 'losscmp run' refuses."""
    pytest.importorskip("ray")
    from losscmp.executors.ray import _connect_failure

    for flag in ("`--address` flag", "the `--address` flag"):  # both in ray._private.services
        ray_says = ConnectionError(
            "Could not find any running Ray instance. Please specify the one to connect to by "
            f"setting {flag} or `RAY_ADDRESS` environment variable."
        )
        assert _connect_failure(ray_says, "auto") == (
            "could not join the Ray cluster at auto: Could not find any running "
            "Ray instance. Please specify the one to connect to by setting --ray-address or "
            "`RAY_ADDRESS` environment variable."
        )


def _answering(reply: bytes | None):
    """A server on a free port of every interface (Ray probes this node's address, not
    127.0.0.1) that answers its first connection with ``reply`` (None: says nothing)."""
    import socket
    import threading

    server = socket.create_server(("", 0))

    def answer() -> None:
        with server, server.accept()[0] as connection:
            if reply is not None:
                connection.sendall(reply)
            connection.settimeout(5)
            with contextlib.suppress(OSError):
                while connection.recv(64):  # until the probe has given up and closed
                    pass

    threading.Thread(target=answer, daemon=True).start()
    return server.getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "what"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "an HTTP server"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "an SSH server"),
        (None, "it said nothing for 0.5 s"),
    ],
)
def test_an_address_where_something_else_answers_is_refused_at_once(reply, what, monkeypatch):
    """The dashboard's port (8265, HTTP) or any other service there: ray.init waited on it
    for more than 10 minutes, through SIGTERM; the probe sees that it is no gRPC server."""
    pytest.importorskip("ray")
    from losscmp.errors import LosscmpError
    from losscmp.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor, "PROBE_TIMEOUT_S", 0.5)
    port = _answering(reply)
    with pytest.raises(LosscmpError) as refused:
        ray_executor._check_answers(f"127.0.0.1:{port}")
    message = str(refused.value)
    assert message.startswith(f"could not join the Ray cluster at 127.0.0.1:{port}")
    assert f":{port} is not Ray ({what}); give the head node's address, HOST:6379" in message


def test_a_grpc_server_passes_the_probe_and_an_http_address_is_refused():
    pytest.importorskip("ray")
    from losscmp.errors import LosscmpError
    from losscmp.executors.ray import _check_answers

    settings_frame = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # what Ray's GCS answers first
    _check_answers(f"127.0.0.1:{_answering(settings_frame)}")
    with pytest.raises(LosscmpError) as refused:
        _check_answers("http://head:8265")
    assert str(refused.value) == (
        "'http://head:8265' is an HTTP address (Ray's dashboard or job "
        "server); give the cluster's address, HOST:6379 or ray://HOST:10001"
    )


def _http2_answering_404() -> int:
    """A port of every interface where an HTTP/2 server (a proxy's, a gRPC server's without
    Ray's services) answers each request 404, which gRPC reads as UNIMPLEMENTED."""
    import socket
    import threading

    server = socket.create_server(("", 0))
    settings, settings_ack, headers = 4, 1, 1

    def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
        return (
            len(payload).to_bytes(3, "big")
            + bytes([kind, flags])
            + stream.to_bytes(4, "big")
            + payload
        )

    def read(connection: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size and (more := connection.recv(size - len(data))):
            data += more
        return data

    def serve(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.sendall(frame(settings, 0, 0))
            read(connection, 24)  # the client's preface
            while len(header := read(connection, 9)) == 9:
                kind, flags = header[3], header[4]
                stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                read(connection, int.from_bytes(header[:3], "big"))
                if kind == settings and not flags & settings_ack:
                    connection.sendall(frame(settings, settings_ack, 0))
                elif kind == headers:  # ":status: 404" (HPACK's static entry 13), ended
                    connection.sendall(frame(headers, 0x5, stream, bytes([0x80 | 13])))

    def accept() -> None:
        with server:
            while True:
                connection = server.accept()[0]
                threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def test_a_grpc_server_that_is_not_rays_is_refused_at_once():
    """It passes the probe's look at the connection (HTTP/2); ray.init then asked it again
    every second for 20 s, printing a warning of Ray's each time, and gave up with
    'Failed to connect'. Asked for the cluster's id as ray.init does, it says UNIMPLEMENTED."""
    pytest.importorskip("ray._private.authentication")  # where the GCS is asked first
    from losscmp.errors import LosscmpError
    from losscmp.executors.ray import _check_answers, _check_token

    address = f"127.0.0.1:{_http2_answering_404()}"
    _check_answers(address)
    started = time.monotonic()
    with pytest.raises(LosscmpError) as refused:
        _check_token(address)
    assert time.monotonic() - started < 5
    assert str(refused.value).startswith(f"could not join the Ray cluster at {address}: ")
    assert str(refused.value).endswith(
        "speaks gRPC but is not a Ray cluster's head; give the head node's address, "
        "HOST:6379, or ray://HOST:10001 for Ray Client"
    )


def test_a_config_files_executor_is_named_as_the_file_gives_it(tmp_path, monkeypatch, cli):
    """A refused cluster address was put to '--executor ray' even where the config file
    chose Ray."""
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the module's Ray
    config = tmp_path / "ray.yaml"
    config.write_text(SMOKE.read_text() + "executor: ray\nray_address: 127.0.0.1:99999\n")
    result = cli("run", "--config", config, "--out", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"losscmp: error: config file {config}: 'executor' ray: '127.0.0.1:99999' is not a "
        "Ray address (port out of range 0-65535)"
    )


def test_a_refused_address_from_ray_address_says_where_it_came_from(cli, tmp_path, monkeypatch):
    """No --ray-address typed: the address named in the refusal is $RAY_ADDRESS's, set
    perhaps long ago; the line says so and how to start a local Ray instead."""
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the module's Ray
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:99999")
    args = ["--config", SMOKE, "--epochs", "1", "--out", tmp_path / "runs", "--dry-run"]
    result = cli("run", *args, "--executor", "ray")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "losscmp: error: --executor ray: '127.0.0.1:99999' is not a Ray address (port out of "
        "range 0-65535); the address is $RAY_ADDRESS's: unset it for a local Ray, or give "
        "--ray-address"
    )
    assert not (tmp_path / "runs").exists()


TOKEN_CLUSTER = """
import sys, ray
context = ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()  # until the test module is done with it
ray.shutdown()
"""
TOKEN_SOURCES = "(RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token)"


@pytest.fixture(scope="module")
def token_cluster(tmp_path_factory):
    """A local Ray that wants a token (RAY_AUTH_MODE=token, as a secured cluster's head
    started), in a process of its own: (its GCS address, its token)."""
    pytest.importorskip("ray._private.authentication")  # a Ray with token authentication
    import secrets

    token = secrets.token_hex(32)
    home = tmp_path_factory.mktemp("home")  # no ~/.ray written or read
    env = _without_ray_settings(HOME=str(home), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    process = subprocess.Popen(
        [sys.executable, "-c", TOKEN_CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        address = process.stdout.readline().strip()
        assert address, "the token cluster did not start"
        yield address, token
    finally:
        process.stdin.close()  # it stops its Ray and exits
        process.wait(timeout=60)


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        ({}, "it wants an authentication token; set RAY_AUTH_MODE=token and give the cluster's"),
        (
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
            "it refused this machine's authentication token; give the cluster's",
        ),
        (
            {"RAY_AUTH_MODE": "token"},  # and none in HOME
            "RAY_AUTH_MODE is token but no token is set; give the cluster's",
        ),
    ],
    ids=["no-token-mode", "wrong-token", "mode-without-token"],
)
def test_a_cluster_wanting_a_token_this_machine_lacks_is_refused_in_one_line(
    token_cluster, tmp_path, auth, says
):
    """ray.init asked again every second for 20 s, with 20 lines of Ray's warnings above
    losscmp's; the address is probed with this machine's token first (the last case made
    Ray's client end the process)."""
    address, _ = token_cluster
    out = tmp_path / "runs"
    process = _losscmp_joining(address, out, _without_ray_settings(HOME=str(tmp_path), **auth))
    assert process.returncode == 2, process.stderr
    assert process.stderr.splitlines() == [
        f"losscmp: error: --executor ray: could not join the Ray cluster at {address}: "
        f"{says} {TOKEN_SOURCES}"
    ]
    assert not out.exists()


def test_the_clusters_token_joins_it(token_cluster, tmp_path):
    address, token = token_cluster
    env = _without_ray_settings(HOME=str(tmp_path), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    process = _losscmp_joining(address, tmp_path / "runs", env, "--dry-run")
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    assert "executing: Ray tasks, as many as the cluster fits at once" in process.stdout


def _losscmp_joining(address: str, out: Path, env: dict, *more: str):
    """``losscmp run`` of the smoke config on the Ray cluster at ``address``."""
    command = [sys.executable, "-m", "losscmp", "run", "--config", str(SMOKE), "--epochs", "1"]
    return subprocess.run(
        [*command, "--executor", "ray", "--ray-address", address, "--out", str(out), *more],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def _without_ray_settings(**settings: str) -> dict[str, str]:
    """This process's environment without the Ray cluster or token it names (a module's
    local Ray sets RAY_AUTH_MODE here), plus ``settings``."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name != "RAY_ADDRESS" and not name.startswith("RAY_AUTH_")
    }
    return kept | settings


def test_a_dry_run_with_no_cluster_to_join_starts_no_ray(cli, tmp_path, monkeypatch):
    """The Ray a run would start is this machine: the dry run checks its tasks against this
    machine's resources as Ray counts them, prints the plan a started Ray gives, and starts
    none (seconds, a session under /tmp/ray)."""
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the module's Ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def init(**options):
        raise AssertionError("a dry run started Ray")

    monkeypatch.setattr(ray, "init", init)
    args = ["--config", SMOKE, "--out", tmp_path / "runs", "--dry-run", "--executor", "ray"]
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "executing: Ray tasks, as many as the cluster fits at once, 1 thread each"
    )
    cpus = ray._private.utils.get_num_cpus()  # what a local Ray would have
    refused = cli("run", *args, "--threads", "1024")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "losscmp: error: --threads 1024: no node of the Ray cluster has 1024 CPUs "
        f"(the largest has {cpus:g}); lower --threads"
    )
    assert not (tmp_path / "runs").exists()
