"""The change capture of the summaries' source tables: four statement-level triggers per table and partition.

``AFTER INSERT`` / ``UPDATE`` / ``DELETE`` with transition tables (PostgreSQL allows one event per trigger
that has them) and ``BEFORE TRUNCATE``, which still sees the rows about to go; the UPDATE of a frame table
(campaigns, campaign_sequences) a row trigger filtered to the columns the definitions read
(:mod:`~coldcopy.refresh.incremental.update_filter`). Installing takes the table's
SHARE ROW EXCLUSIVE lock (what CREATE TRIGGER takes), so it runs under ``lock_timeout`` with retries.

A capture switched off (a trigger disabled: ``tgenabled``) or a delta table gone loses changes: the check
before every apply switches it on again (or recreates the table) and marks the summaries reading that source
due for a rebuild (``coldcopy_ops.ivm_rebuild_due``, :func:`note_lost`), as does a table restore.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql

from coldcopy import ops_schema
from coldcopy.change_tracking import CAPTURE_TRIGGERS, SWITCHED_ON, capture_state, mirror_capture
from coldcopy.change_tracking import record_partition as record_partition
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.refresh.incremental import update_filter
from coldcopy.refresh.incremental.summaries import SUMMARIES, Capture, Summary, consumers

log = logging.getLogger(__name__)

TRIGGERS = CAPTURE_TRIGGERS
_ON = SWITCHED_ON


def _state(conn: psycopg.Connection, relid: int) -> dict[str, str]:
    """The capture triggers ``relid`` has: name → tgenabled."""
    return {name: enabled for name, (enabled, _) in capture_state(conn, relid).items()}


def _missing(conn: psycopg.Connection, relid: int) -> list[str]:
    have = _state(conn, relid)
    return [n for n in TRIGGERS if have.get(n) not in _ON]


def install_on(conn: psycopg.Connection, capture: Capture, relid: int) -> list[str]:
    """In the caller's transaction (under ``lock_timeout``): give the table ``relid`` the triggers of
    ``capture`` it lacks and switch on those switched off; returns what it did (empty: nothing). Concurrent
    installers queue on the lock taken first, then find the triggers there."""
    schema, name = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.oid = %s", (relid,)).fetchone()
    table = sql.Identifier(schema, name)
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
    have, done = _state(conn, relid), []
    for trigger in TRIGGERS:
        if trigger not in have and trigger == update_filter.TRIGGER and capture.row_updates:
            update_filter.create(conn, table, update_filter.read_columns(conn, capture.table))
            done.append(f"{trigger} created")
        elif trigger not in have:
            conn.execute(sql.SQL("CREATE TRIGGER {} " + TRIGGERS[trigger] + " FOR EACH STATEMENT EXECUTE FUNCTION {}()")
                         .format(sql.Identifier(trigger), sql.Identifier("coldcopy_ops", capture.function),
                                 table=table))
            done.append(f"{trigger} created")
        elif have[trigger] not in _ON:
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(table, sql.Identifier(trigger)))
            done.append(f"{trigger} switched on again (tgenabled {have[trigger]!r})")
    return done


def ensure(conn: psycopg.Connection, summary: Summary, policy: LockRetryPolicy = LockRetryPolicy()) -> list[str]:
    """Capture on every source of ``summary`` and each of its partitions, switched on, with its delta table;
    returns the tables it was installed on or switched on again.

    What a table saw before its capture existed (or while it was off) is unknown: installing on a table forgets
    the state of every summary reading it and marks them due for a rebuild, so each rebuilds on its next apply.
    """
    ops_schema.ensure(conn, "incremental", policy)
    ops_schema.ensure(conn, "incremental_guard", policy)
    conn.execute("INSERT INTO coldcopy_ops.ivm_apply_locks VALUES (%s) ON CONFLICT DO NOTHING", (summary.name,))
    _recreate_lost_deltas(conn, summary, policy)
    installed = []
    for capture in summary.captures():
        lacking = conn.execute(  # one query for the table and all its partitions: this runs on every refresh
            "SELECT t.relid, t.relid::regclass::text FROM (SELECT %s::regclass::oid AS relid UNION "
            "SELECT relid::oid FROM pg_partition_tree(%s::regclass)) t JOIN pg_class c ON c.oid = t.relid "
            "WHERE c.relkind IN ('r', 'p') AND (SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = t.relid "
            "AND g.tgname = ANY(%s) AND g.tgenabled = ANY(%s)) < %s ORDER BY c.relkind = 'p' DESC, 2",
            (capture.table, capture.table, list(TRIGGERS), list(_ON), len(TRIGGERS))).fetchall()
        for relid, name in lacking:

            def install(capture=capture, relid=relid, name=name) -> list[str]:
                done = install_on(conn, capture, relid)
                if done:
                    readers = [s.name for s in consumers(capture.table)]
                    conn.execute("DELETE FROM coldcopy_ops.ivm_state WHERE summary = ANY(%s)", (readers,))
                    note_lost(conn, [capture.table], f"capture of {name}: {', '.join(done)}")
                return done

            done = under_lock_timeout(conn, install, policy, what=f"change capture on {name}")
            if done:
                switched = any("switched on" in d for d in done)
                (log.warning if switched else log.info)(
                    "change capture on %s: %s; %s rebuild on their next apply", name, ", ".join(done),
                    ", ".join(s.name for s in consumers(capture.table)))
                installed.append(name)
        if capture.row_updates and update_filter.refresh(conn, capture, policy):
            log.info("change capture on %s: its update trigger replaced by one filtered to the columns the "
                     "definitions read", capture.table)
    if any(c.table == "public.email_events" for c in summary.captures()):
        check_months(conn, policy)
    _expand_due(conn)
    return installed


def check_months(conn: psycopg.Connection, policy: LockRetryPolicy = LockRetryPolicy()) -> list[str]:
    """The partitions of email_events whose rows are counted (``coldcopy_ops.ivm_months``) against those attached:
    a month attached or detached without its record (a plain ATTACH, a job killed between its DETACH and its
    record) makes every summary of email_events rebuild, and the set becomes what is attached. Returns the months
    that differed. The first check after the capture is installed only fills the set."""
    def check() -> list[str]:
        if conn.execute("SELECT to_regclass('coldcopy_ops.ivm_months') IS NULL").fetchone()[0]:  # dropped by hand
            conn.execute("CREATE TABLE coldcopy_ops.ivm_months (relid oid PRIMARY KEY)")  # (writers marked due)
            conn.execute("REVOKE ALL ON coldcopy_ops.ivm_months FROM PUBLIC")
        conn.execute("LOCK TABLE coldcopy_ops.ivm_months IN SHARE ROW EXCLUSIVE MODE")  # records wait, readers not
        attached = {r[0] for r in conn.execute(
            "SELECT inhrelid::int8 FROM pg_inherits WHERE inhparent = 'public.email_events'::regclass").fetchall()}
        counted = {r[0] for r in conn.execute("SELECT relid::int8 FROM coldcopy_ops.ivm_months").fetchall()}
        if attached == counted:
            return []
        conn.execute("DELETE FROM coldcopy_ops.ivm_months")
        conn.execute("INSERT INTO coldcopy_ops.ivm_months SELECT unnest(%s::int8[])::oid", (sorted(attached),))
        if not counted:
            return []
        differ = [r[0] for r in conn.execute(
            "SELECT coalesce(c.oid::regclass::text, o::text) FROM unnest(%s::int8[]) o LEFT JOIN pg_class c "
            "ON c.oid = o::oid ORDER BY 1", (sorted(attached ^ counted),)).fetchall()]
        note_lost(conn, ["public.email_events"], f"months attached or detached uncounted: {', '.join(differ)}")
        return differ

    differ = under_lock_timeout(conn, check, policy, what="check of email_events' counted months")
    if differ:
        log.warning("email_events: %s attached or detached without being counted; its summaries rebuild",
                    ", ".join(differ))
    return differ


def note_lost(conn: psycopg.Connection, tables: list[str], reason: str) -> list[str]:
    """In the caller's transaction: the changes of ``tables`` (sources, or partitions of one) were not all
    captured — every summary reading them rebuilds at its next apply whose snapshot sees this. Returns those
    summaries. Nothing when the database has no incremental summaries' bookkeeping (a bare restore target)."""
    due_table, state_table = conn.execute("SELECT to_regclass('coldcopy_ops.ivm_rebuild_due') IS NOT NULL, "
                                          "to_regclass('coldcopy_ops.ivm_state') IS NOT NULL").fetchone()
    if not (due_table or state_table):
        return []
    roots = {r for (r,) in conn.execute(  # a partition stands for its partitioned table
        "SELECT coalesce((SELECT n.nspname || '.' || c.relname FROM pg_partition_ancestors(to_regclass(t)) a "
        "JOIN pg_class c ON c.oid = a JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT c.relispartition), t) "
        "FROM unnest(%s::text[]) t", (list(tables),)).fetchall()}
    readers = sorted({s.name for s in SUMMARIES.values() if roots & {*s.sources}})
    if not due_table:  # bookkeeping from before ivm_rebuild_due: forgetting the state rebuilds them too
        conn.execute("DELETE FROM coldcopy_ops.ivm_state WHERE summary = ANY(%s)", (readers,))
        return readers
    for name in readers:
        conn.execute("INSERT INTO coldcopy_ops.ivm_rebuild_due (summary, source, reason) VALUES (%s, %s, %s)",
                     (name, ", ".join(sorted(roots & {*SUMMARIES[name].sources})), reason[:2000]))
    return readers


def due(conn: psycopg.Connection, summary: str) -> str | None:
    """Why ``summary`` must rebuild (the oldest reason this transaction's snapshot sees), or None."""
    row = conn.execute("SELECT reason || ' (' || source || ', ' || noted_at || ')', count(*) OVER () "
                       "FROM coldcopy_ops.ivm_rebuild_due WHERE summary = %s ORDER BY id LIMIT 1", (summary,))
    row = row.fetchone()
    return None if row is None else row[0] + (f" and {row[1] - 1} more" if row[1] > 1 else "")


def _expand_due(conn: psycopg.Connection) -> None:
    """A source's row of ivm_rebuild_due (summary NULL, as the capture triggers write it) → one per summary."""
    pairs = [(s.name, source) for s in SUMMARIES.values() for source in s.sources]
    conn.execute(
        "WITH lost AS (DELETE FROM coldcopy_ops.ivm_rebuild_due WHERE summary IS NULL RETURNING source, reason, "
        "noted_at) INSERT INTO coldcopy_ops.ivm_rebuild_due (summary, source, reason, noted_at) "
        "SELECT p.summary, l.source, l.reason, l.noted_at FROM lost l JOIN unnest(%s::text[], %s::text[]) "
        "p(summary, source) ON p.source = l.source",
        ([p[0] for p in pairs], [p[1] for p in pairs]))


def _recreate_lost_deltas(conn: psycopg.Connection, summary: Summary, policy: LockRetryPolicy) -> None:
    """A delta table of ``summary``'s captures gone (dropped by hand; the writers' capture then fails or, once
    it degrades, skips it): its sources' summaries are marked due and the table is created again, in one
    transaction — from its own statements of incremental.sql, so no other delta table is locked (applying the
    whole file again would take SHARE on each, its CREATE INDEX IF NOT EXISTS, and writers would queue)."""
    gone: dict[str, list[str]] = {}  # delta table → its sources (one delta table serves several: workspaces')
    for c in summary.captures():
        missing = c.delta in gone or conn.execute("SELECT to_regclass(%s) IS NULL",
                                                  (f"coldcopy_ops.{c.delta}",)).fetchone()[0]
        if missing:
            gone.setdefault(c.delta, []).append(c.table)
    if not gone:
        return
    ddl = (ops_schema.OPS_SQL_DIR / "incremental.sql").read_text()

    def recreate() -> list[str]:
        for delta in gone:
            statements = re.findall(rf"CREATE TABLE IF NOT EXISTS coldcopy_ops\.{delta} [^;]*;"
                                    rf"|ALTER TABLE coldcopy_ops\.{delta}\b[^;]*;"
                                    rf"|CREATE INDEX \w+ ON coldcopy_ops\.{delta} \([^)]*\)", ddl)
            if not any(s.startswith("CREATE TABLE") for s in statements):
                raise RuntimeError(f"coldcopy_ops.{delta} is missing and sql/ops/incremental.sql does not create it")
            for statement in statements:
                conn.execute(statement)
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(sql.Identifier("coldcopy_ops", delta)))
        return note_lost(conn, [t for tables in gone.values() for t in tables], "its delta table was missing")

    readers = under_lock_timeout(conn, recreate, policy, what="delta tables created again")
    log.warning("delta table(s) %s were missing: created again; %s rebuild on their next apply",
                ", ".join(gone), ", ".join(readers))


def pending(delta: str) -> sql.Composed:
    """The rows of the delta table ``coldcopy_ops.<delta>`` a summary whose watermark is ``%(since)s`` has not seen
    (in the reader's snapshot: what commits later waits for the next apply)."""
    return sql.SQL("(SELECT * FROM {} WHERE txid >= pg_snapshot_xmin(%(since)s::pg_snapshot) "
                   "AND NOT pg_visible_in_snapshot(txid, %(since)s::pg_snapshot))").format(
        sql.Identifier("coldcopy_ops", delta))


def captured(conn: psycopg.Connection, table: str) -> bool:
    """Whether ``table`` (a source) has its capture, switched on."""
    return not _missing(conn, conn.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0])


def on_new_partition(conn: psycopg.Connection, parent: str, partition: str) -> None:
    """In the caller's transaction: a new (empty) partition of a captured ``parent`` gets the capture too."""
    mirror_capture(conn, parent, partition, counted=True)
