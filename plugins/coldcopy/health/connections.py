"""Connections: the server's slots and PgBouncer's pools."""

from __future__ import annotations

import logging

import psycopg
from psycopg.rows import dict_row

from coldcopy.health.results import Context, Result, graded

log = logging.getLogger(__name__)


# -- connections ----------------------------------------------------------------------------------------

def check_connections(c: Context) -> list[Result]:
    row = c.one("""
        SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
               current_setting('max_connections')::int AS max,
               current_setting('superuser_reserved_connections')::int AS reserved
        FROM pg_stat_activity""")
    by_app = c.rows("""
        SELECT coalesce(nullif(application_name, ''), '(none)') AS application, usename AS user,
               count(*) FILTER (WHERE state = 'active') AS active,
               count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction, count(*) AS total
        FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2 ORDER BY total DESC LIMIT 20""")
    usable = row["max"] - row["reserved"]
    pct = 100.0 * row["used"] / usable
    results = [Result("connections", graded(pct, c.t.connections_warn_pct, c.t.connections_breach_pct),
                      f"{row['used']} of {usable} usable connections ({pct:.0f} %)", pct, "%",
                      {**row, "by_application": by_app})]
    if c.pgbouncer_dsn:
        results.append(pgbouncer_pools(c.pgbouncer_dsn))
    return results


def pgbouncer_pools(dsn: str) -> Result:
    """PgBouncer's ``SHOW POOLS`` (admin console, simple query protocol): clients waiting = pool exhausted."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as console:
        pools = [{k: (v if isinstance(v, int | str | None) else str(v)) for k, v in p.items()}
                 for p in console.execute("SHOW POOLS").fetchall()]
    waiting = sum(int(p.get("cl_waiting") or 0) for p in pools)
    worst_wait = max((int(p.get("maxwait") or 0) for p in pools), default=0)
    return Result("pgbouncer_pools", "breach" if waiting else "ok",
                  f"{waiting} client(s) waiting for a server connection (longest {worst_wait} s): pool exhausted"
                  if waiting else "no client waiting for a server connection", waiting, "clients", {"pools": pools})
