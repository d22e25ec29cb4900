"""The runbook's monitoring queries and scaling triggers as checks with history and alerts (``db_health``).

Each check group (one task of the DAG) returns :class:`Result` rows: a state (``ok``, ``warning``,
``breach``, ``unknown``), a key figure charted on the health page, a one-line summary and the details on-call
needs. :func:`record` writes them to ``coldcopy_ops.health_snapshot`` and alerts through
:mod:`coldcopy.alerts` only on a change worth a message (:func:`alert_for`).

Thresholds (:class:`Thresholds`) have documented defaults; the Airflow Variable ``coldcopy_health_thresholds``
(JSON) and the DAG param ``thresholds`` override them, read when the task runs.

Nothing here stores a statement's literals: query texts are shown with their string literals replaced by
``?``, as pg_stat_statements shows them, so no e-mail address lands in 90 days of history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from coldcopy.failure_reasons import reason_of
from coldcopy.health.change_archive import check_change_archive
from coldcopy.health.connections import check_connections, pgbouncer_pools
from coldcopy.health.engine import (
    cache_hit,
    check_engine,
    lock_waits,
    long_transactions,
    replication_slots,
    sequences,
    stale_vacuum,
    wraparound,
)
from coldcopy.health.history import alert_for, as_dict, prune, record
from coldcopy.health.operations import (
    CPU_NOTE,
    backup_age,
    check_cpu,
    check_ops_freshness,
    maintenance_age,
    partition_horizon,
    scratch_databases,
    view_freshness,
)
from coldcopy.health.queries import ENABLE_PG_STAT_STATEMENTS, check_slow_queries
from coldcopy.health.redaction import redact
from coldcopy.health.results import GB, RANK, THRESHOLDS_VARIABLE, Context, Result, Thresholds, graded, iso
from coldcopy.health.storage import check_indexes, check_sizes

log = logging.getLogger(__name__)

__all__ = [
    "alert_for", "as_dict", "backup_age", "cache_hit", "check_connections", "check_cpu", "check_engine",
    "check_indexes", "check_ops_freshness", "check_sizes", "check_slow_queries", "Context", "CPU_NOTE",
    "ENABLE_PG_STAT_STATEMENTS", "GB", "graded", "iso", "lock_waits", "long_transactions", "maintenance_age",
    "partition_horizon", "pgbouncer_pools", "prune", "RANK", "record", "redact", "replication_slots", "Result",
    "run_group", "scratch_databases", "sequences", "stale_vacuum", "Thresholds", "THRESHOLDS_VARIABLE",
    "view_freshness", "wraparound",
]

CHECKS: dict[str, Callable[[Context], list[Result]]] = {
    "sizes": check_sizes,
    "slow_queries": check_slow_queries,
    "indexes": check_indexes,
    "connections": check_connections,
    "engine": check_engine,
    "cpu": check_cpu,
    "ops_freshness": check_ops_freshness,
    "change_archive": check_change_archive,
}


def run_group(c: Context, group: str) -> list[Result]:
    """Run one group; a check that errors becomes an ``unknown`` result marked failed (never "healthy")."""
    try:
        return CHECKS[group](c)
    except psycopg.Error as error:
        if not c.conn.closed and c.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            c.conn.rollback()
        return [Result(group, "unknown", f"check failed: {reason_of(error)}", failed=True)]
