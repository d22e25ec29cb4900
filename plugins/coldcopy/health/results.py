"""Thresholds, results and the context every check reads through."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

from coldcopy import safe_names
from coldcopy.thresholds import Thresholds  # noqa: F401 - coldcopy.health.Thresholds, as before

log = logging.getLogger(__name__)


THRESHOLDS_VARIABLE = "coldcopy_health_thresholds"
RANK = {"ok": 0, "warning": 1, "breach": 2}
GB = 1024**3


@dataclass
class Result:
    check: str
    state: str
    summary: str
    value: float | None = None
    unit: str = ""
    details: dict = field(default_factory=dict)
    higher_is_worse: bool = True
    worse_by_value: bool = True  # False for ages: they grow by themselves, reminders cover them
    failed: bool = False  # the check itself errored: reported as unknown, and the task fails


def iso(row: dict) -> dict:
    """``row`` with its dates and times in ISO 8601, for a check's details."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def graded(value: float, warn: float, breach: float, *, higher_is_worse: bool = True) -> str:
    if higher_is_worse:
        return "breach" if value >= breach else "warning" if value >= warn else "ok"
    return "breach" if value < breach else "warning" if value < warn else "ok"


@dataclass
class Context:
    conn: psycopg.Connection  # autocommit, dict rows
    t: Thresholds
    pgbouncer_dsn: str | None = None
    paused_dags: frozenset[str] = frozenset()  # DAGs paused in Airflow (asked by the task), named as a cause

    def rows(self, query, params=None) -> list[dict]:
        return self.conn.execute(query, params).fetchall()

    def one(self, query, params=None) -> dict:
        return self.conn.execute(query, params).fetchone()

    def previous(self, check: str, before: timedelta = timedelta(0)) -> dict | None:
        """The latest snapshot of ``check`` at least ``before`` old."""
        return self.conn.execute(
            "SELECT taken_at, state, value, details FROM coldcopy_ops.health_snapshot WHERE check_name = %s "
            "AND taken_at <= now() - %s ORDER BY taken_at DESC LIMIT 1", (check, before)).fetchone()

    def recent_values(self, check: str, runs: int) -> list[float | None]:
        rows = self.conn.execute(
            "SELECT value FROM coldcopy_ops.health_snapshot WHERE check_name = %s ORDER BY taken_at DESC LIMIT %s",
            (check, runs)).fetchall()
        return [r["value"] for r in rows]

    def has_table(self, name: str) -> bool:
        return safe_names.exists(self.conn, name)

    def server_kind(self) -> str:
        """``supabase`` (its roles are there, or its host names), ``local`` (loopback or a socket), or ``other``:
        which hint fits the server at hand."""
        host = (self.conn.info.host or "").lower()
        if host.endswith((".supabase.co", ".supabase.com")) or self.one(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin') AS yes")["yes"]:
            return "supabase"
        return "local" if host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/") else "other"

    def stats_hours(self) -> float:
        """How long the activity statistics cover: since ``pg_stat_database.stats_reset``; a database never
        reset (a new one) counts from when its schema was built (the first migration this job recorded), else
        from the first health run. Unknown → the shorter bound, so a verdict rather waits than misleads."""
        starts = ["(SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())"]
        if self.has_table("coldcopy_ops.schema_migrations"):
            starts.append("(SELECT min(started_at) FROM coldcopy_ops.schema_migrations)")
        if self.has_table("coldcopy_ops.health_snapshot"):
            starts.append("(SELECT min(taken_at) FROM coldcopy_ops.health_snapshot)")
        return self.one(f"SELECT extract(epoch FROM now() - coalesce({', '.join(starts)}, now())) / 3600 AS h")["h"]

    def too_early(self) -> str | None:
        """Why a verdict over the statistics must wait, or ``None`` when they cover ``stats_min_days``."""
        hours = self.stats_hours()
        if hours >= self.t.stats_min_days * 24:
            return None
        return f"too early to judge (statistics {hours:.0f} h old, {self.t.stats_min_days:g} days needed)"
