"""The migration operators and runner against a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from coldcopy.lock_retries import LockRetriesExhausted, LockRetryPolicy
from coldcopy.migrations import MigrationError, Status, discover_migrations
from coldcopy.migrations.runner import HISTORY_TABLE, MigrationRunner
from coldcopy.operators.migrations import (
    ApplyMigrationOperator,
    MigrationApprovalOperator,
    MigrationPlanOperator,
    PhaseGateOperator,
)
from tests.conftest import FakeTaskInstance

FAST_LOCKS = LockRetryPolicy(attempts=20, lock_timeout_ms=100, max_lock_timeout_ms=200, backoff_s=0.1)


def runner_for(dsn: str, **kwargs) -> MigrationRunner:
    return MigrationRunner(lambda: psycopg.connect(dsn), **kwargs)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def history(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        query = f"SELECT version, name, checksum, applied_at FROM {HISTORY_TABLE} ORDER BY version"
        return conn.execute(query).fetchall()


def table_exists(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def run_dag(dag, **conf):
    run = dag.test(run_conf=conf)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


@pytest.fixture
def migrations_dag(airflow_db, coldcopy_conn):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "coldcopy_migrations.py"))
    assert not bag.import_errors
    return bag.get_dag("coldcopy_migrations")


def test_dag_builds_empty_database_and_second_run_applies_nothing(empty_db, coldcopy_conn, migrations_dag):
    coldcopy_conn(empty_db)
    run, states = run_dag(migrations_dag)
    assert run.state == "success", states
    first = history(empty_db)
    files = discover_migrations()
    assert [(v, n, c) for v, n, c, _ in first] == [(m.version, m.name, m.checksum) for m in files]
    assert len(first) == 24

    run, _ = run_dag(migrations_dag)
    assert run.state == "success"
    assert history(empty_db) == first  # same rows, same applied_at: nothing re-applied


SMALL_DAG = """
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, Param, chain

from coldcopy.migrations import discover_migrations
from coldcopy.operators.migrations import ApplyMigrationOperator, MigrationApprovalOperator, MigrationPlanOperator

MIGRATIONS = Path({directory!r})
with DAG(
    dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), template_searchpath=[str(MIGRATIONS)],
    params={{"dry_run": Param(False, type="boolean")}}, default_args={{"retries": 2}},
) as dag:
    chain(
        MigrationPlanOperator(task_id="plan", migrations_dir=MIGRATIONS),
        MigrationApprovalOperator(task_id="approve", migrations_dir=MIGRATIONS),
        *[ApplyMigrationOperator(task_id=f"m{{m.version}}", sql=m.file_name, migrations_dir=MIGRATIONS)
          for m in discover_migrations(MIGRATIONS)],
    )
"""


def small_dag(directory: Path, dag_id: str) -> DAG:
    """A DAG over ``directory``'s migrations, in a DAGs folder of its own (dag.test() needs it parsed)."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    dags = directory.parent / "dags"
    dags.mkdir()
    (dags / f"{dag_id}.py").write_text(SMALL_DAG.format(directory=str(directory), dag_id=dag_id))
    bag = DagBag(dag_folder=str(dags))
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.get_dag(dag_id)


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


def _apply_catching(dsn, migration, policy):
    try:
        return runner_for(dsn, lock_retry=policy).apply(migration, applied_by="test")
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error


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


def test_transactional_detection_ignores_comments():
    migrations = {m.version: m for m in discover_migrations()}
    assert migrations[109].transactional is False  # CREATE INDEX CONCURRENTLY
    assert migrations[305].transactional is False  # one CONCURRENTLY part, then a transaction
    assert all(m.transactional for v, m in migrations.items() if v not in (109, 305))


def test_discovery_rejects_stray_files(tmp_path):
    directory = write(tmp_path / "m", {"100_ok.sql": "SELECT 1;", "notes.txt": "x"})
    with pytest.raises(MigrationError, match="notes.txt: not a migration file name"):
        discover_migrations(directory)
    (directory / "notes.txt").unlink()
    write(directory, {"100_dup.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="version 100 also used"):
        discover_migrations(directory)


def test_phase_gate(empty_db, coldcopy_conn, airflow_db):
    coldcopy_conn(empty_db)
    migrations = discover_migrations()
    gate = PhaseGateOperator(task_id="gate", phase=2)
    with pytest.raises(AirflowFailException, match="phase 2 .* not applied: 100_auth_and_workspaces.sql"):
        gate.execute({"params": {"dry_run": False}})
    with pytest.raises(AirflowSkipException, match="dry run: phase 2 would wait"):  # a dry run only reports
        gate.execute({"params": {"dry_run": True}})
    runner_for(empty_db).apply_all([m for m in migrations if m.phase == 1], applied_by="test")
    gate.execute({"params": {"dry_run": False}})
    with pytest.raises(AirflowFailException, match="phase 3 .* not applied: 201_"):
        PhaseGateOperator(task_id="gate3", phase=3).execute({"params": {"dry_run": False}})


def test_the_gate_asks_only_when_something_would_change_data_and_a_file_applies_only_when_approved(
        tmp_path, generated_db, empty_db, coldcopy_conn, approvals):
    """The approval gate's own decision to ask (the live question and answers: tests/e2e/test_live_approval.py), and
    the file task's refusal without a decision to apply, or of bytes other than those shown."""
    directory = write(tmp_path / "m", {"150_more.sql": "CREATE TABLE public.more (id bigint PRIMARY KEY);\n",
                                       "250_later.sql": "CREATE TABLE public.later (id bigint PRIMARY KEY);\n"})
    migration = discover_migrations(directory)[0]
    gate = MigrationApprovalOperator(task_id="approve", migrations_dir=directory)
    coldcopy_conn(generated_db)  # holds data; 150_more.sql is pending there
    assert gate.not_needed({"params": {"dry_run": True}}) == "dry run: nothing is applied"
    assert gate.not_needed({"params": {"dry_run": False}}) is None  # asked
    coldcopy_conn(empty_db)
    assert "holds no data" in gate.not_needed({"params": {}})

    def TaskInstance(decision):  # noqa: N802 - reads as the class it stands for
        sealed = approvals("coldcopy_migrations", decision) if decision else None
        return FakeTaskInstance(dag_id="coldcopy_migrations", task_id="m150", xcoms={"approve": sealed})

    apply = ApplyMigrationOperator(task_id="m150", sql="150_more.sql", migrations_dir=directory)
    coldcopy_conn(generated_db)
    for decision, refusal in [
        (None, "not approved in this run"),
        ({"decision": "reject"}, "not approved in this run"),
        ({"decision": "apply", "request": {"files": {"150_more.sql": "0" * 64}}}, "not the file that was rehearsed"),
    ]:
        with pytest.raises(AirflowFailException, match=refusal):
            apply.execute({"ti": TaskInstance(decision), "params": {}})
    assert not table_exists(generated_db, "public.more")
    phase_1_only = TaskInstance({"decision": "apply phase 1 only"})
    with pytest.raises(AirflowSkipException, match="approved for phase 1 only"):
        ApplyMigrationOperator(task_id="m250", sql="250_later.sql", migrations_dir=directory).execute(
            {"ti": phase_1_only, "params": {}})
    assert phase_1_only.pushed["skip_reason"] == "250_later.sql: approved for phase 1 only"  # for the run's note
    approved = TaskInstance({"decision": "apply", "request": {"files": {"150_more.sql": migration.checksum}}})
    assert apply.execute({"ti": approved, "params": {}}) is True
    assert approved.pushed["result"] == "150_more.sql: applied"
    assert table_exists(generated_db, "public.more")


def test_the_gate_puts_to_the_approver_the_files_its_body_shows_not_one_added_since_the_plan(
        tmp_path, generated_db, coldcopy_conn, approvals):
    """The body lists the plan task's pending files; the facts the apply step holds the files to are those same
    files with the plan's checksums. Before, the gate planned again: a file written between the plan and the
    question was in the facts (so applied once approved) without being in the body the approver read."""
    directory = write(tmp_path / "m", {"150_more.sql": "CREATE TABLE public.more (id bigint PRIMARY KEY);\n"})
    coldcopy_conn(generated_db)
    plan_ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="plan")
    plan = MigrationPlanOperator(task_id="plan", migrations_dir=directory).execute({"ti": plan_ti, "params": {}})
    write(directory, {"160_added_since.sql": "CREATE TABLE public.sneaked (id bigint PRIMARY KEY);\n"})
    gate = MigrationApprovalOperator(task_id="approve", migrations_dir=directory)
    ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="approve", xcoms={"plan": plan})
    subject, body, facts = gate.describe({"ti": ti, "params": {}})
    assert "150_more.sql" in body and "160_added_since.sql" not in body
    assert facts == {"files": {"150_more.sql": discover_migrations(directory)[0].checksum}}
    apply = ApplyMigrationOperator(task_id="m160", sql="160_added_since.sql", migrations_dir=directory)
    approved = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="m160",
                                xcoms={"approve": approvals("coldcopy_migrations",
                                                            {"decision": "apply", "request": facts})})
    with pytest.raises(AirflowFailException, match="not the file that was rehearsed and approved"):
        apply.execute({"ti": approved, "params": {}})
    assert not table_exists(generated_db, "public.sneaked")


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
