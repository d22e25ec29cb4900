"""Rebuilding a table in place by writing only the rows that differ, as ``REFRESH … CONCURRENTLY`` does: a summary
from its definition, an aggregate state or a helper from the base tables.

A rebuild that finds most rows as they were leaves them: no dead tuple, no index entry, no WAL for them (before,
a state was emptied and filled again: twice its size in WAL, and the next applies ran over its dead half until
autovacuum came). Never TRUNCATE: a backup's ``pg_dump`` holds ACCESS SHARE on these tables for the whole dump,
and no reader waits on the row locks taken here."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental.summary_rows import keys_match, names


def replace_from(conn: psycopg.Connection, table: sql.Composable, source: sql.Composable, key: Sequence[str]) -> int:
    """Make ``table`` hold exactly the rows of the relation ``source`` (its columns, in order): delete by ``key``
    the rows ``source`` lacks (or holds otherwise), insert those ``table`` lacks; the table is analyzed when rows
    were written. Returns the rows written."""
    deleted = conn.execute(sql.SQL(
        "DELETE FROM {t} t USING (SELECT {k} FROM (TABLE {t} EXCEPT ALL TABLE {s}) x) d WHERE {same}").format(
        t=table, s=source, k=names(key), same=keys_match("t", "d", key))).rowcount
    inserted = conn.execute(sql.SQL("INSERT INTO {t} SELECT * FROM (TABLE {s} EXCEPT ALL TABLE {t}) x").format(
        t=table, s=source)).rowcount
    if deleted + inserted:
        conn.execute(sql.SQL("ANALYZE {}").format(table))
    return deleted + inserted


def replace_with(conn: psycopg.Connection, table: sql.Composable, query: sql.Composable, key: Sequence[str], *,
                 columns: Sequence[str] | None = None, params: dict | None = None) -> int:
    """:func:`replace_from` the rows of ``query`` (giving ``columns`` of ``table``, else all of them in order).
    Returns the rows written."""
    conn.execute(sql.SQL("CREATE TEMP TABLE ivm_replacement ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA").format(
        table))
    conn.execute(sql.SQL("INSERT INTO ivm_replacement {}{}").format(
        sql.SQL("({}) ").format(names(columns)) if columns else sql.SQL(""), query), params)
    written = replace_from(conn, table, sql.Identifier("ivm_replacement"), key)
    conn.execute("DROP TABLE ivm_replacement")
    return written
