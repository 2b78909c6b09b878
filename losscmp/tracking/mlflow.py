"""``--tracking mlflow``: each trial an MLflow run, nested under one run per run folder.

The store is ``$MLFLOW_TRACKING_URI`` (or ``mlflow.set_tracking_uri`` from Python);
without one, a SQLite store beside the run folders: ``<out>/mlruns/mlflow.db``
with artifacts in ``<out>/mlruns/artifacts/`` (MLflow's own default, a file
``mlflow.db`` in whichever folder the command ran from, would scatter one store
per working directory; the file store ``./mlruns`` is refused by MLflow 3.13 on). Any
SQLite store keeps the artifacts of the experiments made here beside its file.
View it with ``mlflow ui --backend-store-uri sqlite:///results/mlruns/mlflow.db``.

The parent run is named after the run folder and holds the config as params and,
once the report is written, ``summary.csv`` and ``report.html``. Each trial is a
child run: the loss spec, seed, learning rate and config as params, every
per-epoch number as a metric history (step = epoch), the scores of the epoch the
report reads it at as ``chosen_*``, the trial record as ``<trial-id>.json``. A
diverged trial's child is FINISHED (it is a result the report ranks), named
``... · diverged at epoch N`` with the metric ``diverged_epoch``; a trial that
could not be trained is a FAILED child with its reason in a tag. run.json keeps
the parent's id, so ``--resume`` reopens the same parent and logs there the
trials it lacks; a retried trial's child replaces its FAILED one.

A store a run could not log to (no answer, a web server that is not MLflow, an
unknown scheme, a SQLite file that cannot be made, a deleted experiment) is refused
while planning, before any folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from losscmp.errors import LosscmpError, install_hint
from losscmp.results import json_text
from losscmp.tracking.base import TrackedRun, Tracker, one_line

EXPERIMENT = "losscmp"  # unless $MLFLOW_EXPERIMENT_NAME names another
STORE_DIR = "mlruns"  # the default store's folder, beside the run folders in --out
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
GIT_COMMIT_TAG = "mlflow.source.git.commit"
RUN_TAG = "losscmp.run_id"
TRIAL_TAG = "losscmp.trial_id"
STATUS_TAG = "losscmp.status"  # finished, diverged or failed
FAILURE_TAG = "losscmp.failure"  # why a failed trial could not be trained
RESUMED_TAG = "losscmp.resumed_with"  # settings a --resume changed, as they now are
# A trial's own values replace these config fields in its params.
TRIAL_FIELDS = frozenset({"losses", "dataset", "fg_fraction", "seed", "seeds", "lr", "lr_grid"})
END_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
REACHABLE_TIMEOUT_S = 5  # one quick look at a server before MLflow's minutes of retries
SUPPRESS_LINK = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


class MlflowTracker(Tracker):
    name = "mlflow"
    uri = ""  # the store, once start has found it
    parent_id: str | None = None  # the run folder's parent run, once start has it
    partial: str | None = None  # the child being logged

    @classmethod
    def check_installed(cls) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            hint = install_hint("mlflow")
            raise LosscmpError(f"--tracking mlflow needs MLflow: {hint}") from None

    @classmethod
    def check_store(cls, out: Path) -> None:
        uri = store_uri(out)
        try:
            check_store(uri, experiment_name())
        except Exception as error:  # whatever MLflow or its database driver raises
            raise LosscmpError(
                f"--tracking mlflow cannot use the MLflow store {shown_uri(uri)}: "
                f"{one_line(without_password(str(error), uri))} (--tracking none runs without it)"
            ) from None

    def reason(self, error: Exception) -> str:
        why = lost_connection(error)
        if why:  # MLflow's line ends, 200 characters on, inside urllib3's repr
            return f"the MLflow server {shown_uri(self.uri)} does not answer ({why})"
        database = sqlite_file(self.uri)
        if database is not None and not database.exists():  # SQLite says 'readonly database'
            return f"the MLflow store's SQLite file {database} is gone (deleted or moved mid-run)"
        return one_line(without_password(database_error(error) or str(error), self.uri))

    def start(self, run: TrackedRun) -> dict[str, Any]:
        from mlflow.tracking import MlflowClient

        # First use of a SQLite store creates its tables, with INFO lines amid the progress;
        # a database error is logged with its traceback (90 lines, for a store deleted
        # mid-run) before it is raised, and the guard's one warning says it already.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        self.uri = tracking_uri(run.run_dir)
        with one_maker(self.uri):  # the client makes a new store's tables
            self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id = run.run_dir.name
        self.meta = run.meta
        self.children: dict[str, str] = {}  # trial id -> its complete child run
        parent = self._stored_parent(run.stored.get("parent_run_id")) or self._new_parent(run)
        self.parent_id = parent.info.run_id
        self.experiment_id = parent.info.experiment_id
        self._find_children(run)
        records = [record for record in run.records if record["trial_id"] not in self.children]
        failed = [trial for trial in run.failed if trial["trial_id"] not in self.children]
        lacking = len(records) + len(failed)
        if lacking:
            run.note(f"mlflow: logging {lacking} trial{'s' * (lacking > 1)} that MLflow lacks")
        for record in records:
            self.trial(record)
        for trial in failed:
            self.failed(trial)
        return {
            "tracking_uri": shown_uri(self.uri),
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_id,
        }

    def trial(self, record: dict[str, Any]) -> None:
        name = self._child_name(record) + diverged_suffix(record)
        tags = self._child_tags(record, record["status"])
        child_id = self._open_child(name, tags, seconds=record.get("seconds"))
        metrics = epoch_metrics(record) + chosen_metrics(record) + diverged_metric(record)
        self._log(child_id, trial_params(record, self.meta), metrics)
        self.client.log_text(child_id, json_text(record), f"{record['trial_id']}.json")
        self._close_child(record["trial_id"], child_id, "FINISHED")

    def failed(self, trial: dict[str, Any]) -> None:
        tags = {**self._child_tags(trial, "failed"), FAILURE_TAG: tag_value(trial["reason"])}
        child_id = self._open_child(self._child_name(trial), tags)
        self._log(child_id, trial_params(trial, self.meta), [])
        self._close_child(trial["trial_id"], child_id, "FAILED")

    def end(self, status: str) -> None:
        if self.parent_id is None:  # stopped before start had a parent: nothing to end
            return
        if self.partial:  # interrupted while logging it: --resume logs that trial again
            self.client.delete_run(self.partial)
        self._terminate(self.parent_id, END_STATUS[status])

    def attach(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.parent_id, str(path))

    # ----------------------------------------------------------------- parent run

    def _stored_parent(self, parent_id: str | None):
        """The parent a previous start of this run folder made, if this store has it."""
        from mlflow.exceptions import MlflowException

        if not parent_id:
            return None
        try:
            parent = self.client.get_run(parent_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None  # another store: this one gets a parent of its own
            raise
        if parent.info.lifecycle_stage != "active" or parent.data.tags.get(RUN_TAG) != self.run_id:
            return None
        self.client.update_run(parent_id, status="RUNNING")
        self._note_resumed_config(parent)
        return parent

    def _note_resumed_config(self, parent) -> None:
        """A resume may change a few settings (--seeds, --jobs, ...). MLflow keeps a param's
        first value for good, so the values that differ from it go in one tag."""
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        logged = parent.data.params
        params = run_params(self.meta)
        changed = {key: value for key, value in params.items() if logged.get(key, value) != value}
        self._log(parent.info.run_id, {k: v for k, v in params.items() if k not in logged}, [])
        if changed:
            text = ", ".join(f"{key}={value}" for key, value in sorted(changed.items()))
            self.client.set_tag(parent.info.run_id, RESUMED_TAG, text[:MAX_TAG_VAL_LENGTH])
        elif RESUMED_TAG in parent.data.tags:  # an earlier resume's, set back since
            self.client.delete_tag(parent.info.run_id, RESUMED_TAG)

    def _new_parent(self, run: TrackedRun):
        tags = {RUN_TAG: self.run_id, "losscmp.run_dir": str(run.run_dir.resolve())}
        if run.meta.get("git_commit"):
            tags[GIT_COMMIT_TAG] = run.meta["git_commit"]
            tags["losscmp.git_dirty"] = str(bool(run.meta.get("git_dirty"))).lower()
        experiment_id = self._experiment_id()
        parent = self.client.create_run(experiment_id, run_name=self.run_id, tags=tags)
        self._log(parent.info.run_id, run_params(run.meta), [])
        return parent

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        name = experiment_name()
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # A SQLite store keeps its artifacts beside it (MLflow's default, ./mlruns, would put
        # them in whichever folder the command ran from).
        database = sqlite_file(self.uri)
        location = (database.resolve().parent / ARTIFACTS_DIR).as_uri() if database else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another run created it meanwhile
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    # ----------------------------------------------------------------- child runs

    def _child_name(self, trial: dict[str, Any]) -> str:
        name = f"{trial['loss']} · seed {trial['seed']}"
        if len((self.meta.get("config") or {}).get("lr_grid") or []) > 1:
            name += f" · lr {trial['base_lr']:g}"
        if len(self.meta.get("datasets") or {}) > 1:
            name += f" · {trial['dataset']}"
        return name

    def _child_tags(self, trial: dict[str, Any], status: str) -> dict[str, str]:
        return {
            PARENT_TAG: self.parent_id,
            RUN_TAG: self.run_id,
            TRIAL_TAG: trial["trial_id"],
            STATUS_TAG: status,
        }

    def _open_child(self, name: str, tags: dict[str, str], seconds: float | None = None) -> str:
        """A child started ``seconds`` (the trial's time) before now, as it is logged once
        the trial has ended: the runs table's Duration is the trial's, not the tens of
        milliseconds its logging took."""
        start = int(time.time() * 1000) - round(seconds * 1000) if seconds else None
        child = self.client.create_run(
            self.experiment_id, run_name=name, tags=tags, start_time=start
        )
        self.partial = child.info.run_id
        return self.partial

    def _close_child(self, trial_id: str, child_id: str, status: str) -> None:
        """End the child (its status last: a child still RUNNING is partial), then delete the
        one it replaces (the trial's failure, now retried): a crash in between leaves two,
        of which the next start keeps the one the run folder agrees with (FINISHED once
        the trial has a record; else the newer FAILED one)."""
        self._terminate(child_id, status)
        self.partial = None
        replaced = self.children.get(trial_id)
        self.children[trial_id] = child_id
        if replaced:
            self.client.delete_run(replaced)

    def _find_children(self, run: TrackedRun) -> None:
        """The one complete child of each trial of the run folder: FINISHED for a trial
        record, FAILED for a trial that failed and has no record. The other children are
        deleted: partial ones (a crash while logging: logged again), those of a trial whose
        file is gone or damaged (--resume trains it again, and its new child replaces this
        one), a failure whose trial has a record since (logged while tracking was off),
        repeats."""
        wanted = {record["trial_id"]: "FINISHED" for record in run.records}
        wanted.update({trial["trial_id"]: "FAILED" for trial in run.failed})
        stale, token = [], None
        query = f"tags.`{PARENT_TAG}` = '{self.parent_id}'"
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=query, max_results=1000, page_token=token
            )
            for child in page:
                trial = child.data.tags.get(TRIAL_TAG)
                if wanted.get(trial) == child.info.status and trial not in self.children:
                    self.children[trial] = child.info.run_id
                else:
                    stale.append(child.info.run_id)
            token = page.token
            if not token:
                break
        for run_id in stale:  # after the search: deleting while paging would shift its pages
            self.client.delete_run(run_id)

    def _terminate(self, run_id: str, status: str) -> None:
        with no_run_link():
            self.client.set_terminated(run_id, status)

    def _log(self, run_id: str, params: dict[str, str], metrics: list) -> None:
        """Params and metrics in as few log_batch calls as MLflow takes (a trial's: one)."""
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for some_params, some_metrics in batches(items, metrics):
            self.client.log_batch(run_id, metrics=some_metrics, params=some_params)


def batches(params: list, metrics: list) -> Iterator[tuple[list, list]]:
    """``params`` and ``metrics`` in pieces of one log_batch call each, within MLflow's
    limits (100 params and 1000 items a call): one call per trial instead of one for its
    params and one for its metrics (a call is a request, with a server)."""
    from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    while params or metrics:
        some_params, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        room = MAX_ENTITIES_PER_BATCH - len(some_params)
        some_metrics, metrics = metrics[:room], metrics[room:]
        yield some_params, some_metrics


@contextlib.contextmanager
def no_run_link() -> Iterator[None]:
    """Ending a run on a server, MLflow asks the server for the run's name (a request per
    trial) to print its link on stdout, which holds only the tables: neither is wanted.
    Its setting turns both off (the redirect catches the link of a version without it)."""
    with environment(**{SUPPRESS_LINK: "true"}), contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """MLflow's settings (read from the environment at each request) set for a while."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------- the store


def tracking_uri(run_dir: Path) -> str:
    """The store of a run in ``run_dir``, the default one made if missing."""
    out = Path(run_dir).parent
    uri = store_uri(out)
    if uri == default_uri(out):
        default_store(out).mkdir(exist_ok=True)
    return uri


def store_uri(out: Path) -> str:
    """$MLFLOW_TRACKING_URI (or one set from Python), else the default store of ``out``."""
    import mlflow

    return mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else default_uri(out)


def default_store(out: Path) -> Path:
    return Path(out).resolve() / STORE_DIR


def default_uri(out: Path) -> str:
    return f"sqlite:///{(default_store(out) / STORE_FILE).as_posix()}"


def experiment_name() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def shown_uri(uri: str) -> str:
    """``uri`` without the password it may hold (``postgresql://user:secret@host/db``): it is
    printed, and kept in run.json, which is shared with the results."""
    return without_password(uri, uri)


def without_password(text: str, uri: str) -> str:
    """``text`` (a URI, an error that quotes it) with the password of ``uri`` hidden."""
    try:
        password = urllib.parse.urlsplit(uri).password
    except ValueError:  # e.g. an unclosed [IPv6 address: nothing MLflow could use
        return text
    return text.replace(f":{password}@", ":***@") if password else text


def check_store(uri: str, experiment: str) -> None:
    """What would stop a run from logging to ``uri``, found before it starts: a URI MLflow
    cannot use (unknown scheme, the file store MLflow 3.13 refuses, a missing database driver),
    a server that does not answer, a SQLite file that cannot be made, an experiment name
    MLflow refuses or one that is deleted. A store that does not exist yet is not made."""
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
    from mlflow.utils.validation import MAX_EXPERIMENT_NAME_LENGTH

    if len(experiment) > MAX_EXPERIMENT_NAME_LENGTH:
        raise ValueError(
            f"the experiment name ($MLFLOW_EXPERIMENT_NAME) has {len(experiment)} characters, "
            f"more than MLflow's {MAX_EXPERIMENT_NAME_LENGTH}"
        )
    if uri.startswith(("http://", "https://")) and not check_reachable(uri):
        check_answers_as_mlflow(uri, experiment)
        return
    database = sqlite_file(uri)
    if database is not None and database.is_dir():  # MLflow retries opening it for 100 s
        raise IsADirectoryError(
            f"{database} is a folder, not a SQLite file{did_you_mean(database)}"
        )
    if database is not None and not database.exists():
        check_writable(database.parent)
        return
    try:
        with one_maker(uri):  # a run starting beside this one may be making its tables
            client = MlflowClient(tracking_uri=uri)
    except UnsupportedModelRegistryStoreURIException as error:  # says 'model registry'
        schemes = ", ".join(scheme for scheme in error.supported_uri_schemes if scheme)
        raise ValueError(f"MLflow reads no such URI (its schemes: {schemes})") from None
    check_experiment(client, experiment)


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI (None for another scheme or an in-memory one)."""
    from sqlalchemy.engine import make_url

    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


@contextlib.contextmanager
def one_maker(uri: str) -> Iterator[None]:
    """The first use of a SQLite store makes its tables, for seconds; two runs starting
    at once into a new store both made them, and one lost its tracking ('duplicate
    column name: step'). An exclusive lock on the database's folder makes it one at a
    time: the second waits, then finds the tables made."""
    database = sqlite_file(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)  # as MLflow would
    folder = os.open(database.parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without locks: as before, unlocked
            fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock


def did_you_mean(database: Path) -> str:
    """' (did you mean its mlflow.db?)' for a SQLite URI naming the folder of a store (the
    default store's, say), else ''."""
    if not (database / STORE_FILE).is_file():
        return ""
    return f" (did you mean its {STORE_FILE}?)"


def check_writable(folder: Path) -> None:
    """MLflow makes the missing folders of a SQLite file: the nearest one that exists must
    take a new file (tried, as permissions do not tell for root or a read-only mount)."""
    existing = next(path for path in [folder, *folder.parents] if path.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"{existing} is not a folder")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise OSError(f"cannot write in {existing} ({error.strerror})") from None


def check_experiment(client, name: str) -> None:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage != "active":
        raise ValueError(
            f"its experiment '{name}' is deleted; restore it (mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}) or name another in "
            "$MLFLOW_EXPERIMENT_NAME"
        )


def check_answers_as_mlflow(uri: str, experiment: str) -> None:
    """A server that answered its health check with an error status may be a proxy whose
    login MLflow's credentials pass, or no MLflow at all (another service on that port,
    a proxy whose MLflow is down): MLflow's own request tells them apart, tried once
    (MLflow retries a 502 or 503 for minutes)."""
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.tracking import MlflowClient

    with environment(
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(REACHABLE_TIMEOUT_S)
    ):
        try:
            check_experiment(MlflowClient(tracking_uri=uri), experiment)
        except RestException:
            raise  # MLflow's own error (a permission refused, ...): its message says it
        except MlflowException as error:
            failure = http_failure(error)
            if failure.startswith(("HTTP 401", "HTTP 403")):
                raise PermissionError(
                    f"it refuses MLflow's request ({failure}): MLflow logs in with "
                    "$MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD"
                ) from None
            raise ConnectionError(
                f"it answers, but not as an MLflow server does ({failure})"
            ) from None


def http_failure(error: Exception) -> str:
    """'HTTP 404 from /api/2.0/...' out of MLflow's message for a request that got an
    answer it could not read (the rest of which quotes the answer's HTML)."""
    text = str(error)
    status = re.search(r"(?:error code|too many) (\d{3})", text)
    endpoint = re.search(r"(/api/[^\s?]+)", text)  # the path only: the URI may hold a password
    if not status:
        return one_line(text)
    return f"HTTP {status.group(1)}" + (f" from {endpoint.group(1)}" if endpoint else "")


def check_reachable(uri: str) -> bool:
    """Fail at once when an HTTP tracking server does not answer: MLflow itself retries a
    refused connection for about four minutes before giving up. Any HTTP answer (even an
    error status, e.g. from a proxy asking for a login) counts as reachable, and so does a
    certificate this check cannot verify (MLflow has its own TLS settings). True when the
    server said it is healthy."""
    parts = urllib.parse.urlsplit(uri)
    # urllib takes no user:password@ in a URL (MLflow sends them as HTTP basic auth).
    host = parts.netloc.rpartition("@")[2]
    health = parts._replace(netloc=host, path=parts.path.rstrip("/") + "/health", query="")
    try:
        with urllib.request.urlopen(health.geturl(), timeout=REACHABLE_TIMEOUT_S):
            return True
    except urllib.error.HTTPError:
        return False
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, ssl.SSLError):
            return False
        raise ConnectionError(f"no answer ({reason})") from None


def lost_connection(error: BaseException) -> str | None:
    """Why a server did not answer, when that is what ``error`` comes down to: MLflow's
    exception (after its retries) wraps requests' and urllib3's, which end in the socket's
    ('[Errno 111] Connection refused'; 'timed out'). None for any other error."""
    import requests

    chain = list(linked_errors(error))
    lost = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    if not any(isinstance(link, lost) for link in chain):
        return None
    for link in reversed(chain):  # the socket's error is the innermost
        if isinstance(link, OSError) and link.errno is not None and link.strerror:
            return f"[Errno {link.errno}] {link.strerror}"
    if any(isinstance(link, requests.exceptions.Timeout | TimeoutError) for link in chain):
        return "timed out"
    return "connection lost"


def database_error(error: BaseException) -> str | None:
    """The database driver's message behind ``error``, as SQLAlchemy words it ('(sqlite3.
    OperationalError) attempt to write a readonly database'); None if none is behind it.
    SQLAlchemy's own text may begin with a line about its autoflush instead."""
    from sqlalchemy.exc import DBAPIError

    for link in linked_errors(error):
        if isinstance(link, DBAPIError) and link.orig is not None:
            return f"({type(link.orig).__module__}.{type(link.orig).__name__}) {link.orig}"
    return None


def linked_errors(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors behind it: causes, contexts, urllib3's ``reason`` and the
    errors requests passes on as arguments, outermost first."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        link = pending.pop(0)
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        behind = [link.__cause__, link.__context__, getattr(link, "reason", None), *link.args]
        pending += [item for item in behind if isinstance(item, BaseException)]


# --------------------------------------------------------------------- params and metrics


def run_params(meta: dict[str, Any]) -> dict[str, str]:
    """The run's config, with the model preset and device ``auto`` resolved to those
    trained on (a resume records the device it pins, which is then no change), and
    without ``lr`` where ``lr_grid`` replaced it."""
    config = meta.get("config") or {}
    params = {key: param_value(value) for key, value in config.items()}
    if config.get("lr_grid"):
        params.pop("lr", None)  # the grid replaced the one rate: no trial trained at it
    preset = (meta.get("model") or {}).get("preset")
    if preset:
        params["model"] = preset
    device = str(meta.get("device") or "").split(":")[0]
    if params.get("device") == "auto" and device:
        params["device"] = device
    return params


def trial_params(record: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    """Loss spec, loss parameters, dataset, seed and learning rate of the trial, plus the
    run's config."""
    loss = (meta.get("losses") or {}).get(record["loss"]) or {}
    # A failed trial has no record, so no resolved parameters: those the run was given.
    loss_params = record.get("loss_params", loss.get("params")) or {}
    params = {key: value for key, value in run_params(meta).items() if key not in TRIAL_FIELDS}
    params.update(
        {
            "loss": param_value(record["loss"]),
            "loss_name": param_value(loss.get("name", record["loss"].split("(")[0])),
            "dataset": param_value(record["dataset"]),
            "seed": param_value(record["seed"]),
            # schema-1 records have no base_lr: the run's one rate
            "lr": param_value(record.get("base_lr", (meta.get("config") or {}).get("lr"))),
        }
    )
    for name, value in loss_params.items():
        params[f"loss.{name}"] = param_value(value)
    return params


def epoch_metrics(record: dict[str, Any]) -> list:
    """Every number of every epoch row as a metric point at step = epoch."""
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    return [
        Metric(metric_key(key), float(value), timestamp, int(row["epoch"]))
        for row in record.get("epochs") or []
        for key, value in row.items()
        if key != "epoch" and _is_number(value)
    ]


def chosen_metrics(record: dict[str, Any]) -> list:
    """The scores of the epoch chosen on validation Dice, where the report reads a trial
    (its headline, 'chosen ep.'), as ``chosen_<name>`` at step = that epoch, and
    ``chosen_epoch``: the runs table shows a metric's latest value, the last epoch's,
    which is not the report's number where an earlier epoch validated better."""
    from mlflow.entities import Metric

    epoch = record.get("best_epoch")
    row = next((row for row in record.get("epochs") or [] if row["epoch"] == epoch), None)
    if row is None:  # diverged before its first validation: no epoch was chosen
        return []
    timestamp = int(time.time() * 1000)
    scores = {
        key: value
        for key, value in row.items()
        if key.startswith(("val_", "test_")) or key == "threshold"
    }
    return [Metric("chosen_epoch", float(epoch), timestamp, int(epoch))] + [
        Metric(metric_key(f"chosen_{key}"), float(value), timestamp, int(epoch))
        for key, value in scores.items()
        if _is_number(value)
    ]


def diverged_suffix(record: dict[str, Any]) -> str:
    """A diverged trial is a result the report ranks, so its child is FINISHED: its name
    is what tells it from a trial that finished, in the runs list."""
    if record["status"] != "diverged":
        return ""
    epoch = record.get("diverged_epoch")
    return " · diverged" + (f" at epoch {epoch}" if epoch is not None else "")


def diverged_metric(record: dict[str, Any]) -> list:
    """``diverged_epoch`` of a diverged trial, a number the runs table can show and sort
    (``metrics.diverged_epoch > 0`` finds them); none for a finished trial."""
    from mlflow.entities import Metric

    epoch = record.get("diverged_epoch")
    if record["status"] != "diverged" or epoch is None:
        return []
    return [Metric("diverged_epoch", float(epoch), int(time.time() * 1000), int(epoch))]


def tag_value(text: str) -> str:
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    return text if len(text) <= MAX_TAG_VAL_LENGTH else text[: MAX_TAG_VAL_LENGTH - 3] + "..."


def param_value(value: Any) -> str:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    if isinstance(value, list | tuple):
        value = ",".join(str(item) for item in value)
    text = "none" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[: MAX_PARAM_VAL_LENGTH - 3] + "..."


def metric_key(name: str) -> str:
    """MLflow keys allow letters, digits and ``_-. /``; a class name may hold others."""
    return "".join(char if char.isalnum() or char in "_-. /" else "_" for char in name)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
