"""``--tracking mlflow``: each trial an MLflow run, nested under one run per run folder.

The store is ``$MLFLOW_TRACKING_URI`` (or ``mlflow.set_tracking_uri`` from Python);
without one, a SQLite store beside the run folders: ``<out>/mlruns/mlflow.db``
with artifacts in ``<out>/mlruns/artifacts/`` (MLflow's own default, a file
``mlflow.db`` in whichever folder the command ran from, would scatter one store
per working directory; the file store ``./mlruns`` is refused by MLflow 3).
View it with ``mlflow ui --backend-store-uri sqlite:///results/mlruns/mlflow.db``.

The parent run is named after the run folder and holds the config as params and,
once the report is written, ``summary.csv`` and ``report.html``. Each trial is a
child run: the loss spec, seed, learning rate and config as params, every
per-epoch number as a metric history (step = epoch), the trial record as
``<trial-id>.json``. run.json keeps the parent's id, so ``--resume`` reopens the
same parent and logs there the finished trials it lacks.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from losscmp.errors import LosscmpError
from losscmp.results import json_text
from losscmp.tracking.base import TrackedRun, Tracker

INSTALL_HINT = "--tracking mlflow needs MLflow: pip install 'losscmp[mlflow]'"
EXPERIMENT = "losscmp"  # unless $MLFLOW_EXPERIMENT_NAME names another
STORE_DIR = "mlruns"  # the default store's folder, beside the run folders in --out
STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
GIT_COMMIT_TAG = "mlflow.source.git.commit"
RUN_TAG = "losscmp.run_id"
TRIAL_TAG = "losscmp.trial_id"
STATUS_TAG = "losscmp.status"
# A trial's own values replace these config fields in its params.
TRIAL_FIELDS = frozenset({"losses", "dataset", "fg_fraction", "seed", "seeds", "lr", "lr_grid"})
END_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
REACHABLE_TIMEOUT_S = 5  # one quick look at a server before MLflow's minutes of retries


class MlflowTracker(Tracker):
    name = "mlflow"

    @classmethod
    def check_installed(cls) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise LosscmpError(INSTALL_HINT) from None

    def start(self, run: TrackedRun) -> dict[str, Any]:
        from mlflow.tracking import MlflowClient

        # First use of a SQLite store creates its tables, with INFO lines amid the progress.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        self.uri = tracking_uri(run.run_dir)
        check_reachable(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id = run.run_dir.name
        self.meta = run.meta
        self.partial = None  # the child being logged
        parent = self._stored_parent(run.stored.get("parent_run_id")) or self._new_parent(run)
        self.parent_id = parent.info.run_id
        self.experiment_id = parent.info.experiment_id
        logged = self._logged_trials({record["trial_id"] for record in run.records})
        for record in run.records:
            if record["trial_id"] not in logged:
                self.trial(record)
        return {
            "tracking_uri": self.uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_id,
        }

    def trial(self, record: dict[str, Any]) -> None:
        tags = {
            PARENT_TAG: self.parent_id,
            RUN_TAG: self.run_id,
            TRIAL_TAG: record["trial_id"],
            STATUS_TAG: record["status"],
        }
        name = f"{record['loss']} · seed {record['seed']}"
        if len((self.meta.get("config") or {}).get("lr_grid") or []) > 1:
            name += f" · lr {record['base_lr']:g}"
        if len(self.meta.get("datasets") or {}) > 1:
            name += f" · {record['dataset']}"
        child = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.partial = child_id = child.info.run_id
        self._log(child_id, trial_params(record, self.meta), epoch_metrics(record))
        self.client.log_text(child_id, json_text(record), f"{record['trial_id']}.json")
        self._terminate(child_id, "FINISHED")  # last: a child not FINISHED is partial
        self.partial = None

    def end(self, status: str) -> None:
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
        return parent

    def _new_parent(self, run: TrackedRun):
        tags = {RUN_TAG: self.run_id, "losscmp.run_dir": str(run.run_dir.resolve())}
        if run.meta.get("git_commit"):
            tags[GIT_COMMIT_TAG] = run.meta["git_commit"]
            tags["losscmp.git_dirty"] = str(bool(run.meta.get("git_dirty"))).lower()
        experiment_id = self._experiment_id(run.run_dir)
        parent = self.client.create_run(experiment_id, run_name=self.run_id, tags=tags)
        self._log(parent.info.run_id, run_params(run.meta), [])
        return parent

    def _experiment_id(self, run_dir: Path) -> str:
        from mlflow.exceptions import MlflowException

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.uri == default_uri(run_dir):  # keep the artifacts beside the default store
            location = (default_store(run_dir) / ARTIFACTS_DIR).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another run created it meanwhile
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _logged_trials(self, present: set[str]) -> set[str]:
        """Trial ids of ``present`` (the run folder's trial files) with one complete child
        run. The other children are deleted: partial ones (a crash while logging: logged
        again), those of a trial whose file is gone or damaged (--resume trains it again,
        and its new child replaces this one), repeats."""
        logged, stale, token = set(), [], None
        query = f"tags.`{PARENT_TAG}` = '{self.parent_id}'"
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=query, max_results=1000, page_token=token
            )
            for child in page:
                trial = child.data.tags.get(TRIAL_TAG)
                if child.info.status == "FINISHED" and trial in present and trial not in logged:
                    logged.add(trial)
                else:
                    stale.append(child.info.run_id)
            token = page.token
            if not token:
                break
        for run_id in stale:  # after the search: deleting while paging would shift its pages
            self.client.delete_run(run_id)
        return logged

    def _terminate(self, run_id: str, status: str) -> None:
        # With a server, MLflow prints the run's link on stdout, which holds only the tables.
        with contextlib.redirect_stdout(io.StringIO()):
            self.client.set_terminated(run_id, status)

    def _log(self, run_id: str, params: dict[str, str], metrics: list) -> None:
        """log_batch within MLflow's limits per call (100 params, 1000 entities)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS_TAGS_PER_BATCH])
        for start in range(0, len(metrics), MAX_ENTITIES_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + MAX_ENTITIES_PER_BATCH])


# --------------------------------------------------------------------- the store


def tracking_uri(run_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI (or one set from Python), else the default store of ``run_dir``'s
    parent folder (its --out), made if missing."""
    import mlflow

    if mlflow.is_tracking_uri_set():
        return mlflow.get_tracking_uri()
    default_store(run_dir).mkdir(exist_ok=True)
    return default_uri(run_dir)


def default_store(run_dir: Path) -> Path:
    return Path(run_dir).resolve().parent / STORE_DIR


def default_uri(run_dir: Path) -> str:
    return f"sqlite:///{(default_store(run_dir) / STORE_FILE).as_posix()}"


def check_reachable(uri: str) -> None:
    """Fail at once when an HTTP tracking server does not answer: MLflow itself retries a
    refused connection for about four minutes before giving up. Any HTTP answer (even an
    error status, e.g. from a proxy asking for a login) counts as reachable, and so does a
    certificate this check cannot verify (MLflow has its own TLS settings)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACHABLE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, ssl.SSLError):
            return
        raise ConnectionError(f"cannot reach {uri} ({reason})") from None


# --------------------------------------------------------------------- params and metrics


def run_params(meta: dict[str, Any]) -> dict[str, str]:
    """The run's config, with the model preset ``auto`` resolved to the one trained."""
    params = {key: param_value(value) for key, value in (meta.get("config") or {}).items()}
    preset = (meta.get("model") or {}).get("preset")
    if preset:
        params["model"] = preset
    return params


def trial_params(record: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    """Loss spec, loss parameters, dataset, seed and learning rate of the trial, plus the
    run's config."""
    loss = (meta.get("losses") or {}).get(record["loss"]) or {}
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
    for name, value in (record.get("loss_params") or {}).items():
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
