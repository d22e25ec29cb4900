"""One workspace as of a second, into a new schema of the live database: support copies back what a customer
deleted by mistake — exactly that workspace's rows as they were, nobody else's."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.backups import BackupRunner
from coldcopy.operators.restore import RestoreFromSpacesOperator
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.runs import RefreshRun
from tests.conftest import BACKUP_PASSPHRASE, KEYRING, FakeTaskInstance


def workspace_rows(dsn: str, workspace: str, schema: str = "public", where: bool = True) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1", (schema,))]
        return {t: [r[0] for r in conn.execute(
            f"SELECT x::text FROM {schema}.{t} x {'WHERE workspace_id = %s' if where else ''} ORDER BY 1",
            (workspace,) if where else ())] for t in tables}


def test_one_workspace_as_of_a_second_into_a_new_schema(pitr_db, spaces, backup_key, coldcopy_conn):
    archiver = ChangeArchiver(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    archiver.drain_once()
    BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING).backup()
    with psycopg.connect(pitr_db, autocommit=True) as conn:
        workspace, other = [str(w) for (w,) in conn.execute(
            "SELECT workspace_id FROM public.campaigns GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 2")]
        conn.execute("UPDATE public.campaigns SET name = name || ' (edited)' WHERE workspace_id = %s", (workspace,))
    time.sleep(1.1)
    at = datetime.now(UTC).replace(microsecond=0)
    expected = {t: rows for t, rows in workspace_rows(pitr_db, workspace).items() if rows}
    time.sleep(1.1)
    with psycopg.connect(pitr_db, autocommit=True) as conn:  # the accident, a second later
        conn.execute("DELETE FROM public.campaigns WHERE workspace_id = %s", (workspace,))
    time.sleep(1.1)
    archiver.tip_every_s = 0
    archiver.drain_once()
    coldcopy_conn(pitr_db)
    ti = FakeTaskInstance(dag_id="restore_from_spaces", run_id="r", task_id="restore")
    with pytest.raises(AirflowFailException, match="not a UUID"):
        RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database="", workspace_id="ws-1",
                                  target_schema="support_copy", as_of=f"{at:%Y-%m-%dT%H:%M:%SZ}").execute({"ti": ti})
    done = RestoreFromSpacesOperator(
        task_id="restore", backup="latest", target_database="", workspace_id=workspace, target_schema="support_copy",
        as_of=f"{at:%Y-%m-%dT%H:%M:%SZ}").execute({"ti": ti})
    assert done["target_schema"] == "support_copy" and done["rows"] > 0
    copied = {t: rows for t, rows in workspace_rows(pitr_db, workspace, "support_copy", where=False).items()
              if rows}
    assert copied == expected  # exactly the workspace's rows as of that second, edits included, nothing deleted
    with psycopg.connect(pitr_db) as conn:
        assert conn.execute("SELECT array_agg(id::text) FROM support_copy.workspaces").fetchone()[0] == [workspace]
        assert other not in str(conn.execute("SELECT array_agg(workspace_id) FROM support_copy.campaigns").fetchone())
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'coldcopy_ws_%'").fetchone()[0] == 0
        assert conn.execute("SELECT has_schema_privilege('public', 'support_copy', 'USAGE')").fetchone()[0] is False
    with pytest.raises(AirflowFailException, match="exists already"):
        RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database="", workspace_id=workspace,
                                  target_schema="support_copy", as_of=f"{at:%Y-%m-%dT%H:%M:%SZ}").execute({"ti": ti})


def test_only_some_tables_as_of_a_second_into_a_database_with_the_schema(pitr_db, spaces, backup_key,
                                                                          coldcopy_conn, logical):
    from coldcopy.migrations import discover_migrations
    from coldcopy.migrations.runner import MigrationRunner
    from coldcopy.testing import local_env

    archiver = ChangeArchiver(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    archiver.drain_once()
    BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING).backup()
    with psycopg.connect(pitr_db, autocommit=True) as conn:
        conn.execute("DELETE FROM public.suppression_list WHERE id IN "
                     "(SELECT id FROM public.suppression_list ORDER BY id LIMIT 7)")
        time.sleep(1.1)
        at = datetime.now(UTC).replace(microsecond=0)
        expected = [r[0] for r in conn.execute("SELECT s::text FROM public.suppression_list s ORDER BY 1")]
        time.sleep(1.1)
        conn.execute("TRUNCATE public.suppression_list")  # the accident
    time.sleep(1.1)
    archiver.tip_every_s = 0
    archiver.drain_once()
    name = f"{psycopg.conninfo.conninfo_to_dict(pitr_db)['dbname']}_tables"
    target = local_env.create_database(logical.dsn, name)
    MigrationRunner(lambda: psycopg.connect(target)).apply_all(discover_migrations(), applied_by="pytest")
    coldcopy_conn(pitr_db)
    ti = FakeTaskInstance(dag_id="restore_from_spaces", run_id="r", task_id="restore")
    RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=name,
                              tables=["public.suppression_list"], as_of=f"{at:%Y-%m-%dT%H:%M:%SZ}"
                              ).execute({"ti": ti})
    with psycopg.connect(target) as conn:
        assert [r[0] for r in conn.execute("SELECT s::text FROM public.suppression_list s ORDER BY 1")] == expected
        assert conn.execute("SELECT count(*) FROM public.leads").fetchone()[0] == 0  # only the table asked for


def test_a_one_workspace_copy_holds_no_other_tenants_row_in_any_schema_or_view(generated_db):
    """Issue 31, 7: before, only ``public`` was filtered: ``analytics.*`` (materialized views) kept every
    tenant's rows, 4,500 ``lead_engagement`` rows and other tenants' campaign names among them."""
    from coldcopy.pitr.workspace import keep_only

    with psycopg.connect(generated_db, autocommit=True) as conn:
        [workspace] = conn.execute("SELECT workspace_id::text FROM public.campaigns GROUP BY 1 ORDER BY count(*) DESC, "
                                   "1 LIMIT 1").fetchone()
        views = [v for (v,) in conn.execute(  # the materialized views and the summaries (305)
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'analytics' AND c.relkind IN ('m', 'r') AND EXISTS (SELECT 1 FROM pg_attribute a "
            "WHERE a.attrelid = c.oid AND a.attname = 'workspace_id')")]
        assert len(views) == 7
        for view in views:  # populated, as production's are
            refresher_for(conn, view).run(RefreshRun(run_id="fill"))
        assert views and any(conn.execute(f"SELECT count(*) FROM {v} WHERE workspace_id <> %s", (workspace,)
                                          ).fetchone()[0] for v in views)  # other tenants' rows before
    keep_only(generated_db, workspace)
    with psycopg.connect(generated_db) as conn:
        for view in views:
            assert conn.execute(f"SELECT count(*) FROM {view} WHERE workspace_id IS DISTINCT FROM %s",
                                (workspace,)).fetchone()[0] == 0, view
        assert sum(conn.execute(f"SELECT count(*) FROM {v}").fetchone()[0] for v in views) > 0  # its own kept
        others = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN "
            "pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' WHERE c.relkind IN ('r', 'p') AND "
            "NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchall()
        for schema, table in others:
            assert conn.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE workspace_id IS DISTINCT FROM %s',
                                (workspace,)).fetchone()[0] == 0, (schema, table)
        stats = conn.execute("SELECT most_common_vals::text FROM pg_stats WHERE schemaname = 'public' AND "
                             "tablename = 'campaigns' AND attname = 'workspace_id'").fetchone()
        assert stats is None or stats[0] is None or stats[0].strip("{}") in ("", workspace)  # statistics again
