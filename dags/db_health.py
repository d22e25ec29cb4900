"""
# db_health — every 10 minutes

The runbook's *Monitoring Queries* and *When to Scale* triggers, run for you. One task per check group; each
writes a snapshot to `coldcopy_ops.health_snapshot` (kept 90 days) and alerts (`threshold_breached`) **once**
when a check enters warning or breach, again when it gets worse or every 6 h while in breach, and sends
`resolved` when it clears. A check that cannot run is recorded as *unknown* and fails its task.
The page **ColdCopy DB health** (Airflow's nav bar, *Browse*) shows the same, with 7 days of history.

| Task | Checks | Default thresholds (warning / breach) |
|---|---|---|
| sizes | `storage`: database size vs allocated, growth per day, top tables (indexes, TOAST) | 70 % / 80 % of 100 GB |
| slow_queries | `slow_queries` from `pg_stat_statements`; p95 **estimated** as mean + 2·stddev | — / > 200 ms with ≥ 100 calls |
| indexes | `unused_indexes` (0 scans since the stats reset, ≥ 1 MB, not unique/PK), `duplicate_indexes` | any / — |
| connections | `connections` vs `max_connections`; `pgbouncer_pools` (`SHOW POOLS`, if `coldcopy_pgbouncer` exists) | 70 % / 80 %; any `cl_waiting` |
| engine | `cache_hit` (since the last run), `wraparound`, `long_transactions`, `lock_waits`, `replication_slots`, `sequences`, `stale_vacuum` | < 99 % / < 95 %; 1.3 B / 1.4 B; idle in transaction > 60 s or statement > 5 min; 5 s / 30 s; inactive or 1 GB / 10 GB; 75 % / 90 %; 2 days |
| cpu | `cpu_load`: active backends per core (a proxy: real CPU comes from the provider's metrics) | — / ≥ 70 % for 3 runs |
| ops_freshness | `view_freshness` (age vs cadence), `partition_horizon`, `backup_age`, `maintenance_age` | 1 / 2 cadences + deadline; < 3 / < 2 months; — / 26 h; 26 h / 74 h |

Our own sessions (`application_name` `coldcopy:…`) never count as long transactions: they run long on
purpose under their own timeouts. Query texts are stored with string literals replaced by `?`.

**Thresholds**: every name in `coldcopy.health.Thresholds` can be overridden in the Airflow Variable
`coldcopy_health_thresholds` (JSON, e.g. `{"storage_allocated_gb": 250, "cpu_cores": 4}`) or per run with the
param `thresholds`. The param is checked by its JSON Schema when the run is triggered (an unknown name or a
non-number is refused by the Trigger form, the REST API and the CLI: no run, no alert); a bad Variable fails each
check task with the same message, and on-call is paged **once** for it (alerts of one DAG with the same error are
sent once an hour: `coldcopy.alerts`). Read when the tasks run, never at parse time.

| Symptom | Meaning | Action |
|---|---|---|
| `slow_queries` unknown: *not installed* | no `pg_stat_statements` | Supabase: Database → Extensions; self-hosted: `shared_preload_libraries` |
| `long_transactions` breach | a session idles in a transaction (holds locks, blocks vacuum) | `SELECT pg_terminate_backend(pid)` if the owner agrees |
| `lock_waits` breach | sessions queue behind a lock holder | the page lists the blocking pid and its transaction age |
| task failed | the check errored (permissions, timeout) | read the log; the check shows *unknown* on the page |

Design, the stock-tools runbook and the measured figures: `docs/health.md` in the repository.
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param, TriggerRule

from coldcopy import alerts
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.health import CHECK_GROUPS, HealthCheckOperator, PruneHealthHistoryOperator
from coldcopy.thresholds import Thresholds

with DAG(
    dag_id="db_health",
    description="Every 10 min: monitoring queries and scaling triggers → history, alerts, the health page",
    schedule=CronTriggerTimetable("*/10 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2, retry_delay=timedelta(seconds=20), retry_exponential_backoff=False),
    deadline=alerts.deadline(timedelta(minutes=8), expected="health checks"),
    params={"thresholds": Param({}, description="Threshold overrides for this run, e.g. "
                                '{"storage_allocated_gb": 250}: known names, numbers (refused otherwise).',
                                **Thresholds.json_schema())},
    tags=["coldcopy", "health", "monitoring"],
    doc_md=__doc__,
):
    checks = [HealthCheckOperator(task_id=group, group=group) for group in CHECK_GROUPS]
    checks >> PruneHealthHistoryOperator(task_id="prune_history", trigger_rule=TriggerRule.ALL_DONE)
