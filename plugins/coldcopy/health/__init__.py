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

from coldcopy import alerts
from coldcopy.health.change_archive import check_change_archive
from coldcopy.health.common import *  # noqa: F403
from coldcopy.health.common import Context, Result
from coldcopy.health.connections import *  # noqa: F403
from coldcopy.health.connections import check_connections
from coldcopy.health.engine import *  # noqa: F403
from coldcopy.health.engine import check_engine
from coldcopy.health.history import *  # noqa: F403
from coldcopy.health.operations import *  # noqa: F403
from coldcopy.health.operations import check_cpu, check_ops_freshness
from coldcopy.health.queries import *  # noqa: F403
from coldcopy.health.queries import check_slow_queries
from coldcopy.health.redaction import *  # noqa: F403
from coldcopy.health.storage import *  # noqa: F403
from coldcopy.health.storage import check_indexes, check_sizes

log = logging.getLogger(__name__)

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
        return [Result(group, "unknown", f"check failed: {alerts.reason_of(error)}", failed=True)]
