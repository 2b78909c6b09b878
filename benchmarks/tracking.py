"""What ``--tracking mlflow`` costs a run of many trials, and what a lost server does to it.

    python benchmarks/tracking.py                           # 390 trials into a SQLite store
    python benchmarks/tracking.py --server                  # into a local `mlflow server`
    python benchmarks/tracking.py --server --against ../old # two checkouts, sides alternated
    python benchmarks/tracking.py --server --lose-server-at 5 --trials 10

No model is trained: trial records shaped like the synthetic set's (those of
``bookkeeping.py``: ``--epochs`` epoch rows of 30 numbers, two rows per test image) go
through the tracker as a run hands them over, in the main process. Printed per side:
the tracker's start, the median and total time of logging one trial, the MLflow client
calls and (with ``--server``) the HTTP requests per trial, and a resume that logs the
half of the trials its parent lacks. Each side is a fresh process importing losscmp from
its checkout (``--against``: the other one); with ``--repeats`` the sides alternate and
medians are printed. A server (``--server``) is started once, each side logging to an
experiment of its own.

``--lose-server-at K`` stops the server after K trials instead, with MLflow's own
retries (about four minutes unless $MLFLOW_HTTP_REQUEST_MAX_RETRIES says otherwise), and
prints how long the next trial waited and the warning the run printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Public MlflowClient calls counted per trial (log_text calls log_artifact: both counted).
CLIENT_CALLS = (
    "create_run", "log_batch", "log_text", "log_artifact", "set_terminated", "update_run",
    "get_run", "search_runs", "delete_run", "set_tag", "log_param", "log_metric",
)  # fmt: skip


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """A local `mlflow server` (SQLite behind it, artifacts proxied), once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2).close()
            return server, uri
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the mlflow server did not start") from None
            time.sleep(0.5)


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


class Counted:
    """MlflowClient calls and HTTP requests made while it is installed, by name."""

    def __init__(self) -> None:
        import requests
        from mlflow.tracking import MlflowClient

        self.calls: collections.Counter = collections.Counter()
        self.requests = 0
        for name in CLIENT_CALLS:
            method = getattr(MlflowClient, name)
            setattr(MlflowClient, name, self._wrapped(name, method))
        send = requests.Session.send

        def counted_send(session, request, **kwargs):
            self.requests += 1
            return send(session, request, **kwargs)

        requests.Session.send = counted_send

    def _wrapped(self, name, method):
        def call(*args, **kwargs):
            self.calls[name] += 1
            return method(*args, **kwargs)

        return call

    def reset(self) -> tuple[dict, int]:
        counts = (dict(self.calls), self.requests)
        self.calls.clear()
        self.requests = 0
        return counts


def one_side(args: argparse.Namespace) -> dict:
    """Measure the checkout ``args.code`` in this process; the figures as a dict."""
    sys.path.insert(0, str(HERE))
    from bookkeeping import trial_record  # puts this checkout first on the path

    sys.path.insert(0, str(Path(args.code).resolve()))  # before it: the side's checkout
    import losscmp
    from losscmp.tracking import GuardedTracker
    from losscmp.tracking.base import TrackedRun
    from losscmp.tracking.mlflow import MlflowTracker

    counted = Counted()
    records = [trial_record(index, args.epochs, args.images) for index in range(args.trials)]
    meta = {
        "run_id": "bench",
        "config": {"losses": sorted({r["loss"] for r in records}), "epochs": args.epochs,
                   "lr_grid": [1e-3, 3e-3, 1e-2], "seeds": 5, "model": "tiny"},
        "datasets": {records[0]["dataset"]: {"mode": "binary"}},
    }  # fmt: skip
    warnings: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out / 'mlruns' / 'mlflow.db'}"
        run_dir = out / "run"
        run_dir.mkdir(parents=True)
        tracker = GuardedTracker(MlflowTracker())
        started = time.perf_counter()
        stored = tracker.start(TrackedRun(run_dir, meta, [], {}), warn=warnings.append)
        figures = {"code": str(losscmp.__file__), "start_s": time.perf_counter() - started}
        counted.reset()
        half = len(records) // 2
        logged = records if args.lose_server_at is None else records[: args.lose_server_at]
        seconds, cpu = [], time.process_time()
        for record in logged:
            started = time.perf_counter()
            tracker.trial(record)
            seconds.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
        calls, requests = counted.reset()
        ends = (seconds[:50], seconds[-50:])
        figures.update(
            trial_ms=1000 * statistics.median(seconds),
            cpu_ms=1000 * cpu / len(logged),
            trials_s=sum(seconds),
            first_last_ms=[1000 * statistics.median(part) for part in ends],
            calls={name: count / len(logged) for name, count in sorted(calls.items())},
            requests=requests / len(logged),
        )
        if args.lose_server_at is not None:
            os.killpg(args.server_pid, signal.SIGTERM)
            time.sleep(2)  # the server's workers go with it
            started = time.perf_counter()
            tracker.trial(records[len(logged)])
            figures["lost_wait_s"] = time.perf_counter() - started
            figures["warnings"] = warnings
            return figures
        tracker.end("finished")
        # A resume of the run whose parent lacks the second half of its trials (as after a
        # lost server): the parent is reopened and they are logged before training goes on.
        tracker = GuardedTracker(MlflowTracker())
        tracker.tracker.start(TrackedRun(run_dir, meta, records[:half], stored))
        tracker.end("killed")
        counted.reset()
        resumed = GuardedTracker(MlflowTracker())
        started = time.perf_counter()
        resumed.start(TrackedRun(run_dir, meta, records, stored), warn=warnings.append)
        figures["resume_s"] = time.perf_counter() - started
        figures["resume_trials"] = len(records) - half
        resumed.end("finished")
        figures["warnings"] = warnings
    return figures


def run_side(code: Path, args: argparse.Namespace, env: dict) -> dict:
    command = [sys.executable, __file__, "--one", "--code", str(code)]
    command += ["--trials", str(args.trials), "--epochs", str(args.epochs)]
    command += ["--images", str(args.images)]
    if args.lose_server_at is not None:
        command += ["--lose-server-at", str(args.lose_server_at)]
        command += ["--server-pid", str(env["BENCH_SERVER_PID"])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{code}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=390)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=64, help="test images per trial")
    parser.add_argument("--server", action="store_true", help="a local `mlflow server`")
    parser.add_argument("--against", type=Path, help="another checkout, measured in turn")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--lose-server-at", type=int, help="stop the server after K trials")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", default=str(REPO), help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_side(args)))
        return
    sides = [REPO] + ([args.against.resolve()] if args.against else [])
    results: dict[Path, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for side in sides if repeat % 2 == 0 else sides[::-1]:
                env = {**os.environ, "MLFLOW_EXPERIMENT_NAME": f"bench-{repeat}-{side.name}"}
                server = None
                if args.server or args.lose_server_at is not None:
                    server, uri = start_server(Path(folder) / f"server-{repeat}-{side.name}")
                    env.update(MLFLOW_TRACKING_URI=uri, BENCH_SERVER_PID=str(server.pid))
                try:
                    results[side].append(run_side(side, args, env))
                finally:
                    if server is not None:
                        stop_server(server)
    store = "a local mlflow server" if args.server else "a SQLite store"
    print(f"{args.trials} trials ({args.epochs} epochs, {args.images} test images) into {store}")
    for side, runs in results.items():
        print(f"{side} (losscmp from {Path(runs[0]['code']).parent}):")
        report(runs)


def report(runs: list[dict]) -> None:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    last = runs[-1]
    if "lost_wait_s" in last:
        print(f"  the trial after the server stopped waited {median('lost_wait_s'):.1f} s")
        for line in last["warnings"]:
            print(f"  warning: {line}")
        return
    values = ", ".join(f"{run['trial_ms']:.0f}" for run in runs)
    print(f"  start {median('start_s'):.2f} s; a trial {median('trial_ms'):.0f} ms ({values}), "
          f"{median('trials_s'):.1f} s in all; first and last 50: "
          f"{last['first_last_ms'][0]:.0f} / {last['first_last_ms'][1]:.0f} ms")  # fmt: skip
    print(f"  this process's CPU per trial {median('cpu_ms'):.0f} ms")
    calls = ", ".join(f"{name} {count:g}" for name, count in last["calls"].items())
    print(f"  per trial: {calls}; {last['requests']:g} HTTP requests")
    print(f"  resume logging {last['resume_trials']} trials: {median('resume_s'):.1f} s")
    for line in last["warnings"]:
        print(f"  warning: {line}")


if __name__ == "__main__":
    main()
