"""Builds a refresh DAG: one refresh task per materialized view, on one cadence."""

from __future__ import annotations

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.refresh import RefreshMaterializedViewOperator
from coldcopy.refresh_jobs import REFRESH_JOBS


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
        doc_md=doc_md,
    ) as dag:
        for view in views:
            RefreshMaterializedViewOperator(task_id=f"refresh_{view.split('.')[-1]}", view=view)
    return dag
