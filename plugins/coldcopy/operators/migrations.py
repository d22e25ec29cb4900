"""Operators of the ``coldcopy_migrations`` DAG: plan, phase gate, and apply one migration file.

The database side (hook, driver, runner) is imported when a task runs, not when the scheduler parses
the DAG file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.migrations import ALL_PHASES, Migration, MigrationError, Status
from coldcopy.operators import approval
from coldcopy.operators.migration_approval import MigrationApprovalOperator, SecondApprovalOperator
from coldcopy.operators.migration_base import APPLY, APPLY_PHASE_1, BaseMigrationOperator
from coldcopy.run_notes import note, skip

if TYPE_CHECKING:
    from coldcopy.migrations.runner import MigrationRunner


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
        what = f"{len(plan)} file(s), {len(pending)} pending" + (
            f": {', '.join(e.migration.file_name for e in pending)[:400]}" if pending else ": the target is up to date")
        self.say(context, what + (" (dry run: nothing will be changed)" if self.dry_run(context) else ""))
        if pending:  # what the approver will be shown (the gate computes it again itself: XCom proves nothing)
            drift = self.drift([e.migration for e in pending])
            self.say(context, f"schema drift: {drift['unknown']}" if "unknown" in drift else
                     f"schema drift: {len(drift['differences'])} object(s) differ from what the applied files build"
                     + (f"; the pending files touch {', '.join(drift['touched'][:10])}" if drift["touched"] else ""))
        if self.dry_run(context):  # the runs list tells it from an applied run; the apply tasks skip (issue 41)
            note(context, f"dry run: nothing applied — {what}")
        return [{"file": e.migration.file_name, "phase": e.migration.phase, "status": e.status.value,
                 "checksum": e.migration.checksum, "supabase_cli": e.cli} for e in plan]


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
        if (approval.decision(context) or {}).get("decision") == APPLY_PHASE_1:
            skip(context, f"approved for phase 1 only: phase {self.phase} is not applied in this run")
        earlier = [m for m in self.migrations() if m.phase < self.phase]
        not_applied = [e.migration.file_name for e in self.runner().plan(earlier) if e.status is not Status.APPLIED]
        if not not_applied:
            self.say(context, f"phase {self.phase} gate open: all {len(earlier)} earlier migrations applied")
        elif self.dry_run(context):
            skip(context, f"dry run: phase {self.phase} would wait for {', '.join(not_applied)}")
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
        migration = by_name[self.file_name].loaded()  # read once: the bytes checked are the bytes applied
        runner = self.runner()
        if self.dry_run(context):
            status = runner.plan([migration])[0].status
            skip(context, f"dry run: {migration.file_name} is {status.value}; nothing applied")
        self.check_approved(context, migration, runner)
        ti = context["ti"]
        applied_by = f"airflow {ti.dag_id}.{ti.task_id} run {ti.run_id}"
        predecessors = [m for m in migrations if m.version < migration.version]
        try:
            applied = runner.apply(migration, applied_by=applied_by, predecessors=predecessors)
            self.say(context, f"{migration.file_name}: applied" if applied else
                     f"{migration.file_name}: applied already (nothing to do)")
            return applied
        except MigrationError as error:
            # Deterministic: a retry would fail the same way.
            raise AirflowFailException(str(error)) from error
        except LockRetriesExhausted:
            raise  # transient: Airflow's task retries try again later

    def check_approved(self, context: Context, migration: Migration, runner: MigrationRunner) -> None:
        """Apply nothing the people the file's risk calls for did not approve
        (:func:`coldcopy.operators.migration_approval.check_approved`)."""
        from coldcopy.operators.migration_approval import check_approved

        check_approved(self, context, migration, runner)



__all__ = ["APPLY", "APPLY_PHASE_1", "ApplyMigrationOperator", "BaseMigrationOperator", "MigrationApprovalOperator",
           "MigrationPlanOperator", "PhaseGateOperator", "SecondApprovalOperator"]
