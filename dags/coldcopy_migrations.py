"""
# coldcopy_migrations — build or upgrade the ColdCopy schema

**Trigger by hand** (no schedule). Applies `sql/migrations/NNN_*.sql` in version order, phase by phase:
`phase_1_core` (100–113) → `phase_2_performance` (201–204) → `phase_3_advanced` (301–304).

**Safe to re-run.** Applied files are skipped; history is in `coldcopy_ops.schema_migrations`
(version, name, checksum, phase, duration, attempts, who applied it).

**Plan first.** Trigger with param `dry_run = true`: the `plan` task lists every file as pending / applied /
changed (ours and the Supabase CLI's history side by side) and nothing is changed: every file task is *skipped*
and the run's note says *dry run: nothing applied — …*.

**Rehearsed, then approved.** `rehearse` restores the newest verified backup into a scratch database
(on `coldcopy_verify_db` when set), applies every pending file there and records per file its duration, the
strongest lock on each relation and how long it was held, rows rewritten, WAL, and which hot tables the
application would queue on; the scratch database is dropped whatever happens. `approve` then waits (holding no
worker slot) for one of the users in the Variable `coldcopy_migration_approvers` (JSON list of user names) to
choose *apply*, *apply phase 1 only* or *reject* under **Required actions** in the UI, or through
`PATCH /api/v2/dags/coldcopy_migrations/dagRuns/{run}/taskInstances/approve/-1/hitlDetails`. No answer within
24 h is a rejection. The question leads with each pending file's **risk grade** and why (*destructive*,
*blocking*, *data-dependent*, *safe*; security-relevant or not), the rehearsal's measurements (or *unknown*,
and why), the **schema drift** now (when the pending files touch a drifted object the choice is *apply,
accepting the drift*), and each file's SQL. A *destructive* or security-relevant file needs a **second
person**: `approve_second` asks the other approvers to *approve* or *reject* (a *blocking* or *data-dependent*
file whose `-- coldcopy:author` is the first approver too). Every apply task checks the sealed answers the file
calls for; one rejection stops the run. A dry run, a run with nothing pending and an empty target (a fresh install) are not asked.
`skip_rehearsal` is for an empty or disposable target and is refused when the target holds data. A file edited
after its rehearsal is refused at apply time: trigger a new run.

| What you see | What it means | What to do |
|---|---|---|
| `plan` failed: *applied migration file(s) changed on disk* | someone edited an applied file | restore the file from git; put the change in a new migration |
| a file task failed: *NNN_x.sql failed at line L and was rolled back* | SQL error; the transaction left nothing behind | fix the file (it was never applied), re-run |
| *could not get its lock in N attempts* | a long transaction holds a conflicting lock; we gave up rather than queue in front of the app | find it in `pg_stat_activity`; the task retries by itself |
| a gate failed: *phase N cannot start* | an earlier phase is incomplete | finish the earlier phase first |
| `approve` failed: *rejected by X: …* / *no answer within 1 day* | a person said no, or nobody answered | read the comment; trigger again when ready |
| `approve` failed: *nobody may approve this* | the Variable `coldcopy_migration_approvers` is missing or empty | `airflow variables set coldcopy_migration_approvers '["alice"]'` |
| a file task: *part N … resumes at this part* | a file mixing DDL and `CREATE INDEX CONCURRENTLY` failed mid-way; earlier parts stay | fix the cause; the retry applies only what is left |

Every statement runs with `lock_timeout` (retried with backoff) and `statement_timeout`; a file with
`CREATE INDEX CONCURRENTLY` is applied in parts (each run of transactional statements in one transaction,
each concurrent statement on its own), each recorded in `coldcopy_ops.schema_migration_parts`. Runs take an advisory lock, so two never interleave.
Target: the Airflow connection `coldcopy_db`.

Design, the stock-tools runbook and the measured figures: `docs/migrations.md` in the repository.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, TaskGroup, chain

from coldcopy import MIGRATIONS_DIR, SUPABASE_MIGRATIONS_DIR
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.migrations import ALL_PHASES, CLI_PHASE, discover_migrations
from coldcopy.operators.migrations import (
    ApplyMigrationOperator,
    MigrationApprovalOperator,
    MigrationPlanOperator,
    PhaseGateOperator,
    SecondApprovalOperator,
)
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
        task_id="rehearse", skip_rehearsal="{{ params.skip_rehearsal }}") >> MigrationApprovalOperator(
        task_id="approve") >> SecondApprovalOperator(task_id="approve_second")
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
