"""Which source tables changed since a refresh: a statement-level trigger per source table (and partition)
inserts ``(table, transaction id)`` into ``coldcopy_ops.source_changes``. The refreshers read it
(:mod:`coldcopy.refresh.views`), and the jobs that change a table's shape record what no DML trigger sees
(partitions attached, detached, made).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

TRACKING_TRIGGER = "coldcopy_track_changes"


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
