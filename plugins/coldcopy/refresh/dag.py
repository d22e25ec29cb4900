"""Builds a refresh DAG: one refresh task per materialized view, on one cadence."""

from __future__ import annotations

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.refresh import RefreshMaterializedViewOperator, VerifySummariesOperator
from coldcopy.refresh_schedule import REFRESH_JOBS

# The part of every refresh DAG's runbook page that is the same for all four: rendered here, once.
RUNBOOK = """
**Backfill** missed refreshes (UI: the DAG's *Trigger* → *Backfill*, or the Airflow CLI):
`airflow backfill create --dag-id {dag_id} --from-date 2026-11-20T00:00:00Z --to-date 2026-11-21T00:00:00Z --max-active-runs 1`.
The first run refreshes; every later run's interval is then covered and skips in about a second.

| Symptom | Meaning | Action |
|---|---|---|
| task failed: *could not get its lock* | another session holds the view's lock (a manual refresh?) | find it in `pg_stat_activity`; the task retries |
| task failed: *canceling statement due to statement timeout* | the refresh ran past its statement_timeout | check load and bloat; raise `statement_timeout` only with a reason |
| deadline missed | the run did not finish within {deadline} of being queued | look at the task log and `pg_stat_activity` |
| alert *summary_repaired* (daily `verify_summaries`) | an incremental summary differed from its definition; it was rebuilt | `coldcopy_ops.ivm_verifications`; find the write the capture missed (docs/refresh.md) |

A summary (docs/refresh.md) recomputes only the groups whose rows changed; **`force`** rebuilds it from its definition.
"""


def _duration(delta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def build_refresh_dag(*, dag_id: str, doc_md: str) -> DAG:
    """The DAG ``dag_id`` of :data:`REFRESH_JOBS`: refreshes its views on its cron (UTC) and must finish
    within its deadline of being queued.

    Data intervals (not trigger points) so every run knows which interval it stands for: a run whose
    interval a newer refresh already covers skips, which is what makes backfills cheap.
    """
    job = REFRESH_JOBS[dag_id]
    cron, views, deadline = job.cron, job.views, job.deadline
    with DAG(
        dag_id=dag_id,
        description=f"Refresh {', '.join(views)} (cron {cron} UTC); unchanged or covered runs are skipped",
        schedule=CronDataIntervalTimetable(cron, timezone="UTC"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(pool=HEAVY_POOL),
        deadline=alerts.deadline(deadline, expected=f"refresh of {', '.join(views)}"),
        params={"force": Param(False, type="boolean", description="Refresh even if no source table changed.")},
        tags=["coldcopy", "materialized-views", "refresh"],
        doc_md=doc_md.rstrip() + "\n" + RUNBOOK.format(dag_id=dag_id, deadline=_duration(deadline)),
    ) as dag:
        refreshes = [RefreshMaterializedViewOperator(task_id=f"refresh_{view.split('.')[-1]}", view=view)
                     for view in views]
        if job.verify_summaries:
            refreshes >> VerifySummariesOperator(task_id="verify_summaries", trigger_rule="all_done")
    return dag
