"""db_health's checks on states made on purpose, against real PostgreSQL: the right state, one alert, no repeat on
the next run, ``resolved`` once fixed. pg_stat_statements in a throwaway cluster started with it preloaded."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from coldcopy import health, ops_schema
from coldcopy.testing import local_env, servers


def texts(sink) -> list[str]:
    return [a["body"]["text"] for a in sink.received]


class Checker:
    """Runs check groups the way the operator does (ops schema ensured, dict rows, record + alert)."""

    def __init__(self, dsn: str, **thresholds) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        ops_schema.ensure(self.conn, "health")
        self.conn.row_factory = dict_row
        self.t = health.Thresholds.from_overrides(thresholds)

    def run(self, group: str, **thresholds) -> dict[str, health.Result]:
        t = health.Thresholds.from_overrides(self.t.model_dump(), thresholds) if thresholds else self.t
        results = health.run_group(health.Context(self.conn, t), group)
        health.record(self.conn, results, t, run_id="test")
        return {r.check: r for r in results}

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def checker(migrated_db):
    made = []

    def make(dsn: str = migrated_db, **thresholds) -> Checker:
        made.append(Checker(dsn, **thresholds))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_storage_breach_alerts_once_then_resolves(checker, sink):
    c = checker()
    size = c.conn.execute("SELECT pg_database_size(current_database()) AS b").fetchone()["b"]
    tiny = size / health.GB / 0.9  # the database is 90 % of this allocation
    first = c.run("sizes", storage_allocated_gb=tiny)["storage"]
    assert first.state == "breach" and 85 < first.value < 95
    assert first.details["tables"] and {"table_bytes", "index_bytes", "toast_bytes"} <= set(first.details["tables"][0])
    assert len(sink.received) == 1 and "storage breach" in texts(sink)[0]
    c.run("sizes", storage_allocated_gb=tiny)
    assert len(sink.received) == 1  # still in breach, nothing new: no repeat
    assert c.run("sizes")["storage"].state == "ok"  # 100 GB again
    assert len(sink.received) == 2 and "storage resolved" in texts(sink)[1]
    assert sink.received[1]["body"]["alert"]["kind"] == "resolved"
    c.run("sizes")
    assert len(sink.received) == 2


def test_alert_policy_reminds_and_escalates_but_never_repeats(migrated_db):
    t = health.Thresholds()
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    breach = health.Result("storage", "breach", "x", 82.0)
    told = {"alerted_state": "breach", "alerted_value": 82.0, "alerted_at": now - timedelta(hours=1)}
    assert health.alert_for(breach, None, now, t) == "entered"
    assert health.alert_for(breach, told, now, t) is None
    assert health.alert_for(breach, {**told, "alerted_at": now - timedelta(hours=6)}, now, t) == "reminder"
    assert health.alert_for(health.Result("storage", "breach", "x", 97.0), told, now, t) is None  # < 25 % further
    assert health.alert_for(health.Result("storage", "breach", "x", 103.0), told, now, t) == "worse"
    assert health.alert_for(health.Result("x", "breach", "x", 1.0),
                            {**told, "alerted_state": "warning", "alerted_value": 1.0}, now, t) == "worse"
    assert health.alert_for(health.Result("x", "warning", "x", 1.0),
                            {**told, "alerted_state": "warning", "alerted_at": now - timedelta(days=1)}, now,
                            t) is None  # warnings are told once, no reminders
    ages = health.Result("lock_waits", "breach", "x", 600.0, worse_by_value=False)
    assert health.alert_for(ages, {**told, "alerted_value": 40.0}, now, t) is None  # waits grow by themselves
    assert health.alert_for(health.Result("x", "unknown", "x"), told, now, t) is None
    assert health.alert_for(health.Result("x", "ok", "x"), told, now, t) == "resolved"
    lower = health.Result("partition_horizon", "breach", "x", 0, higher_is_worse=False)
    assert health.alert_for(lower, {**told, "alerted_value": 1.0}, now, t) == "worse"


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="unknown health threshold 'storage_gb'"):
        health.Thresholds.from_overrides({"storage_gb": 10})
    with pytest.raises(ValueError, match="must be a number"):
        health.Thresholds.from_overrides({"cpu_cores": "four"})
    assert health.Thresholds.from_overrides({"cpu_cores": 4.0}, {"storage_allocated_gb": 250}).cpu_cores == 4


def test_unused_and_duplicate_indexes(checker, migrated_db, sink):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.health_probe (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO public.health_probe SELECT g, 'p' || g || '@example.com' "
                     "FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX health_probe_email_idx ON public.health_probe (email)")
        conn.execute("CREATE INDEX health_probe_email_dup_idx ON public.health_probe (email)")
    c = checker(unused_index_min_bytes=100_000)
    early = c.run("indexes")["unused_indexes"]  # a database built minutes ago: its statistics say nothing yet
    assert early.state == "ok" and early.summary.startswith("too early to judge (statistics 0 h old, 7 days")
    assert not [t for t in texts(sink) if "unused_indexes" in t]
    results = c.run("indexes", stats_min_days=0)
    unused = [i["index"] for i in results["unused_indexes"].details["indexes"]]
    assert "public.health_probe_email_idx" in unused and "public.health_probe_pkey" not in unused
    assert results["unused_indexes"].state == "warning"
    [dup] = [d for d in results["duplicate_indexes"].details["duplicates"] if d["table"] == "public.health_probe"]
    assert dup["indexes"] == ["public.health_probe_email_dup_idx", "public.health_probe_email_idx"]
    assert sum("unused_indexes warning" in t for t in texts(sink)) == 1
    c.run("indexes", stats_min_days=0)
    assert sum("unused_indexes" in t for t in texts(sink)) == 1


def test_idle_in_transaction_session_then_resolved(checker, migrated_db, sink):
    c = checker(idle_in_transaction_s=1)
    idle = psycopg.connect(migrated_db, application_name="the-app")
    idle.execute("SELECT 1")  # a transaction left open
    time.sleep(1.5)
    result = c.run("engine")["long_transactions"]
    assert result.state == "breach"
    assert [s["application"] for s in result.details["sessions"]] == ["the-app"]
    assert sum("long_transactions breach" in t for t in texts(sink)) == 1
    c.run("engine")
    assert sum("long_transactions" in t for t in texts(sink)) == 1
    idle.rollback()
    assert c.run("engine")["long_transactions"].state == "ok"
    assert sum("long_transactions resolved" in t for t in texts(sink)) == 1
    idle.close()


def test_a_blocked_session_and_who_blocks_it(checker, migrated_db, sink):
    c = checker(lock_wait_warn_s=0.2, lock_wait_breach_s=1)
    holder = psycopg.connect(migrated_db, application_name="holder")
    holder.execute("LOCK TABLE public.workspaces IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid

    def blocked_reader():
        with psycopg.connect(migrated_db, application_name="blocked-reader") as reader:
            reader.execute("SELECT count(*) FROM public.workspaces")

    reader = threading.Thread(target=blocked_reader)
    reader.start()
    time.sleep(2)
    try:
        result = c.run("engine")["lock_waits"]
    finally:
        holder.rollback()
        reader.join()
        holder.close()
    assert result.state == "breach"
    [waiter] = result.details["waiting"]
    assert waiter["application"] == "blocked-reader" and waiter["blocked_by"] == [holder_pid]
    assert [b["application"] for b in result.details["blockers"]] == ["holder"]
    assert sum("lock_waits breach" in t for t in texts(sink)) == 1
    assert c.run("engine")["lock_waits"].state == "ok"
    assert sum("lock_waits resolved" in t for t in texts(sink)) == 1


def test_views_older_than_their_cadence_and_a_short_partition_horizon(checker, migrated_db, sink):
    c = checker()
    ops_schema.ensure(psycopg.connect(migrated_db, autocommit=True), "refresh_tracking")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for view, age in [("analytics.campaign_analytics", "5 hours"), ("analytics.sequence_step_performance",
                                                                        "10 minutes")]:
            conn.execute("INSERT INTO coldcopy_ops.mv_refresh_log (view_name, run_id, started_at, finished_at, "
                         "duration_ms, action, reason) VALUES (%s, 't', now() - %s::interval, now() - %s::interval, "
                         "1, 'refreshed', 'test')", (view, age, age))
        ahead = conn.execute("SELECT name FROM app.email_events_partitions "
                             "WHERE range_start >= app.month_start_utc(now(), 2) ORDER BY range_start").fetchall()
        for (name,) in ahead:  # keep one month ahead only
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier("public", name)))
    results = c.run("ops_freshness")
    views = {v["view"]: v for v in results["view_freshness"].details["views"]}
    assert views["analytics.campaign_analytics"]["state"] == "breach"  # 5 h > 2 × 1 h + 20 min
    assert views["analytics.sequence_step_performance"]["state"] == "ok"
    assert views["analytics.workspace_usage"]["state"] == "breach"  # never refreshed by us
    assert results["view_freshness"].state == "breach"
    horizon = results["partition_horizon"]
    assert horizon.state == "breach" and horizon.value == 1
    assert results["backup_age"].state == "breach" and "no verified" in results["backup_age"].summary
    assert sum("partition_horizon breach" in t for t in texts(sink)) == 1
    c.run("ops_freshness")
    assert sum("partition_horizon" in t for t in texts(sink)) == 1
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("SELECT app.create_email_events_partition(app.month_start_utc(now(), 2))")
        conn.execute("SELECT app.create_email_events_partition(app.month_start_utc(now(), 3))")
    assert c.run("ops_freshness")["partition_horizon"].state == "ok"
    assert sum("partition_horizon resolved" in t for t in texts(sink)) == 1


def test_a_check_that_errors_is_unknown_and_fails(checker, migrated_db, sink):
    c = checker()
    c.conn.execute("SET statement_timeout = '300ms'")
    blocker = psycopg.connect(migrated_db)
    blocker.execute("LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE")
    try:
        [result] = health.run_group(health.Context(c.conn, c.t), "sizes")
    finally:
        blocker.rollback()
        blocker.close()
    health.record(c.conn, [result], c.t)
    assert result.state == "unknown" and result.failed and "QueryCanceled" in result.summary
    latest = c.conn.execute("SELECT state FROM coldcopy_ops.health_snapshot WHERE check_name = 'sizes' "
                            "ORDER BY taken_at DESC LIMIT 1").fetchone()
    assert latest["state"] == "unknown" and not sink.received


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


@pytest.fixture(scope="module")
def stat_statements_cluster():
    cluster = servers.ThrowawayCluster({"shared_preload_libraries": "pg_stat_statements"}).start()
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    yield cluster
    cluster.stop()


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


def test_every_group_runs_on_a_generated_database(checker, generated_db):
    c = checker(generated_db)
    ran = set()
    for group in health.CHECKS:
        for name, result in c.run(group).items():
            assert not result.failed, (group, result.summary)
            assert result.state in ("ok", "warning", "breach", "unknown")
            ran.add(name)
    stored = {r["check_name"] for r in c.conn.execute("SELECT DISTINCT check_name FROM coldcopy_ops.health_snapshot")}
    assert stored == ran and len(ran) > len(health.CHECKS)  # every result kept; groups hold several checks
    assert "pgbouncer_pools" not in stored  # no coldcopy_pgbouncer connection here
    assert "change_archive" in stored


def test_prune_keeps_90_days(checker):
    c = checker()
    c.conn.execute("INSERT INTO coldcopy_ops.health_snapshot (check_name, taken_at, state, summary) "
                   "SELECT 'storage', now() - g * interval '1 day' - interval '1 hour', 'ok', 'x' "
                   "FROM generate_series(0, 99) g")
    assert health.prune(c.conn, 90, batch=7) == 10
    assert c.conn.execute("SELECT count(*) AS n FROM coldcopy_ops.health_snapshot").fetchone()["n"] == 90


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


def test_cache_hit_waits_until_the_statistics_cover_a_week(checker):
    c = checker(cache_min_blocks=1)
    early = c.run("engine")["cache_hit"]
    assert early.state == "ok" and early.value is None and early.summary.startswith("too early to judge")
    with psycopg.connect(c.conn.info.dsn) as conn:  # block reads to judge, counted once the session's stats flush
        conn.execute("SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid")
    time.sleep(1.5)
    judged = c.run("engine", stats_min_days=0)["cache_hit"]
    assert judged.value is not None and "served from shared buffers" in judged.summary


def test_a_detached_month_among_the_largest_tables_carries_its_drop_date(checker, generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        ops_schema.ensure(conn, "partition_rotation")
        month = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE i.inhparent = 'public.email_events'::regclass ORDER BY 1 LIMIT 1").fetchone()[0]
        conn.execute(f"ALTER TABLE public.email_events DETACH PARTITION public.{month}")
        conn.execute("INSERT INTO coldcopy_ops.partition_archive (partition_name, range_start, range_end, object_key, "
                     "manifest_key, row_count, row_checksum, sha256, byte_size, state, exported_at, detached_at) "
                     "VALUES (%s, now(), now(), 'k', 'm', 0, '', '', 0, 'detached', now(), "
                     "'2026-11-01T01:00:00+00:00')", (month,))
    tables = checker(generated_db).run("sizes")["storage"].details["tables"]
    [detached] = [t for t in tables if t["name"] == f"public.{month}"]
    assert detached["detached_drops_after"].isoformat().startswith("2026-11-08")
    assert all("detached_drops_after" not in t for t in tables if t["name"] != f"public.{month}")
