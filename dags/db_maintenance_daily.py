"""
# db_maintenance_daily — daily at 04:30 UTC

Replaces the runbook's blanket `daily_maintenance.sh` (VACUUM ANALYZE of everything) with targeted work:

1. **plan_vacuum** — picks tables from `pg_stat_user_tables` (email_events partitions included): dead
   tuples ≥ 50 + 20 % of live rows, or modifications since the last analyze ≥ 50 + 10 %, or dead tuples and
   no (auto)vacuum for 7 days; `age(relfrozenxid)` over 150 M → `VACUUM (FREEZE)`. Every table that is not
   picked is listed in the log with the reason. Param `all_tables: true` vacuums everything.
2. **vacuum** — one mapped task per picked table: `VACUUM (ANALYZE)` outside a transaction, 1 h
   `statement_timeout`, 1 s `lock_timeout` retried; a table that stays locked is skipped and reported, and
   the others go on.
3. **purge_cache** — expired rows of the 204 cache tables, in batches of 5,000.

Everything goes to `coldcopy_ops.maintenance_log`. Pool `coldcopy_db_heavy`; deadline 2 h from queued.
Run by hand from the Airflow UI, or: `airflow dags trigger db_maintenance_daily --conf '{"all_tables": true}'`.

Design, the stock-tools runbook and the measured figures: `docs/maintenance.md` in the repository.
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param, TriggerRule

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.maintenance import MaintainOperator, PlanMaintenanceOperator, PurgeCacheOperator

with DAG(
    dag_id="db_maintenance_daily",
    description="Daily 04:30 UTC: targeted VACUUM/freeze of the tables that need it, expired cache purge",
    schedule=CronTriggerTimetable("30 4 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(pool=HEAVY_POOL),
    deadline=alerts.deadline(timedelta(hours=2), expected="daily vacuum and cache purge"),
    params={"all_tables": Param(False, type="boolean", description="Vacuum every table, not only those that need it.")},
    tags=["coldcopy", "maintenance", "vacuum"],
    doc_md=__doc__,
):
    plan = PlanMaintenanceOperator(task_id="plan_vacuum", kind="vacuum")
    vacuum = MaintainOperator.partial(task_id="vacuum", map_index_template="{{ task.target['name'] }}").expand(
        target=plan.output)
    plan >> vacuum >> PurgeCacheOperator(task_id="purge_cache", trigger_rule=TriggerRule.NONE_FAILED)
