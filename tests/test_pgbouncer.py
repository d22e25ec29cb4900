"""A real PgBouncer (Debian's 1.18) with include/pgbouncer.ini: auth_query through migration 203, the ops
connection guard, and application traffic through it while ops jobs run (the small version of bench/load.py)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook, PoolerConnectionError
from coldcopy.testing import app_load, servers


@pytest.fixture(scope="module")
def pgbouncer(admin_dsn):
    bouncer = servers.LocalPgBouncer(admin_dsn).start()
    yield bouncer
    bouncer.stop()


def dbname(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]


def test_auth_query_logs_in_an_application_role_with_scram_and_never_a_superuser(pgbouncer, migrated_db):
    password = app_load.prepare(migrated_db)
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = %s",
                            (app_load.APP_ROLE,)).fetchone()[0]
        conn.execute("SET ROLE pgbouncer")  # what PgBouncer's auth_user sees
        assert conn.execute("SELECT count(*) FROM pgbouncer.get_auth('postgres')").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pgbouncer.get_auth(%s)", (app_load.APP_ROLE,)).fetchone()[0] == 1
    with psycopg.connect(pgbouncer.dsn(dbname(migrated_db), app_load.APP_ROLE, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == app_load.APP_ROLE
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pgbouncer.dsn(dbname(migrated_db), app_load.APP_ROLE, "wrong password")).close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pgbouncer.dsn(dbname(migrated_db), "postgres", "anything")).close()


def test_ops_tasks_refuse_a_transaction_pooling_connection_at_once(pgbouncer, migrated_db, coldcopy_conn):
    password = app_load.prepare(migrated_db)
    coldcopy_conn(pgbouncer.dsn(dbname(migrated_db), app_load.APP_ROLE, password))
    with pytest.raises(PoolerConnectionError, match="transaction-pooling proxy"):
        with ColdCopyPostgresHook().session():
            pass
    coldcopy_conn(migrated_db)  # the direct connection is fine
    with ColdCopyPostgresHook().session() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "15min"


def test_application_traffic_through_pgbouncer_never_waits_on_ops_jobs(pgbouncer, generated_db):
    from coldcopy.lock_retries import LockRetryPolicy
    from coldcopy.maintenance import Maintenance
    from coldcopy.refresh.dispatch import refresher_for
    from coldcopy.refresh.runs import RefreshRun
    from coldcopy.refresh_schedule import REFRESH_JOBS

    password = app_load.prepare(generated_db)
    result = {}
    load = threading.Thread(target=lambda: result.update(load=app_load.run(
        pgbouncer, dbname(generated_db), password, clients=20, seconds=12)))
    load.start()
    policy = LockRetryPolicy(attempts=6, lock_timeout_ms=1000)
    with psycopg.connect(generated_db, autocommit=True) as conn:  # ops connect directly
        for job in REFRESH_JOBS.values():
            for view in job.views:
                refresher_for(conn, view, lock_retry=policy, force=True).run(RefreshRun(run_id="load"))
        maintenance = Maintenance(conn, lock_retry=policy)
        for target in maintenance.vacuum_plan(everything=True)[0][:10]:
            maintenance.run(target)
    load.join()
    summary = result["load"].summary
    assert summary["errors"] == 0, result["load"].error_lines
    assert summary["transactions"] > 500
    assert summary["max_ms"] < policy.lock_timeout_ms, summary  # nobody waited behind an ops lock


def test_the_pooler_guard_is_not_fooled_by_a_role_default(pgbouncer, migrated_db, coldcopy_conn):
    """A role whose default statement_timeout equals the one ops sessions ask for made the old check pass
    through a transaction pooler; the per-connection nonce does not arrive there, whatever the role says."""
    password = app_load.prepare(migrated_db)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {app_load.APP_ROLE} SET statement_timeout = '15min'")
    coldcopy_conn(pgbouncer.dsn(dbname(migrated_db), app_load.APP_ROLE, password))
    with pytest.raises(PoolerConnectionError, match="transaction-pooling proxy"):
        with ColdCopyPostgresHook().session():
            pass
