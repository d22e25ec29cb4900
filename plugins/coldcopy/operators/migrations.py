"""Operators of the ``coldcopy_migrations`` DAG: plan, phase gate, and apply one migration file.

The database side (hook, driver, runner) is imported when a task runs, not when the scheduler parses
the DAG file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import DB_CONN_ID, MIGRATIONS_DIR
from coldcopy.migrations import ALL_PHASES, Migration, MigrationError, Status, discover_migrations
from coldcopy.operators.base import ColdCopyOperator

if TYPE_CHECKING:
    from coldcopy.migration_runner import MigrationRunner


class BaseMigrationOperator(ColdCopyOperator):
    """Shared parts: the connection, the migrations directory and the ``dry_run`` DAG param.

    :param migrations_dir: directory of ``NNN_name.sql`` files.
    :param conn_id: Airflow connection of the target database.
    :param lock_timeout_ms: lock_timeout of the first attempt; later attempts wait up to 5x longer.
    :param lock_attempts: attempts before a lock timeout fails the task.
    :param statement_timeout: ceiling for each statement.
    """

    ui_color = "#e8f4ea"
    default_execution_timeout = timedelta(hours=1)

    def __init__(
        self,
        *,
        migrations_dir: str | Path = MIGRATIONS_DIR,
        conn_id: str = DB_CONN_ID,
        lock_timeout_ms: int = 2000,
        lock_attempts: int = 6,
        statement_timeout: str = "15min",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.migrations_dir = Path(migrations_dir)
        self.conn_id = conn_id
        self.lock_timeout_ms = lock_timeout_ms
        self.lock_attempts = lock_attempts
        self.statement_timeout = statement_timeout

    def runner(self) -> MigrationRunner:
        from coldcopy.migration_runner import MigrationRunner

        return MigrationRunner(self.hook().get_conn, lock_retry=self.lock_policy(),
                               statement_timeout=self.statement_timeout)

    def migrations(self) -> list[Migration]:
        try:
            return discover_migrations(self.migrations_dir)
        except MigrationError as error:
            raise AirflowFailException(str(error)) from error

    @staticmethod
    def dry_run(context: Context) -> bool:
        return bool(context["params"].get("dry_run", False))


class MigrationPlanOperator(BaseMigrationOperator):
    """Log what the run will apply and refuse to start when an applied file was edited.

    Returns the plan (file, phase, status) for XCom.
    """

    def execute(self, context: Context) -> list[dict]:
        plan = self.runner().plan(self.migrations())
        pending = [e for e in plan if e.status is Status.PENDING]
        self.log.info(
            "Migration plan%s: %d file(s), %d pending\n%s",
            " (dry run: nothing will be changed)" if self.dry_run(context) else "",
            len(plan), len(pending), "\n".join(entry.describe() for entry in plan),
        )
        changed = [e.migration.file_name for e in plan if e.status is Status.CHANGED]
        if changed:
            raise AirflowFailException(
                f"applied migration file(s) changed on disk: {', '.join(changed)}; "
                "restore them and put the change in a new migration"
            )
        return [{"file": e.migration.file_name, "phase": e.migration.phase, "status": e.status.value} for e in plan]


class PhaseGateOperator(BaseMigrationOperator):
    """Let phase ``phase`` start only when every migration of the earlier phases is applied.

    :param phase: the phase this gate opens (2 or 3).
    """

    def __init__(self, *, phase: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if phase not in ALL_PHASES:
            raise ValueError(f"unknown phase {phase}; phases are {sorted(ALL_PHASES)}")
        self.phase = phase

    def execute(self, context: Context) -> None:
        earlier = [m for m in self.migrations() if m.phase < self.phase]
        not_applied = [e.migration.file_name for e in self.runner().plan(earlier) if e.status is not Status.APPLIED]
        if not not_applied:
            self.log.info("Phase %d gate open: all %d earlier migrations applied", self.phase, len(earlier))
        elif self.dry_run(context):
            self.log.info("Dry run: phase %d would wait for %s", self.phase, ", ".join(not_applied))
        else:
            raise AirflowFailException(
                f"phase {self.phase} ({ALL_PHASES[self.phase]}) cannot start: not applied: {', '.join(not_applied)}"
            )


class ApplyMigrationOperator(BaseMigrationOperator):
    """Apply one migration file (see :mod:`coldcopy.migrations` for the guarantees).

    :param sql: the file name inside ``migrations_dir``; templated, so the UI shows the SQL.
    """

    template_fields: Sequence[str] = ("sql",)
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}

    def __init__(self, *, sql: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.file_name = sql

    def execute(self, context: Context) -> bool:
        from coldcopy.lock_retries import LockRetriesExhausted

        # Checksum and execution use the file's bytes on disk, not the Jinja-rendered copy in self.sql.
        migrations = self.migrations()
        by_name = {m.file_name: m for m in migrations}
        if self.file_name not in by_name:
            raise AirflowFailException(f"{self.file_name}: no such migration in {self.migrations_dir}")
        migration = by_name[self.file_name]
        runner = self.runner()
        if self.dry_run(context):
            status = runner.plan([migration])[0].status
            self.log.info("Dry run: %s is %s; nothing changed", migration.file_name, status.value)
            return False
        ti = context["ti"]
        applied_by = f"airflow {ti.dag_id}.{ti.task_id} run {ti.run_id}"
        predecessors = [m for m in migrations if m.version < migration.version]
        try:
            return runner.apply(migration, applied_by=applied_by, predecessors=predecessors)
        except MigrationError as error:
            # Deterministic: a retry would fail the same way.
            raise AirflowFailException(str(error)) from error
        except LockRetriesExhausted:
            raise  # transient: Airflow's task retries try again later
