"""A Ray cluster (``--executor ray``): each job is a Ray task.

``--ray-address`` (else ``$RAY_ADDRESS``) names a cluster to join; with
neither, a local Ray is started for the run and stopped after it (a dry run
starts none: that Ray would be this machine, whose resources it reads). A task
needs ``--threads`` CPUs and, on CUDA, ``1/--trials-per-gpu`` of a GPU; Ray
places it on any node with room. At most ``--jobs`` tasks are in flight; with
none given (0), twice as many as the cluster's nodes fit, counted again every
``ROOM_CHECK_S`` (so that a node that joins gets work): a slot that frees finds its
next task already queued in Ray, and the driver, which looks at every task in flight
for each item that comes, does not look at all of a large run's tasks (345 streams
made each look 0.36 ms instead of 0.01 ms). Tasks run ``losscmp.worker.run_job`` like
every executor; they read the datasets the driver loaded from Ray's object
store (``share``: put once, sent once to each node), so no node needs the
data on its disk, and they never touch the run folder: a task streams its
progress events and then its outcomes back to this process (a Ray generator
task), which hands them on.

A task whose worker dies or that raises is submitted once more, then its
trials are recorded as failed and the run goes on (a GPU task's worker process exits after
its task: one that left the GPU in an error state runs nothing more); so is a task silent for
``stall_limit_s`` since its last item (hung), once force-cancelled. Only from its first
item, which it sends as it starts (before it loads the data or initialises CUDA, either of
which can hang on a bad node): until then a task may be waiting for room on the cluster.
On Ctrl-C, ``close``
cancels the tasks still running and stops the Ray this run started (never a
cluster it joined); it stops in a background thread while the report is
written, and the process waits for it before exiting.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import logging
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from losscmp.config import Origin, Origins, RunConfig
from losscmp.errors import LosscmpError, install_hint, raise_if_stopped
from losscmp.events import TrialRetried
from losscmp.executors.base import (
    ATTEMPTS,
    Execution,
    Executor,
    Job,
    JobContext,
    TrialResult,
    failed,
    failure_reason,
    stall_limit_s,
    stall_reason,
    succeeded,
)

WAIT_S = 0.5  # ray.wait timeout: how often the driver looks up (and sees Ctrl-C) when idle
PROBE_TIMEOUT_S = 5.0  # a cluster address must accept a TCP connection within this
RAY_GCS_PORT, RAY_CLIENT_PORT = 6379, 10001  # Ray's defaults: head node, ray:// client
RAY_DASHBOARD_PORT = 8265  # Ray's dashboard and job server: HTTP, an address users mistake
ACCELERATOR_PREFIX = "accelerator_type:"  # a node resource Ray adds per GPU model, e.g. H100
GRPC_UNIMPLEMENTED = 12  # gRPC status of a server without the service asked for
ROOM_CHECK_S = 10.0  # with no --jobs: how often the driver counts the tasks the cluster fits
PRELOAD_MODULE = "losscmp.executors.ray_preload"  # a local Ray's workers import it first


class RayExecutor(Executor):
    run_options = frozenset({"ray_address"})

    @staticmethod
    def describe_workers(jobs: int) -> str:
        at_once = f"at most {jobs}" if jobs else "as many as the cluster fits"
        return f"Ray tasks, {at_once} at once"

    @classmethod
    def resolve_execution(
        cls, config: RunConfig, device, fused: bool, jobs_to_run: int | None
    ) -> Execution:
        """By default as many tasks at once as the cluster fits (jobs 0), each reserving
        one CPU (its threads) on whichever node runs it; the cluster joined through
        $RAY_ADDRESS too is recorded, so that run.json says where the run ran."""
        jobs = 0 if config.jobs is None else config.jobs
        address = config.ray_address or os.environ.get("RAY_ADDRESS")
        return Execution(config.executor, jobs, config.threads or 1, fused, address)

    def __init__(self, config: RunConfig) -> None:
        origins = config.origins or Origins()  # messages name options as they were given
        try:
            import ray  # joined or started in resolve_device or start
        except ImportError:
            named = origins.given("executor", config.executor)
            raise LosscmpError(f"{named} needs Ray: {install_hint('ray')}") from None
        super().__init__(config)
        self.running: dict = {}  # ObjectRefGenerator -> (job, attempt)
        self.connected = False  # this executor called ray.init (and so calls ray.shutdown)
        wait_for_shutdown()  # a previous run's Ray still stopping is not one to join
        # A new Ray on this machine, not a cluster to join (nor the caller's Ray: a notebook's)
        self.own_ray = not ray.is_initialized() and _address(config.ray_address) == "local"
        self.preload = False  # a local Ray's workers import the training code as they start
        self.shared: dict[str, RayDataset] = {}  # label -> the dataset in Ray's object store
        self.origins = origins

    def run(self, jobs: list[Job], context: JobContext, emit) -> Iterator[TrialResult]:
        import ray

        self._connect()
        task = _remote_task(context)
        # Checked in start too; again here: a resumed run keeps the threads it started with.
        _check_fits(context.threads, context.settings.device.type == "cuda", self.origins)
        context_ref = ray.put(context)  # sent to each node once, not with every task
        at_once = InFlight(self.execution.jobs, context)
        pending = deque((job, 1) for job in jobs)
        heard: dict = {}  # a started task's stream -> when its last item came
        while pending or self.running:
            while pending and len(self.running) < at_once():
                job, attempt = pending.popleft()
                stream = task.options(name=f"losscmp {job.name}").remote(
                    job, context_ref, self.shared
                )
                self.running[stream] = (job, attempt)
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=WAIT_S)
            raise_if_stopped()  # a Ctrl-C that Python dropped (errors.stop_on_signal)
            for stream in ready:
                job, attempt = self.running[stream]
                kind, payload = _next_item(stream)
                heard[stream] = time.monotonic()
                if kind == "started":
                    continue
                if kind == "event":
                    emit(payload)
                    continue
                del self.running[stream], heard[stream]
                if kind == "done":
                    yield from succeeded(job, payload)
                else:
                    yield from _retried_or_failed(job, attempt, payload, pending, emit)
            yield from self._cancel_stalled(heard, pending, emit)

    def _cancel_stalled(self, heard: dict, pending: deque, emit) -> Iterator[TrialResult]:
        """Force-cancel the tasks silent for their stall limit since their last item
        (``heard``: stream -> when), then retry or fail them as tasks that died."""
        import ray

        for stream, last in list(heard.items()):
            limit_s = stall_limit_s(self.running[stream][0])
            silent = time.monotonic() - last >= limit_s
            if silent and not ray.wait([stream], timeout=0)[0]:  # nothing came, not unread
                ray.cancel(stream, force=True)  # kills its worker, stopped or not
                job, attempt = self.running.pop(stream)
                del heard[stream]
                yield from _retried_or_failed(job, attempt, stall_reason(limit_s), pending, emit)

    def start_early(self, jobs_at_most: int) -> bool:
        """A Ray this run starts, at once (a dry run, which starts none, never calls this):
        its worker processes come up while this process imports torch and loads the data.
        Started after torch's import instead (in ``start``), a run took about 3 s longer.
        Where every worker it starts will train (``_every_worker_trains``), each imports
        what a task needs as it starts (``PRELOAD_MODULE``), not in its first task.
        Nothing here makes the data load any earlier: False."""
        if self.own_ray:
            self.preload = _every_worker_trains(self.config, jobs_at_most)
            self._connect()
        return False

    def resolve_device(self, name: str):
        """Where tasks run. A Ray this run starts is this machine: its devices, as torch
        sees them, decide (that Ray is started in ``start_early``; a dry run starts none).
        In a cluster, joined here, the cluster's do, not the driver's: ``auto`` is CUDA
        where a node has a GPU (the driver may have none), else the CPU."""
        import torch

        if self.own_ray:
            return super().resolve_device(name)
        self._connect()
        gpus = _cluster_gpus()
        if name == "cuda" and not gpus:
            given, option = self.origins.given("device", name), self.origins.option("device")
            raise LosscmpError(f"{given}: the Ray cluster has no GPU; use {option} cpu")
        if name == "cuda" or (name == "auto" and gpus):
            return torch.device("cuda")
        if name == "auto":
            return torch.device("cpu")
        return super().resolve_device(name)  # cpu; mps as this machine has it (Ray has no MPS)

    def describe_device(self, device) -> str:
        """e.g. "cuda: Ray cluster, 4 GPUs (H100)": the driver may have no GPU to name. On
        a joined cluster's CPUs "cpu: Ray cluster": the nodes train, and Ray does not say
        which processors they have (the driver's would be recorded as theirs)."""
        if self.own_ray or device.type not in ("cpu", "cuda"):
            return super().describe_device(device)
        if device.type == "cpu":
            return "cpu: Ray cluster"
        kinds = sorted(
            {
                key.removeprefix(ACCELERATOR_PREFIX)
                for resources in _alive_nodes()
                for key in resources
                if key.startswith(ACCELERATOR_PREFIX)
            }
        )
        count = _cluster_gpus()
        text = f"cuda: Ray cluster, {count:g} GPU{'s' if count != 1 else ''}"
        return text + (f" ({', '.join(kinds)})" if kinds else "")

    def start(self, execution: Execution, device, checks_only: bool = False) -> None:
        """Refuse tasks no node can run: before any folder exists (a dry run too). A dry
        run with no cluster to join starts no Ray (seconds, a session under /tmp/ray, for
        little a real run would not find as it starts): its node would be this machine,
        checked with the resources Ray would give it."""
        super().start(execution, device, checks_only)
        nodes = _this_machine() if checks_only and self.own_ray else None
        if nodes is None:
            self._connect()
        _check_fits(execution.threads, device.type == "cuda", self.origins, nodes)

    def share(self, datasets: dict[str, Any]) -> dict[str, Any]:
        """Each dataset goes into Ray's object store once: tasks read it from there (without
        a copy on the driver's node, sent once to each other node) instead of loading it.
        This process keeps the stored copy too."""
        import ray

        kept = {}
        for label, data in datasets.items():
            ref = ray.put(dataclasses.replace(data, map_cache={}))
            self.shared[label] = RayDataset(ref)
            kept[label] = ray.get(ref)
        return kept

    def _connect(self) -> None:
        import ray

        if self.connected:
            return
        wait_for_shutdown()  # a previous run's Ray is still stopping: not one to join
        _cluster_messages_to_stderr()
        if ray.is_initialized():  # the caller's Ray (a notebook, a test): use it, leave it up
            return
        address = _address(self.config.ray_address)
        try:
            _join(address, preload=self.preload and address == "local")
        except LosscmpError as error:
            # Named here, where it is known whether a flag, a config file or a resumed run
            # chose Ray: the checks below say only what went wrong.
            named = f"{self.origins.given('executor', self.config.executor)}: {error}"
            if self.config.ray_address or address == "local":
                raise LosscmpError(named) from None
            # Not typed: $RAY_ADDRESS, which the user may have set long ago for another tool.
            raise LosscmpError(
                f"{named}; the address is $RAY_ADDRESS's: unset it for a local Ray, "
                "or give --ray-address"
            ) from None
        self.connected = True

    def close(self) -> None:
        if not (self.running or self.connected):
            return
        import ray

        for stream in self.running:  # left over only after Ctrl-C or an error
            with contextlib.suppress(Exception):  # already finished, or its node is gone
                ray.cancel(stream, force=True)
        self.running, self.shared = {}, {}
        if self.connected:
            # Ray ends the process when this process calls into it while it stops (an
            # object reference freed, say), so Ray's objects left in garbage cycles are
            # freed now, while it runs. (A run ended so, rc 1, once in some 60 tries.)
            gc.collect()
            _shut_down_in_background()
            self.connected = False


_shutdown: threading.Thread | None = None


def _shut_down_in_background() -> None:
    """Stop the local Ray that init started (from a cluster: only disconnect) while the
    caller goes on writing the report. Stopping is ~1.3 s of waiting for Ray's processes
    to exit, hardly any CPU; ``wait_for_shutdown`` (also at exit) waits for it."""
    import ray

    global _shutdown
    _shutdown = threading.Thread(target=ray.shutdown, name="losscmp-ray-shutdown")
    _shutdown.start()
    # Registered after Ray's own exit handler, so it runs first: Ray's then finds Ray stopped.
    atexit.register(_wait_at_exit)


def wait_for_shutdown() -> None:
    """Return once a Ray this process started and stopped has exited (at once if none)."""
    global _shutdown
    if _shutdown is not None:
        _shutdown.join()
        _shutdown = None
        atexit.unregister(_wait_at_exit)


def _wait_at_exit() -> None:
    """``wait_for_shutdown`` as the process exits: a second Ctrl-C while it waits (a stopped
    run's last line, how to resume it, already printed) ends the wait instead of printing a
    traceback below that line; Ray's processes end with this one. Ctrl-C is then ignored:
    the command is over, and one pressed as Ray's own exit handlers and the finalizers after
    this one run printed "Exception ignored in atexit callback" and a traceback below the
    report (those take a second or more after Ray)."""
    with contextlib.suppress(KeyboardInterrupt):
        wait_for_shutdown()
    with contextlib.suppress(ValueError):  # not the main thread: its signals are not ours
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _join(address: str, preload: bool = False) -> None:
    """ray.init: join the cluster at ``address``, or start a local Ray ("local"), whose
    workers import ``PRELOAD_MODULE`` as they start where ``preload`` (Ray takes no such
    setting from a driver that joins a cluster: a cluster's nodes are left as they are)."""
    import ray

    _check_answers(address)
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)  # start-up notices would break the progress display
    try:
        _check_token(address)
        ray.init(
            address=address,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,  # task output stays in the cluster's logs
            configure_logging=False,  # this process's logging is not Ray's to set up
            **({"_system_config": {"preload_python_modules": [PRELOAD_MODULE]}} if preload else {}),
        )
    except (ConnectionError, ValueError, ray.exceptions.RayError) as error:
        raise LosscmpError(_connect_failure(error, address)) from None
    finally:
        ray_logger.setLevel(level)


def _cluster_messages_to_stderr() -> None:
    """Ray's driver prints the cluster's error messages (a killed worker: a dozen lines
    with colour codes) on stdout, which holds only the table: a user who redirects it
    got them in the file. They go to stderr, beside the run's own 'retry:' line, for the
    rest of the process (a caller's Ray too). Ray looks the printer up in its module on
    each message; a Ray without it (a private module) is left as is."""
    try:
        from ray._private import worker
    except ImportError:
        return
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "to_stderr", False):
        return

    def print_to_stderr(data, *args, **kwargs):
        return printer({**data, "is_err": True}, *args, **kwargs)

    print_to_stderr.to_stderr = True
    worker.print_to_stdstream = print_to_stderr


def _address(option: str | None) -> str:
    """--ray-address, else $RAY_ADDRESS, else "local": a new Ray for this run. (Ray's own
    default would join the cluster last started on this machine, even a stopped one, and
    wait for it; "auto" asks for that cluster.)"""
    return option or os.environ.get("RAY_ADDRESS") or "local"


def _check_answers(address: str) -> None:
    """Refuse at once a cluster address where nothing listens: Ray itself retries for
    minutes (``ray.init`` was still waiting after 5 minutes for a closed port); and one
    where something that is not Ray answers (the dashboard's port): ray.init waits on
    that for ever (more than 10 minutes, through SIGTERM)."""
    _refuse_http(address)
    try:
        endpoint = _endpoint(address)
    except ValueError as error:  # Ray would wait for minutes on it, deaf to Ctrl-C
        why = str(error)[:1].lower() + str(error)[1:]  # "port out of range 0-65535"
        raise LosscmpError(f"{address!r} is not a Ray address ({why})") from None
    if endpoint is None:
        return
    host, port = endpoint
    try:
        connection = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise LosscmpError(
            f"could not join the Ray cluster at {address}: "
            f"nothing answers at {host}:{port} ({reason})"
        ) from None
    with connection:
        other = None if _tls() else _not_grpc(connection)
    if other:
        raise LosscmpError(
            f"could not join the Ray cluster at {address}: what answers at "
            f"{host}:{port} is not Ray ({other}); give the head node's address, "
            f"HOST:{RAY_GCS_PORT} (not the dashboard's {RAY_DASHBOARD_PORT}), or "
            f"ray://HOST:{RAY_CLIENT_PORT}"
        )


def _refuse_http(address: str) -> None:
    """An http:// address is a dashboard's or job server's, never what ray.init joins (Ray's
    own refusal speaks of RAY_ADDRESS and ends its first line at 'either:')."""
    if address.lower().startswith(("http://", "https://")):
        raise LosscmpError(
            f"{address!r} is an HTTP address (Ray's dashboard or job server); "
            f"give the cluster's address, HOST:{RAY_GCS_PORT} or ray://HOST:{RAY_CLIENT_PORT}"
        )


# HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, its ray://
# client server) answers with a SETTINGS frame of its own (type 4 in a frame header's 4th byte).
HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def _tls() -> bool:
    """Whether Ray speaks TLS here (RAY_USE_TLS): its gRPC is then not probed in the clear."""
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")


def _not_grpc(connection: socket.socket) -> str | None:
    """What answers on ``connection`` when it is not a gRPC server, as a few words; None for
    one. ray.init joins anything else (the dashboard's port, an SSH server) for ever, deaf
    to Ctrl-C and SIGTERM."""
    reply = b""
    try:
        connection.sendall(HTTP2_HELLO)
        while len(reply) < 9 and (more := connection.recv(9 - len(reply))):
            reply += more
    except TimeoutError:
        if not reply:
            return f"it said nothing for {PROBE_TIMEOUT_S:g} s"
    except OSError as error:
        return f"it closed the connection: {error.strerror or type(error).__name__}"
    if len(reply) == 9 and reply[3] == HTTP2_SETTINGS:
        return None
    if reply.startswith(b"HTTP/"):
        return "an HTTP server"
    if reply.startswith(b"SSH-"):
        return "an SSH server"
    return "it closed the connection" if not reply else "it does not speak gRPC"


# Where the driver's Ray reads a cluster's token from, in Ray's order.
TOKEN_SOURCES = "RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token"


def _check_token(address: str) -> None:
    """Refuse at once a cluster that wants an authentication token (started with
    RAY_AUTH_MODE=token) which this machine does not send, or not the cluster's: ray.init
    asks again every second for 20 s, with a warning of Ray's each time. The probe asks the
    GCS for the cluster's id, as ray.init does first, with the token ray.init would send."""
    endpoint = _endpoint(address)
    if endpoint is None or address.startswith("ray://") or _tls():
        return  # a new local Ray; Ray's client server; TLS: probed for a connection only
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        from ray._raylet import (
            AuthenticationMode,
            AuthenticationTokenLoader,
            InnerGcsClient,
            get_authentication_mode,
        )
        from ray.exceptions import AuthenticationError, RpcError
    except ImportError:  # a Ray without token authentication
        return
    if address == "auto":  # ray.init sends the token in ~/.ray itself to this machine's cluster
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    where = f"join the Ray cluster at {address}"
    sent = get_authentication_mode() == AuthenticationMode.TOKEN
    if sent and not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        # Ray's client would end the process (a failed check in C++), not raise.
        raise LosscmpError(
            f"could not {where}: RAY_AUTH_MODE is token but no token is set; "
            f"give the cluster's ({TOKEN_SOURCES})"
        )
    host, port = endpoint
    gcs = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with _native_stderr_silenced():  # Ray's one warning of the refusal, above our line
            InnerGcsClient.standalone(gcs, None, int(PROBE_TIMEOUT_S * 1000))
    except AuthenticationError:
        raise LosscmpError(_token_refusal(where, sent)) from None
    except RpcError as error:
        if error.rpc_code != GRPC_UNIMPLEMENTED:
            return  # a GCS slow to answer, say: ray.init says it in its own words
        # Another gRPC server (or an HTTP/2 proxy): ray.init would ask it again every
        # second for 20 s, each time with a warning of Ray's, then give up.
        raise LosscmpError(
            f"could not {where}: what answers at {gcs} speaks gRPC but is not a Ray "
            f"cluster's head; give the head node's address, HOST:{RAY_GCS_PORT}, or "
            f"ray://HOST:{RAY_CLIENT_PORT} for Ray Client"
        ) from None
    except Exception:
        return  # anything else: ray.init says it in its own words


def _token_refusal(where: str, sent: bool) -> str:
    if sent:
        return (
            f"could not {where}: it refused this machine's authentication "
            f"token; give the cluster's ({TOKEN_SOURCES})"
        )
    return (
        f"could not {where}: it wants an authentication token; "
        f"set RAY_AUTH_MODE=token and give the cluster's ({TOKEN_SOURCES})"
    )


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Ray's C++ code logs to file descriptor 2 directly, past sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that ``ray.init(address)`` connects to; None for a new local Ray, and
    where Ray finds no cluster itself ("auto" with none: it says so at once) or cannot
    parse the address (its own error is clearer). ValueError for a port that is none."""
    if address == "local":
        return None
    client = address.startswith("ray://")
    if not client:
        from ray._private.services import canonicalize_bootstrap_address

        try:  # "auto" -> the cluster last started here; localhost -> this node's address
            address = canonicalize_bootstrap_address(address) or ""
        except Exception:  # Ray's own message comes from ray.init
            return None
    try:
        parts = urllib.parse.urlsplit("//" + address.removeprefix("ray://"))
    except ValueError:
        return None
    port = parts.port or (RAY_CLIENT_PORT if client else RAY_GCS_PORT)  # may raise
    return (parts.hostname, port) if parts.hostname else None


def _connect_failure(error: BaseException, address: str) -> str:
    where = "start a local Ray" if address == "local" else f"join the Ray cluster at {address}"
    causes = [error]
    while (cause := causes[-1].__cause__ or causes[-1].__context__) and len(causes) < 10:
        causes.append(cause)
    if any("AuthToken" in str(cause) or "AuthenticationError" in str(cause) for cause in causes):
        return _token_refusal(where, sent=False)
    text = str(error).strip().splitlines() or [type(error).__name__]
    # Ray's advice names the flag of its own CLI ("--address"); losscmp's is --ray-address.
    advice = re.sub(r"(the )?`--address` flag", "--ray-address", text[0][:300])
    return f"could not {where}: {advice}"


class InFlight:
    """How many tasks a run keeps in flight: ``--jobs``, else (0) twice as many as the
    cluster's live nodes fit now, counted again at most every ``ROOM_CHECK_S``."""

    def __init__(self, jobs: int, context: JobContext, clock=time.monotonic) -> None:
        self.jobs, self.clock = jobs, clock
        self.task_cpus = context.threads
        self.task_gpus = _task_gpus(context)
        self.size, self.counted_at = 1, None

    def __call__(self) -> int:
        if self.jobs > 0:
            return self.jobs
        now = self.clock()
        if self.counted_at is None or now - self.counted_at >= ROOM_CHECK_S:
            room = tasks_that_fit(_alive_nodes(), self.task_cpus, self.task_gpus)
            self.size, self.counted_at = max(1, 2 * room), now
        return self.size


def tasks_that_fit(nodes: list[dict[str, float]], cpus: float, gpus: float = 0) -> int:
    """How many tasks of ``cpus`` CPUs (and ``gpus`` of a GPU) the ``nodes`` hold at once,
    by their total resources."""

    def fits(have: float, need: float) -> int:
        # 1e-9: a third of a GPU three times is a whole one (Ray counts in 1/10000ths)
        return int(have / need + 1e-9) if need > 0 else 1 << 30

    return sum(
        min(fits(node.get("CPU", 0), cpus), fits(node.get("GPU", 0), gpus)) for node in nodes
    )


def _task_gpus(context: JobContext) -> float:
    """The share of a GPU each task asks for: 0 on the CPU."""
    if context.settings.device.type != "cuda":
        return 0.0
    return 1 / max(1, context.config.trials_per_gpu)


def _remote_task(context: JobContext):
    import ray

    options = {"num_cpus": context.threads, "max_retries": 0}  # retried here, with an event
    gpus = _task_gpus(context)
    if gpus:
        # A share of one GPU, in a worker process that runs this one task and exits (Ray's
        # default for GPU tasks, said here so that no change of it reuses them): a task that
        # left the GPU in an error state (CUDA's sticky errors, a device-side assert or an
        # illegal memory access: every later CUDA call of the process fails) takes its
        # process with it, so its retry and the tasks after it get a working CUDA context,
        # as a local worker that errs is replaced. CUDA_VISIBLE_DEVICES, which CUDA reads
        # once a process, is then always the task's own GPU too.
        options |= {"num_gpus": gpus, "max_calls": 1}
    return ray.remote(**options)(_job_task)


def _alive_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the cluster Ray is connected to."""
    import ray

    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def _cluster_gpus() -> float:
    return sum(resources.get("GPU", 0) for resources in _alive_nodes())


def _every_worker_trains(config: RunConfig, jobs_at_most: int) -> bool:
    """Whether a local Ray started for this run trains in every worker it starts (one per
    CPU, before any task): then each may import the training code as it starts. Not where
    fewer tasks run at once (``--jobs``, fewer jobs, more ``--threads``, a GPU's share):
    the idle workers would import torch and smp for nothing, beside the driver's own
    imports (a 64-core machine running 8 trials)."""
    machine = _this_machine()
    if machine is None:
        return False
    cpus, gpus = machine[0].get("CPU", 0), machine[0].get("GPU", 0)
    if gpus and config.device != "cpu":  # tasks may wait for a GPU's share, not a CPU
        return False
    at_once = min(jobs_at_most, config.jobs or jobs_at_most, cpus // (config.threads or 1))
    return cpus > 0 and at_once >= cpus


def _this_machine() -> list[dict[str, float]] | None:
    """The resources a Ray started here would have, as one node's, without starting it
    (Ray's own reckoning: cgroup CPU limits, CUDA_VISIBLE_DEVICES, RAY_OVERRIDE_RESOURCES);
    None where this Ray cannot tell (its private module changed)."""
    try:
        spec = _unresolved_spec().resolve(is_head=True, node_ip_address="127.0.0.1")
        return [{key: float(value) for key, value in spec.to_resource_dict().items()}]
    except Exception:  # then Ray is started, to be asked
        return None


def _unresolved_spec():
    """Ray's node resources before it fills in this machine's: ResourceAndLabelSpec from
    Ray 2.49, ResourceSpec (the same resolve and to_resource_dict) before."""
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec

        return ResourceAndLabelSpec()
    except ImportError:
        from ray._private.resource_spec import ResourceSpec

        return ResourceSpec()


def _check_fits(
    task_cpus: int, gpu: bool, origins: Origins, nodes: list[dict[str, float]] | None = None
) -> None:
    """Refuse a run whose tasks fit no node (Ray would wait for one forever): the
    cluster's live ``nodes``, by default those Ray is connected to."""
    nodes = _alive_nodes() if nodes is None else nodes
    most_cpus = max((resources.get("CPU", 0) for resources in nodes), default=0)
    if most_cpus < task_cpus:
        raise LosscmpError(
            f"{origins.given('threads', task_cpus)}: no node of the Ray cluster has "
            f"{task_cpus} CPUs (the largest has {most_cpus:g}); {_fewer_threads(origins)}"
        )
    if gpu and not any(resources.get("GPU", 0) for resources in nodes):
        raise LosscmpError(f"the Ray cluster has no GPU; use {origins.option('device')} cpu")


def _fewer_threads(origins: Origins) -> str:
    """The advice for threads no node has: a resumed run keeps its own (they decide its
    floating-point order), so only another cluster runs it."""
    if origins.origin("threads") is Origin.RESUMED_RUN:
        return "a resumed run keeps its threads: resume it on a cluster with such a node"
    return f"lower {origins.option('threads')}"


def _retried_or_failed(job: Job, attempt: int, reason: str, pending: deque, emit):
    """A failed task's trials: submitted once more (back at the queue's head), then failed."""
    if attempt >= ATTEMPTS:
        return failed(job, reason)
    for trial in job.trials:
        emit(TrialRetried(trial.id, reason))
    pending.appendleft((job, attempt + 1))
    return []


def _next_item(stream) -> tuple[str, object]:
    """The stream's next item: ("started", None), ("event", e)..., then ("done", outcomes)
    or ("failed", reason)."""
    import ray

    try:
        return ray.get(next(stream))
    except StopIteration:  # a stream always ends with "done" or an error; be safe anyway
        return "failed", "the Ray task ended without a result"
    except ray.exceptions.RayError as error:
        return "failed", _reason(error)


def _reason(error: Exception) -> str:
    import ray

    if isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, BaseException):
        return failure_reason(error.cause)  # worded as a local worker reports it
    if isinstance(error, ray.exceptions.RayTaskError):
        text = f"{type(error).__name__}: {error}"
    elif isinstance(error, ray.exceptions.OutOfMemoryError):
        text = "Ray killed the task's worker: its node ran low on memory"
    elif isinstance(error, ray.exceptions.WorkerCrashedError):
        text = "Ray worker process died (out of memory or killed?)"
    elif isinstance(error, ray.exceptions.NodeDiedError):
        text = "the Ray node running the task died"
    else:
        text = f"{type(error).__name__}: {error}"
    return (text.strip().splitlines() or [type(error).__name__])[0]


_END = object()


@dataclass(frozen=True)
class RayDataset:
    """A dataset in Ray's object store, as ``worker.adopt_shared`` takes it."""

    ref: Any  # ray.ObjectRef

    def load(self):
        import ray

        return ray.get(self.ref)  # its arrays: read-only views of the store, on this node


def _job_task(job: Job, context: JobContext, shared: dict[str, RayDataset]):
    """Runs in a Ray worker: yields ("started", None), ("event", e)... then ("done", outcomes).

    Training runs in a thread so that its progress callbacks can feed this
    generator, whose items Ray streams to the driver as they are yielded.
    """
    yield "started", None  # the driver watches for a stall from here on
    import ray
    import torch

    from losscmp.worker import adopt_shared, run_job

    adopt_shared(shared, context)
    device, where = None, f"ray {ray.util.get_node_ip_address()}"
    if context.settings.device.type == "cuda":
        # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU: it is cuda:0 in here.
        device = torch.device("cuda", 0)
        where += f" · GPU {','.join(map(str, ray.get_gpu_ids()))}"
    events: queue.SimpleQueue = queue.SimpleQueue()
    ended: dict = {}

    def train() -> None:
        try:
            ended["outcomes"] = run_job(job, context, events.put, device=device, where=where)
        except BaseException as error:  # re-raised below, in the task
            ended["error"] = error
        finally:
            events.put(_END)

    thread = threading.Thread(target=train, name="losscmp-train", daemon=True)
    thread.start()
    while (event := events.get()) is not _END:
        yield "event", event
    thread.join()
    if "error" in ended:
        raise ended["error"]
    yield "done", ended["outcomes"]
