"""Which server a connection reaches, asked so that no pooler in between can fool it: the guard that keeps drills
and rehearsals off the live server (:func:`same_server`)."""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row

# the cluster (initdb's system identifier), the postmaster's start and its port: a copy of the cluster (a clone, a
# promoted replica) shares the identifier and is another server; pg_control_system() is executable by PUBLIC
_IDENTITY = ("SELECT (SELECT system_identifier FROM pg_control_system()), pg_postmaster_start_time(), "
             "current_setting('port')")


def identity(conn: psycopg.Connection) -> tuple:
    """The server ``conn`` reaches: one statement, unprepared, no session state (a transaction-pooling PgBouncer
    may send each statement to another server connection, and keeps no prepared statement)."""
    return conn.cursor(row_factory=tuple_row).execute(_IDENTITY, prepare=False).fetchone()


def same_server(live: psycopg.Connection, other_dsn: str) -> bool:
    """Whether ``other_dsn`` reaches the server ``live`` is connected to, whatever host names, ports or poolers lead
    there (:func:`identity` on both sides). ``live`` is asked before and after the other, so a restart in between
    is no other server; it is left as found (no lock, no setting, no transaction it was not in)."""
    idle = live.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    try:
        before = identity(live)
        with psycopg.connect(other_dsn, connect_timeout=10, autocommit=True) as other:
            theirs = identity(other)
        return theirs in (before, identity(live))
    finally:
        if idle and not live.autocommit:
            live.rollback()
