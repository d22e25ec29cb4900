"""DAGs that exist only in the end-to-end tests' dags folder (copied beside the real ones)."""
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, task

from coldcopy import MIGRATIONS_DIR, alerts
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.base import ColdCopyOperator
from coldcopy.operators.migrations import (
    ApplyMigrationOperator,
    MigrationApprovalOperator,
    MigrationPlanOperator,
    SecondApprovalOperator,
)
from coldcopy.operators.pitr import ChangeArchiveOperator

with DAG(
    dag_id="e2e_slow", description="Misses its 5 s deadline on purpose", schedule=None, start_date=START_DATE,
    default_args=default_args(retries=0), deadline=alerts.deadline(timedelta(seconds=5), expected="the slow e2e task"),
):
    @task
    def sleeps():
        import time

        time.sleep(40)

    sleeps()

with DAG(
    dag_id="e2e_failures", description="One task fails once then passes, one fails for good", schedule=None,
    start_date=START_DATE, default_args=default_args(retries=1, retry_delay=timedelta(seconds=1),
                                                     retry_exponential_backoff=False),
):
    @task
    def flaky(ti=None):
        if ti.try_number == 1:
            raise RuntimeError("transient: connection reset by peer")

    @task
    def broken():
        raise RuntimeError("disk on fire\nDETAIL: Key (email)=(someone@example.com) already exists.")

    flaky()
    broken()

with DAG(
    dag_id="e2e_change_archive", description="change_archive's task on the wal_level=logical cluster",
    schedule=None, start_date=START_DATE, max_active_runs=1, default_args=default_args(retries=0),
    params={"run_for_s": Param(15, type="integer", minimum=1)},
):
    ChangeArchiveOperator(task_id="drain", conn_id="coldcopy_pitr_db", run_for_s="{{ params.run_for_s }}",
                          every_s=2)

with DAG(
    dag_id="e2e_migration_approval_timeout", description="coldcopy_migrations' gate with a 5 s answer window",
    schedule=None, start_date=START_DATE, max_active_runs=1, default_args=default_args(retries=0),
    params={"dry_run": Param(False, type="boolean")}, template_searchpath=[str(MIGRATIONS_DIR)],
):
    MigrationApprovalOperator(task_id="approve", response_timeout=timedelta(seconds=5)) >> ApplyMigrationOperator(
        task_id="204_cache_tables", sql="204_cache_tables.sql")


DESTRUCTIVE = Path(__file__).resolve().parent / "destructive_migrations"
if not DESTRUCTIVE.is_dir():  # copied into the stack's dags folder: the repository's copy
    DESTRUCTIVE = Path(MIGRATIONS_DIR).parent.parent / "tests" / "e2e" / "destructive_migrations"
with DAG(
    dag_id="e2e_two_person_migration", description="coldcopy_migrations' gates over one destructive file",
    schedule=None, start_date=START_DATE, max_active_runs=1, default_args=default_args(retries=0),
    params={"dry_run": Param(False, type="boolean")}, template_searchpath=[str(DESTRUCTIVE)],
):
    MigrationPlanOperator(task_id="plan", migrations_dir=DESTRUCTIVE) >> MigrationApprovalOperator(
        task_id="approve", migrations_dir=DESTRUCTIVE) >> SecondApprovalOperator(
        task_id="approve_second", migrations_dir=DESTRUCTIVE) >> ApplyMigrationOperator(
        task_id="390_drop_lead_company", sql="390_drop_lead_company.sql", migrations_dir=DESTRUCTIVE)


class HoldsAStatement(ColdCopyOperator):
    """Five minutes of pg_sleep on coldcopy_db through the hook: a statement only ``on_kill`` ends early."""

    def execute(self, context):
        with self.hook().get_conn() as conn:
            conn.execute("SELECT pg_sleep(300)")


with DAG(
    dag_id="e2e_on_kill", description="A task holding a statement until it is killed", schedule=None,
    start_date=START_DATE, default_args=default_args(retries=0),
):
    HoldsAStatement(task_id="holds")
