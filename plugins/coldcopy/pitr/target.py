"""The replay's target beyond its rows: the session that keeps its triggers quiet, a partition marker's DDL, the
sequences set from the data at the end (:class:`coldcopy.pitr.replay.Replayer` calls these)."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from coldcopy.safe_names import relation

_MONTH = re.compile(r"^email_events_\d{4}_\d{2}$")


def quiet_session(conn: psycopg.Connection) -> bool:
    """The replay's session settings; whether triggers are quiet by ``session_replication_role`` (a superuser)."""
    conn.autocommit = False
    conn.execute("SET synchronous_commit = off")
    try:
        with conn.transaction():
            conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:  # not a superuser (Supabase's postgres): quiet each table
        return False
    return True


def lane(connect) -> psycopg.Connection:
    """One more connection applying different tables' runs at once (a private target only)."""
    conn = connect()
    quiet_session(conn)
    conn.commit()
    return conn


def apply_partition_marker(conn: psycopg.Connection, marker: dict) -> None:
    """A month made, detached or dropped at the source, at its place in the archive (``ValueError``: a marker
    naming anything but a month of email_events)."""
    if marker["action"] == "create":
        conn.execute("SELECT app.create_email_events_partition(%s::date)", (marker["month"],))
        return
    name = marker["table"]
    if not _MONTH.match(name):
        raise ValueError(f"partition marker names {name!r}, not a month of email_events")
    attached = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s) "
        "AND inhparent = 'public.email_events'::regclass)", (f"public.{name}",)).fetchone()[0]
    if marker["action"] == "detach" and attached:
        conn.execute(sql.SQL("ALTER TABLE public.email_events DETACH PARTITION {}").format(
            sql.Identifier("public", name)))
    elif marker["action"] == "drop" and not attached:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("public", name)))


def sync_sequences(conn: psycopg.Connection) -> dict[str, int]:
    """``setval`` every column-owned sequence to its column's maximum; returns what moved."""
    owned = conn.execute(
        "SELECT s.oid::regclass::text, t.oid::regclass::text, a.attname FROM pg_depend d "
        "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_class t ON t.oid = d.refobjid "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
        "WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')").fetchall()
    moved = {}
    for sequence, table, column in owned:
        top = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(column), relation(conn, table))).fetchone()[0]
        if top is not None:
            conn.execute("SELECT setval(%s::regclass, %s)", (sequence, top))
            moved[sequence] = int(top)
    return moved
