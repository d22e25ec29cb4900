"""Thresholds, results and the context every check reads through."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from pydantic import BaseModel, ConfigDict

from coldcopy import catalog

log = logging.getLogger(__name__)


THRESHOLDS_VARIABLE = "coldcopy_health_thresholds"
RANK = {"ok": 0, "warning": 1, "breach": 2}
GB = 1024**3


class Thresholds(BaseModel):
    """Defaults of every check (the runbook's "When to Scale" triggers and check_postgres' defaults); a pydantic
    model that refuses unknown names (``extra="forbid"``) and cannot be changed once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage_allocated_gb: float = 100.0  # the plan's disk (runbook: 100 GB)
    storage_warn_pct: float = 70.0
    storage_breach_pct: float = 80.0
    slow_p95_ms: float = 200.0  # estimated p95 (mean + 2·stddev) of a statement with real traffic
    slow_min_calls: int = 100
    unused_index_min_bytes: int = 1024**2
    connections_warn_pct: float = 70.0
    connections_breach_pct: float = 80.0
    cache_hit_warn_pct: float = 99.0
    cache_hit_breach_pct: float = 95.0
    cache_min_blocks: int = 10_000  # fewer block reads than this since the last run: too little traffic to judge
    stats_min_days: float = 7.0  # unused-index and cache-hit verdicts wait until the statistics cover this long
    xid_age_warn: int = 1_300_000_000
    xid_age_breach: int = 1_400_000_000
    idle_in_transaction_s: float = 60.0
    long_statement_s: float = 300.0
    lock_wait_warn_s: float = 5.0
    lock_wait_breach_s: float = 30.0
    slot_retained_warn_gb: float = 1.0
    slot_retained_breach_gb: float = 10.0
    change_archive_retained_warn_gb: float = 1.0  # WAL the change archive's slot holds
    change_archive_retained_breach_gb: float = 5.0
    change_archive_budget_gb: float = 20.0  # past this the slot is dropped (the chain breaks; the disk is safe)
    change_archive_lag_warn_min: float = 5.0  # since every commit was last known archived
    change_archive_lag_breach_min: float = 30.0
    sequence_warn_pct: float = 75.0
    sequence_breach_pct: float = 90.0
    stale_vacuum_days: float = 2.0
    cpu_cores: int = 2  # of the database server (not visible from SQL on a managed database)
    active_per_core_breach_pct: float = 70.0
    active_sustained_runs: int = 3  # consecutive runs over the line before it is a breach (30 min)
    view_late_factor: float = 2.0  # breach when a view is older than this many cadences (+ its deadline)
    partition_months_warn: int = 3
    partition_months_breach: int = 2
    backup_max_age_h: float = 26.0
    maintenance_warn_age_h: float = 26.0
    maintenance_breach_age_h: float = 74.0
    reminder_hours: float = 6.0
    worse_margin: float = 0.25  # a value 25 % further past its threshold than last alerted is "worse"
    history_days: int = 90

    @classmethod
    def from_overrides(cls, *overrides: dict | None) -> Thresholds:
        """Defaults updated by each mapping in turn; an unknown name or a non-number is an error."""
        known = {name: info.annotation for name, info in cls.model_fields.items()}
        values: dict = {}
        for override in overrides:
            for name, value in (override or {}).items():
                if name not in known:
                    raise ValueError(f"unknown health threshold {name!r}; known: {', '.join(sorted(known))}")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"health threshold {name} must be a number, got {value!r}")
                values[name] = int(value) if known[name] is int else float(value)
        return cls(**values)


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
        return catalog.exists(self.conn, name)

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
