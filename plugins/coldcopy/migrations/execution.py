"""A migration file's SQL as the runner executes it: one query with its failure explained (the line of the
statement that fails), and the INVALID index an interrupted ``CREATE INDEX CONCURRENTLY`` left
(:class:`coldcopy.migrations.runner.MigrationRunner`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import psycopg
from psycopg import sql

from coldcopy.migrations import Migration, MigrationError, Part, strip_sql_comments, supabase_history

log = logging.getLogger(__name__)

_CONCURRENT_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<index>\"?\w+\"?)\s+"
    r"ON\s+(?:ONLY\s+)?(?:(?P<schema>\"?\w+\"?)\.)?\"?\w+\"?",
    re.IGNORECASE,
)


def execute(cur, text: str, migration: Migration, *, transactional: bool, part: Part | None = None) -> None:
    """``text`` as one query; a failure (but a lock timeout, which is retried) as :class:`MigrationError`
    naming the file, the part and, when PostgreSQL gives a position, the line."""
    try:
        cur.execute(text.encode("utf-8"))
    except psycopg.errors.LockNotAvailable:
        raise
    except psycopg.Error as error:
        where = ""
        position = getattr(error.diag, "statement_position", None)
        if position:
            where = f" at line {text[: int(position)].count(chr(10)) + 1}"
        outcome = "and was rolled back" if transactional else "(it runs outside a transaction)"
        if part is not None:
            outcome += "; the file's earlier parts stay applied and a retry resumes at this part"
        what = f"{migration.file_name} {part.describe()}" if part is not None else migration.file_name
        raise MigrationError(f"{what} failed{where} {outcome}: {error.diag.sqlstate} {str(error).strip()}"
                             ) from error


def failing_line(conn: psycopg.Connection, text: str, set_timeouts: Callable) -> int | None:
    """The line of the statement that fails in ``text`` (a file that failed as one query, whose error
    carries no position: a permission error, a trigger's): its statements run again one by one in a
    transaction rolled back at the first error, under the same timeouts (``set_timeouts(cursor)``)."""
    class Found(Exception):
        pass

    offset, line = 0, None
    try:
        with conn.transaction(), conn.cursor() as cur:
            set_timeouts(cur)
            for statement in supabase_history.split_raw(text):
                start = offset + re.match(r"(?:\s|--[^\n]*|/\*.*?\*/)*", statement, re.S).end()
                offset += len(statement)
                if not strip_sql_comments(statement).strip(" \n\t;"):
                    continue
                if re.match(r"\s*(BEGIN|COMMIT|ROLLBACK|END)\b", strip_sql_comments(statement), re.I):
                    return None  # the file manages its own transaction: not replayed here
                try:
                    cur.execute(statement.encode("utf-8"))
                except psycopg.Error:
                    line = text[:start].count("\n") + 1
                    raise Found from None
            raise Found
    except Found:
        return line
    except psycopg.Error:
        return None


def drop_invalid_index_left_by(conn: psycopg.Connection, statement: str) -> None:
    """Drop the INVALID index an interrupted ``CREATE INDEX CONCURRENTLY`` of this name left behind."""
    match = _CONCURRENT_INDEX.search(strip_sql_comments(statement))
    if not match:
        return
    index, schema = match["index"].strip('"'), (match["schema"] or "public").strip('"')
    invalid = conn.execute(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND n.nspname = %s AND NOT i.indisvalid",
        (index, schema),
    ).fetchone()
    if invalid:
        log.warning("dropping INVALID index %s.%s left by an interrupted concurrent build", schema, index)
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}.{}").format(
            sql.Identifier(schema), sql.Identifier(index)))
