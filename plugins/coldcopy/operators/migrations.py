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

from coldcopy import MIGRATIONS_DIR
from coldcopy.migrations import ALL_PHASES, Migration, MigrationError, Status, discover_migrations
from coldcopy.operators import approval
from coldcopy.operators.base import ColdCopyOperator
from coldcopy.run_notes import note, skip

if TYPE_CHECKING:
    from coldcopy.migrations.runner import MigrationRunner


class BaseMigrationOperator(ColdCopyOperator):
    """Shared parts: the connection, the migrations directory and the ``dry_run`` DAG param.

    :param migrations_dir: directory of ``NNN_name.sql`` files.
    :param statement_timeout: ceiling for each statement.
    """

    ui_color = "#e8f4ea"
    default_execution_timeout = timedelta(hours=1)

    def __init__(
        self,
        *,
        migrations_dir: str | Path = MIGRATIONS_DIR,
        statement_timeout: str = "15min",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.migrations_dir = Path(migrations_dir)
        self.statement_timeout = statement_timeout

    def runner(self) -> MigrationRunner:
        from coldcopy.migrations.runner import MigrationRunner

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

    def holds_data(self) -> list[str]:
        """The application tables of the target with at least one row."""
        from coldcopy.migrations.runner import tables_with_rows

        with self.hook().get_conn() as conn:
            return tables_with_rows(conn)

    def pending(self) -> list[Migration]:
        return [e.migration for e in self.runner().plan(self.migrations()) if e.status is Status.PENDING]


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
        """Apply nothing a person did not approve: the run's ``approve`` gate said *apply* (or *apply phase 1 only*
        for a phase-1 file), or that no approval was needed (an empty target); and a file the rehearsal ran must
        still be the bytes it ran (a file edited while the approval waited was never shown to anyone)."""
        if runner.plan([migration])[0].status is not Status.PENDING:
            return  # applied already: apply() skips it (or refuses it, changed)
        decided = approval.decision(context)
        choice = (decided or {}).get("decision")
        if choice not in (APPLY, APPLY_PHASE_1, approval.NOT_NEEDED):
            raise AirflowFailException(f"{migration.file_name}: not approved in this run (no "
                                       f"'{approval.APPROVAL_TASK_ID}'"
                                       " decision to apply): nothing is applied to the target without one")
        if choice == APPLY_PHASE_1 and migration.phase != 1:
            skip(context, f"{migration.file_name}: approved for phase 1 only")
        if choice == approval.NOT_NEEDED:
            if held := self.holds_data():  # decided again now: the gate's answer may be stale (tasks cleared since)
                raise AirflowFailException(
                    f"{migration.file_name}: the gate found no data to protect ({decided.get('reason')}), and the "
                    f"target now holds data ({', '.join(held[:3])}…): trigger a new run so a person approves it")
            return
        shown = (decided.get("request") or {}).get("files") or {}
        rehearsed = {f["file"]: f.get("checksum") for f in
                     ((context["ti"].xcom_pull(task_ids="rehearse") or {}).get("files") or [])}
        if shown.get(migration.file_name) != migration.checksum or \
                rehearsed.get(migration.file_name, migration.checksum) != migration.checksum:
            raise AirflowFailException(f"{migration.file_name} is not the file that was rehearsed and approved in "
                                       "this run (added or changed on disk since): trigger a new run so it is")


APPLY, APPLY_PHASE_1 = "apply", "apply phase 1 only"


class MigrationApprovalOperator(approval.ApprovalGate, BaseMigrationOperator):
    """The ``approve`` task of ``coldcopy_migrations``: the rehearsal's table (file, duration, locks with ACCESS
    EXCLUSIVE on a hot table in red, rows rewritten, WAL) and the plan's pending and changed files, put to the
    users of the Variable ``coldcopy_migration_approvers``: *apply*, *apply phase 1 only* or *reject* (also
    the answer after 24 h). Not asked in a dry run, with nothing pending, or on a target without data."""

    def __init__(self, *, approvers_variable: str = "coldcopy_migration_approvers", **kwargs) -> None:
        super().__init__(approvers_variable=approvers_variable, options=[APPLY, APPLY_PHASE_1, approval.REJECT],
                         **kwargs)

    def not_needed(self, context: Context) -> str | None:
        if self.dry_run(context):
            return "dry run: nothing is applied"
        if not (pending := self.pending()):
            return "nothing pending"
        if not self.holds_data():
            return f"the target holds no data: {len(pending)} file(s) build an empty database"
        return None

    def describe(self, context: Context) -> tuple[str, str, dict]:
        from psycopg import sql

        ti = context["ti"]
        plan = ti.xcom_pull(task_ids="plan") or []
        rehearsed = ti.xcom_pull(task_ids="rehearse") or {}
        with self.hook().get_conn() as conn:
            database, size = conn.execute(
                sql.SQL("SELECT current_database(), pg_size_pretty(pg_database_size(current_database()))")).fetchone()
        pending = [e for e in plan if e.get("status") == Status.PENDING.value]
        phases = sorted({e["phase"] for e in pending})
        # Only choices that differ: "phase 1 only" when phase 1 has pending files and a later phase has too.
        self.options = [APPLY, APPLY_PHASE_1, approval.REJECT] if phases[:1] == [1] and len(phases) > 1 \
            else [APPLY, approval.REJECT]
        lines = [f"**Target:** database `{database}` ({size}); **{len(pending)} pending file(s)** in phases "
                 f"{', '.join(str(p) for p in phases)}.", ""]
        if rehearsed.get("files"):
            lines += [f"**Dress rehearsal** on a restored copy of `{rehearsed.get('backup')}` (locks sampled from "
                      "`pg_locks` every 5 ms; 🔴 = ACCESS EXCLUSIVE on a table the application's top statements use):",
                      "", rehearsed.get("table", ""), ""]
            if "hot_tables" in rehearsed and rehearsed["hot_tables"] is None:
                lines += ["⚠️ **Which tables the application would queue on is unknown**: pg_stat_statements is not "
                          "installed on the target, so no lock is marked 🔴; judge the locks above yourself.", ""]
        elif rehearsed.get("not_rehearsed"):
            lines += [f"⚠️ **Not rehearsed**: {rehearsed['not_rehearsed']}. Set up `coldcopy_verify_db` "
                      "(docs/migrations.md) to see what each file does before approving it.", ""]
        else:
            lines += ["**No rehearsal** ran in this run (see the `rehearse` task's log).", ""]
        if cluster := rehearsed.get("cluster_statements"):
            lines += ["⚠️ **Statements acting on the whole cluster** (roles, databases, settings, slots, other "
                      "sessions: not contained by any scratch copy):", ""]
            lines += [f"- `{file}`: `{statement}`" for file, found in sorted(cluster.items()) for statement in found]
            lines += [""]
        lines += ["**Plan** (ours · the Supabase CLI's history):", "", "| file | phase | status | supabase cli |",
                  "|---|---|---|---|"]
        lines += [f"| {e['file']} | {e['phase']} | {e['status']} | {e.get('supabase_cli') or '—'} |" for e in plan
                  if e.get("status") != Status.APPLIED.value]
        lines += ["", "*apply*: every pending file, phase by phase." + (
            " *apply phase 1 only*: the later phases are skipped in this run." if APPLY_PHASE_1 in self.options
            else "") + " *reject* (or no answer within 24 h): nothing is applied; say why in the comment."]
        files = {e["file"]: e["checksum"] for e in pending}  # what the body shows, as the plan task read it
        return f"Apply {len(pending)} migration(s) to {database}?", "\n".join(lines), {"files": files}
