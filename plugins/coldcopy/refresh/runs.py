"""What a refresh run stands for, what it did, and its record in ``coldcopy_ops.mv_refresh_log``: shared by the
materialized views' refresher (:mod:`coldcopy.refresh.views`) and the summaries'
(:mod:`coldcopy.refresh.incremental`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg

# Changes older than this are pruned; a view whose last refresh is older refreshes unconditionally.
CHANGE_RETENTION = "7 days"


@dataclass(frozen=True)
class RefreshRun:
    """Which Airflow run asks for the refresh, and the point in time it stands for.

    ``covers_until``: the view must reflect the data as of this time. For scheduled and backfill runs it
    is the end of the data interval; for a manual run, its logical date (the trigger time unless one was
    chosen), so "trigger now" means now. :meth:`for_context` works it out from the task context.
    """

    run_id: str
    dag_id: str | None = None
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    covers_until: datetime | None = None

    @classmethod
    def for_context(cls, context) -> RefreshRun:
        ti = context["ti"]
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        points = [p for p in (end, context.get("logical_date")) if p is not None]
        return cls(run_id=ti.run_id, dag_id=ti.dag_id, interval_start=start, interval_end=end,
                   covers_until=max(points) if points else None)


@dataclass
class RefreshOutcome:
    view: str
    action: str  # refreshed | skipped
    reason: str
    mode: str | None = None  # concurrent | plain
    row_count: int | None = None
    duration_ms: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def last_refresh(conn: psycopg.Connection, view: str) -> tuple | None:
    """``(started_at, run_id, covered_snapshot, is_recent)`` of the latest successful refresh of ``view``."""
    return conn.execute(
        "SELECT started_at, run_id, covered_snapshot, started_at > now() - %s::interval "
        "FROM coldcopy_ops.mv_refresh_log WHERE view_name = %s AND action = 'refreshed' "
        "ORDER BY started_at DESC LIMIT 1",
        (CHANGE_RETENTION, view),
    ).fetchone()


def covered(last: tuple | None, run: RefreshRun) -> str | None:
    """Why ``run`` is covered by the refresh ``last`` (:func:`last_refresh`) — it started at or after the time
    the run stands for, so backfills cost one refresh — or None."""
    if last and run.covers_until is not None and last[0] >= run.covers_until:
        return (f"data up to {run.covers_until.isoformat()} already covered by the refresh at "
                f"{last[0].isoformat()} (run {last[1]})")
    return None


def log_outcome(conn: psycopg.Connection, run: RefreshRun, started_at, started: float, outcome: RefreshOutcome,
                snapshot) -> None:
    """Record ``outcome`` in ``coldcopy_ops.mv_refresh_log`` (its duration from the monotonic ``started``)."""
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    conn.execute(
        "INSERT INTO coldcopy_ops.mv_refresh_log (view_name, dag_id, run_id, data_interval_start, "
        "data_interval_end, started_at, finished_at, duration_ms, action, mode, reason, row_count, "
        "covered_snapshot) VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s, %s, %s, %s, %s)",
        (outcome.view, run.dag_id, run.run_id, run.interval_start, run.interval_end, started_at,
         outcome.duration_ms, outcome.action, outcome.mode, outcome.reason, outcome.row_count, snapshot),
    )
