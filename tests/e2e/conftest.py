"""One live Airflow for the end-to-end tests: api-server, scheduler, dag-processor and triggerer with the
LocalExecutor, metadata in a throwaway PostgreSQL database, driven only through the REST API and the CLI."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from coldcopy.testing import local_env, servers
from coldcopy.testing.airflow_stack import AirflowStack
from coldcopy.testing.alert_sink import AlertSink
from coldcopy.testing.local_env import free_port

ROOT = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).with_name("e2e_dags.py")
PASSPHRASE = "e2e passphrase (test only)"
MANIFEST_SECRET = "e2e manifest signing secret of 32+ characters"
METRICS_TOKEN = "e2e metrics bearer token, test only"


@dataclass
class Live:
    stack: AirflowStack
    admin_dsn: str
    metadata_dsn: str
    target: str  # the database coldcopy_db points at; tests recreate it from a template
    s3_client: object
    bucket: str
    sink: AlertSink
    logical: object = None  # a wal_level=logical cluster; connection coldcopy_pitr_db → its database "coldcopy"

    @property
    def target_dsn(self) -> str:
        return local_env.database_dsn(self.admin_dsn, self.target)

    def reset_target(self, template: str | None = None) -> str:
        """Recreate the target database (empty, or a copy of ``template``) under the same name."""
        return local_env.create_database(self.admin_dsn, self.target, template=template, replace=True)

    def set_paused(self, api, dag_id: str, paused: bool) -> None:
        assert api.patch(f"/dags/{dag_id}", json={"is_paused": paused}).status_code == 200

    def trigger(self, api, dag_id: str, **conf) -> str:
        """A manual run, the DAG unpaused first (as the UI's trigger offers): a paused DAG's runs stay queued."""
        self.set_paused(api, dag_id, False)
        response = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def scheduled_run(self, api, dag_id: str, timeout_s: float = 300, while_waiting=lambda run: None) -> dict:
        """Unpause ``dag_id``, wait for the scheduler's run of the latest interval to finish, pause it again."""
        self.set_paused(api, dag_id, False)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                runs = api.get(f"/dags/{dag_id}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"]
                if runs:
                    while_waiting(runs[0])
                    if runs[0]["state"] in ("success", "failed"):
                        return runs[0]
                time.sleep(0.3)
        finally:
            self.set_paused(api, dag_id, True)
        raise AssertionError(f"{dag_id}: no finished scheduled run within {timeout_s} s")

    def wait_run(self, api, dag_id: str, run_id: str, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise AssertionError(f"{dag_id} {run_id} not finished within {timeout_s} s")

    def task_instances(self, api, dag_id: str, run_id: str) -> list[dict]:
        return api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200}).json()[
            "task_instances"]


# The stacks' DAG folders are copied once, before they start, and never change: the DAG processor's parse of each
# file at its start is the one needed (its default, every file again every 30 s, cost both stacks a share of the
# two cores the whole run long)
PARSED_ONCE = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}


@pytest.fixture(scope="session")
def live(admin_dsn, s3_endpoint, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    metadata = local_env.create_database(admin_dsn, f"cc_airflow_{suffix}")
    target = f"cc_e2e_{suffix}"
    local_env.create_database(admin_dsn, target)
    bucket = f"coldcopy-e2e-{suffix}"
    spaces = local_env.spaces_connection(s3_endpoint.url, bucket)
    shutil.rmtree(ROOT / ".airflow-e2e", ignore_errors=True)  # the last session's logs are kept until now
    dags = tmp_path_factory.mktemp("dags")
    for dag_file in [*(ROOT / "dags").glob("*.py"), Path(__file__).with_name("e2e_dags.py")]:
        shutil.copy(dag_file, dags / dag_file.name)
    logical = servers.ThrowawayCluster({"wal_level": "logical"}).start()  # the change archive's source
    with AlertSink() as sink:
        stack = AirflowStack(
            ROOT / ".airflow-e2e" / suffix, metadata, port=free_port(), dags_folder=dags,
            # HITL: one assigned, one not (both may edit); mallory, a plain user, may write XCom and set states;
            # second, the other person a destructive file needs
            users={"approver": "admin", "intruder": "admin", "mallory": "user", "second": "admin"},
            extra_env={"AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",  # the HITL timeout sweep too
                       **PARSED_ONCE},
            connections={
                "coldcopy_db": local_env.airflow_connection(local_env.database_dsn(admin_dsn, target)),
                "coldcopy_spaces": spaces,
                "coldcopy_backup_key": json.dumps({"conn_type": "generic", "password": PASSPHRASE}),
                "coldcopy_manifest_key": json.dumps({"conn_type": "generic", "password": MANIFEST_SECRET}),
                "coldcopy_subject_pepper": json.dumps({"conn_type": "generic", "password": MANIFEST_SECRET[::-1]}),
                "coldcopy_alerts_webhook": sink.airflow_connection(),
                "coldcopy_metrics_token": json.dumps({"conn_type": "generic", "password": METRICS_TOKEN}),
                "coldcopy_pitr_db": local_env.airflow_connection(local_env.database_dsn(logical.dsn, "coldcopy")),
                # the rehearsal's server: never the live one (the logical cluster, another server)
                "coldcopy_verify_db": local_env.airflow_connection(local_env.prepare_verify_server(logical.dsn)),
            },
        )
        import boto3

        client = boto3.client("s3", endpoint_url=s3_endpoint.url, region_name="us-east-1",
                              aws_access_key_id="k", aws_secret_access_key="s")
        client.create_bucket(Bucket=bucket)
        stack.start()
        try:
            yield Live(stack, admin_dsn, metadata, target, client, bucket, sink, logical)
        finally:
            stack.stop()
            logical.stop()
            local_env.drop_database(admin_dsn, target)
            local_env.drop_database(admin_dsn, f"cc_airflow_{suffix}")


@pytest.fixture(scope="module")
def celery_live(admin_dsn, s3_endpoint, tmp_path_factory):
    """A second live Airflow on the CeleryExecutor: Debian's redis-server as broker and two Celery workers
    (worker-a, worker-b, two slots each), the repository's DAGs; its own metadata, target database and bucket."""
    suffix = uuid.uuid4().hex[:8]
    metadata = local_env.create_database(admin_dsn, f"cc_airflow_celery_{suffix}")
    target = f"cc_e2e_celery_{suffix}"
    local_env.create_database(admin_dsn, target)
    bucket = f"coldcopy-e2e-celery-{suffix}"
    dags = tmp_path_factory.mktemp("celery_dags")
    for dag_file in [*(ROOT / "dags").glob("*.py"), E2E_DAGS]:
        shutil.copy(dag_file, dags / dag_file.name)
    with AlertSink() as sink:
        stack = AirflowStack(
            ROOT / ".airflow-e2e" / f"celery-{suffix}", metadata, port=free_port(), dags_folder=dags,
            executor="CeleryExecutor", workers=2, worker_concurrency=2,
            extra_env={  # a killed worker's task is found (no heartbeat) in seconds, not the default 5 min
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "12",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                # and retried 5 s later, not after the first retry's minute (coldcopy.dag_defaults.retry_delay)
                "COLDCOPY_RETRY_DELAY_S": "5", **PARSED_ONCE},
            connections={
                "coldcopy_db": local_env.airflow_connection(local_env.database_dsn(admin_dsn, target)),
                "coldcopy_spaces": local_env.spaces_connection(s3_endpoint.url, bucket),
                "coldcopy_backup_key": json.dumps({"conn_type": "generic", "password": PASSPHRASE}),
                "coldcopy_manifest_key": json.dumps({"conn_type": "generic", "password": MANIFEST_SECRET}),
                "coldcopy_subject_pepper": json.dumps({"conn_type": "generic", "password": MANIFEST_SECRET[::-1]}),
                "coldcopy_alerts_webhook": sink.airflow_connection(),
            },
        )
        import boto3

        client = boto3.client("s3", endpoint_url=s3_endpoint.url, region_name="us-east-1",
                              aws_access_key_id="k", aws_secret_access_key="s")
        client.create_bucket(Bucket=bucket)
        stack.start()
        try:
            yield Live(stack, admin_dsn, metadata, target, client, bucket, sink)
        finally:
            stack.stop()
            local_env.drop_database(admin_dsn, target)
            local_env.drop_database(admin_dsn, f"cc_airflow_celery_{suffix}")


@pytest.fixture(scope="module")
def celery_api(celery_live):
    with celery_live.stack.client() as client:
        deadline = time.monotonic() + 120
        expected = len(list((ROOT / "dags").glob("*.py")))
        while client.get("/dags", params={"limit": 1}).json()["total_entries"] < expected:
            assert time.monotonic() < deadline, "the dag-processor did not serialize every DAG in 120 s"
            time.sleep(2)
        yield client


@pytest.fixture(scope="session")
def api(live):
    with live.stack.client() as client:
        deadline = time.monotonic() + 120
        expected = len(list((ROOT / "dags").glob("*.py"))) + E2E_DAGS.read_text().count("dag_id=")
        while client.get("/dags", params={"limit": 1}).json()["total_entries"] < expected:
            assert time.monotonic() < deadline, "the dag-processor did not serialize every DAG in 120 s"
            time.sleep(2)
        yield client


def one_alert_per_final_failure(live: Live, api) -> list[dict]:
    """``e2e_failures`` run live: the task that fails once then passes sends nothing, the one that fails for good
    sends one alert, without the row values of a DETAIL line; returns the run's task instances."""
    run_id = live.trigger(api, "e2e_failures")
    assert live.wait_run(api, "e2e_failures", run_id) == "failed"
    tis = {t["task_id"]: t for t in live.task_instances(api, "e2e_failures", run_id)}
    assert tis["flaky"]["state"] == "success" and tis["flaky"]["try_number"] == 2
    assert tis["broken"]["state"] == "failed" and tis["broken"]["try_number"] == 2
    time.sleep(5)  # anything late would arrive by now
    [alert] = alerts_for(live, "e2e_failures", run_id)
    assert alert["kind"] == "task_failed" and alert["task_id"] == "broken" and "disk on fire" in alert["summary"]
    assert "someone@example.com" not in str(alert)  # DETAIL lines (row values) stay out of alerts
    return list(tis.values())


def alerts_for(live: Live, dag_id: str, run_id: str) -> list[dict]:
    """The alerts the webhook sink received for one run."""
    return [a["body"]["alert"] for a in live.sink.received
            if a["body"]["alert"].get("dag_id") == dag_id and a["body"]["alert"].get("run_id") == run_id]


def metadata_query(live: Live, query: str, params=()) -> list[tuple]:
    with psycopg.connect(live.metadata_dsn) as conn:
        return conn.execute(query, params).fetchall()
