"""Conventions every ColdCopy DAG shares: owner, retries, alerts, and the heavy-maintenance pool.

Timetables, one rule: ``CronDataIntervalTimetable`` only where a task reads the run's data interval (the
refresh DAGs: a run whose interval a newer refresh covers skips, which makes backfills cheap;
``partition_maintenance``: the months it premakes and archives are counted from the interval's end), and
``CronTriggerTimetable`` everywhere else (backups, maintenance, health, GDPR: a run stands for the moment it
was triggered). Trigger rules are written as ``TriggerRule`` members.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from coldcopy import alerts

OWNER = "db-oncall"
START_DATE = datetime(2026, 1, 1)
# One pool for every job that puts real load on the database (refreshes, vacuum, reindex, archive,
# backups), so they never pile up on it together. Created by `make demo`; in production:
#   airflow pools set coldcopy_db_heavy 2 "Heavy ColdCopy database maintenance"
HEAVY_POOL = "coldcopy_db_heavy"
HEAVY_POOL_SLOTS = 2
HEAVY_POOL_DESCRIPTION = "Heavy ColdCopy database maintenance (refreshes, vacuum, reindex, archive, backups)"


RETRY_DELAY_ENV = "COLDCOPY_RETRY_DELAY_S"


def retry_delay() -> timedelta:
    """The first retry's delay: 1 minute, or ``COLDCOPY_RETRY_DELAY_S`` seconds where the DAGs are parsed (the
    dag-processor's environment: a deployment that wants faster or slower first retries, the live tests).
    Exponential backoff grows it from there."""
    raw = os.environ.get(RETRY_DELAY_ENV, "").strip()
    if not raw:
        return timedelta(minutes=1)
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r}: seconds expected (e.g. 60)") from None
    if not 1 <= seconds <= 3600:
        raise ValueError(f"{RETRY_DELAY_ENV}={raw!r}: between 1 and 3600 seconds")
    return timedelta(seconds=seconds)


def default_args(**overrides) -> dict:
    """``default_args`` of a ColdCopy DAG: retried with exponential backoff, alerting on final failure."""
    return {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": retry_delay(),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "on_failure_callback": alerts.on_task_failure,
        **overrides,
    }
