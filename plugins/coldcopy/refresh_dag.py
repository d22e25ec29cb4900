"""Builds a refresh DAG: one refresh task per materialized view, on one cadence."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.refresh import RefreshMaterializedViewOperator


def build_refresh_dag(*, dag_id: str, cron: str, views: list[str], deadline: timedelta, doc_md: str) -> DAG:
    """A DAG refreshing ``views`` on ``cron`` (UTC) that must finish within ``deadline`` of being queued.

    Data intervals (not trigger points) so every run knows which interval it stands for: a run whose
    interval a newer refresh already covers skips, which is what makes backfills cheap.
    """
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
