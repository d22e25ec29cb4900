"""
# restore_drill — a point-in-time restore every day, measured

**Daily 06:00 UTC.** Picks a second within the last 24 h (random; or the param `as_of`), restores the database
as of it on the **verification server** (`coldcopy_verify_db`; never the live one: a connection reaching the live
server is refused), checks the result against the archive, re-applies the erasure ledger, drops the copy and
records one row in `coldcopy_ops.restore_drills`:

- **RTO**, start to a usable, checked database, split into *download* (the base backup, bound to its signed
  manifest), *restore* (decrypt, `pg_restore --jobs N`: N is the verify connection's extra `cores`, else the
  worker's), *replay* (the change archive, every segment bound to its manifest), *verify* and *erasures*;
- **achieved RPO** at that second: had the primary been lost then, the age of the oldest commit not yet in the
  archive (0 when every commit before it was archived); and the commits at risk;
- bytes downloaded, rows restored, changes replayed, per-table checks.

**The checks** (docs/backups.md, "Restore drills"): every table's rows after the base restore equal its
manifest's; after the replay, every table's rows equal the base plus the archive's inserts minus deletes since
the backup's snapshot; and about one key in 8 (by a hash of table and key) holds exactly the last image the
archive has of it (or is absent, deleted). A wrong replay cannot pass.

Shown on the health page (a trend) and as metrics (`coldcopy_restore_drill_rto_seconds`, `…_rpo_seconds`,
`…_last_success_timestamp`); the rules page when a drill failed, none passed for 36 h, or the RTO exceeds the
budget (Variable `coldcopy_restore_drill_rto_budget_s`, default 3600).

| Symptom | Meaning | Action |
|---|---|---|
| *does not match its signed manifest* / *gap after segment* | the archive cannot give that second: a segment tampered with or missing | treat as an incident: find who wrote the bucket; take a base backup now |
| *differs from the archive* | the replay did not rebuild what the archive holds | do not trust PITR until fixed; the drill row's `checks` names tables and keys |
| *the live database's own server* | `coldcopy_verify_db` reaches production | point it at a server of its own |
| RTO over budget | a real recovery would take longer than agreed | size the verify server like production (docs/backups.md) or raise the budget knowingly |
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.dag_params import AS_OF_PATTERN, optional, text
from coldcopy.operators.backups import MAX_JOBS
from coldcopy.operators.drills import RestoreDrillOperator

with DAG(
    dag_id="restore_drill",
    description="Daily 06:00 UTC: restore as of a second of the last day on the verify server; RTO and RPO",
    schedule=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(pool=HEAVY_POOL, retries=2),
    deadline=alerts.deadline(timedelta(hours=4), expected="the daily restore drill"),
    params={
        "as_of": optional("the second to restore (UTC, whole seconds, 2026-12-04T03:00:05Z); empty: a random "
                          "second of the last 24 h; a second the archive does not hold yet drills its newest one",
                          pattern=AS_OF_PATTERN),
        "jobs": Param(0, type="integer", minimum=0, maximum=MAX_JOBS, description="pg_restore --jobs and the "
                      f"replay's connections, at most {MAX_JOBS} (0: the verify server's cores)"),
    },
    tags=["coldcopy", "backups", "pitr"],
    doc_md=__doc__,
):
    RestoreDrillOperator(task_id="drill", as_of=text("as_of"), jobs="{{ params.jobs }}")
