"""Shared fixtures: a real PostgreSQL server, throwaway databases, and an Airflow home on SQLite."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from coldcopy.testing import local_env  # noqa: E402

os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow-test"))
for key, value in local_env.airflow_env().items():
    os.environ.setdefault(key, value)

import psycopg  # noqa: E402
import pytest  # noqa: E402

from coldcopy import manifests  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402
from coldcopy.migrations.runner import MigrationRunner  # noqa: E402
from coldcopy.refresh.incremental.summaries import SUMMARIES  # noqa: E402
from tests.support.schema import TENANT_RELATIONS, insert_generic_row, populate_analytics  # noqa: E402

pytest_plugins = ["tests.support.logical_cluster"]  # the logical-decoding cluster of tests/pitr (drills included)


@pytest.fixture(scope="session")
def admin_dsn():
    """The server of this test session. With ``COLDCOPY_TEST_OWN_SERVER=1`` (``make test``'s live-Airflow process,
    run beside the others) a throwaway server of this process alone, set like the shared one: its db_health
    then sees no other process's sessions, locks, statements or scratch databases."""
    if not os.environ.get("COLDCOPY_TEST_OWN_SERVER"):
        yield local_env.admin_dsn()
        return
    from coldcopy.testing import servers

    cluster = servers.ThrowawayCluster({"autovacuum": "off", "max_connections": "200"}).start()
    os.environ["COLDCOPY_PG_ADMIN_DSN"] = cluster.dsn  # for what asks local_env.admin_dsn() itself
    try:
        yield cluster.dsn
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database (SQLite in AIRFLOW_HOME), migrated once per session."""
    local_env.prepare_airflow()


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    """Every DAG of dags/, parsed once for the session (DagBag.get_dag reads Airflow's metadata: migrated first)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture
def new_database(admin_dsn):
    """Factory of empty throwaway databases, dropped after the test."""
    created: list[str] = []

    def make(template: str | None = None) -> str:
        name = f"cc_test_{uuid.uuid4().hex[:10]}"
        created.append(name)
        return local_env.create_database(admin_dsn, name, template=template)

    yield make
    for name in created:
        local_env.drop_database(admin_dsn, name)


@pytest.fixture
def empty_db(new_database) -> str:
    return new_database()


@pytest.fixture(scope="session")
def migrated_template(admin_dsn) -> str:
    """A database with all migrations applied, built once; tests copy it (CREATE DATABASE ... TEMPLATE)."""
    name = f"cc_template_{uuid.uuid4().hex[:8]}"
    dsn = local_env.create_database(admin_dsn, name)
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="pytest")
    yield name
    local_env.drop_database(admin_dsn, name)


@pytest.fixture
def migrated_db(new_database, migrated_template) -> str:
    return new_database(template=migrated_template)


@pytest.fixture(scope="session")
def generated_template(admin_dsn, migrated_template) -> str:
    """Migrated and filled with scale-1 generated data, built once; tests copy it."""
    from coldcopy.testing import generate_data

    name = f"cc_generated_{uuid.uuid4().hex[:8]}"
    generate_data.generate(local_env.create_database(admin_dsn, name, template=migrated_template), scale=1)
    yield name
    local_env.drop_database(admin_dsn, name)


@pytest.fixture
def generated_db(new_database, generated_template) -> str:
    return new_database(template=generated_template)


@pytest.fixture
def coldcopy_conn(monkeypatch):
    """Point the Airflow connection ``coldcopy_db`` at a DSN for the rest of the test."""

    def point_at(dsn: str) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DB", local_env.airflow_connection(dsn))

    return point_at


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on loopback for the whole session."""
    server = local_env.LocalS3().start()
    yield server
    server.stop()


@pytest.fixture
def spaces(s3_endpoint, monkeypatch):
    """A fresh bucket, with the ``coldcopy_spaces`` connection pointing at it: a ``coldcopy.object_store.Bucket``."""
    name = f"coldcopy-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_SPACES", local_env.spaces_connection(s3_endpoint.url, name))
    from coldcopy.object_store import Bucket

    bucket = Bucket.from_connection()
    bucket.client.create_bucket(Bucket=name)
    return bucket


@pytest.fixture
def faulty_spaces(s3_endpoint, monkeypatch):
    """A fresh bucket reached through a :class:`tests.support.s3_endpoint.FaultyProxy` (``fail_after`` cuts the endpoint
    mid-upload, ``heal`` ends it), with ``coldcopy_spaces`` pointing at it: yields ``(proxy, Bucket)``."""
    from coldcopy.object_store import Bucket
    from tests.support.s3_endpoint import FaultyProxy

    proxy = FaultyProxy(s3_endpoint.port)
    name = f"coldcopy-faults-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_SPACES", local_env.spaces_connection(proxy.url, name))
    bucket = Bucket.from_connection()
    bucket.client.create_bucket(Bucket=name)
    try:
        yield proxy, bucket
    finally:
        proxy.close()


BACKUP_PASSPHRASE = "correct horse battery staple (test only)"
MANIFEST_SECRET = "manifest signing secret, 32+ characters (test only)"
SUBJECT_PEPPER = "subject pepper of 32+ characters (test only)"
KEYRING = manifests.Keyring.from_secret(MANIFEST_SECRET)


@pytest.fixture
def backup_key(monkeypatch) -> str:
    """The ``coldcopy_backup_key`` connection, whose password is the encryption passphrase."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_BACKUP_KEY",
                       json.dumps({"conn_type": "generic", "password": BACKUP_PASSPHRASE}))
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY",
                       json.dumps({"conn_type": "generic", "password": MANIFEST_SECRET}))
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_SUBJECT_PEPPER",
                       json.dumps({"conn_type": "generic", "password": SUBJECT_PEPPER}))
    return BACKUP_PASSPHRASE


@pytest.fixture
def approvals(monkeypatch, backup_key):
    """``approvals(dag_id, record)``: the XCom a run's ``approve`` gate leaves for ``record`` (sealed with the
    test manifest key, bound to run ``manual__test``), with "alice" the only approver of both Variables."""
    from coldcopy.operators import approval

    for variable in ("COLDCOPY_MIGRATION_APPROVERS", "COLDCOPY_RESTORE_APPROVERS"):
        monkeypatch.setenv(f"AIRFLOW_VAR_{variable}", '["alice"]')

    def sealed(dag_id: str, record: dict, approvers_variable: str = "coldcopy_migration_approvers") -> dict:
        record = {"by": "alice", "by_id": "alice", **record}
        return approval.seal(FakeTaskInstance(dag_id=dag_id, task_id="approve"), record, approvers_variable)

    return sealed


@pytest.fixture
def sink(monkeypatch):
    """The alert webhook (``coldcopy_alerts_webhook``): a local server that records every alert."""
    from coldcopy.testing.alert_sink import AlertSink

    with AlertSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", sink.airflow_connection())
        yield sink


@pytest.fixture
def dpo(monkeypatch):
    """The ``coldcopy_dpo`` connection: a local webhook that receives GDPR export links and passphrases."""
    from coldcopy.testing.alert_sink import AlertSink

    with AlertSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DPO", sink.airflow_connection())
        yield sink


class FakeTaskInstance:
    """A task instance for calling an operator's ``execute`` outside Airflow: ``xcom_pull`` answers from
    ``xcoms`` (``{task_id: value}``), ``xcom_push`` records into ``pushed`` (the result line, a skip reason)."""

    def __init__(self, dag_id: str = "test_dag", task_id: str = "task", run_id: str = "manual__test",
                 try_number: int = 1, xcoms: dict | None = None) -> None:
        self.dag_id, self.task_id, self.run_id, self.try_number = dag_id, task_id, run_id, try_number
        self.xcoms, self.pushed = xcoms or {}, {}

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcoms.get(task_ids) if key == "return_value" else None

    def xcom_push(self, key, value):
        self.pushed[key] = value


def stock_decrypt(data: bytes, passphrase: str) -> bytes:
    """Stock ``gpg --decrypt``, as a person opening a backup, archive or export by hand would run it."""
    import subprocess

    read, write = os.pipe()
    os.write(write, passphrase.encode() + b"\n")
    os.close(write)
    try:
        return subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase-fd",
                               str(read), "--decrypt"], input=data, capture_output=True, pass_fds=(read,),
                              check=True).stdout
    finally:
        os.close(read)


_REAL_SERVICES = {"admin_dsn", "new_database", "empty_db", "migrated_db", "generated_db", "migrated_template",
                  "generated_template", "s3_endpoint", "spaces", "pgbouncer", "coldcopy_conn"}


def pytest_collection_modifyitems(config, items) -> None:
    """Tiers: ``e2e`` (tests/e2e: a live Airflow stack, Chromium) and ``integration`` (a real PostgreSQL, S3
    endpoint or PgBouncer); the rest are unit tests. ``make test`` runs all, ``make test-fast`` all but e2e."""
    e2e = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if e2e in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
        elif _REAL_SERVICES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def two_workspaces(migrated_db):
    """Workspaces A and B (one owner each) and a row of each in every tenant table."""
    user_a, user_b = str(uuid.uuid4()), str(uuid.uuid4())
    ws_a, ws_b = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for user, ws in ((user_a, ws_a), (user_b, ws_b)):
            conn.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (user, f"{user}@example.com"))
            conn.execute(
                "INSERT INTO workspaces (id, name, slug, owner_id) VALUES (%s, %s, %s, %s)", (ws, ws, ws, user)
            )
        conn.execute("SET session_replication_role = replica")
        for schema, table, kind in conn.execute(TENANT_RELATIONS).fetchall():
            is_partition = conn.execute("SELECT relispartition FROM pg_class WHERE oid = %s::regclass",
                                        (f"{schema}.{table}",)).fetchone()[0]
            if kind in "rp" and not is_partition and f"{schema}.{table}" not in SUMMARIES:  # those are derived
                for ws in (ws_a, ws_b):
                    insert_generic_row(conn, schema, table, ws)
        populate_analytics(conn)
    return migrated_db, user_a, ws_a, ws_b
