"""
# db_maintenance_weekly — Sundays at 05:00 UTC (the low-traffic window)

Replaces `weekly_vacuum.sh` (VACUUM FULL of everything), `reindex.sh` and `update_stats.sh`:

1. **drop_invalid_indexes** — INVALID leftovers of failed concurrent builds (`*_ccnew*`, `*_ccold*`),
   `DROP INDEX CONCURRENTLY`.
2. **reindex** — btree indexes over 10 MB with over 30 % estimated bloat, not reindexed in 7 days, at most
   5 a run: `REINDEX INDEX CONCURRENTLY` under an explicit `statement_timeout`; size before and after logged.
3. **vacuum_full** — tables over 30 % estimated bloat and under 32 MB: `VACUUM (FULL)` takes ACCESS EXCLUSIVE
   for the whole rewrite, so it runs only under a 1 s `lock_timeout` (never queued in front of the app) and
   only for tables small enough to rewrite in seconds. Bigger bloated tables are **reported** for pg_repack
   (online) instead of being locked.
4. **analyze** — tables whose statistics are stale (extended statistics are rebuilt by ANALYZE too).

Everything goes to `coldcopy_ops.maintenance_log`. Pool `coldcopy_db_heavy`; deadline 4 h from queued.
Run by hand from the Airflow UI or `airflow dags trigger db_maintenance_weekly`.

Design, the stock-tools runbook and the measured figures: `docs/maintenance.md` in the repository.
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, TriggerRule, chain

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.maintenance import MaintainOperator, PlanMaintenanceOperator

with DAG(
    dag_id="db_maintenance_weekly",
    description="Sundays 05:00 UTC: invalid-index cleanup, REINDEX CONCURRENTLY of bloated indexes, capped VACUUM FULL, ANALYZE",
    schedule=CronTriggerTimetable("0 5 * * 0", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(pool=HEAVY_POOL),
    deadline=alerts.deadline(timedelta(hours=4), expected="weekly reindex, VACUUM FULL and statistics"),
    tags=["coldcopy", "maintenance", "reindex"],
    doc_md=__doc__,
):
    steps = []
    for kind, task in (("invalid_indexes", "drop_invalid_indexes"), ("reindex", "reindex"),
                       ("vacuum_full", "vacuum_full"), ("analyze", "analyze")):
        plan = PlanMaintenanceOperator(task_id=f"plan_{task}", kind=kind, trigger_rule=TriggerRule.NONE_FAILED)
        act = MaintainOperator.partial(task_id=task, map_index_template="{{ task.target['name'] }}").expand(
            target=plan.output)
        steps += [plan, act]
    chain(*steps)
