"""The change capture of the summaries' source tables: four statement-level triggers per table and partition.

``AFTER INSERT`` / ``UPDATE`` / ``DELETE`` with transition tables (PostgreSQL allows one event per trigger
that has them) and ``BEFORE TRUNCATE``, which still sees the rows about to go. Installing takes the table's
SHARE ROW EXCLUSIVE lock (what CREATE TRIGGER takes), so it runs under ``lock_timeout`` with retries.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from coldcopy import ops_schema
from coldcopy.incremental.summaries import CAPTURES, Capture, Summary, consumers
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout

log = logging.getLogger(__name__)

TRIGGERS = {  # name → its timing, event and transition tables
    "coldcopy_ivm_insert": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS ivm_new",
    "coldcopy_ivm_update": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS ivm_old NEW TABLE AS ivm_new",
    "coldcopy_ivm_delete": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS ivm_old",
    "coldcopy_ivm_truncate": "BEFORE TRUNCATE ON {table}",
}


def _missing(conn: psycopg.Connection, relid: int) -> list[str]:
    have = {n for (n,) in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND tgname = ANY(%s)",
                                       (relid, list(TRIGGERS))).fetchall()}
    return [n for n in TRIGGERS if n not in have]


def install_on(conn: psycopg.Connection, capture: Capture, relid: int) -> bool:
    """In the caller's transaction (under ``lock_timeout``): give the table ``relid`` the triggers of
    ``capture`` it lacks; returns whether any was created. Concurrent installers queue on the lock taken
    first, then find the triggers there."""
    schema, name = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.oid = %s", (relid,)).fetchone()
    table = sql.Identifier(schema, name)
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
    missing = _missing(conn, relid)
    for trigger in missing:
        conn.execute(sql.SQL("CREATE TRIGGER {} " + TRIGGERS[trigger] + " FOR EACH STATEMENT EXECUTE FUNCTION {}()")
                     .format(sql.Identifier(trigger), sql.Identifier("coldcopy_ops", capture.function), table=table))
    return bool(missing)


def ensure(conn: psycopg.Connection, summary: Summary, policy: LockRetryPolicy = LockRetryPolicy()) -> list[str]:
    """Capture on every source of ``summary`` and each of its partitions; returns the tables it was installed on.

    What a table saw before its capture existed is unknown: installing on a table forgets the state of every
    summary reading it, so each rebuilds on its next apply.
    """
    ops_schema.ensure(conn, "incremental", policy)
    installed = []
    for capture in summary.captures():
        lacking = conn.execute(  # one query for the table and all its partitions: this runs on every refresh
            "SELECT t.relid, t.relid::regclass::text FROM (SELECT %s::regclass::oid AS relid UNION "
            "SELECT relid::oid FROM pg_partition_tree(%s::regclass)) t JOIN pg_class c ON c.oid = t.relid "
            "WHERE c.relkind IN ('r', 'p') AND (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = t.relid "
            "AND g.tgname = ANY(%s)) < %s ORDER BY c.relkind = 'p' DESC, 2",
            (capture.table, capture.table, list(TRIGGERS), len(TRIGGERS))).fetchall()
        for relid, name in lacking:

            def install(capture=capture, relid=relid) -> bool:
                if not install_on(conn, capture, relid):
                    return False
                conn.execute("DELETE FROM coldcopy_ops.ivm_state WHERE summary = ANY(%s)",
                             ([s.name for s in consumers(capture.table)],))
                return True

            if under_lock_timeout(conn, install, policy, what=f"change capture on {name}"):
                log.info("change capture installed on %s", name)
                installed.append(name)
    return installed


def captured(conn: psycopg.Connection, table: str) -> bool:
    """Whether ``table`` (a source) has its capture."""
    return not _missing(conn, conn.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0])


def on_new_partition(conn: psycopg.Connection, parent: str, partition: str) -> None:
    """In the caller's transaction: a new (empty) partition of a captured ``parent`` gets the capture too, so
    a write straight into it is seen."""
    capture = CAPTURES.get(parent)
    if capture is not None and captured(conn, parent):
        install_on(conn, capture, conn.execute("SELECT %s::regclass::oid", (partition,)).fetchone()[0])


def record_partition(conn: psycopg.Connection, parent: str, partition: str) -> None:
    """In the caller's transaction: every group of ``partition``'s rows changed — it was just attached to, or
    detached from, the captured ``parent`` (DDL fires no trigger). Call after the attach or detach, while the
    table still exists; the next apply recomputes those groups with it in or out."""
    if parent == "public.email_events" and captured(conn, parent):
        conn.execute("SELECT coldcopy_ops.ivm_record_email_events(%s::regclass)", (partition,))
