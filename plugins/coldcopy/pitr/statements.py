"""A change applied on its own, by primary key: ``INSERT … ON CONFLICT (pk) DO UPDATE`` of the columns it
carries (an unchanged TOASTed value is not carried, so the stored one stays), ``DELETE … WHERE pk``. What replay
does change by change: as a role that is not superuser, and for a run whose net effect collides
(:mod:`coldcopy.pitr.bulk`). Names come from the target's catalog (the replay's ``_Table``)."""

from __future__ import annotations

from psycopg import sql


class Statements:
    """The statement of each (table, columns) shape, built once; :meth:`clear` after the schema changed."""

    def __init__(self) -> None:
        self._cache: dict[tuple, str] = {}

    def clear(self) -> None:
        self._cache.clear()

    def exact(self, conn, table, change: dict, send) -> None:
        """``send(statement, params)`` for the change on ``conn`` (the thread's own: it quotes the names): a
        delete of the old key (a delete, or an update that moved the key), then the upsert of the new row."""
        op = change["op"]
        if op in ("U", "D") and change.get("old"):
            old = change["old"]
            if op == "D" or any(old.get(k) != change["new"].get(k) for k in table.key):
                send(self._delete(conn, table), [old[k] for k in table.key])
        if op in ("I", "U"):
            row = change["new"]
            names = tuple(row)
            send(self._upsert(conn, table, names), [row[c] for c in names])

    def _delete(self, conn, table) -> str:
        shape = (table.name, "D")
        if shape not in self._cache:
            self._cache[shape] = sql.SQL("DELETE FROM {} WHERE {}").format(
                table.ident, sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in table.key)
            ).as_string(conn)
        return self._cache[shape]

    def _upsert(self, conn, table, names: tuple) -> str:
        shape = (table.name, names)
        if shape not in self._cache:
            others = [c for c in names if c not in table.key]
            action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)) if others \
                else sql.SQL("DO NOTHING")
            self._cache[shape] = sql.SQL(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({}) ON CONFLICT ({}) {}").format(
                table.ident, sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(sql.Placeholder() * len(names)),
                sql.SQL(", ").join(map(sql.Identifier, table.key)), action).as_string(conn)
        return self._cache[shape]
