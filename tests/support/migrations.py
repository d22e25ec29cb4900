"""What the migration tests share: a runner with fast lock retries, files written to a directory, a small DAG."""

from __future__ import annotations

from pathlib import Path

import psycopg
from airflow.sdk import DAG

from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.migrations.runner import HISTORY_TABLE, MigrationRunner

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


def _apply_catching(dsn, migration, policy):
    try:
        return runner_for(dsn, lock_retry=policy).apply(migration, applied_by="test")
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error
