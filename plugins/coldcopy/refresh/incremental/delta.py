"""Applying signed deltas to a summary's aggregate state (:class:`DeltaApplier`), and building that state.

An apply reads the captured event rows the summary has not seen (each signed), sums them per group into
``ivm_d``, adds that to the state (a count up or down; a maximum raised), looks a maximum up again (by index, in
the group's own rows) only where a row that went could have held it, drops the groups whose hidden row count
reached 0, and writes to the summary only the groups whose derived figures moved. Its cost follows the rows that
changed, not the size of the groups they touched. Runs inside the maintainer's transaction (REPEATABLE READ,
TimeZone UTC, the summary's apply lock held): the base rows it reads and the deltas it applies are one snapshot.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental.aggregates import EVENT_ROWS, Aggregate


class Inconsistent(RuntimeError):
    """The state went below zero somewhere: it was not the definition's (rebuild it)."""


def _list(names) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _match(left: str, right: str, key) -> sql.Composed:
    return sql.SQL(" AND ").join(sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k),
                                                                  sql.Identifier(right), sql.Identifier(k))
                                 for k in key)


class DeltaApplier:
    def __init__(self, conn: psycopg.Connection, aggregate: Aggregate) -> None:
        self.conn, self.a = conn, aggregate
        self.state = sql.Identifier("coldcopy_ops", aggregate.state)
        self.summary = sql.Identifier(*aggregate.summary.split("."))

    # -- the sums ------------------------------------------------------------------------------------------

    def _grouped(self, rows: sql.Composable, *, signed_maxima: bool, window: str | None = None) -> sql.Composed:
        """``rows`` (event rows) summed per group: each count, and each maximum (of the rows added and, when
        ``signed_maxima``, of the rows gone: ``<column>__gone``)."""
        a = self.a
        items = [sql.SQL("sum(n * ({}))::bigint AS {}").format(sql.SQL(expr), sql.Identifier(col))
                 for col, expr in a.counts]
        for col, value, among in a.maxima:
            items.append(sql.SQL("max({v}) FILTER (WHERE ({f}) AND n > 0) AS {c}").format(
                v=sql.SQL(value), f=sql.SQL(among), c=sql.Identifier(col)))
            if signed_maxima:
                items.append(sql.SQL("max({v}) FILTER (WHERE ({f}) AND n < 0) AS {c}").format(
                    v=sql.SQL(value), f=sql.SQL(among), c=sql.Identifier(f"{col}__gone")))
        return sql.SQL("SELECT {key}, {items} FROM ({rows}) r WHERE ({where}) AND {window} GROUP BY {key}").format(
            key=_list(a.key), items=sql.SQL(", ").join(items), rows=rows, where=sql.SQL(a.where),
            window=sql.SQL(window or a.window()))

    def _columns(self) -> list[str]:
        return [*self.a.key, *(c for c, _ in self.a.counts), *(c for c, _, _ in self.a.maxima)]

    # -- rebuild -------------------------------------------------------------------------------------------

    def build_truth(self) -> None:
        """The state from the base table (one pass), and ``ivm_truth`` (temp, dropped at commit): the summary's
        rows projected from it, in the summary's column order."""
        conn = self.conn
        conn.execute(sql.SQL("DELETE FROM {}").format(self.state))
        conn.execute(sql.SQL("INSERT INTO {} ({}) {}").format(
            self.state, _list(self._columns()), self._grouped(sql.SQL(EVENT_ROWS), signed_maxima=False)))
        conn.execute(sql.SQL("ANALYZE {}").format(self.state))
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_truth ON COMMIT DROP AS SELECT {} FROM {}").format(
            self._projection(), self.state))

    def _projection(self) -> sql.Composed:
        """The summary's columns, in its order, from the state's; ``ValueError`` when they are not the ones the
        aggregate states (a migration changed the summary)."""
        have, mine = self._summary_order(), dict(self.a.projection)
        if sorted(have) != sorted(mine):
            raise ValueError(f"{self.a.summary} has columns {have}; its aggregate states {sorted(mine)}")
        return sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(mine[c]), sql.Identifier(c)) for c in have)

    # -- apply ---------------------------------------------------------------------------------------------

    def apply(self, pending: sql.Composable, params: dict, *, day_moved: bool) -> int:
        """Add the ``pending`` event rows (signed; ``params`` bind them) to the state and write what moved to the
        summary; returns the groups whose state changed or that left the window. ``day_moved``: the clock passed
        a midnight since the last apply (a day window drops its first days)."""
        conn, a = self.conn, self.a
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_d ON COMMIT DROP AS {}").format(
            self._grouped(pending, signed_maxima=True)), params)
        groups = conn.execute("SELECT count(*) FROM ivm_d").fetchone()[0]
        if groups:
            self._add(groups)
        if day_moved and a.window_days is not None:  # the days that left the window go, as whole groups
            conn.execute(sql.SQL("DELETE FROM {} WHERE day < {}").format(self.state, sql.SQL(a.cutoff())))
            groups += conn.execute(sql.SQL("DELETE FROM {} WHERE day < {}").format(
                self.summary, sql.SQL(a.cutoff()))).rowcount
        conn.execute("DROP TABLE ivm_d")
        return groups

    def _add(self, groups: int) -> None:
        conn, a = self.conn, self.a
        if groups > 1000:
            conn.execute("ANALYZE ivm_d")
        counts, maxima = [c for c, _ in a.counts], [c for c, _, _ in a.maxima]
        updates = [sql.SQL("{0} = s.{0} + EXCLUDED.{0}").format(sql.Identifier(c)) for c in counts]
        updates += [sql.SQL("{0} = greatest(s.{0}, EXCLUDED.{0})").format(sql.Identifier(c)) for c in maxima]
        conn.execute(sql.SQL("INSERT INTO {state} AS s ({cols}) SELECT {cols} FROM ivm_d "
                             "ON CONFLICT ({key}) DO UPDATE SET {updates}").format(
            state=self.state, cols=_list(self._columns()), key=_list(a.key), updates=sql.SQL(", ").join(updates)))
        for col, value, among in a.maxima:  # a row that went held the maximum, or might have: look it up again
            conn.execute(sql.SQL(
                "UPDATE {state} s SET {c} = (SELECT max({v}) FROM ({rows}) b WHERE {same} AND ({where}) AND ({f}) "
                "AND {window}) FROM ivm_d d WHERE {ds} AND d.{gone} >= s.{c}").format(
                state=self.state, c=sql.Identifier(col), v=sql.SQL(value), rows=sql.SQL(EVENT_ROWS),
                same=_match("b", "s", a.key), where=sql.SQL(a.where), f=sql.SQL(among),
                window=sql.SQL(a.window()), ds=_match("d", "s", a.key), gone=sql.Identifier(f"{col}__gone")))
        below = sql.SQL(" OR ").join(sql.SQL("s.{} < 0").format(sql.Identifier(c)) for c in counts)
        if conn.execute(sql.SQL("SELECT count(*) FROM {} s JOIN ivm_d d ON {} WHERE {}").format(
                self.state, _match("s", "d", a.key), below)).fetchone()[0]:
            raise Inconsistent(f"{a.summary}: a count of its aggregate state went below zero")
        conn.execute(sql.SQL("DELETE FROM {} s USING ivm_d d WHERE {} AND s.{} = 0").format(
            self.state, _match("s", "d", a.key), sql.Identifier(counts[0])))
        self._write_moved()

    def _write_moved(self) -> None:
        """The summary's rows of the changed groups: gone where the state's group went, else as projected (an
        update only where a figure differs)."""
        conn, a = self.conn, self.a
        conn.execute(sql.SQL("DELETE FROM {t} t USING ivm_d d WHERE {td} AND NOT EXISTS "
                             "(SELECT 1 FROM {state} s WHERE {sd})").format(
            t=self.summary, td=_match("t", "d", a.key), state=self.state, sd=_match("s", "d", a.key)))
        projection = self._projection()
        columns = [c for c, _ in a.projection]
        others = [c for c in columns if c not in a.key]
        conn.execute(sql.SQL(
            "INSERT INTO {t} AS t ({cols}) SELECT {proj} FROM {state} s WHERE EXISTS "
            "(SELECT 1 FROM ivm_d d WHERE {sd}) ON CONFLICT ({key}) DO UPDATE SET {set} "
            "WHERE ({old}) IS DISTINCT FROM ({new})").format(
            t=self.summary, cols=_list(self._summary_order()), proj=projection, state=self.state,
            sd=_match("s", "d", a.key), key=_list(a.key),
            set=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others),
            old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in others),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others)))

    def _summary_order(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (self.a.summary,)).fetchall()]
