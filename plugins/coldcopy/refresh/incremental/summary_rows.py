"""A summary's rows as its aggregate state gives them (:class:`SummaryRows`): projected (through its frame: a
campaign's own row with its state LEFT JOINed), and written for the groups an apply changed only where a figure
moved. Shared by the appliers of :mod:`coldcopy.refresh.incremental.delta` and
:mod:`coldcopy.refresh.incremental.steps`."""

from __future__ import annotations

import psycopg
from psycopg import sql


def names(columns) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def keys_match(left: str, right: str, key) -> sql.Composed:
    return sql.SQL(" AND ").join(sql.SQL("{}.{} = {}.{}").format(sql.Identifier(left), sql.Identifier(k),
                                                                  sql.Identifier(right), sql.Identifier(k))
                                 for k in key)


class SummaryRows:
    """``aggregate`` states ``summary``, ``key`` (the state's), ``row_key`` (the summary's), ``projection``, and
    ``frame``/``frame_key`` when the summary has a row per frame row."""

    def __init__(self, conn: psycopg.Connection, aggregate, state: sql.Identifier) -> None:
        self.conn, self.a, self.state = conn, aggregate, state
        self.summary = sql.Identifier(*aggregate.summary.split("."))

    # -- its rows --------------------------------------------------------------------------------

    def _summary_order(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (self.a.summary,)).fetchall()]

    def projected(self, keys: str | None = None) -> sql.Composed:
        """The summary's rows (in its column order) from the state, only those of the groups in the temp table
        ``keys`` when given; ``ValueError`` when the summary's columns are not the ones the aggregate states (a
        migration changed it)."""
        a, have = self.a, self._summary_order()
        mine = dict(a.projection)
        if sorted(have) != sorted(mine):
            raise ValueError(f"{a.summary} has columns {have}; its aggregate states {sorted(mine)}")
        columns = sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(mine[c]), sql.Identifier(c)) for c in have)
        if a.frame is None:
            source, key_of = sql.SQL("{} s").format(self.state), {k: f"s.{k}" for k in a.key}
        else:
            key_of = dict(zip(a.key, a.frame_key, strict=True))
            source = sql.SQL("{} LEFT JOIN {} s ON {}").format(sql.SQL(a.frame), self.state, sql.SQL(" AND ").join(
                sql.SQL("s.{} = {}").format(sql.Identifier(k), sql.SQL(e)) for k, e in key_of.items()))
        only = sql.SQL("")
        if keys:  # a semi-join on the whole key: by index for a few keys, hashed for many (``keys`` analyzed).
            # Not one ``= ANY(ARRAY(…))`` per key column: their estimate (a row) made PostgreSQL rescan ``keys``
            # once per state row it matched, 4.5 s for 10,000 leads at scale 32
            only = sql.SQL(" WHERE ({}) IN (SELECT {} FROM {} d)").format(
                sql.SQL(", ").join(sql.SQL(key_of[k]) for k in a.row_key), names(a.row_key), sql.Identifier(keys))
        return sql.SQL("SELECT {} FROM {}{}").format(columns, source, only)

    def write_moved(self, keys: str, *, groups_went: bool = True) -> None:
        """The summary's rows of the changed groups (the temp table ``keys``): gone where the group (or frame row)
        went (``groups_went``: a state group went, else only a frame row can have), else as projected (an update
        only where a figure differs)."""
        conn, a = self.conn, self.a
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(keys)))  # its size, for the semi-join's plan
        conn.execute(sql.SQL("CREATE TEMP TABLE ivm_rows ON COMMIT DROP AS {}").format(self.projected(keys)))
        if groups_went or a.frame is not None:
            conn.execute(sql.SQL("DELETE FROM {t} t USING {keys} d WHERE {td} AND NOT EXISTS "
                                 "(SELECT 1 FROM ivm_rows p WHERE {pd})").format(
                t=self.summary, keys=sql.Identifier(keys), td=keys_match("t", "d", a.row_key),
                pd=keys_match("p", "d", a.row_key)))
        columns = self._summary_order()
        others = [c for c in columns if c not in a.row_key]
        conn.execute(sql.SQL(
            "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM ivm_rows ON CONFLICT ({key}) DO UPDATE SET {set} "
            "WHERE ({old}) IS DISTINCT FROM ({new})").format(
            t=self.summary, cols=names(columns), key=names(a.row_key),
            set=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others),
            old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in others),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others)))
        conn.execute("DROP TABLE ivm_rows")
