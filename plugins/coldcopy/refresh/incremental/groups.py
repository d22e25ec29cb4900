"""The groups method: the groups whose keys were captured are recomputed from the definition (filtered by key)
and replaced. For the summaries without an aggregate state (:mod:`coldcopy.refresh.incremental.aggregates`), and
for one whose aggregate no longer states its definition. Its cost follows the size of the groups a change
touched."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.summaries import Summary


class GroupApplier:
    def __init__(self, conn: psycopg.Connection, summary: Summary, rebuild_share: float) -> None:
        self.conn, self.summary, self.rebuild_share = conn, summary, rebuild_share
        self.table = sql.Identifier(summary.schema, summary.table)
        self.definition = sql.Identifier(summary.schema, f"{summary.table}_definition")

    def _rows_estimate(self) -> float:
        """The planner's row count of the summary (its exact count if it was never analyzed)."""
        estimate = self.conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                                     (self.summary.name,)).fetchone()[0]
        return estimate if estimate >= 0 else self.conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(self.table)).fetchone()[0]

    def apply(self, state: dict) -> int | None:
        """Replace the changed groups; returns how many, or None when so many changed that a rebuild is cheaper."""
        conn, key = self.conn, self.summary.key
        pending = {c.table.split(".")[1]: capture.pending(c.delta) for c in self.summary.captures()}
        keys = sql.SQL(self.summary.keys_sql()).format(previous_clock=sql.SQL("%(previous_clock)s::timestamptz"),
                                                       **pending)
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_keys ON COMMIT DROP AS {}").format(keys),
                     {"since": state["watermark"], "previous_clock": state["clock_at"]})
        groups = conn.execute("SELECT count(*) FROM ivm_keys").fetchone()[0]
        if groups == 0:
            return 0
        conn.execute("ANALYZE ivm_keys")
        if groups > self.rebuild_share * self._rows_estimate():
            conn.execute("DROP TABLE ivm_keys")
            return None  # most groups changed: recomputing them one by one costs more than the whole definition
        columns = [sql.Identifier(k) for k in key]
        same = sql.SQL(" AND ").join(sql.SQL("{0}.{1} = k.{1}").format(sql.Identifier("t"), c) for c in columns)
        conn.execute(sql.SQL("DELETE FROM {} t USING ivm_keys k WHERE {}").format(self.table, same))
        # Each key column as an array the planner pushes into the definition (to the base tables' indexes);
        # the EXISTS keeps exactly the changed groups of that superset.
        narrowed = sql.SQL(" AND ").join(
            sql.SQL("t.{0} = ANY(ARRAY(SELECT DISTINCT k.{0} FROM ivm_keys k))").format(c) for c in columns)
        conn.execute(sql.SQL("INSERT INTO {} SELECT t.* FROM {} t WHERE {} AND EXISTS "
                             "(SELECT 1 FROM ivm_keys k WHERE {})").format(self.table, self.definition, narrowed, same))
        conn.execute("DROP TABLE ivm_keys")
        return groups
