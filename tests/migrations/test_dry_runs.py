"""Issue 41, 7: a dry run ends visibly different from an applied run (its apply tasks skipped, a run note "dry
run: nothing applied — …"), and a dry run whose purpose is to find problems fails when it finds one. Real
PostgreSQL, the DAGs run in-process."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.testing import local_env, servers
from coldcopy.testing.in_process import result_lines, run_dag


def note_of(run) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.get(DagRun, run.id).note


def test_a_migrations_dry_run_skips_every_apply_and_says_so_in_its_note(empty_db, coldcopy_conn, dagbag):
    coldcopy_conn(empty_db)
    run = run_dag(dagbag.get_dag("coldcopy_migrations"), conf={"dry_run": True})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success"
    applies = {task: state for task, state in states.items() if task.startswith("phase_")}
    assert applies and set(applies.values()) == {"skipped"}, states  # never green like an applied file
    assert "nothing applied" in result_lines(run)["phase_1_core.100_auth_and_workspaces"]
    files = len(discover_migrations())
    note = note_of(run) or ""
    assert note.startswith(f"dry run: nothing applied — {files} file(s), {files} pending: "
                           "100_auth_and_workspaces.sql"), note
    with psycopg.connect(empty_db) as conn:  # and it changed nothing (was test_migrations' own dry run)
        assert conn.execute("SELECT to_regclass('public.workspaces')").fetchone()[0] is None
        objects = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").fetchone()[0]
        assert objects == 0
        assert conn.execute("SELECT to_regclass('coldcopy_ops.schema_migrations')").fetchone()[0] is None


def test_a_change_archive_dry_run_that_finds_a_problem_fails_naming_it(migrated_db, coldcopy_conn, dagbag, sink):
    """The shared test server runs wal_level=replica: the setup could not work, so its dry run is red."""
    coldcopy_conn(migrated_db)
    run = run_dag(dagbag.get_dag("change_archive_setup"), conf={"dry_run": True}, require_results=False)
    assert run.state == "failed"
    [alert] = [r["body"]["alert"] for r in sink.received]
    assert "dry run: nothing changed; 1 problem(s) stop the setup: wal_level is 'replica'" in alert["summary"]
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0


@pytest.fixture(scope="module")
def logical_db():
    cluster = servers.ThrowawayCluster({"wal_level": "logical", "max_replication_slots": "4"}).start()
    try:
        dsn = local_env.create_database(cluster.dsn, "coldcopy")
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="pytest")
        yield dsn
    finally:
        cluster.stop()


def test_a_clean_change_archive_dry_run_is_noted_and_changes_nothing(logical_db, coldcopy_conn, dagbag, sink):
    coldcopy_conn(logical_db)
    run = run_dag(dagbag.get_dag("change_archive_setup"), conf={"dry_run": True})
    assert run.state == "success" and sink.received == []
    assert note_of(run).startswith("dry run: nothing applied — 2 statement(s) would run"), note_of(run)
    with psycopg.connect(logical_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
