"""``--tracking mlflow`` against a real local MLflow store, read back with MLflow's own client.

Each test trains a tiny run (two losses, two epochs, seconds) and checks what
MLflow holds against the run folder: one parent per run folder, one child per
trial, params, per-epoch metric histories equal to the trial records, the
record as an artifact, the report files on the parent. The one fake is the
missing package (``sys.modules['mlflow'] = None``).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from losscmp.config import build_config
from losscmp.errors import LosscmpError

pytestmark = pytest.mark.mlflow

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
ARGS = ["--config", SMOKE, "--losses", "dice,focal(gamma=1)", "--epochs", "2"]
METRICS = ["train_loss", "val_dice", "val_iou", "val_mcc", "val_image_dice", "lr", "seconds"]
PARENT_TAG = "mlflow.parentRunId"


def default_store(monkeypatch) -> None:
    """No MLFLOW_TRACKING_URI: the store is <out>/mlruns/mlflow.db."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture(scope="module")
def tracked_run(cli, tmp_path_factory):
    """One tracked run into the default store, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("tracked") / "out"
    with pytest.MonkeyPatch.context() as monkeypatch:
        default_store(monkeypatch)
        result, run_dir = tracked(cli, out)
    return result, run_dir, client_for(out)


def client_for(out: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlruns' / 'mlflow.db'}")


def all_runs(client) -> list:
    experiment = client.get_experiment_by_name("losscmp")
    return list(client.search_runs([experiment.experiment_id], max_results=1000))


def trial_records(run_dir: Path) -> dict[str, dict]:
    records = [json.loads(path.read_text()) for path in (run_dir / "trials").glob("*.json")]
    return {record["trial_id"]: record for record in records}


def tracked(cli, out: Path, *extra, status: int = 0):
    result = cli("run", *ARGS, "--out", out, "--tracking", "mlflow", *extra)
    assert result.exit_code == status, result.output
    (run_dir,) = [path for path in out.iterdir() if (path / "run.json").is_file()]
    return result, run_dir


@pytest.mark.slow
def test_each_trial_is_a_child_run_of_the_run_folders_parent(tracked_run):
    result, run_dir, client = tracked_run
    assert "warning" not in result.stderr
    state = json.loads((run_dir / "run.json").read_text())["tracking"]["mlflow"]
    assert state["tracking_uri"] == f"sqlite:///{run_dir.parent.resolve()}/mlruns/mlflow.db"
    runs = all_runs(client)
    (parent,) = [run for run in runs if PARENT_TAG not in run.data.tags]
    children = [run for run in runs if PARENT_TAG in run.data.tags]
    assert parent.info.run_id == state["parent_run_id"]
    assert parent.info.run_name == run_dir.name
    assert parent.info.status == "FINISHED"
    assert parent.data.params["losses"] == "dice,focal(gamma=1.0)"
    assert parent.data.params["epochs"] == "2" and parent.data.params["model"] == "tiny"

    records = trial_records(run_dir)
    assert {child.data.tags["losscmp.trial_id"] for child in children} == set(records)
    for child in children:
        record = records[child.data.tags["losscmp.trial_id"]]
        assert child.data.tags[PARENT_TAG] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.info.run_name == f"{record['loss']} · seed 0"
        params = child.data.params
        assert params["loss"] == record["loss"]
        assert params["seed"] == "0" and params["lr"] == "0.003"
        assert params["dataset"] == "synthetic(fg_fraction=0.05,n_train=48,n_val=16,n_test=16)"
        assert params["epochs"] == "2" and "losses" not in params
        if record["loss"].startswith("focal"):
            assert params["loss_name"] == "focal" and params["loss.gamma"] == "1.0"


@pytest.mark.slow
def test_metric_histories_and_records_equal_the_run_folder(tracked_run, tmp_path):
    _, run_dir, client = tracked_run
    epochs = pd.read_csv(run_dir / "epochs.csv")
    records = trial_records(run_dir)
    children = [run for run in all_runs(client) if PARENT_TAG in run.data.tags]
    assert len(children) == 2
    for child in children:
        trial = child.data.tags["losscmp.trial_id"]
        record = records[trial]
        rows = epochs[epochs["loss"] == record["loss"]].sort_values("epoch")
        for metric in METRICS:
            history = client.get_metric_history(child.info.run_id, metric)
            steps = [(point.step, point.value) for point in sorted(history, key=lambda p: p.step)]
            assert steps == [(row["epoch"], row[metric]) for row in record["epochs"]]
            assert [value for _, value in steps] == pytest.approx(list(rows[metric]), rel=1e-12)
        artifacts = [item.path for item in client.list_artifacts(child.info.run_id)]
        assert artifacts == [f"{trial}.json"]
        copy = client.download_artifacts(child.info.run_id, f"{trial}.json", str(tmp_path))
        assert json.loads(Path(copy).read_text()) == record

    (parent,) = [run for run in all_runs(client) if PARENT_TAG not in run.data.tags]
    attached = {item.path for item in client.list_artifacts(parent.info.run_id)}
    expected = {name for name in ("summary.csv", "report.html") if (run_dir / name).is_file()}
    assert "summary.csv" in expected and attached == expected
    copy = client.download_artifacts(parent.info.run_id, "summary.csv", str(tmp_path))
    assert Path(copy).read_bytes() == (run_dir / "summary.csv").read_bytes()


@pytest.mark.slow
def test_the_runs_table_can_show_the_reports_numbers(tracked_run):
    """A metric's latest value (the runs table's column) is the last epoch's; the report
    reads each trial at the epoch chosen on validation. chosen_* are the report's."""
    _, run_dir, client = tracked_run
    # Python's float: pandas 2's parser can be one unit in the last place off the written
    # value (0.053742802303262956 read as 0.0537428023032629); pandas 3's is not
    exact = {column: float for column in ("score_mean", "best_iou_mean", "threshold_mean")}
    summary = pd.read_csv(run_dir / "summary.csv", converters=exact).set_index("loss")
    records = trial_records(run_dir)
    for child in [run for run in all_runs(client) if PARENT_TAG in run.data.tags]:
        record = records[child.data.tags["losscmp.trial_id"]]
        metrics = child.data.metrics
        row = summary.loc[record["loss"]]  # one seed: its mean is the trial's number
        assert metrics["chosen_epoch"] == record["best_epoch"] == row["best_epoch"]
        assert metrics["chosen_test_dice"] == row["score_mean"]
        assert metrics["chosen_test_iou"] == row["best_iou_mean"]
        assert metrics["chosen_threshold"] == row["threshold_mean"]
        chosen = record["epochs"][record["best_epoch"] - 1]
        assert metrics["chosen_val_dice"] == chosen["val_dice"]
        assert metrics["test_dice"] == record["epochs"][-1]["test_dice"]  # the last epoch's


@pytest.mark.slow
def test_a_childs_duration_is_its_trials_time(tracked_run):
    """The runs table's Duration of a child was the ~30 ms its logging took, not the
    trial's seconds (its record's, the report's 'time s')."""
    _, run_dir, client = tracked_run
    records = trial_records(run_dir)
    for child in [run for run in all_runs(client) if PARENT_TAG in run.data.tags]:
        took_ms = round(records[child.data.tags["losscmp.trial_id"]]["seconds"] * 1000)
        logging_ms = child.info.end_time - child.info.start_time - took_ms
        assert took_ms > 100 and 0 <= logging_ms < 5000


@pytest.mark.slow
def test_resume_reuses_the_parent_and_logs_the_trials_it_lacks(cli, tmp_path, monkeypatch):
    default_store(monkeypatch)
    out = tmp_path / "out"
    _, run_dir = tracked(cli, out)
    state = json.loads((run_dir / "run.json").read_text())["tracking"]["mlflow"]
    parent_id = state["parent_run_id"]
    client = client_for(out)
    # A child left unfinished (a crash while logging it) is deleted and logged again.
    partial = next(run for run in all_runs(client) if PARENT_TAG in run.data.tags)
    client.update_run(partial.info.run_id, status="RUNNING")
    # A trial file damaged after its child was logged: --resume trains it again, and its
    # new child replaces the old one (the parent ends with the folder's trials, once each).
    other = next(
        path
        for path in (run_dir / "trials").glob("*.json")
        if path.stem != partial.data.tags["losscmp.trial_id"]
    )
    other.write_bytes(b"")

    result = cli("run", *ARGS, "--out", out, "--seeds", "2", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["tracking"]["mlflow"]["parent_run_id"] == parent_id
    runs = all_runs(client)
    (parent,) = [run for run in runs if PARENT_TAG not in run.data.tags]
    assert parent.info.run_id == parent_id and parent.info.status == "FINISHED"
    # MLflow keeps a param's first value: the resume's --seeds 2 is noted in a tag.
    assert parent.data.params["seeds"] == "1"
    assert parent.data.tags["losscmp.resumed_with"] == "seeds=2"
    children = [run.data.tags["losscmp.trial_id"] for run in runs if PARENT_TAG in run.data.tags]
    assert sorted(children) == sorted(trial_records(run_dir)) and len(children) == 4
    assert client.get_run(partial.info.run_id).info.lifecycle_stage == "deleted"


def children_by_trial(client) -> dict[str, list]:
    """The active children of the store's one parent, by trial id."""
    children: dict[str, list] = {}
    for run in all_runs(client):
        if PARENT_TAG in run.data.tags:
            children.setdefault(run.data.tags["losscmp.trial_id"], []).append(run)
    return children


def dying_worker(monkeypatch, message: str) -> None:
    """--jobs 1 runs its jobs in this process: the focal trial's job raises as when its
    worker is killed, on the try and on the retry."""
    import losscmp.executors.local as local

    real_run_job = local.run_job

    def run_job(job, context, emit, **kwargs):
        if any(trial.loss.startswith("focal") for trial in job.trials):
            raise RuntimeError(message)
        return real_run_job(job, context, emit, **kwargs)

    monkeypatch.setattr(local, "run_job", run_job)


@pytest.mark.slow
def test_a_failed_trial_is_a_failed_child_that_a_resume_replaces(cli, tmp_path, monkeypatch):
    """A trial whose worker died twice had no child at all: only the parent's FAILED hinted
    at it. It is a FAILED child with its reason and params; a resume that fails it again
    replaces that child, and one that trains it leaves its FINISHED child alone."""
    default_store(monkeypatch)
    out = tmp_path / "out"
    dying_worker(monkeypatch, "out of memory")
    _, run_dir = tracked(cli, out, "--jobs", "1", status=1)  # 1: a trial failed
    meta = json.loads((run_dir / "run.json").read_text())
    ((focal, reason),) = meta["failed_trials"].items()
    assert reason == "RuntimeError: out of memory"
    client = client_for(out)
    children = children_by_trial(client)
    assert sorted(children) == sorted(meta["trials"])
    (failed,) = children[focal]
    assert failed.info.status == "FAILED" and failed.info.run_name == "focal(gamma=1.0) · seed 0"
    assert failed.data.tags["losscmp.status"] == "failed"
    assert failed.data.tags["losscmp.failure"] == reason
    assert failed.data.params["loss"] == "focal(gamma=1.0)" and failed.data.params["seed"] == "0"
    assert failed.data.params["loss.gamma"] == "1.0" and failed.data.params["lr"] == "0.003"
    (parent,) = [run for run in all_runs(client) if PARENT_TAG not in run.data.tags]
    assert parent.info.status == "FAILED"

    dying_worker(monkeypatch, "out of memory again")
    assert cli("run", "--resume", run_dir).exit_code == 1
    (again,) = children_by_trial(client)[focal]
    assert again.info.status == "FAILED"
    assert again.data.tags["losscmp.failure"] == "RuntimeError: out of memory again"
    assert client.get_run(failed.info.run_id).info.lifecycle_stage == "deleted"

    monkeypatch.undo()
    default_store(monkeypatch)
    assert cli("run", "--resume", run_dir).exit_code == 0
    children = children_by_trial(client)
    assert sorted(children) == sorted(trial_records(run_dir)) == sorted(meta["trials"])
    assert [[child.info.status for child in runs] for runs in children.values()] == [
        ["FINISHED"],
        ["FINISHED"],
    ]
    assert children[focal][0].data.tags["losscmp.status"] == "finished"
    assert client.get_run(again.info.run_id).info.lifecycle_stage == "deleted"
    (parent,) = [run for run in all_runs(client) if PARENT_TAG not in run.data.tags]
    assert parent.info.status == "FINISHED"


def test_a_failed_trial_without_a_child_gets_one_when_the_run_restarts(tmp_path, monkeypatch):
    """A failure logged while tracking was off (or by a version that logged none) is
    logged by the next start, once; a record of the trial replaces it. Each start that
    logs trials says so first (a resume after a lost server logs hundreds, a minute or
    more before training goes on; it said nothing)."""
    default_store(monkeypatch)
    from run_fixtures import write_run

    from losscmp.tracking.base import TrackedRun
    from losscmp.tracking.mlflow import MlflowTracker

    run_dir = write_run(tmp_path / "out", quality={"dice": 0.8}, seeds=(0,), epochs=2)
    meta = json.loads((run_dir / "run.json").read_text())
    (record,) = trial_records(run_dir).values()
    failed = {key: record[key] for key in ("trial_id", "dataset", "loss", "seed", "base_lr")}
    failed["reason"] = "worker process died"
    stored: dict = {}
    notes: list[str] = []

    def start(records: list, failures: list) -> dict[str, list]:
        tracker = MlflowTracker()
        run = TrackedRun(run_dir, meta, records, stored, failures, note=notes.append)
        stored.update(tracker.start(run))
        tracker.end("finished")
        return children_by_trial(tracker.client)

    for _ in range(2):
        (child,) = start([], [failed])[record["trial_id"]]
        assert child.info.status == "FAILED"
        assert child.data.tags["losscmp.failure"] == "worker process died"
    (child,) = start([record], [])[record["trial_id"]]
    assert child.info.status == "FINISHED" and child.data.tags["losscmp.status"] == "finished"
    assert notes == ["mlflow: logging 1 trial that MLflow lacks"] * 2  # not the second start
    others = [dict(record, trial_id=f"other-{seed}", seed=seed) for seed in (1, 2)]
    assert len(start([record, *others], [])) == 3
    assert notes[2:] == ["mlflow: logging 2 trials that MLflow lacks"]


@pytest.mark.slow
def test_a_diverged_trial_says_so_in_the_runs_list(cli, tmp_path, monkeypatch, exploding_loss):
    """A diverged trial is a result the report ranks, so its child stays FINISHED; it was
    told from a finished one only by a tag inside the run. Its name says it and when, and
    ``diverged_epoch`` is a metric the runs table shows and filters on."""
    default_store(monkeypatch)
    out = tmp_path / "out"
    cli_args = ["run", *ARGS, "--losses", f"dice,{exploding_loss}", "--jobs", "1"]
    result = cli(*cli_args, "--out", out, "--tracking", "mlflow")
    assert result.exit_code == 0, result.output
    client = client_for(out)
    children = {runs[0].data.params["loss"]: runs[0] for runs in children_by_trial(client).values()}
    diverged, finished = children[exploding_loss], children["dice"]
    assert diverged.info.status == finished.info.status == "FINISHED"
    assert diverged.info.run_name == f"{exploding_loss} · seed 0 · diverged at epoch 2"
    assert finished.info.run_name == "dice · seed 0"
    assert diverged.data.tags["losscmp.status"] == "diverged"
    assert diverged.data.metrics["diverged_epoch"] == 2.0
    assert "diverged_epoch" not in finished.data.metrics
    experiment = client.get_experiment_by_name("losscmp").experiment_id
    found = client.search_runs([experiment], filter_string="metrics.diverged_epoch > 0")
    assert [run.info.run_id for run in found] == [diverged.info.run_id]


def test_a_resume_that_sets_a_setting_back_takes_it_out_of_resumed_with(tmp_path, monkeypatch):
    """--jobs 2 on one resume, --jobs 1 (the first value) on the next: the tag still said
    jobs=2, though the settings it names are those 'as they now are'."""
    default_store(monkeypatch)
    from losscmp.tracking.base import TrackedRun
    from losscmp.tracking.mlflow import MlflowTracker

    run_dir = tmp_path / "out" / "run-1"
    run_dir.mkdir(parents=True)
    stored: dict = {}

    def start(jobs: int) -> dict:
        tracker = MlflowTracker()
        meta = {"config": {"jobs": jobs, "seeds": 1}}
        state = tracker.start(TrackedRun(run_dir, meta, [], stored))
        tracker.end("finished")
        stored.update(state)
        return tracker.client.get_run(state["parent_run_id"]).data

    assert "losscmp.resumed_with" not in start(1).tags
    assert start(2).tags["losscmp.resumed_with"] == "jobs=2"
    back = start(1)
    assert back.params["jobs"] == "1" and "losscmp.resumed_with" not in back.tags


def test_a_resume_of_a_device_auto_run_notes_only_what_the_user_changed(tmp_path, monkeypatch):
    """A resume pins '--device auto' to the device the run started on: the tag read
    'device=cpu, seeds=2' after a resume given only --seeds 2."""
    default_store(monkeypatch)
    from losscmp.tracking.base import TrackedRun
    from losscmp.tracking.mlflow import MlflowTracker

    run_dir = tmp_path / "out" / "run-1"
    run_dir.mkdir(parents=True)
    stored: dict = {}
    for config in ({"device": "auto", "seeds": 1}, {"device": "cpu", "seeds": 2}):
        tracker = MlflowTracker()
        meta = {"config": config, "device": "cpu: Some CPU (x86_64, AVX2)"}
        stored.update(tracker.start(TrackedRun(run_dir, meta, [], stored)))
        tracker.end("finished")
    parent = tracker.client.get_run(stored["parent_run_id"]).data
    assert parent.params["device"] == "cpu"
    assert parent.tags["losscmp.resumed_with"] == "seeds=2"


def refused(cli, out: Path, *extra) -> str:
    """The one stderr line of a run refused before it made any folder."""
    result = cli("run", *ARGS, "--out", out, "--tracking", "mlflow", *extra)
    assert result.exit_code == 2, result.output
    assert not out.exists()
    (line,) = result.stderr.splitlines()
    return line


def cannot_use(uri: str, reason: str) -> str:
    return (
        f"losscmp: error: --tracking mlflow cannot use the MLflow store {uri}: {reason} "
        "(--tracking none runs without it)"
    )


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unreachable_server_is_refused_before_the_run(cli, tmp_path, monkeypatch, dry_run):
    """Not a run without the mirror that was asked for: one line, the password hidden."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://me:secret@127.0.0.1:9")
    extra = ["--dry-run"] if dry_run else []
    assert refused(cli, tmp_path / "out", *extra) == cannot_use(
        "http://me:***@127.0.0.1:9", "no answer ([Errno 111] Connection refused)"
    )


class NotMlflow(http.server.BaseHTTPRequestHandler):
    """Another web service on the port the URI names: every request gets ``status``."""

    status = 404

    def log_message(self, *args) -> None:
        pass

    def answer(self) -> None:
        self.send_error(self.status)

    do_GET = do_POST = answer


NOT_MLFLOW = "it answers, but not as an MLflow server does"
GET_BY_NAME = "/api/2.0/mlflow/experiments/get-by-name"
LOGIN = "MLflow logs in with $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD"


@pytest.mark.parametrize(
    "status, reason",
    [
        (404, f"{NOT_MLFLOW} (HTTP 404 from {GET_BY_NAME})"),
        (502, f"{NOT_MLFLOW} (HTTP 502 from {GET_BY_NAME})"),
        (
            401,
            f"it refuses MLflow's request (HTTP 401 from {GET_BY_NAME}): {LOGIN}",
        ),
    ],
)
def test_a_web_server_that_is_not_mlflow_is_refused_before_the_run(
    cli, tmp_path, monkeypatch, status, reason
):
    """A wrong port, where another service answers: the run went on without its mirror,
    after a warning that quoted the service's HTML. A 502 (a proxy whose MLflow is down)
    is refused as fast: MLflow retries it for minutes. A proxy's login MLflow was not
    given says so."""
    pytest.importorskip("mlflow")
    handler = type("Answer", (NotMlflow,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    try:
        line = refused(cli, tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 30
    assert line == cannot_use(uri, reason)


class MlflowBehindALogin(NotMlflow):
    """A proxy whose login MLflow's credentials pass, and urllib's health check cannot:
    /health is refused, the API answers as MLflow does (no such experiment yet)."""

    def answer(self) -> None:
        if self.path.startswith("/health"):
            self.send_error(401)
            return
        body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no experiment"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer


def test_a_server_whose_health_check_fails_but_that_answers_as_mlflow_is_used(
    cli, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MlflowBehindALogin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        result = cli("run", *ARGS, "--out", tmp_path / "out", "--tracking", "mlflow", "--dry-run")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output


def test_stores_mlflow_cannot_use_are_refused_before_the_run(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "garbage.db").write_text("not a database")
    cases = {
        "htp://host": "MLflow reads no such URI (its schemes: ",
        f"sqlite:///{tmp_path}/a-file/mlflow.db": f"{tmp_path}/a-file is not a folder",
        f"sqlite:///{tmp_path}/garbage.db": "(sqlite3.DatabaseError) file is not a database",
    }
    if mlflow_refuses_its_file_store():
        cases[f"file://{tmp_path}/fs"] = "The filesystem tracking backend (e.g., './mlruns') is in"
    for uri, reason in cases.items():
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        line = refused(cli, tmp_path / "out")
        assert line.startswith(cannot_use(uri, reason).split(" (--tracking none")[0]), line
        assert line.endswith(" (--tracking none runs without it)")
    assert not (tmp_path / "fs").exists()


def mlflow_refuses_its_file_store() -> bool:
    """MLflow 3.13 and later refuse the ./mlruns file store (unless MLFLOW_ALLOW_FILE_STORE
    is set); 3.9 to 3.12 only warn that it is deprecated, and log to it."""
    from mlflow import environment_variables

    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in {"true", "1"}
    return hasattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE") and not allowed


def test_a_sqlite_uri_naming_a_folder_is_refused_at_once(cli, tmp_path, monkeypatch):
    """MLflow retried opening it for 100 s, logging 36 lines, before the refusal; the
    default store's folder is a likely slip, and its file is suggested."""
    pytest.importorskip("mlflow")
    store = tmp_path / "results" / "mlruns"
    store.mkdir(parents=True)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    started = time.monotonic()
    reason = f"{store} is a folder, not a SQLite file"
    assert refused(cli, tmp_path / "out") == cannot_use(f"sqlite:///{store}", reason)
    (store / "mlflow.db").touch()
    assert refused(cli, tmp_path / "out") == cannot_use(
        f"sqlite:///{store}", f"{reason} (did you mean its mlflow.db?)"
    )
    assert time.monotonic() - started < 30


def test_an_experiment_mlflow_refuses_is_refused_before_the_run(cli, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    default_store(monkeypatch)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "x" * 501)
    assert refused(cli, tmp_path / "out") == cannot_use(
        uri,
        "the experiment name ($MLFLOW_EXPERIMENT_NAME) has 501 characters, more than MLflow's 500",
    )
    assert not (tmp_path / "store").exists()  # a store that does not exist is not made

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "deleted one")
    client = MlflowClient(tracking_uri=uri)
    client.delete_experiment(client.create_experiment("deleted one"))
    assert refused(cli, tmp_path / "out") == cannot_use(
        uri,
        "its experiment 'deleted one' is deleted; restore it (mlflow experiments restore "
        "--experiment-id 1) or name another in $MLFLOW_EXPERIMENT_NAME",
    )


@pytest.mark.slow
def test_ctrl_c_while_a_trial_is_logged_leaves_no_run_running(cli, tmp_path, monkeypatch):
    """Ctrl-C lands while the first trial's child is half logged (the trial file is
    written): the child is deleted, not left RUNNING, and --resume logs the trial."""
    default_store(monkeypatch)
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    log_text = MlflowClient.log_text

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowClient, "log_text", interrupted)
    out = tmp_path / "out"
    result = cli("run", *ARGS, "--out", out, "--tracking", "mlflow")
    assert result.exit_code == 130, result.output
    (run_dir,) = [path for path in out.iterdir() if (path / "run.json").is_file()]
    client = client_for(out)
    runs = client.search_runs(
        [client.get_experiment_by_name("losscmp").experiment_id], run_view_type=ViewType.ALL
    )
    (parent,) = [run for run in runs if PARENT_TAG not in run.data.tags]
    (child,) = [run for run in runs if PARENT_TAG in run.data.tags]
    assert parent.info.status == "KILLED"
    assert child.info.status == "RUNNING" and child.info.lifecycle_stage == "deleted"
    assert len(trial_records(run_dir)) == 1

    monkeypatch.setattr(MlflowClient, "log_text", log_text)
    result = cli("run", *ARGS, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    runs = all_runs(client)
    assert [run.info.status for run in runs if PARENT_TAG not in run.data.tags] == ["FINISHED"]
    children = [run.data.tags["losscmp.trial_id"] for run in runs if PARENT_TAG in run.data.tags]
    assert sorted(children) == sorted(trial_records(run_dir)) and len(children) == 2


@pytest.mark.slow
def test_a_sqlite_store_keeps_its_artifacts_beside_it(cli, tmp_path, monkeypatch):
    """Not in ./mlruns of whichever folder the command ran from (MLflow's default)."""
    default_store(monkeypatch)
    from mlflow.tracking import MlflowClient

    (tmp_path / "elsewhere").mkdir()
    store = tmp_path / "store" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.chdir(tmp_path / "elsewhere")
    _, run_dir = tracked(cli, tmp_path / "out")
    assert list((tmp_path / "elsewhere").iterdir()) == []
    state = json.loads((run_dir / "run.json").read_text())["tracking"]["mlflow"]
    assert state["tracking_uri"] == f"sqlite:///{store}"
    parent = MlflowClient(tracking_uri=f"sqlite:///{store}").get_run(state["parent_run_id"])
    artifacts = store.parent / "artifacts" / parent.info.run_id / "artifacts"
    assert parent.info.artifact_uri == artifacts.as_uri()
    assert (artifacts / "summary.csv").read_bytes() == (run_dir / "summary.csv").read_bytes()


@pytest.mark.parametrize("dry_run", [False, True])
def test_without_mlflow_installed_it_says_how_to_install_it(cli, tmp_path, monkeypatch, dry_run):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    out = tmp_path / "out"
    extra = ["--dry-run"] if dry_run else []
    result = cli("run", *ARGS, "--out", out, "--tracking", "mlflow", *extra)
    assert result.exit_code == 2
    assert result.stderr == (
        "losscmp: error: --tracking mlflow needs MLflow: pip install 'mlflow>=3.9'\n"
    )
    assert not out.exists()


def test_params_and_metrics_share_log_batch_calls_within_mlflows_limits():
    """A trial's params and metrics went in two calls at least (a request each, with a
    server); one call takes both, up to 100 params and 1000 items."""
    pytest.importorskip("mlflow")
    from losscmp.tracking.mlflow import batches

    assert list(batches(["p"] * 40, ["m"] * 240)) == [(["p"] * 40, ["m"] * 240)]
    params, metrics = [f"p{i}" for i in range(150)], [f"m{i}" for i in range(1200)]
    calls = list(batches(params, metrics))
    assert [(len(some_params), len(some_metrics)) for some_params, some_metrics in calls] == [
        (100, 900),
        (50, 300),
    ]
    assert [item for some_params, _ in calls for item in some_params] == params
    assert [item for _, some_metrics in calls for item in some_metrics] == metrics
    assert list(batches([], [])) == []


def test_a_grid_runs_parent_holds_the_grid_not_the_rate_it_replaced():
    """The parent of an --lr-grid run showed lr=0.003 beside lr_grid: a rate no trial
    trained at."""
    pytest.importorskip("mlflow")
    from losscmp.tracking.mlflow import run_params, trial_params

    config = {"lr": 0.003, "lr_grid": [0.001, 0.01], "epochs": 2}
    meta = {"config": config, "model": {"preset": "tiny"}}
    assert run_params(meta) == {"lr_grid": "0.001,0.01", "epochs": "2", "model": "tiny"}
    assert run_params({"config": {**config, "lr_grid": None}})["lr"] == "0.003"
    record = {"loss": "dice", "dataset": "synthetic", "seed": 0, "base_lr": 0.01}
    assert trial_params(record, meta)["lr"] == "0.01"


def test_tracking_option_names_a_registered_tracker_or_none():
    assert build_config(tracking="mlflow").tracking == "mlflow"
    assert build_config(tracking="none").tracking is None
    assert build_config().tracking is None
    with pytest.raises(LosscmpError, match="did you mean 'mlflow'"):
        build_config(tracking="mlfow")


def test_run_help_says_what_every_registered_tracker_does(monkeypatch, cli):
    """--tracking's help was written out in cli.py ('mlflow: log each trial to MLflow...'):
    a new tracker, accepted by --tracking from its TRACKERS line, went unnamed by --help."""
    from losscmp import tracking

    help_text = " ".join(cli("run", "--help").stdout.replace("│", " ").split())
    assert f"{tracking.trackers_help()}. [default: none]" in help_text
    assert "mlflow: log each trial to MLflow ($MLFLOW_TRACKING_URI, else a SQLite" in help_text
    assert all(f"{name}: {entry.does}" in help_text for name, entry in tracking.TRACKERS.items())
    one = {"mlflow": tracking.Registered("m:M", "log to MLflow")}
    monkeypatch.setattr(tracking, "TRACKERS", one)
    assert tracking.trackers_help() == "mlflow: log to MLflow"
    monkeypatch.setitem(one, "wandb", tracking.Registered("m:W", "log to Weights & Biases"))
    assert tracking.trackers_help() == "mlflow: log to MLflow; wandb: log to Weights & Biases"


def test_tracked_and_untracked_runs_are_reported_together(cli, tmp_path):
    from run_fixtures import write_run

    first = write_run(tmp_path / "a", quality={"dice": 0.8}, config={"tracking": "mlflow"})
    second = write_run(tmp_path / "b", quality={"focal": 0.6}, config={"tracking": None})
    result = cli("report", first, second, "--csv", tmp_path / "both.csv")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_csv(tmp_path / "both.csv")["loss"]) == ["dice", "focal"]


@pytest.mark.slow
def test_a_tracker_failing_mid_run_is_one_warning_and_every_trial_is_kept(tmp_path, monkeypatch):
    """The experiment is deleted once the first trial is logged: logging the second fails."""
    from losscmp.events import RunNote, TrialEnded
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    default_store(monkeypatch)
    out = tmp_path / "out"
    config = build_config(SMOKE, losses="dice,focal", epochs=1, out=str(out), tracking="mlflow")
    warnings, ended = [], []

    def listener(event):
        if isinstance(event, RunNote) and event.warning:
            warnings.append(event.text)
        if isinstance(event, TrialEnded) and not ended:
            ended.append(event.trial_id)
            client = client_for(out)
            client.delete_experiment(client.get_experiment_by_name("losscmp").experiment_id)

    run_dir = execute(prepare(plan_run(config)), listener=listener)
    assert len(warnings) == 1 and warnings[0].startswith("mlflow tracking stopped: ")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["finished_at"] is not None and len(trial_records(run_dir)) == 2


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on a free local port, stopped after the test."""
    import socket
    import subprocess
    import time
    import urllib.request

    pytest.importorskip("mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"]
    # Without background jobs: the server would make (and leave) a folder in /dev/shm for
    # their queue, and start consumer processes no test needs.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no mlflow server"
                time.sleep(0.5)
        yield uri, server
    finally:
        if server.poll() is None:  # a test may have stopped it
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def record_requests_per_trial(monkeypatch) -> dict[str, list[str]]:
    """The HTTP requests each trial's logging sends, as 'METHOD path' (the child's run id
    in a path as CHILD), by trial id, filled as the run goes."""
    from urllib.parse import urlsplit

    import requests

    from losscmp.tracking.mlflow import MlflowTracker

    sent: list[str] = []
    send, trial = requests.Session.send, MlflowTracker.trial

    def counted_send(session, request, **kwargs):
        path = urlsplit(request.url).path
        # MLflow's client asks the server what it supports and caches the answer for 60 s:
        # a run slower than that asks again in whichever trial comes next. Not the trial's.
        if path != "/api/3.0/mlflow/server-info":
            sent.append(f"{request.method} {path}")
        return send(session, request, **kwargs)

    per_trial: dict[str, list[str]] = {}

    def counted_trial(tracker, record):
        start = len(sent)
        trial(tracker, record)
        child = tracker.children[record["trial_id"]]
        per_trial[record["trial_id"]] = [line.replace(child, "CHILD") for line in sent[start:]]

    monkeypatch.setattr(requests.Session, "send", counted_send)
    monkeypatch.setattr(MlflowTracker, "trial", counted_trial)
    return per_trial


@pytest.mark.slow
def test_a_tracking_server_gets_the_runs_and_stdout_keeps_only_the_tables(
    cli, tmp_path, monkeypatch, mlflow_server
):
    from mlflow.tracking import MlflowClient

    mlflow_server, _ = mlflow_server
    # A user:password in the URI (sent as HTTP basic auth) is kept out of run.json.
    with_password = mlflow_server.replace("http://", "http://me:secret@")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", with_password)
    requests_of_each_trial = record_requests_per_trial(monkeypatch)
    result, run_dir = tracked(cli, tmp_path / "out")
    assert "View run" not in result.stdout  # MLflow prints run links on stdout with a server
    # Each trial's child in 5 requests (it took 7: its params and its metrics in two
    # log_batch calls, and a get of the run for the link MLflow prints as it ends).
    api = "/api/2.0/mlflow"
    for trial_id, sent in requests_of_each_trial.items():
        assert sent == [
            f"POST {api}/runs/create",
            f"POST {api}/runs/log-batch",
            f"GET {api}/runs/get",  # the run's artifact location, for the record's upload
            f"PUT /api/2.0/mlflow-artifacts/artifacts/1/CHILD/artifacts/{trial_id}.json",
            f"POST {api}/runs/update",
        ]
    assert "secret" not in (run_dir / "run.json").read_text()
    state = json.loads((run_dir / "run.json").read_text())["tracking"]["mlflow"]
    assert state["tracking_uri"] == mlflow_server.replace("http://", "http://me:***@")
    assert not (tmp_path / "out" / "mlruns").exists()
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = all_runs(client)
    (parent,) = [run for run in runs if PARENT_TAG not in run.data.tags]
    assert parent.info.run_name == run_dir.name and parent.info.status == "FINISHED"
    children = [run for run in runs if PARENT_TAG in run.data.tags]
    assert {child.data.tags["losscmp.trial_id"] for child in children} == set(
        trial_records(run_dir)
    )
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_dice")
        assert sorted(point.step for point in history) == [1, 2]
    assert "summary.csv" in {item.path for item in client.list_artifacts(parent.info.run_id)}


@pytest.mark.slow
def test_a_server_lost_mid_run_is_one_warning_without_the_password(
    tmp_path, monkeypatch, mlflow_server
):
    from losscmp.events import RunNote, TrialEnded
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    uri, server = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.replace("http://", "http://me:secret@"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    config = build_config(
        SMOKE, losses="dice,focal", epochs=1, out=str(tmp_path), tracking="mlflow"
    )
    warnings = []

    def listener(event):
        if isinstance(event, RunNote) and event.warning:
            warnings.append(event.text)
        if isinstance(event, TrialEnded) and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    run_dir = execute(prepare(plan_run(config)), listener=listener)
    (warning,) = warnings
    # Not MLflow's line, cut at 200 characters inside urllib3's repr of the connection.
    assert warning == (
        f"mlflow tracking stopped: the MLflow server {uri.replace('http://', 'http://me:***@')} "
        "does not answer ([Errno 111] Connection refused); the run folder holds every result "
        "(--resume logs the rest)"
    )
    assert len(trial_records(run_dir)) == 2


@pytest.mark.slow
def test_a_deleted_experiment_on_a_server_is_refused_before_the_run(
    cli, tmp_path, monkeypatch, mlflow_server
):
    from mlflow.tracking import MlflowClient

    uri, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "gone")
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("gone")
    client.delete_experiment(experiment_id)
    assert refused(cli, tmp_path / "out") == cannot_use(
        uri,
        f"its experiment 'gone' is deleted; restore it (mlflow experiments restore "
        f"--experiment-id {experiment_id}) or name another in $MLFLOW_EXPERIMENT_NAME",
    )


@pytest.mark.slow
def test_ctrl_c_while_a_resume_logs_the_trials_mlflow_lacks_leaves_no_run_running(
    cli, tmp_path, monkeypatch
):
    """A resume first logs the trials MLflow lacks (minutes, for hundreds of them, after a
    lost server): Ctrl-C there left the reopened parent and a half-logged child RUNNING."""
    default_store(monkeypatch)
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    assert cli("run", *ARGS, "--out", out).exit_code == 0  # the trials MLflow lacks
    (run_dir,) = [path for path in out.iterdir() if (path / "run.json").is_file()]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MlflowClient, "log_text", interrupted)
    result = cli("run", "--resume", run_dir, "--tracking", "mlflow")
    assert result.exit_code == 130, result.output
    assert "warning" not in result.stderr
    client = client_for(out)
    experiment = client.get_experiment_by_name("losscmp").experiment_id
    runs = client.search_runs([experiment], run_view_type=ViewType.ALL)
    (parent,) = [run for run in runs if PARENT_TAG not in run.data.tags]
    (child,) = [run for run in runs if PARENT_TAG in run.data.tags]
    assert parent.info.status == "KILLED"
    assert child.info.lifecycle_stage == "deleted"
    from losscmp.tracking.mlflow import MlflowTracker

    MlflowTracker().end("killed")  # stopped before it had a parent: nothing to end


@pytest.mark.slow
def test_a_sqlite_store_deleted_mid_run_is_one_line_that_says_so(tmp_path, monkeypatch):
    """The warning quoted SQLAlchemy's first line, '(raised as a result of Query-invoked
    autoflush; ...)', after MLflow had logged 90 lines of traceback on stderr."""
    import logging

    from losscmp.events import RunNote, TrialEnded
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    default_store(monkeypatch)
    out = tmp_path / "out"
    config = build_config(SMOKE, losses="dice,focal", epochs=1, out=str(out), tracking="mlflow")
    database = out.resolve() / "mlruns" / "mlflow.db"
    warnings = []

    def listener(event):
        if isinstance(event, RunNote) and event.warning:
            warnings.append(event.text)
        if isinstance(event, TrialEnded) and database.exists():
            database.unlink()

    mlflow_errors = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = mlflow_errors.append
    logging.getLogger("mlflow").addHandler(handler)
    try:
        run_dir = execute(prepare(plan_run(config)), listener=listener)
    finally:
        logging.getLogger("mlflow").removeHandler(handler)
    assert warnings == [
        f"mlflow tracking stopped: the MLflow store's SQLite file {database} is gone (deleted "
        "or moved mid-run); the run folder holds every result (--resume logs the rest)"
    ]
    assert mlflow_errors == []
    assert len(trial_records(run_dir)) == 2


def test_a_database_error_is_named_by_the_drivers_message():
    pytest.importorskip("mlflow")
    import sqlite3

    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import OperationalError

    from losscmp.tracking.mlflow import MlflowTracker

    cause = OperationalError("INSERT INTO runs", {}, sqlite3.OperationalError("disk I/O error"))
    cause.add_detail("raised as a result of Query-invoked autoflush; consider using ...")
    try:
        raise MlflowException(cause) from cause
    except MlflowException as error:
        reason = MlflowTracker().reason(error)
    assert reason == "(sqlite3.OperationalError) disk I/O error"


STARTS_A_RUN = """
import sys, time
from pathlib import Path
from losscmp.tracking.base import TrackedRun
from losscmp.tracking.mlflow import MlflowTracker

run_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
run_dir.mkdir(parents=True)
while not go.exists():
    time.sleep(0.01)
tracker = MlflowTracker()
tracker.start(TrackedRun(run_dir, {"config": {"seeds": 1}}, []))
tracker.end("finished")
"""


@pytest.mark.slow
def test_two_runs_starting_at_once_into_a_new_store_both_track(tmp_path, monkeypatch):
    """Both made the new store's tables; one failed ('duplicate column name: step') and
    ran untracked."""
    import subprocess

    default_store(monkeypatch)
    out, go = tmp_path / "out", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", STARTS_A_RUN, str(out / f"run-{index}"), str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    time.sleep(1)  # both imported MLflow and wait
    go.touch()
    errors = [start.communicate(timeout=120)[1] for start in starts]
    assert [start.returncode for start in starts] == [0, 0], errors
    parents = [run.info.run_name for run in all_runs(client_for(out))]
    assert sorted(parents) == ["run-0", "run-1"]
