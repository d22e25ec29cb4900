"""Scratch databases: the copies of production the jobs make for a while (a rehearsal's restored copy, a
backup's verification, a restore's quarantine, a one-workspace restore's scratch) — and never leave behind.

* **Created closed**: ``CONNECT`` and ``TEMPORARY`` revoked from PUBLIC (the role that created it, its owner,
  keeps them) before it accepts any connection (``ALLOW_CONNECTIONS = false`` until then), so no application or
  API role reads production's rows from a copy the erasures have not yet reached.
* **Labelled**: its comment says what it is, who made it and when it expires (the creating task's timeout), so
  a task killed with SIGKILL, which runs no ``finally``, still leaves something that says it may go.
* **Swept**: :func:`sweep` (at the start of every job that makes one, on that server) drops the expired ones
  this role owns; ``db_health`` reports those older than their expiry (:func:`leftovers`).
* **Off the live server** (:func:`same_server`): which server a connection reaches, asked so that no pooler in
  between can fool it — the guard that keeps drills and rehearsals' copies off production.
* **Handed over** (:func:`hand_over`): a quarantine that becomes the restored database gets PUBLIC's default
  ``CONNECT``/``TEMPORARY`` back and loses its label.

Databases from before the label (``coldcopy_rehearsal_<stamp>_<pid>``, ``coldcopy_verify_<stamp>_<pid>``) are
recognised by name and expire :data:`DEFAULT_TTL` after their stamp.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

LABEL = "coldcopy scratch"
DEFAULT_TTL = timedelta(hours=6)
_STAMPED = re.compile(r"^coldcopy_(?P<kind>rehearsal|verify)_(?P<stamp>\d{14})_\d+$")


def create(admin: psycopg.Connection, name: str, kind: str, ttl: timedelta | None = None) -> None:
    """``CREATE DATABASE name`` closed to PUBLIC and labelled; ``admin``: autocommit, on its server."""
    now = datetime.now(UTC)
    label = {"label": LABEL, "kind": kind, "created_at": now.isoformat(),
             "expires_at": (now + (ttl or DEFAULT_TTL)).isoformat(), "host": socket.gethostname(), "pid": os.getpid()}
    ident = sql.Identifier(name)
    # Made accepting no connection at all (not even its owner's) until PUBLIC's CONNECT is revoked: a session
    # opened in between would have stayed open, with production's rows in reach once they are restored.
    admin.execute(sql.SQL("CREATE DATABASE {} WITH ALLOW_CONNECTIONS = false").format(ident))
    try:
        admin.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(ident))
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(json.dumps(label))))
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS = true").format(ident))
    except BaseException:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        raise


def drop(admin: psycopg.Connection, name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def hand_over(admin: psycopg.Connection, name: str) -> None:
    """The database ``name`` is no scratch any more (a restore handed over): PUBLIC's defaults back, no label."""
    ident = sql.Identifier(name)
    admin.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(ident))
    admin.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(ident))


def leftovers(admin: psycopg.Connection, *, now: datetime | None = None) -> list[dict]:
    """Every scratch database of the server: name, kind, created/expires, whether expired, whether PUBLIC may
    connect, whether this role may drop it."""
    now = now or datetime.now(UTC)
    found = []
    rows = admin.cursor(row_factory=tuple_row).execute(
        "SELECT d.datname, shobj_description(d.oid, 'pg_database'), pg_has_role(d.datdba, 'MEMBER'), "
        "has_database_privilege('public', d.oid, 'CONNECT') FROM pg_database d WHERE NOT d.datistemplate "
        "ORDER BY 1").fetchall()
    for name, comment, mine, public_connect in rows:
        label = None
        try:
            parsed = json.loads(comment) if comment else None
            label = parsed if isinstance(parsed, dict) and parsed.get("label") == LABEL else None
        except ValueError:
            pass
        if label is not None:
            try:
                created = datetime.fromisoformat(label["created_at"])
                expires = datetime.fromisoformat(label["expires_at"])
            except (KeyError, TypeError, ValueError):
                created, expires = None, now  # a label we cannot read: expired
            kind = str(label.get("kind"))
        elif match := _STAMPED.match(name):
            created = datetime.strptime(match["stamp"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            expires, kind = created + DEFAULT_TTL, match["kind"]
        else:
            continue
        found.append({"database": name, "kind": kind, "created_at": created, "expires_at": expires,
                      "expired": expires <= now, "public_connect": bool(public_connect), "droppable": bool(mine)})
    return found


def sweep(admin: psycopg.Connection, *, now: datetime | None = None) -> list[str]:
    """Drop every expired scratch database this role may drop; returns their names (the others are logged)."""
    dropped = []
    for entry in leftovers(admin, now=now):
        if not entry["expired"]:
            continue
        if not entry["droppable"]:
            log.warning("scratch database %s (%s) expired at %s and is not this role's to drop", entry["database"],
                        entry["kind"], entry["expires_at"])
            continue
        drop(admin, entry["database"])
        log.warning("dropped scratch database %s (%s, created %s, expired %s): a task that made it was killed",
                    entry["database"], entry["kind"], entry["created_at"], entry["expires_at"])
        dropped.append(entry["database"])
    return dropped


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
