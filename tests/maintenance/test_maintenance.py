"""Vacuum, reindex and statistics maintenance against real PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.maintenance import Maintenance, MaintenanceThresholds, Target
from coldcopy.testing.in_process import run_dag

DAGS = Path(__file__).resolve().parents[2] / "dags"
FAST = LockRetryPolicy(attempts=3, lock_timeout_ms=100, max_lock_timeout_ms=200, backoff_s=0.05)




def bloat(dsn: str, rows: int = 40_000, rounds: int = 4) -> None:
    """A table whose every row was updated ``rounds`` times: dead tuples in the heap and its indexes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.bloat_probe (id bigint PRIMARY KEY, payload text, n bigint)")
        conn.execute("CREATE INDEX bloat_probe_n_idx ON public.bloat_probe (n, id)")
        conn.execute("ALTER TABLE public.bloat_probe SET (autovacuum_enabled = false)")
        conn.execute("INSERT INTO public.bloat_probe SELECT g, repeat('x', 60), g FROM generate_series(1, %s) g",
                     (rows,))
        for _ in range(rounds):
            conn.execute("UPDATE public.bloat_probe SET n = n + %s", (rows,))
        conn.execute("ANALYZE public.bloat_probe")


def sizes(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT pg_relation_size('public.bloat_probe'), "
                            "pg_indexes_size('public.bloat_probe')").fetchone()


def log_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT action, target, outcome, size_before, size_after, detail "
                            "FROM coldcopy_ops.maintenance_log ORDER BY id").fetchall()


def test_daily_picks_the_bloated_table_and_explains_the_rest(generated_db):
    bloat(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        picked, skipped = Maintenance(conn).vacuum_plan()
    names = {t.name for t in picked}
    assert "public.bloat_probe" in names
    assert "public.workflows" in {t.name for t in skipped}  # untouched
    assert all(t.reason.startswith("not needed") for t in skipped)
    with psycopg.connect(generated_db) as conn:  # a partition of the current month: present whatever the date
        current = conn.execute("SELECT 'public.' || app.email_events_partition_name(now())").fetchone()[0]
    assert {t.name for t in picked} | {t.name for t in skipped} >= {"public.leads", current}


def test_weekly_shrinks_the_bloated_table_and_its_indexes(generated_db, coldcopy_conn, dagbag, airflow_db):
    bloat(generated_db)
    coldcopy_conn(generated_db)
    heap_before, indexes_before = sizes(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        full, _ = Maintenance(conn).full_vacuum_plan()
    assert "public.bloat_probe" in {t.name for t in full}
    assert "public.workflows" not in {t.name for t in full}
    run = run_dag(dagbag.get_dag("db_maintenance_weekly"))
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    heap_after, indexes_after = sizes(generated_db)
    assert heap_after < heap_before / 3 and indexes_after < indexes_before / 2
    done = [r for r in log_rows(generated_db) if r[1] == "public.bloat_probe" and r[0] == "vacuum_full"]
    assert done and done[0][2] == "done" and done[0][4] < done[0][3]


def test_reindex_concurrently_picks_bloated_indexes_only(generated_db):
    bloat(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("VACUUM public.bloat_probe")  # heap space reusable, indexes still full of dead entries
        m = Maintenance(conn, thresholds=MaintenanceThresholds(reindex_min_bytes=100_000))
        plan = m.reindex_plan()
        assert "public.bloat_probe_n_idx" in {t.name for t in plan}
        assert len(plan) <= 5
        before = m.size_of("public.bloat_probe_n_idx")
        assert m.run(next(t for t in plan if t.name == "public.bloat_probe_n_idx")).outcome == "done"
        assert m.size_of("public.bloat_probe_n_idx") < before / 2
        assert "public.bloat_probe_n_idx" not in {t.name for t in m.reindex_plan()}  # cooldown


def test_invalid_ccnew_leftover_is_dropped(generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.dupes (v bigint)")
        conn.execute("INSERT INTO public.dupes VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY dupes_v_idx_ccnew ON public.dupes (v)")
        m = Maintenance(conn)
        [leftover] = m.invalid_leftovers()
        assert leftover.name == "public.dupes_v_idx_ccnew"
        assert m.run(leftover).outcome == "done"
        assert conn.execute("SELECT to_regclass('public.dupes_v_idx_ccnew')").fetchone()[0] is None


def test_a_locked_table_is_skipped_and_the_rest_maintained(generated_db):
    bloat(generated_db)
    with psycopg.connect(generated_db) as blocker, psycopg.connect(generated_db, autocommit=True) as conn:
        blocker.execute("LOCK TABLE public.bloat_probe IN SHARE UPDATE EXCLUSIVE MODE")  # as a running VACUUM does
        m = Maintenance(conn, lock_retry=FAST)
        started = time.monotonic()
        assert m.run(Target("public.bloat_probe", "vacuum", "test")).outcome == "skipped"
        assert time.monotonic() - started < 3
        assert m.run(Target("public.leads", "vacuum", "test")).outcome == "done"
    skipped = [r for r in log_rows(generated_db) if r[1] == "public.bloat_probe"]
    assert skipped[-1][2] == "skipped" and "stayed locked" in skipped[-1][5]


def test_application_keeps_reading_and_writing_during_both_dags(generated_db, coldcopy_conn, dagbag, airflow_db):
    bloat(generated_db, rows=20_000)
    coldcopy_conn(generated_db)
    stop, waits, errors = threading.Event(), [], []

    def app() -> None:
        with psycopg.connect(generated_db, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '1s'")
            while not stop.is_set():
                began = time.monotonic()
                try:
                    conn.execute("UPDATE public.leads SET title = title WHERE id = "
                                 "(SELECT id FROM public.leads ORDER BY random() LIMIT 1)")
                    conn.execute("SELECT count(*) FROM public.campaigns")
                except psycopg.Error as error:
                    errors.append(error)
                waits.append(time.monotonic() - began)

    thread = threading.Thread(target=app)
    thread.start()
    try:
        run = run_dag(dagbag.get_dag("db_maintenance_daily"), conf={"all_tables": False})
        assert run.state == "success"
        with psycopg.connect(generated_db, autocommit=True) as conn:  # a week of writes, statistics left stale
            conn.execute("ALTER TABLE public.campaigns SET (autovacuum_enabled = false)")
            for _ in range(3):  # 3 × every campaign ≥ 50 + 10 % of them: due for ANALYZE whatever autovacuum did
                conn.execute("UPDATE public.campaigns SET name = name")
        run = run_dag(dagbag.get_dag("db_maintenance_weekly"))
        assert run.state == "success"
    finally:
        stop.set()
        thread.join()
    assert not errors and len(waits) > 20 and max(waits) < 1.0
    actions = {r[0] for r in log_rows(generated_db)}
    assert {"vacuum", "purge_cache", "vacuum_full", "analyze"} <= actions


def test_vacuum_full_never_waits_over_1_s_for_its_lock(generated_db):
    """The retry policy grows other lock waits up to 5x; ACCESS EXCLUSIVE work is capped at 1 s per attempt."""
    bloat(generated_db, rows=2_000, rounds=1)
    growing = LockRetryPolicy(attempts=2, lock_timeout_ms=1000, max_lock_timeout_ms=5000, backoff_s=0)
    with psycopg.connect(generated_db) as blocker, psycopg.connect(generated_db, autocommit=True) as conn:
        blocker.execute("SELECT count(*) FROM public.bloat_probe")  # ACCESS SHARE, as any reader
        started = time.monotonic()
        done = Maintenance(conn, lock_retry=growing).run(Target("public.bloat_probe", "vacuum_full", "test"))
        outcome = done.outcome
        assert outcome == "skipped" and time.monotonic() - started < 2.5  # 2 attempts of 1 s, not 1 s + 2 s


def test_a_failed_reindex_concurrently_drops_its_invalid_ccnew_at_once(generated_db):
    bloat(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        m = Maintenance(conn, statement_timeout="3ms")  # fails part-way, after the _ccnew index exists
        with pytest.raises(psycopg.errors.QueryCanceled):
            for _ in range(20):  # the build is fast on some runs: until one is cut off
                m.run(Target("public.bloat_probe_n_idx", "reindex", "test"))
        invalid = conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                               "WHERE c.relname LIKE 'bloat_probe%%' AND NOT i.indisvalid").fetchone()[0]
        assert invalid == 0
        assert conn.execute("SELECT to_regclass('public.bloat_probe_n_idx') IS NOT NULL").fetchone()[0]
