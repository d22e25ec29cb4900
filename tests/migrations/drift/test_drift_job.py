"""The daily drift check (schema_drift's operator), db_health's schema_drift check, its alert once per new drift,
and adopting drift as a migration file — on this machine's server as live, a throwaway cluster as the verify
server."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from coldcopy import MIGRATIONS_DIR, health
from coldcopy.health.drift import schema_drift
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.drift import adopt, find
from coldcopy.operators.drift import SchemaDriftOperator
from coldcopy.testing import local_env, servers
from tests.conftest import FakeTaskInstance


@pytest.fixture(scope="module")
def verify_server():
    cluster = servers.ThrowawayCluster().start()
    yield cluster
    cluster.stop()


def _verify_admin(cluster) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"


def _check(dsn: str):
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return schema_drift(health.Context(conn, health.Thresholds()))


def test_the_daily_check_records_alerts_new_drift_once_and_health_grades_it(migrated_db, coldcopy_conn, sink,
                                                                            verify_server, monkeypatch):
    coldcopy_conn(migrated_db)
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", local_env.airflow_connection(_verify_admin(verify_server)))

    def run() -> dict:
        context = {"ti": FakeTaskInstance(dag_id="schema_drift", task_id="find_drift"), "params": {}}
        return SchemaDriftOperator(task_id="find_drift").execute(context)

    clean = run()
    assert (clean["outcome"], clean["drifted"], clean["new"]) == ("checked", 0, [])
    assert _check(migrated_db).state == "ok" and not sink.received
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("CREATE INDEX leads_by_hand ON public.leads (lower(email))")
    indexed = run()
    assert indexed["new"] == ["index public.leads_by_hand"] and indexed["breaches"] == 0
    assert _check(migrated_db).state == "warning" and len(sink.received) == 1
    assert run()["new"] == [] and len(sink.received) == 1  # the same drift the next day: no second alert
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE public.leads NO FORCE ROW LEVEL SECURITY")
    loosened = run()
    assert loosened["new"] == ["table public.leads"] and loosened["breaches"] == 1
    graded = _check(migrated_db)
    assert graded.state == "breach" and "no longer forced" in graded.summary, graded
    assert len(sink.received) == 2 and "security-relevant" in str(sink.received[-1]["body"])


def test_without_a_server_of_its_own_the_check_is_unknown_not_run_on_live(migrated_db, coldcopy_conn, monkeypatch):
    coldcopy_conn(migrated_db)
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", local_env.airflow_connection(local_env.admin_dsn()))
    context = {"ti": FakeTaskInstance(dag_id="schema_drift", task_id="find_drift"), "params": {}}
    result = SchemaDriftOperator(task_id="find_drift").execute(context)
    assert result["outcome"] == "unknown" and "own server" in result["why"]
    assert _check(migrated_db).state == "unknown"
    with psycopg.connect(local_env.admin_dsn()) as admin:
        assert not admin.execute("SELECT 1 FROM pg_database WHERE datname LIKE 'coldcopy_drift_%'").fetchall()


def test_drift_adopted_as_a_migration_file_is_no_longer_drift(migrated_db, verify_server, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE public.leads DROP COLUMN company")
        conn.execute("CREATE INDEX leads_by_hand ON public.leads (lower(email))")
    before_files = discover_migrations(folder)
    before = find(migrated_db, _verify_admin(verify_server), before_files)
    assert {(d.kind, d.name, d.change) for d in before.differences} == {
        ("column", "public.leads.company", "missing"), ("index", "public.leads_by_hand", "extra"),
        ("index", "public.leads_workspace_company_idx", "missing")}  # it went with the column
    path = adopt.main(["--live", migrated_db, "--verify", _verify_admin(verify_server), "--directory", str(folder),
                       "--record"])
    text = path.read_text()
    version = max(m.version for m in before_files if m.version < 1000) + 1
    assert path.name.startswith(f"{version}_adopt_drift_")
    assert "DROP COLUMN company" in text and "leads_by_hand" in text
    after = find(migrated_db, _verify_admin(verify_server), discover_migrations(folder))
    assert after.differences == [], after.summary()
