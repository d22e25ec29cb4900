"""Which source tables changed since a refresh: a statement-level trigger per source table (and partition)
inserts ``(table, transaction id)`` into ``coldcopy_ops.source_changes``. The refreshers read it
(:mod:`coldcopy.refresh.views`), and the jobs that change a table's shape record what no DML trigger sees
(partitions attached, detached, made).

The incremental summaries' capture (:mod:`coldcopy.refresh.incremental.capture`) is the other half of the
protocol: its trigger names live here, so a job that makes or attaches a partition gives it what its parent
has (:func:`mirror_capture`) and tells the summaries about rows that arrived or left by DDL
(:func:`record_partition`) without knowing the summaries.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

TRACKING_TRIGGER = "coldcopy_track_changes"
CAPTURE_TRIGGERS = {  # the summaries' capture: name → its timing, event and transition tables
    "coldcopy_ivm_insert": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS ivm_new",
    "coldcopy_ivm_update": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS ivm_old NEW TABLE AS ivm_new",
    "coldcopy_ivm_delete": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS ivm_old",
    "coldcopy_ivm_truncate": "BEFORE TRUNCATE ON {table}",
}
SWITCHED_ON = ("O", "A")  # tgenabled of a trigger that fires in an ordinary session (not 'D'isabled, 'R'eplica)


def create_tracking_trigger(conn: psycopg.Connection, relid: int) -> bool:
    """Put the change trigger on the table ``relid`` unless it has it; returns whether it was created.

    Call inside a transaction (with ``lock_timeout`` set). Safe when several tasks install tracking at once
    (refresh DAGs started together share source tables): the table is locked in the mode CREATE TRIGGER
    takes before looking, so a second session waits for the first, then finds the trigger and leaves it.
    """
    schema, name = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = %s", (relid,)).fetchone()
    table = sql.Identifier(schema, name)
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
    if conn.execute("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s AND tgname = %s)",
                    (relid, TRACKING_TRIGGER)).fetchone()[0]:
        return False
    conn.execute(sql.SQL(
        "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
        "FOR EACH STATEMENT EXECUTE FUNCTION coldcopy_ops.record_source_change()"
    ).format(sql.Identifier(TRACKING_TRIGGER), table))
    return True


def record_change(conn: psycopg.Connection, relation: str) -> None:
    """Mark ``relation`` (for a partition: its partitioned table) changed by the current transaction.

    For what no DML trigger sees: attaching or detaching a partition, or a table whose history before its
    trigger existed is unknown.
    """
    conn.execute(
        "INSERT INTO coldcopy_ops.source_changes (relid, txid) "
        "VALUES (coalesce(pg_partition_root(%s::regclass), %s::regclass), pg_current_xact_id()) "
        "ON CONFLICT DO NOTHING", (relation, relation),
    )


def capture_state(conn: psycopg.Connection, relid: int) -> dict[str, tuple[str, int]]:
    """The capture triggers ``relid`` has: name → (tgenabled, the function's oid)."""
    return {name: (enabled, function) for name, enabled, function in conn.execute(
        "SELECT tgname, tgenabled::text, tgfoid::int8 FROM pg_trigger WHERE tgrelid = %s AND tgname = ANY(%s)",
        (relid, list(CAPTURE_TRIGGERS))).fetchall()}


def wholly_on(have: dict[str, tuple[str, int]]) -> bool:
    """Whether ``have`` (:func:`capture_state`) is every capture trigger, each switched on."""
    return set(have) == set(CAPTURE_TRIGGERS) and all(enabled in SWITCHED_ON for enabled, _ in have.values())


def mirror_capture(conn: psycopg.Connection, parent: str, partition: str, *, counted: bool) -> list[str]:
    """In the caller's transaction (under ``lock_timeout``): a new partition of ``parent`` gets the capture
    triggers ``parent`` has switched on, calling the same function, so a write straight into it is seen. Returns
    the triggers made (none when ``parent`` is not captured, or not wholly). ``counted``: the partition was made
    attached and empty, so its rows are counted from now on (a month attached with rows is counted in by
    :func:`record_partition` instead)."""
    have = capture_state(conn, conn.execute("SELECT %s::regclass::oid", (parent,)).fetchone()[0])
    if not wholly_on(have):
        return []
    relid = conn.execute("SELECT %s::regclass::oid", (partition,)).fetchone()[0]
    schema, name = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.oid = %s", (relid,)).fetchone()
    table = sql.Identifier(schema, name)
    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table))
    present, made = capture_state(conn, relid), []
    for trigger, (_, function) in have.items():
        if trigger in present:
            continue
        fschema, fname = conn.execute("SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n "
                                      "ON n.oid = p.pronamespace WHERE p.oid = %s", (function,)).fetchone()
        conn.execute(sql.SQL("CREATE TRIGGER {} " + CAPTURE_TRIGGERS[trigger] + " FOR EACH STATEMENT EXECUTE "
                             "FUNCTION {}()").format(sql.Identifier(trigger), sql.Identifier(fschema, fname),
                                                     table=table))
        made.append(trigger)
    if counted and parent == "public.email_events" and conn.execute(  # absent: capture from before the months
            "SELECT to_regclass('coldcopy_ops.ivm_months') IS NOT NULL").fetchone()[0]:  # (the check fills it)
        conn.execute("INSERT INTO coldcopy_ops.ivm_months (relid) VALUES (%s) ON CONFLICT DO NOTHING", (relid,))
    return made


def record_partition(conn: psycopg.Connection, parent: str, partition: str) -> None:
    """In the caller's transaction: every row of ``partition`` arrived in, or left, the captured ``parent`` (it was
    just attached or detached; DDL fires no trigger). Call after the attach or detach, while the table still
    exists; the summaries' next apply counts its rows in or out, once (a second record of the same move is
    nothing). Nothing when ``parent`` has no capture."""
    if parent != "public.email_events":
        return
    if wholly_on(capture_state(conn, conn.execute("SELECT %s::regclass::oid", (parent,)).fetchone()[0])):
        conn.execute("SELECT coldcopy_ops.ivm_record_email_events(%s::regclass)", (partition,))
