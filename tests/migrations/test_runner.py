"""The migration runner (coldcopy.migrations.runner): checksummed, locked, lock-timeout-safe, resumable parts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.lock_retries import LockRetriesExhausted, LockRetryPolicy
from coldcopy.migrations import MigrationError, Status, discover_migrations
from coldcopy.migrations.runner import HISTORY_TABLE, MigrationRunner
from coldcopy.operators.migrations import (
    MigrationPlanOperator,
)
from tests.support.migrations import (
    FAST_LOCKS,
    _apply_catching,
    history,
    run_dag,
    runner_for,
    small_dag,
    table_exists,
    write,
)


def test_broken_migration_rolls_back_and_fails_naming_the_file(tmp_path, empty_db, coldcopy_conn, airflow_db):
    directory = write(tmp_path / "m", {
        "100_good.sql": "CREATE TABLE good (id bigint PRIMARY KEY);\n",
        "101_broken.sql": "CREATE TABLE half_done (id bigint);\nINSERT INTO good VALUES (1);\nCREATE TABLE oops (;\n",
        "102_after.sql": "CREATE TABLE after_broken (id bigint);\n",
    })
    coldcopy_conn(empty_db)
    run, states = run_dag(small_dag(directory, "broken_migration_test"))
    assert run.state == "failed"
    assert states["m100"] == "success" and states["m101"] == "failed" and states["m102"] == "upstream_failed"
    # Deterministic failures are not retried.
    assert [ti.try_number for ti in run.get_task_instances() if ti.task_id == "m101"] == [1]
    assert [v for v, *_ in history(empty_db)] == [100]
    assert not table_exists(empty_db, "half_done")
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM good").fetchone()[0] == 0

    migrations = discover_migrations(directory)
    with pytest.raises(MigrationError, match=r"101_broken\.sql failed at line 3 and was rolled back: 42601"):
        runner_for(empty_db).apply(migrations[1], applied_by="test", predecessors=migrations[:1])


def test_edited_applied_file_is_refused(tmp_path, empty_db, coldcopy_conn):
    coldcopy_conn(empty_db)
    directory = write(tmp_path / "m", {"100_first.sql": "CREATE TABLE first (id bigint);\n"})
    runner = runner_for(empty_db)
    [migration] = discover_migrations(directory)
    assert runner.apply(migration, applied_by="test") is True
    assert runner.apply(migration, applied_by="test") is False

    (directory / "100_first.sql").write_text("CREATE TABLE first (id bigint, extra text);\n")
    with pytest.raises(MigrationError, match=r"100_first\.sql: already applied with checksum .* must not be edited"):
        runner.apply(migration, applied_by="test")
    assert runner.plan([migration])[0].status is Status.CHANGED
    with pytest.raises(AirflowFailException, match="100_first.sql"):
        MigrationPlanOperator(task_id="plan", migrations_dir=directory).execute({"params": {}})


def test_refuses_to_apply_out_of_order(empty_db):
    migrations = discover_migrations()
    with pytest.raises(MigrationError, match="refusing to apply before 100_auth_and_workspaces.sql"):
        runner_for(empty_db).apply(migrations[1], applied_by="test", predecessors=migrations[:1])


def test_two_concurrent_runs_do_not_interleave(tmp_path, empty_db):
    directory = write(tmp_path / "m", {
        f"10{i}_step{i}.sql": f"SELECT pg_sleep(0.3);\nCREATE TABLE step{i} (id bigint);\n" for i in range(4)
    })
    migrations = discover_migrations(directory)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner_for(empty_db).apply_all(migrations, applied_by=threading.current_thread().name)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, name=f"run{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            f"SELECT version, started_at, applied_at FROM {HISTORY_TABLE} ORDER BY started_at"
        ).fetchall()
    assert [r[0] for r in rows] == [100, 101, 102, 103]
    for (_, _, end), (_, start, _) in zip(rows, rows[1:], strict=False):
        assert end <= start, "two migrations ran at the same time"


def test_lock_timeout_retries_until_the_blocker_goes(tmp_path, migrated_db):
    directory = write(tmp_path / "m", {"399_alter.sql": "ALTER TABLE public.leads ADD COLUMN nickname text;\n"})
    [migration] = discover_migrations(directory)
    blocker = psycopg.connect(migrated_db)
    blocker.execute("SELECT count(*) FROM public.leads")  # open transaction holding ACCESS SHARE
    threading.Timer(1.0, blocker.rollback).start()
    started = time.monotonic()
    assert runner_for(migrated_db, lock_retry=FAST_LOCKS).apply(migration, applied_by="test")
    assert time.monotonic() - started >= 1.0
    blocker.close()
    with psycopg.connect(migrated_db) as conn:
        retries = conn.execute(f"SELECT lock_retries FROM {HISTORY_TABLE} WHERE version = 399").fetchone()[0]
    assert retries >= 1


def test_lock_timeout_gives_up_without_blocking_readers(tmp_path, migrated_db):
    directory = write(tmp_path / "m", {"399_alter.sql": "ALTER TABLE public.leads ADD COLUMN nickname text;\n"})
    [migration] = discover_migrations(directory)
    policy = LockRetryPolicy(attempts=3, lock_timeout_ms=100, max_lock_timeout_ms=200, backoff_s=0.2)
    with psycopg.connect(migrated_db) as blocker, psycopg.connect(migrated_db, autocommit=True) as reader:
        blocker.execute("SELECT count(*) FROM public.leads")
        outcome: list = []
        attempt = threading.Thread(target=lambda: outcome.append(_apply_catching(migrated_db, migration, policy)))
        attempt.start()
        # While the ALTER retries, new readers are never queued behind it for longer than its lock_timeout.
        worst = 0.0
        while attempt.is_alive():
            began = time.monotonic()
            reader.execute("SELECT count(*) FROM public.leads")
            worst = max(worst, time.monotonic() - began)
        assert isinstance(outcome[0], LockRetriesExhausted)
        assert "399_alter.sql" in str(outcome[0]) and "3 attempts" in str(outcome[0])
        assert worst < 1.0
    with psycopg.connect(migrated_db) as conn:
        assert not conn.execute(f"SELECT count(*) FROM {HISTORY_TABLE} WHERE version = 399").fetchone()[0]


def test_concurrent_index_file_runs_outside_a_transaction_and_replaces_invalid_leftover(tmp_path, empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.t (v bigint)")
        conn.execute("INSERT INTO public.t VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY t_v_uidx ON public.t (v)")
        conn.execute("DELETE FROM public.t WHERE ctid = (SELECT min(ctid) FROM public.t)")
    directory = write(tmp_path / "m", {
        "100_index.sql": "-- runs outside a transaction\n"
                         "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_v_uidx ON public.t (v);\n"
                         "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_v_idx ON public.t (v);\n",
    })
    [migration] = discover_migrations(directory)
    assert migration.transactional is False
    runner_for(empty_db).apply(migration, applied_by="test")
    with psycopg.connect(empty_db) as conn:
        valid = conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'public.t'::regclass ORDER BY 1"
        ).fetchall()
    assert valid == [("t_v_idx", True), ("t_v_uidx", True)]


def test_mixed_file_is_applied_in_parts_and_a_retry_resumes_where_it_stopped(tmp_path, empty_db):
    """Transactional DDL and two concurrent index builds in one file; the second build fails (duplicates). The
    retry must not re-run the CREATE TABLE (it would fail: the table exists) nor the first build: only what is
    left, after dropping the INVALID index the failure left. Each part is recorded once."""
    directory = write(tmp_path / "m", {
        "100_mixed.sql": "CREATE TABLE public.m (id bigint, v bigint);\n"
                         "INSERT INTO public.m VALUES (1, 7), (2, 7);\n"
                         "CREATE INDEX CONCURRENTLY m_id_idx ON public.m (id);\n"
                         "CREATE UNIQUE INDEX CONCURRENTLY m_v_uidx ON public.m (v);\n"
                         "COMMENT ON INDEX public.m_v_uidx IS 'built';\n",
    })
    [migration] = discover_migrations(directory)
    assert [(p.index, p.transactional, p.statements) for p in migration.parts()] == [
        (0, True, 2), (1, False, 1), (2, False, 1), (3, True, 1)]
    with pytest.raises(MigrationError, match=r"100_mixed.sql part 2 .*m_v_uidx.* resumes at this part"):
        runner_for(empty_db).apply(migration, applied_by="test")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        parts = conn.execute("SELECT part FROM coldcopy_ops.schema_migration_parts ORDER BY part").fetchall()
        assert parts == [(0,), (1,)]
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.m_v_uidx'::regclass"
                            ).fetchone() == (False,)  # what the failed build left
        assert history(empty_db) == []  # the file is not applied until every part is
        conn.execute("DELETE FROM public.m WHERE id = 2")  # the operator fixes the data; the task retries

    assert runner_for(empty_db).apply(migration, applied_by="test") is True
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT part, transactional, statements FROM coldcopy_ops.schema_migration_parts "
                            "WHERE version = 100 ORDER BY part").fetchall() == [
            (0, True, 2), (1, False, 1), (2, False, 1), (3, True, 1)]
        assert conn.execute("SELECT count(*) FROM public.m").fetchone() == (1,)  # the INSERT ran once
        assert conn.execute("SELECT c.relname, i.indisvalid, obj_description(c.oid) FROM pg_index i "
                            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'public.m'::regclass "
                            "ORDER BY 1").fetchall() == [("m_id_idx", True, None), ("m_v_uidx", True, "built")]
    assert [(v, n) for v, n, *_ in history(empty_db)] == [(100, "mixed")]
    assert runner_for(empty_db).apply(migration, applied_by="test") is False  # applied: nothing runs again


def test_an_applied_part_edited_before_the_retry_is_refused(tmp_path, empty_db):
    directory = write(tmp_path / "m", {
        "100_mixed.sql": "CREATE TABLE public.m (v bigint);\nINSERT INTO public.m VALUES (7), (7);\n"
                         "CREATE UNIQUE INDEX CONCURRENTLY m_v_uidx ON public.m (v);\n"})
    [migration] = discover_migrations(directory)
    with pytest.raises(MigrationError, match="part 1"):
        runner_for(empty_db).apply(migration, applied_by="test")
    (directory / "100_mixed.sql").write_text("CREATE TABLE public.m (v bigint, w int);\n"
                                             "CREATE UNIQUE INDEX CONCURRENTLY m_v_uidx ON public.m (v);\n")
    with pytest.raises(MigrationError, match="part 0 .* has changed on disk since"):
        runner_for(empty_db).apply(discover_migrations(directory)[0], applied_by="test")


def test_a_reissued_file_counts_as_applied_where_its_earlier_text_was(empty_db):
    """203 was made safe for Supabase's non-superuser postgres (issue 32): a database that applied its earlier
    text must not see it as an edited, applied file (refused), nor apply it twice."""
    from coldcopy.migrations import Migration

    earlier = Migration(203, "connection_pooling",
                        Path(__file__).parents[1] / "fixtures" / "reissued" / "203_connection_pooling.sql")
    [current] = [m for m in discover_migrations() if m.version == 203]
    assert earlier.checksum in current.reissues and earlier.checksum != current.checksum
    runner = MigrationRunner(lambda: psycopg.connect(empty_db))
    assert runner.apply(earlier, applied_by="pytest")
    assert runner.plan([current])[0].status is Status.APPLIED
    assert runner.apply(current, applied_by="pytest") is False
    assert runner.applied()[203][1] == current.checksum  # the history now holds the file as it is
