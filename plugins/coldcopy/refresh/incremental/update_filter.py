"""The UPDATE capture of a frame table (campaigns, campaign_sequences): a row trigger whose ``WHEN`` names the
columns the summaries' definitions read, instead of a statement trigger with transition tables.

The application updates a campaign on every send (``updated_at``); a statement trigger ran PL/pgSQL, built two
transition tables and recorded the campaign for every one of those updates, though no summary reads the column
(about 150 µs added to a 65 µs update, measured in a loop on the server). ``WHEN`` is evaluated by the executor
without a call: only an update that moves a column a definition reads records its id
(``coldcopy_ops.ivm_capture_changed_id``).

The columns are read from the catalog, not stated here: a view records a dependency on every column it reads
(``pg_depend`` of its rewrite rule), and the trigger's ``WHEN`` on every column it names. A migration that makes a
definition read another column leaves the trigger stale; the check before every apply (:func:`refresh`) replaces
it under the table's lock, so no write passes between the two triggers uncaptured.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.change_tracking import SWITCHED_ON
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.refresh.incremental.summaries import CAPTURES, Capture, consumers

TRIGGER = "coldcopy_ivm_update"
FUNCTION = "ivm_capture_changed_id"


def read_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """The columns of ``table`` that the definitions of the summaries reading it read; every column of the table
    when a definition reads it only through another view (the catalog then names that view, not the table)."""
    # the definitions there are (a summary whose migration is not applied yet has none: its materialized view's
    # path refreshes it, and it reads nothing through this trigger)
    views = [v for (v,) in conn.execute("SELECT v FROM unnest(%s::text[]) v WHERE to_regclass(v) IS NOT NULL",
                                        ([s.definition for s in consumers(table)],)).fetchall()]
    columns = [r[0] for r in conn.execute(
        "SELECT DISTINCT a.attname::text FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass "
        "AND d.objid = r.oid JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE r.ev_class = ANY(%s::regclass[]) AND d.refobjid = %s::regclass ORDER BY 1", (views, table))]
    direct = conn.execute(
        "SELECT count(DISTINCT r.ev_class) FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass "
        "AND d.objid = r.oid WHERE r.ev_class = ANY(%s::regclass[]) AND d.refobjid = %s::regclass",
        (views, table)).fetchone()[0]
    if direct < len(views) or CAPTURES[table].key not in columns:
        columns = [r[0] for r in conn.execute(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY 1", (table,))]
    return columns


def create(conn: psycopg.Connection, table: sql.Composable, columns: list[str]) -> None:
    """The filtered trigger on ``table`` (the caller holds its SHARE ROW EXCLUSIVE lock)."""
    old = sql.SQL(", ").join(sql.SQL("OLD.{}").format(sql.Identifier(c)) for c in columns)
    new = sql.SQL(", ").join(sql.SQL("NEW.{}").format(sql.Identifier(c)) for c in columns)
    conn.execute(sql.SQL("CREATE TRIGGER {} AFTER UPDATE ON {} FOR EACH ROW WHEN (ROW({}) IS DISTINCT FROM ROW({})) "
                         "EXECUTE FUNCTION {}()").format(sql.Identifier(TRIGGER), table, old, new,
                                                         sql.Identifier("coldcopy_ops", FUNCTION)))


def stale(conn: psycopg.Connection, relid: int, columns: list[str]) -> bool:
    """Whether ``relid``'s update capture exists but is not the filtered trigger on exactly ``columns`` (a
    statement trigger of an earlier version, another function, a ``WHEN`` naming other columns)."""
    row = conn.execute(
        "SELECT t.tgtype & 1 = 1 AND t.tgfoid = to_regprocedure(%s), "
        "ARRAY(SELECT a.attname::text FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid "
        "AND a.attnum = d.refobjsubid WHERE d.classid = 'pg_trigger'::regclass AND d.objid = t.oid "
        "AND d.refobjid = t.tgrelid AND d.refobjsubid > 0 ORDER BY 1) "
        "FROM pg_trigger t WHERE t.tgrelid = %s AND t.tgname = %s",
        (f"coldcopy_ops.{FUNCTION}()", relid, TRIGGER)).fetchone()
    return row is not None and not (row[0] and sorted(row[1]) == sorted(columns))


def refresh(conn: psycopg.Connection, capture: Capture, policy: LockRetryPolicy = LockRetryPolicy()) -> bool:
    """Replace ``capture``'s update trigger when :func:`stale`, in one transaction under the table's lock (writes
    wait, none passes uncaptured, so the summaries keep their state); returns whether it did."""
    relid = conn.execute("SELECT %s::regclass::oid", (capture.table,)).fetchone()[0]
    columns = read_columns(conn, capture.table)
    if not stale(conn, relid, columns):
        return False

    def replace() -> bool:
        table = sql.Identifier(*capture.table.split("."))
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
        if not stale(conn, relid, columns):
            return False
        enabled = conn.execute("SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = %s AND tgname = %s",
                               (relid, TRIGGER)).fetchone()[0]
        if enabled not in SWITCHED_ON:  # off: the capture check switches it on and notes the loss, then this
            return False
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(TRIGGER), table))
        create(conn, table, columns)
        return True

    return under_lock_timeout(conn, replace, policy, what=f"update capture of {capture.table} replaced")
