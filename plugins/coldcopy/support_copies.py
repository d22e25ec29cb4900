"""Support copies: one workspace restored into a new schema of the live database (``restore_from_spaces`` with
``target_schema``), for support to copy back what a customer deleted by mistake.

Such a copy holds people's data inside the live database, where every backup after takes it along: it is

* **registered** (``coldcopy_ops.support_copies``) in the transaction that creates it, with its workspace, its
  source and an expiry (:data:`DEFAULT_TTL`, 14 days);
* **reached by erasure**: :class:`coldcopy.gdpr.Gdpr` erases the subject's rows from every registered copy as
  from ``public`` (and so does the ledger's re-application after a restore);
* **dropped** once expired by ``gdpr_retention`` (:func:`sweep`); ``db_health`` breaches on one past its expiry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from coldcopy import ops_schema
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(days=14)


def register(conn: psycopg.Connection, schema: str, workspace_id: str, *, source: str | None = None,
             ttl: timedelta = DEFAULT_TTL) -> datetime:
    """Record the copy in ``schema`` (call in the transaction that creates it); returns its expiry. The registry
    must exist (:func:`ensure`, before the transaction)."""
    if ttl <= timedelta(0):
        raise ValueError(f"a support copy's lifetime must be positive, not {ttl}")
    return conn.execute(
        "INSERT INTO coldcopy_ops.support_copies (schema_name, workspace_id, source, expires_at) "
        "VALUES (%s, %s, %s, now() + %s) RETURNING expires_at", (schema, workspace_id, source, ttl)).fetchone()[0]


def ensure(conn: psycopg.Connection, policy: LockRetryPolicy = LockRetryPolicy()) -> None:
    """The registry, created on first use (``conn`` in autocommit mode)."""
    ops_schema.ensure(conn, "support_copies", policy)


def _rows(conn: psycopg.Connection, query: str, params: tuple = ()) -> list[tuple]:
    """``query``'s rows as tuples, whatever ``conn``'s row factory; none before the registry exists."""
    cursor = conn.cursor(row_factory=tuple_row)
    if not cursor.execute("SELECT to_regclass('coldcopy_ops.support_copies') IS NOT NULL").fetchone()[0]:
        return []
    return cursor.execute(query, params).fetchall()


def active(conn: psycopg.Connection) -> list[dict]:
    """Every registered copy still present: schema, workspace, created, expires, whether expired."""
    rows = _rows(
        conn, "SELECT s.schema_name, s.workspace_id::text, s.created_at, s.expires_at, s.expires_at <= now() "
        "FROM coldcopy_ops.support_copies s JOIN pg_namespace n ON n.nspname = s.schema_name "
        "WHERE s.dropped_at IS NULL ORDER BY s.created_at")
    return [{"schema": s, "workspace_id": w, "created_at": c, "expires_at": e, "expired": bool(x)}
            for s, w, c, e, x in rows]


def sweep(conn: psycopg.Connection, policy: LockRetryPolicy = LockRetryPolicy(), *,
          now: datetime | None = None) -> list[str]:
    """Drop every expired copy (``DROP SCHEMA … CASCADE`` under lock_timeout) and mark it dropped; ``conn`` in
    autocommit mode. A registered schema already gone is marked dropped too. Returns the schemas dropped."""
    dropped = []
    for (schema,) in _rows(conn, "SELECT schema_name FROM coldcopy_ops.support_copies WHERE dropped_at IS NULL "
                           "AND expires_at <= %s ORDER BY expires_at", (now or datetime.now(UTC),)):
        def drop(schema=schema) -> None:
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.execute("UPDATE coldcopy_ops.support_copies SET dropped_at = now() WHERE schema_name = %s",
                         (schema,))

        under_lock_timeout(conn, drop, policy, what=f"dropping the expired support copy {schema}")
        log.warning("dropped support copy %s: expired", schema)
        dropped.append(schema)
    return dropped
