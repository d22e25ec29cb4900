"""Slow queries (coldcopy.health.queries): with pg_stat_statements, and what to do without it."""

from __future__ import annotations

import psycopg

from coldcopy.testing import local_env
from tests.support.health import (
    Checker,
    texts,
)


def test_slow_queries_without_pg_stat_statements_report_how_to_enable(checker, migrated_db):
    c = checker()
    result = c.run("slow_queries")["slow_queries"]
    assert result.state == "unknown" and not result.failed and "not installed" in result.summary
    assert "ALTER SYSTEM SET shared_preload_libraries" in result.summary and "Supabase" not in result.summary
    with psycopg.connect(migrated_db, autocommit=True) as conn:  # a server with Supabase's roles
        conn.execute("DO $$ BEGIN CREATE ROLE supabase_admin NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; "
                     "END $$")
    try:
        assert "Database → Extensions" in c.run("slow_queries")["slow_queries"].summary
    finally:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute("DROP ROLE supabase_admin")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")  # installed, but this server does not preload it
    result = c.run("slow_queries")["slow_queries"]
    assert result.state == "unknown" and not result.failed and "not loaded" in result.summary


def test_a_slow_statement_is_found_in_pg_stat_statements(stat_statements_cluster, checker, sink):
    dsn = stat_statements_cluster.dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("CREATE TABLE IF NOT EXISTS leads_probe (email text)")
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.25), count(*) FROM leads_probe WHERE email = 'someone@example.com'")
        for _ in range(20):
            conn.execute("SELECT count(*) FROM leads_probe")
    c = checker(dsn, slow_min_calls=3)
    result = c.run("slow_queries")["slow_queries"]
    assert result.state == "breach" and result.value > 200
    [slow] = [q for q in result.details["by_mean_time"] if "pg_sleep" in q["query"]]
    assert slow["calls"] == 3 and slow["mean_ms"] >= 250
    assert "example.com" not in str(result.details)  # normalized: constants are $n
    assert "mean + 2·stddev" in result.details["p95_note"]
    assert sum("slow_queries breach" in t for t in texts(sink)) == 1
    c.run("slow_queries")
    assert sum("slow_queries" in t for t in texts(sink)) == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    assert c.run("slow_queries")["slow_queries"].state == "ok"
    assert sum("slow_queries resolved" in t for t in texts(sink)) == 1


def test_on_the_embedded_server_without_pg_stat_statements():
    """The embedded PostgreSQL (pgserver, what `make demo` and `make airflow` use) has no pg_stat_statements."""
    import uuid

    server = local_env.embedded_server_dsn()
    name = f"cc_health_{uuid.uuid4().hex[:8]}"
    dsn = local_env.create_database(server, name)
    c = Checker(dsn)
    try:
        result = c.run("slow_queries")["slow_queries"]
        assert result.state == "unknown" and not result.failed and "not installed" in result.summary
        for group in ("sizes", "indexes", "connections", "engine", "cpu"):
            assert not any(r.failed for r in c.run(group).values()), group
    finally:
        c.close()
        local_env.drop_database(server, name)
