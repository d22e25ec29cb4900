"""No rehearsal on the live server, no copy of production left behind (issue 31, 4 and 5).

Before: without ``coldcopy_verify_db`` the scratch database was made on ``coldcopy_db``'s server, and a pending
file's ``ALTER ROLE authenticated SET statement_timeout = '1ms'`` and ``CREATE ROLE … LOGIN`` stayed on the live
server after the rehearsal, before anyone approved them; a rehearsal killed with SIGKILL left
``coldcopy_rehearsal_<stamp>_<pid>`` with production's rows and CONNECT granted to PUBLIC, and nothing swept it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coldcopy import scratch
from coldcopy.migrations import MIGRATIONS_DIR
from coldcopy.operators.migrations import MigrationApprovalOperator
from coldcopy.operators.rehearsal import RehearseMigrationsOperator
from coldcopy.testing import local_env
from tests.conftest import FakeTaskInstance

SNEAKY = "rehearsal_sneaky_login"
PENDING = (f"ALTER ROLE authenticated SET statement_timeout = '1ms';\nCREATE ROLE {SNEAKY} LOGIN;\n"
           "CREATE TABLE public.later (id int PRIMARY KEY);\n")


def live_server_untouched(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SNEAKY,)).fetchone()
        settings = conn.execute("SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                                "WHERE r.rolname = 'authenticated'").fetchall()
        return role is None and not any("statement_timeout=1ms" in (s or []) for (s,) in settings)


def test_no_rehearsal_on_the_live_server_and_the_approver_is_told(generated_db, coldcopy_conn, backup_key, tmp_path,
                                                                  monkeypatch):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "390_cluster_wide.sql").write_text(PENDING)
    coldcopy_conn(generated_db)
    monkeypatch.delenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", raising=False)
    context = {"ti": FakeTaskInstance(dag_id="coldcopy_migrations", task_id="rehearse"), "params": {}}
    result = RehearseMigrationsOperator(task_id="rehearse", migrations_dir=folder).execute(context)
    assert "no coldcopy_verify_db connection" in result["not_rehearsed"] and result["files"] == []
    assert result["cluster_statements"] == {"390_cluster_wide.sql": [
        "ALTER ROLE authenticated SET statement_timeout = '1ms';", f"CREATE ROLE {SNEAKY} LOGIN;"]}
    assert live_server_untouched(generated_db)

    # coldcopy_verify_db spelled differently, reaching the same server: refused all the same
    same = psycopg.conninfo.conninfo_to_dict(generated_db) | {"host": "localhost", "dbname": "postgres"}
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", local_env.airflow_connection(
        psycopg.conninfo.make_conninfo(**same)))
    again = RehearseMigrationsOperator(task_id="rehearse", migrations_dir=folder).execute(context)
    assert "reaches coldcopy_db's own server" in again["not_rehearsed"]
    assert live_server_untouched(generated_db)

    plan = [{"file": "390_cluster_wide.sql", "phase": 3, "status": "pending", "checksum": "0" * 64}]
    ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="approve", xcoms={"plan": plan, "rehearse": again})
    _, body, _ = MigrationApprovalOperator(task_id="approve", migrations_dir=folder).describe({"ti": ti, "params": {}})
    assert "**Not rehearsed**" in body and "reaches coldcopy_db's own server" in body
    assert "Statements acting on the whole cluster" in body and f"CREATE ROLE {SNEAKY} LOGIN" in body


def killed_while_creating(admin_dsn: str, name: str, kind: str, ttl_s: float) -> None:
    """A task process that makes its scratch database and is killed (SIGKILL: no ``finally`` runs)."""
    code = ("import os, signal, psycopg; from datetime import timedelta; from coldcopy import scratch\n"
            f"with psycopg.connect({admin_dsn!r}, autocommit=True) as admin:\n"
            f"    scratch.create(admin, {name!r}, {kind!r}, timedelta(seconds={ttl_s}))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr


def test_what_a_killed_task_leaves_is_closed_reported_and_swept():
    from psycopg.rows import dict_row

    # Not the shared server: the live stack's db_health, in the process beside, would see these leftovers.
    admin_dsn = local_env.embedded_server_dsn()

    from coldcopy.health import Thresholds
    from coldcopy.health.operations import scratch_databases
    from coldcopy.health.results import Context

    stamp = f"{datetime.now(UTC) - timedelta(days=1):%Y%m%d%H%M%S}"
    legacy = f"coldcopy_rehearsal_{stamp}_4242"  # a rehearsal killed before this release: open to PUBLIC
    local_env.create_database(admin_dsn, legacy)
    killed_while_creating(admin_dsn, "coldcopy_verify_killed_test", "verify", 1)
    killed_while_creating(admin_dsn, "cc_killed_restore__restoring", "quarantine", 3600)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            left = {e["database"]: e for e in scratch.leftovers(admin)}
            assert not left["coldcopy_verify_killed_test"]["public_connect"]
            assert not left["cc_killed_restore__restoring"]["public_connect"]
            assert left[legacy]["public_connect"] and left[legacy]["expired"]
            time.sleep(1.2)
        with psycopg.connect(admin_dsn, autocommit=True, row_factory=dict_row) as conn:
            reported = scratch_databases(Context(conn, Thresholds()))
        assert reported.state == "breach" and legacy in reported.summary and "coldcopy_verify_killed_test" in \
            reported.summary and "cc_killed_restore__restoring" not in reported.summary.split("open to PUBLIC")[0]
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            swept = scratch.sweep(admin)  # what every rehearsal, verification and restore does first
            assert {legacy, "coldcopy_verify_killed_test"} <= set(swept)
            assert "cc_killed_restore__restoring" not in swept  # its task may still be running
            assert not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (legacy,)).fetchone()
    finally:
        for name in (legacy, "coldcopy_verify_killed_test", "cc_killed_restore__restoring"):
            local_env.drop_database(admin_dsn, name)


def test_a_label_nobody_can_read_counts_as_expired():
    admin_dsn = local_env.embedded_server_dsn()
    name = "coldcopy_verify_badlabel"
    local_env.create_database(admin_dsn, name)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f"COMMENT ON DATABASE {name} IS %s" % psycopg.sql.Literal(json.dumps(
                {"label": scratch.LABEL, "expires_at": "soon"})).as_string(admin))
            [entry] = [e for e in scratch.leftovers(admin) if e["database"] == name]
            assert entry["expired"]
    finally:
        local_env.drop_database(admin_dsn, name)


@pytest.mark.parametrize("text, found", [
    ("GRANT SELECT ON public.leads TO authenticated;", []),
    ("GRANT service_role TO authenticator;", ["GRANT service_role TO authenticator;"]),
    ("ALTER SYSTEM SET work_mem = '1GB';", ["ALTER SYSTEM SET work_mem = '1GB';"]),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity;",
     ["SELECT pg_terminate_backend(pid) FROM pg_stat_activity;"]),
    ("-- CREATE ROLE in a comment\nCREATE INDEX ON public.leads (id);", []),
])
def test_cluster_statements_are_found_and_nothing_else(text, found):
    from coldcopy.migrations import cluster_statements

    assert cluster_statements(text) == found
