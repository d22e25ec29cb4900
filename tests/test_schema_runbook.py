"""The schema's operational parts and its other paths: PgBouncer's auth_query, cache tables, the psql runbook,
PostgreSQL 16, squawk."""

from __future__ import annotations

import subprocess
import uuid

import psycopg
import pytest
from psycopg import sql

from coldcopy import MIGRATIONS_DIR, REPO_ROOT
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.testing import local_env
from tests.support.schema import schema_dump


def test_pgbouncer_auth_query(migrated_db):
    role = f"cc_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'not-a-secret'").format(sql.Identifier(role)))
        try:
            conn.execute("SET ROLE pgbouncer")
            [(user, hashed)] = conn.execute("SELECT * FROM pgbouncer.get_auth(%s)", (role,)).fetchall()
            assert user == role and hashed.startswith(("SCRAM-SHA-256$", "md5"))
            assert conn.execute("SELECT * FROM pgbouncer.get_auth('postgres')").fetchall() == []  # superuser
            conn.execute("RESET ROLE")
            conn.execute("SET ROLE authenticated")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM pgbouncer.get_auth(%s)", (role,))
        finally:
            conn.execute("RESET ROLE")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    ini = (REPO_ROOT / "include" / "pgbouncer.ini").read_text()
    assert "auth_query = SELECT username, password FROM pgbouncer.get_auth($1)" in ini


def test_cache_tables_are_unlogged_and_purged_in_batches(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        kinds = dict(conn.execute("SELECT relname, relpersistence FROM pg_class WHERE relname IN "
                                  "('dashboard_cache', 'enrichment_cache', 'api_rate_limits')").fetchall())
        assert kinds == {"dashboard_cache": "u", "enrichment_cache": "u", "api_rate_limits": "u"}
        user, ws = uuid.uuid4(), uuid.uuid4()
        conn.execute("INSERT INTO users (id, email) VALUES (%s, 'c@example.com')", (user,))
        conn.execute("INSERT INTO workspaces (id, name, slug, owner_id) VALUES (%s, 'c', 'c', %s)", (ws, user))
        conn.execute("INSERT INTO dashboard_cache (workspace_id, cache_key, expires_at) "
                     "SELECT %s, 'k' || g, "
                     "now() + CASE WHEN g <= 25 THEN interval '-1 hour' ELSE interval '1 hour' END "
                     "FROM generate_series(1, 40) g", (ws,))
        assert conn.execute("SELECT app.purge_expired_cache(10)").fetchone()[0] == 10
        while conn.execute("SELECT app.purge_expired_cache(10)").fetchone()[0]:
            pass
        assert conn.execute("SELECT count(*) FROM dashboard_cache").fetchone()[0] == 15


def test_psql_runbook_path_gives_the_same_schema(empty_db, migrated_db):
    for migration in discover_migrations():
        local_env.psql_file(empty_db, migration.path)
    assert schema_dump(empty_db) == schema_dump(migrated_db)


def test_migrations_apply_on_postgresql_16():
    """The embedded server (pgserver) is PostgreSQL 16; the local one is 15."""
    server = local_env.embedded_server_dsn("pg16-test")
    name = f"cc_pg16_{uuid.uuid4().hex[:8]}"
    dsn = local_env.create_database(server, name)
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.info.server_version // 10000 == 16
        runner = MigrationRunner(lambda: psycopg.connect(dsn))
        assert len(runner.apply_all(discover_migrations(), applied_by="pytest")) == 26
        assert len(runner.apply_all(discover_migrations(), applied_by="pytest")) == 0
    finally:
        local_env.drop_database(server, name)


def test_squawk_lint_passes():
    result = subprocess.run([local_env.executable("squawk"), *sorted(str(p) for p in MIGRATIONS_DIR.glob("*.sql"))],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
