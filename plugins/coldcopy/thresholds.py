"""The thresholds of ``db_health`` (:class:`Thresholds`), importable while a DAG file is parsed (no driver): the
``thresholds`` param's JSON Schema comes from them, so the Trigger form refuses an unknown name or a non-number
before a run exists (issue 41)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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

    @classmethod
    def json_schema(cls) -> dict:
        """The ``thresholds`` param's schema: known names only, each a number (an integer where the model says)."""
        return {"type": "object", "additionalProperties": False, "properties": {
            name: {"type": "integer" if info.annotation in (int, "int") else "number", "minimum": 0}
            for name, info in cls.model_fields.items()}}
