"""Locks of the ops jobs that no other login can take: a row of ``coldcopy_ops.job_locks`` held ``FOR UPDATE``.

An advisory lock needs no privilege and its key can be computed from the repository: any login holding it would
stall GDPR erasures (a legal deadline), migrations or partition rotation. A row lock needs UPDATE on the table,
which only its owner, the ops role, has (``sql/ops/job_locks.sql`` revokes everything from PUBLIC).

* :func:`xact_lock` — for the caller's transaction (like ``pg_advisory_xact_lock``): waits, under the
  transaction's ``lock_timeout``, or fails at once with ``nowait``.
* :func:`held` — across autocommit statements (``DETACH … CONCURRENTLY``) and several transactions (like a
  session advisory lock): the row is held in an open transaction of a *side connection*, opened like the job's own
  (:func:`connect_like`) and closed on release. The lock is polled with ``SKIP LOCKED``, never waited for in a
  statement, and held without a snapshot (a snapshot, even an idle portal's, would make the job's own
  ``DETACH … FINALIZE`` or ``CREATE INDEX CONCURRENTLY`` wait for it forever). A process that dies drops its
  connections, and the lock with them.

When busy, the holder is named when it can be seen: the locking transaction (the row's ``xmax``) in ``pg_locks``,
its pid, user and ``application_name`` in ``pg_stat_activity``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from coldcopy import ops_schema

log = logging.getLogger(__name__)

TABLE = "coldcopy_ops.job_locks"
_HOLDER = f"""
    SELECT a.pid, a.usename, a.application_name FROM {TABLE} l
    JOIN pg_locks k ON k.locktype = 'transactionid' AND k.transactionid = l.xmax AND k.granted
      AND k.mode = 'ExclusiveLock'
    JOIN pg_stat_activity a ON a.pid = k.pid WHERE l.name = %s"""


class JobLockBusy(RuntimeError):
    """Another session holds the lock."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"{name}: held by {holder}")
        self.name, self.holder = name, holder


def ensure(conn: psycopg.Connection) -> None:
    """Create ``coldcopy_ops.job_locks`` unless there (``conn`` in autocommit mode): before :func:`xact_lock`."""
    ops_schema.ensure(conn, "job_locks")


def holder(conn: psycopg.Connection, name: str) -> str:
    """Who holds ``name``, as far as ``conn`` can see: ``"pid 123 (user x, application 'y')"``."""
    row = conn.execute(_HOLDER, (name,)).fetchone()
    if row is None:
        return "a session that cannot be seen (or has just let go)"
    return f"pid {row[0]} (user {row[1]}, application {row[2]!r})"


def xact_lock(conn: psycopg.Connection, name: str, *, nowait: bool = False) -> None:
    """Lock ``name`` until the end of ``conn``'s current transaction (:func:`ensure` first, outside it).

    :raises JobLockBusy: with ``nowait``, when another transaction holds it.
    """
    conn.execute(f"INSERT INTO {TABLE} (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
    if not nowait:
        conn.execute(f"SELECT 1 FROM {TABLE} WHERE name = %s FOR UPDATE", (name,))
    elif conn.execute(f"SELECT 1 FROM {TABLE} WHERE name = %s FOR UPDATE SKIP LOCKED", (name,)).fetchone() is None:
        raise JobLockBusy(name, holder(conn, name))


def connect_like(conn: psycopg.Connection) -> Callable[[], psycopg.Connection]:
    """Opens connections with ``conn``'s parameters (its password too, which ``conn.info.dsn`` leaves out)."""
    dsn, password = conn.info.dsn, conn.info.password

    def connect() -> psycopg.Connection:
        return psycopg.connect(dsn, password=password or None)

    return connect


@contextmanager
def held(connect: Callable[[], psycopg.Connection], name: str, *, wait_s: float | None = 0.0, poll_s: float = 0.5,
         busy: Callable[[str], Exception] | None = None, what: str | None = None) -> Iterator[None]:
    """Hold ``name`` for the block, on a side connection from ``connect`` (closed on exit).

    :param wait_s: how long to wait for another holder: 0 fails at once, ``None`` waits as long as it takes.
    :param busy: the exception to raise when still busy, given the holder (:func:`holder`); default
        :class:`JobLockBusy`.
    :param what: what the wait is for, logged on the first poll and every minute.
    """
    side = connect()
    try:
        side.autocommit = True
        # The lock lives as long as this idle transaction: no server timeout may end it under the job.
        side.execute("SELECT set_config(name, '0', false) FROM pg_settings "
                     "WHERE name IN ('idle_in_transaction_session_timeout', 'idle_session_timeout', "
                     "'transaction_timeout')")
        ensure(side)
        # Committed on its own: an insert still open in the lock's transaction would make the next taker wait.
        side.execute(f"INSERT INTO {TABLE} (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
        side.autocommit = False
        started, logged = time.monotonic(), None
        # Without parameters, so sent by the simple protocol: an extended-protocol portal would keep its snapshot
        # (the backend's xmin) while the lock is held, and DETACH … FINALIZE or CREATE INDEX CONCURRENTLY of the
        # holder's own job would wait for that snapshot forever.
        take = sql.SQL("SELECT 1 FROM coldcopy_ops.job_locks WHERE name = {} FOR UPDATE SKIP LOCKED").format(
            sql.Literal(name))
        while side.execute(take).fetchone() is None:
            who = holder(side, name)
            side.rollback()
            waited = time.monotonic() - started
            if wait_s is not None and waited >= wait_s:
                raise (busy or (lambda h: JobLockBusy(name, h)))(who)
            if logged is None or waited - logged >= 60:
                log.info("waiting for %s: held by %s (%.0f s so far)", what or name, who, waited)
                logged = waited
            time.sleep(poll_s)
        yield
    finally:
        _release(side, name)


def _release(side: psycopg.Connection, name: str) -> None:
    try:
        if side.broken:
            log.warning("%s: the connection holding the lock was lost before the work ended", name)
        elif not side.closed:
            side.rollback()
    except psycopg.Error as error:
        log.warning("%s: releasing the lock: %s", name, error)
    finally:
        side.close()
