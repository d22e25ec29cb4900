"""What the health tests share: a checker bound to a database and a sink, a cluster with pg_stat_statements."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from coldcopy import health, ops_schema


def texts(sink) -> list[str]:
    return [a["body"]["text"] for a in sink.received]


class Checker:
    """Runs check groups the way the operator does (ops schema ensured, dict rows, record + alert)."""

    def __init__(self, dsn: str, **thresholds) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        ops_schema.ensure(self.conn, "health")
        self.conn.row_factory = dict_row
        self.t = health.Thresholds.from_overrides(thresholds)

    def run(self, group: str, **thresholds) -> dict[str, health.Result]:
        t = health.Thresholds.from_overrides(self.t.model_dump(), thresholds) if thresholds else self.t
        results = health.run_group(health.Context(self.conn, t), group)
        health.record(self.conn, results, t, run_id="test")
        return {r.check: r for r in results}

    def close(self) -> None:
        self.conn.close()


