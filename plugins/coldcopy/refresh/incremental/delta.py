"""Applying signed deltas to a summary's aggregate state (:class:`DeltaApplier`), and building that state.

An apply reads the captured event rows the summary has not seen (each signed), sums them per group into
``ivm_d``, adds that to the state (a count up or down; a maximum raised; a distinct count moved by the values whose
multiplicity crossed 0 <-> 1), looks a maximum up again (by index, in the group's own rows) only where a row that
went could have held it, drops the groups whose hidden row count reached 0, and writes to the summary only the
groups (and frame rows: a campaign renamed) whose figures moved. Its cost follows the rows that changed, not the
size of the groups they touched. Runs inside the maintainer's transaction (REPEATABLE READ, TimeZone UTC, the
summary's apply lock held): the base rows it reads and the deltas it applies are one snapshot.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.aggregates import EVENT_ROWS, Aggregate
from coldcopy.refresh.incremental.replacement import replace_with
from coldcopy.refresh.incremental.summary_rows import SummaryRows, keys_match, names


class Inconsistent(RuntimeError):
    """The state went below zero somewhere: it was not the definition's (rebuild it)."""


_list, _match = names, keys_match


class DeltaApplier:
    def __init__(self, conn: psycopg.Connection, aggregate: Aggregate) -> None:
        self.conn, self.a = conn, aggregate
        self.state = sql.Identifier("coldcopy_ops", aggregate.state)
        self.mult = sql.Identifier("coldcopy_ops", aggregate.multiplicities)
        self.summary = sql.Identifier(*aggregate.summary.split("."))
        self.rows = SummaryRows(conn, aggregate, self.state)

    # -- the sums ------------------------------------------------------------------------------------------

    def grouped(self, rows: sql.Composable, *, signed: bool, window: str | None = None) -> sql.Composed:
        """``rows`` (event rows) summed per group: each count and each maximum (``signed``: of the rows added, and
        of the rows gone as ``<column>__gone``; else the distinct counts too, for a build from the base)."""
        a = self.a
        items = [sql.SQL("sum(n * ({}))::bigint AS {}").format(sql.SQL(expr), sql.Identifier(col))
                 for col, expr in a.counts]
        for col, value, among in a.distinct:
            items.append(sql.SQL("0::bigint AS {}").format(sql.Identifier(col)) if signed else sql.SQL(
                "count(DISTINCT {}) FILTER (WHERE {}) AS {}").format(sql.SQL(value), sql.SQL(among),
                                                                     sql.Identifier(col)))
        for col, value, among in a.maxima:
            items.append(sql.SQL("max({v}) FILTER (WHERE ({f}) AND n > 0) AS {c}").format(
                v=sql.SQL(value), f=sql.SQL(among), c=sql.Identifier(col)))
            if signed:
                items.append(sql.SQL("max({v}) FILTER (WHERE ({f}) AND n < 0) AS {c}").format(
                    v=sql.SQL(value), f=sql.SQL(among), c=sql.Identifier(f"{col}__gone")))
        return sql.SQL("SELECT {key}, {items} FROM ({rows}) r WHERE ({where}) AND {window} GROUP BY {key}").format(
            key=_list(a.key), items=sql.SQL(", ").join(items), rows=rows, where=sql.SQL(a.where),
            window=sql.SQL(window or a.window()))

    def _multiplicities(self, rows: sql.Composable, *, having: str = "") -> sql.Composed:
        """Per (group, distinct column, value): how many of ``rows`` carry it (signed)."""
        a = self.a
        return sql.SQL(" UNION ALL ").join(sql.SQL(
            "SELECT {key}, {kind} AS kind, {v} AS value, sum(n)::bigint AS n FROM ({rows}) r WHERE ({where}) AND "
            "{window} AND ({f}) AND {v} IS NOT NULL GROUP BY {key}, {v}" + having).format(
            key=_list(a.key), kind=sql.Literal(col), v=sql.SQL(value), rows=rows, where=sql.SQL(a.where),
            window=sql.SQL(a.window()), f=sql.SQL(among)) for col, value, among in a.distinct)

    def _columns(self) -> list[str]:
        a = self.a
        return [*a.key, *(c for c, _ in a.counts), *(c for c, _, _ in a.distinct), *(c for c, _, _ in a.maxima)]

    # -- rebuild -------------------------------------------------------------------------------------------

    def build_truth(self) -> None:
        """The state (and multiplicities) from the base table, and ``ivm_truth`` (temp, dropped at commit): the
        summary's rows projected from it."""
        conn, base = self.conn, sql.SQL(EVENT_ROWS)
        replace_with(conn, self.state, self.grouped(base, signed=False), self.a.key, columns=self._columns())
        if self.a.distinct:
            replace_with(conn, self.mult, self._multiplicities(base), (*self.a.key, "kind", "value"),
                         columns=(*self.a.key, "kind", "value", "n"))
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS {}").format(self.rows.projected()))

    # -- apply ---------------------------------------------------------------------------------------------

    def apply(self, pending: sql.Composable, params: dict, *, day_moved: bool) -> int:
        """Add the ``pending`` event rows (signed; ``params`` bind them) to the state and write what moved to the
        summary; returns the groups whose state or frame row changed, or that left the window. ``day_moved``: the
        clock passed a midnight since the last apply (a day window drops its first days)."""
        conn, a = self.conn, self.a
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_d ON COMMIT DROP AS {}").format(
            self.grouped(pending, signed=True)), params)
        if a.distinct:
            self._cross(pending, params)
        keys = sql.SQL("SELECT DISTINCT {} FROM ivm_d").format(_list(a.row_key))
        if a.frame_changes:
            delta, column = a.frame_changes
            keys = sql.SQL("{} UNION SELECT {} FROM {} c").format(keys, sql.Identifier(column), capture.pending(delta))
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_keys ON COMMIT DROP AS {}").format(keys), params)
        groups = conn.execute("SELECT count(*) FROM ivm_keys").fetchone()[0]
        if groups:
            if groups > 1000:
                conn.execute("ANALYZE ivm_d")
            self.rows.write_moved("ivm_keys", groups_went=self.add())
        if day_moved and a.window_days is not None:  # the days that left the window go, as whole groups
            conn.execute(sql.SQL("DELETE FROM {} WHERE day < {}").format(self.state, sql.SQL(a.cutoff())))
            groups += conn.execute(sql.SQL("DELETE FROM {} WHERE day < {}").format(
                self.summary, sql.SQL(a.cutoff()))).rowcount
        conn.execute("DROP TABLE ivm_d, ivm_keys")
        return groups

    def _cross(self, pending: sql.Composable, params: dict) -> None:
        """The distinct counts' moves into ``ivm_d``: each value whose multiplicity in its group goes from 0 to
        more counts +1, from more to 0 counts -1; the multiplicities updated."""
        conn, a = self.conn, self.a
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_m ON COMMIT DROP AS {}").format(
            self._multiplicities(pending, having=" HAVING sum(n) <> 0")), params)
        conn.execute("ANALYZE ivm_m")
        same = sql.SQL("{} AND t.kind = m.kind AND t.value = m.value").format(_match("t", "m", a.key))
        # One pass: the multiplicities added to, and from each one's value after (less the change: before) whether
        # it crossed 0 <-> 1; the zeros deleted after.
        m_key = sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(k)) for k in a.key)
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_x ON COMMIT DROP AS SELECT {key}, kind, 0::bigint AS moved, "
                             "false AS below FROM ivm_m WITH NO DATA").format(key=_list(a.key)))
        conn.execute(sql.SQL(
            "WITH up AS (INSERT INTO {mult} AS t ({key}, kind, value, n) SELECT {key}, kind, value, n FROM ivm_m "
            "ON CONFLICT ({key}, kind, value) DO UPDATE SET n = t.n + EXCLUDED.n RETURNING t.*) "
            "INSERT INTO ivm_x SELECT {m_key}, m.kind, sum(CASE WHEN t.n > 0 AND t.n - m.n <= 0 THEN 1 "
            "WHEN t.n <= 0 AND t.n - m.n > 0 THEN -1 ELSE 0 END), bool_or(t.n < 0) "
            "FROM up t JOIN ivm_m m ON {same} GROUP BY {m_key}, m.kind").format(
            mult=self.mult, key=_list(a.key), m_key=m_key, same=same))
        if conn.execute("SELECT count(*) FROM ivm_x WHERE below").fetchone()[0]:
            raise Inconsistent(f"{a.summary}: a multiplicity of a distinct value went below zero")
        conn.execute(sql.SQL("DELETE FROM {} t USING ivm_m m WHERE {} AND t.n = 0").format(self.mult, same))
        maxima = {x for m, _, _ in a.maxima for x in (m, f"{m}__gone")}
        zeros = sql.SQL(", ").join(sql.SQL("NULL" if c in maxima else "0") for c in self._delta_columns())
        for col, _, _ in a.distinct:  # into ivm_d: a group it lacks comes in with every other figure 0
            conn.execute(sql.SQL("INSERT INTO ivm_d ({cols}) SELECT {key}, {zeros} FROM ivm_x x WHERE kind = {k} AND "
                                 "NOT EXISTS (SELECT 1 FROM ivm_d d WHERE {dx})").format(
                cols=_list([*a.key, *self._delta_columns()]), key=_list(a.key), zeros=zeros, k=sql.Literal(col),
                dx=_match("d", "x", a.key)))
            conn.execute(sql.SQL("UPDATE ivm_d d SET {c} = x.moved FROM ivm_x x WHERE {dx} AND x.kind = {k}").format(
                c=sql.Identifier(col), dx=_match("d", "x", a.key), k=sql.Literal(col)))
        conn.execute("DROP TABLE ivm_m, ivm_x")

    def _delta_columns(self) -> list[str]:
        a = self.a
        return [*(c for c, _ in a.counts), *(c for c, _, _ in a.distinct),
                *(x for c, _, _ in a.maxima for x in (c, f"{c}__gone"))]

    def add(self) -> bool:
        """Add ``ivm_d`` to the state; returns whether a group went (its row count reached 0)."""
        conn, a = self.conn, self.a
        counts = [c for c, _ in a.counts] + [c for c, _, _ in a.distinct]
        maxima = [c for c, _, _ in a.maxima]
        updates = [sql.SQL("{0} = s.{0} + EXCLUDED.{0}").format(sql.Identifier(c)) for c in counts]
        updates += [sql.SQL("{0} = greatest(s.{0}, EXCLUDED.{0})").format(sql.Identifier(c)) for c in maxima]
        below, gone = conn.execute(sql.SQL(
            "WITH up AS (INSERT INTO {state} AS s ({cols}) SELECT {cols} FROM ivm_d ON CONFLICT ({key}) DO UPDATE "
            "SET {updates} RETURNING {below} AS below, s.{rows} = 0 AS gone) "
            "SELECT count(*) FILTER (WHERE below), count(*) FILTER (WHERE gone) FROM up").format(
            state=self.state, cols=_list(self._columns()), key=_list(a.key), updates=sql.SQL(", ").join(updates),
            below=sql.SQL(" OR ").join(sql.SQL("s.{} < 0").format(sql.Identifier(c)) for c in counts),
            rows=sql.Identifier(counts[0]))).fetchone()
        if below:
            raise Inconsistent(f"{a.summary}: a count of its aggregate state went below zero")
        for col, value, among in a.maxima:  # a row that went held the maximum, or might have: look it up again
            if not conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM ivm_d WHERE {} IS NOT NULL)").format(
                    sql.Identifier(f"{col}__gone"))).fetchone()[0]:
                continue
            conn.execute(sql.SQL(
                "UPDATE {state} s SET {c} = (SELECT max({v}) FROM ({rows}) b WHERE {same} AND ({where}) AND ({f}) "
                "AND {window}) FROM ivm_d d WHERE {ds} AND d.{gone} >= s.{c}").format(
                state=self.state, c=sql.Identifier(col), v=sql.SQL(value), rows=sql.SQL(EVENT_ROWS),
                same=_match("b", "s", a.key), where=sql.SQL(a.where), f=sql.SQL(among),
                window=sql.SQL(a.window()), ds=_match("d", "s", a.key), gone=sql.Identifier(f"{col}__gone")))
        if gone:
            conn.execute(sql.SQL("DELETE FROM {} s USING ivm_d d WHERE {} AND s.{} = 0").format(
                self.state, _match("s", "d", a.key), sql.Identifier(counts[0])))
        return bool(gone)
