"""
# coldcopy_migrations — build or upgrade the ColdCopy schema

**Trigger by hand** (no schedule). Applies `sql/migrations/NNN_*.sql` in version order, phase by phase:
`phase_1_core` (100–113) → `phase_2_performance` (201–204) → `phase_3_advanced` (301–304).

**Safe to re-run.** Applied files are skipped; history is in `coldcopy_ops.schema_migrations`
(version, name, checksum, phase, duration, attempts, who applied it).

**Plan first.** Trigger with param `dry_run = true`: the `plan` task lists every file as pending / applied /
changed and nothing is changed.

| What you see | What it means | What to do |
|---|---|---|
| `plan` failed: *applied migration file(s) changed on disk* | someone edited an applied file | restore the file from git; put the change in a new migration |
| a file task failed: *NNN_x.sql failed at line L and was rolled back* | SQL error; the transaction left nothing behind | fix the file (it was never applied), re-run |
| *could not get its lock in N attempts* | a long transaction holds a conflicting lock; we gave up rather than queue in front of the app | find it in `pg_stat_activity`; the task retries by itself |
| a gate failed: *phase N cannot start* | an earlier phase is incomplete | finish the earlier phase first |

Every statement runs with `lock_timeout` (retried with backoff) and `statement_timeout`; files with
`CREATE INDEX CONCURRENTLY` run outside a transaction block. Runs take an advisory lock, so two never interleave.
Target: the Airflow connection `coldcopy_db`.

Design, the stock-tools runbook and the measured figures: `docs/migrations.md` in the repository.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, TaskGroup, chain

from coldcopy import MIGRATIONS_DIR, SUPABASE_MIGRATIONS_DIR
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.migrations import ALL_PHASES, CLI_PHASE, discover_migrations
from coldcopy.operators.migrations import ApplyMigrationOperator, MigrationPlanOperator, PhaseGateOperator
from coldcopy.operators.rehearsal import RehearseMigrationsOperator

DEFAULT_ARGS = default_args(retries=2, retry_delay=timedelta(minutes=1))

with DAG(
    dag_id="coldcopy_migrations",
    description="Apply sql/migrations phase by phase: tracked, checksummed, locked, lock-timeout-safe",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"dry_run": Param(False, type="boolean", description="List what would run; change nothing."),
            "skip_rehearsal": Param(False, type="boolean",
                                    description="Only for an empty or disposable target (refused when it holds data)")},
    template_searchpath=[str(MIGRATIONS_DIR), str(SUPABASE_MIGRATIONS_DIR)],
    tags=["coldcopy", "migrations", "schema"],
    doc_md=__doc__,
):
    previous = MigrationPlanOperator(task_id="plan") >> RehearseMigrationsOperator(
        task_id="rehearse", skip_rehearsal="{{ params.skip_rehearsal }}")
    migrations = discover_migrations()
    for phase, phase_name in ALL_PHASES.items():
        if phase == CLI_PHASE and not any(m.phase == CLI_PHASE for m in migrations):
            continue  # no supabase/migrations/ files: no fourth phase
        with TaskGroup(group_id=f"phase_{phase}_{phase_name}") as group:
            steps = [PhaseGateOperator(task_id="gate", phase=phase)] if phase > 1 else []
            steps += [
                ApplyMigrationOperator(task_id=f"{m.version}_{m.name}", sql=m.file_name)
                for m in migrations
                if m.phase == phase
            ]
            chain(*steps)
        previous >> group
        previous = group
