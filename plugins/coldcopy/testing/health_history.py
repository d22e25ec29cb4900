"""History for the health page without waiting for it: run every db_health check once on a database, then copy
those snapshots back in time every 10 minutes for ``days`` days with wandering values (page test, bench)."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from coldcopy import health, ops_schema


def fill(dsn: str, days: int) -> int:
    """Returns the number of snapshots the history holds afterwards."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ops_schema.ensure(conn, "health")
        conn.row_factory = dict_row
        t = health.Thresholds()
        for group in health.CHECKS:
            health.record(conn, health.run_group(health.Context(conn, t), group), t, run_id="history")
        conn.execute("""
            INSERT INTO coldcopy_ops.health_snapshot
              (check_name, taken_at, state, value, unit, summary, details, run_id)
            SELECT s.check_name, s.taken_at - g * interval '10 minutes', s.state,
                   CASE WHEN s.unit = '%%' THEN least(100, s.value * (1 + 0.3 * sin(g / 36.0) + 0.05 * random()))
                        ELSE s.value * (1 + 0.3 * sin(g / 36.0) + 0.05 * random()) END,
                   s.unit, s.summary, s.details, 'history'
            FROM coldcopy_ops.health_snapshot s, generate_series(1, %s * 144) g
            WHERE s.run_id = 'history' AND s.taken_at >= now() - interval '1 minute'""", (days,))
        conn.execute("ANALYZE coldcopy_ops.health_snapshot")
        return conn.execute("SELECT count(*) AS n FROM coldcopy_ops.health_snapshot").fetchone()["n"]
