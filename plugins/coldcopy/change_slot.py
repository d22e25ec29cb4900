"""The change archive's replication slot: its name (:data:`SLOT`, made by :mod:`coldcopy.pitr.setup`) and its
budget, shared by the archive and the health check that watches it. The slot never fills the database's
disk: a slot nobody drains keeps every WAL segment since its restart point. :func:`slot_state` measures it
(retained WAL, the archive's lag); :func:`enforce` drops the slot once it holds more than the hard budget, and
records when the chain broke. Run by ``db_health`` (which runs when
the change archive's DAG is paused or failing — the cases that matter). See docs/pitr.md.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

SLOT = "coldcopy_pitr"


def slot_state(conn: psycopg.Connection, slot: str = SLOT) -> dict | None:
    """``None`` when the change archive was never set up; else the slot's WAL and the archive's progress."""
    cur = conn.cursor(row_factory=tuple_row)
    tracked = cur.execute("SELECT to_regclass('coldcopy_ops.change_archive') IS NOT NULL").fetchone()[0]
    progress = "coldcopy_ops.change_archive" if tracked else \
        "(SELECT NULL::text slot, NULL::text chain, NULL::bigint seq, NULL::timestamptz drained_at, " \
        "NULL::timestamptz broken_at, NULL::text broken_reason, NULL::float8 last_lag_s)"
    row = cur.execute(
        "SELECT s.slot_name IS NOT NULL, s.active, s.active_pid, s.wal_status, s.safe_wal_size, "
        "  CASE WHEN s.restart_lsn IS NULL THEN NULL "
        "       ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint END, "
        "  a.chain, a.seq, a.drained_at, extract(epoch FROM now() - a.drained_at)::float8, a.broken_at, "
        "  a.broken_reason, a.last_lag_s, to_jsonb(a) ->> 'anchor_problem' "
        "FROM (SELECT %s::text AS slot) want "
        "LEFT JOIN pg_replication_slots s ON s.slot_name = want.slot "
        f"LEFT JOIN {progress} a ON a.slot = want.slot", (slot,)).fetchone()
    exists, active, pid, wal_status, safe, retained, chain, seq, drained_at, lag_s, broken_at, reason, last_lag, \
        anchor = row
    if not exists and chain is None:
        return None
    return {"slot": slot, "exists": exists, "active": active, "active_pid": pid, "wal_status": wal_status,
            "safe_wal_size": safe, "retained_bytes": retained,
            "chain": chain, "seq": seq, "drained_at": drained_at, "lag_s": lag_s, "broken_at": broken_at,
            "broken_reason": reason, "last_segment_lag_s": last_lag, "anchor_problem": anchor}


def enforce(conn: psycopg.Connection, budget_bytes: int, slot: str = SLOT) -> dict | None:
    """Drop the slot when it retains more than ``budget_bytes`` of WAL; returns what happened (for the alert),
    or ``None`` when it is within budget."""
    state = slot_state(conn, slot)
    if not state or not state["exists"] or (state["retained_bytes"] or 0) <= budget_bytes:
        return None
    for _ in range(50):  # a drainer holding it is terminated first; the slot is released a moment later
        active = conn.cursor(row_factory=tuple_row).execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if active is None:
            break
        if active[0]:
            conn.execute("SELECT pg_terminate_backend(%s)", (active[0],))
            time.sleep(0.1)
            continue
        try:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            break
        except psycopg.errors.ObjectInUse:
            time.sleep(0.1)
    reason = (f"slot {slot} retained {state['retained_bytes'] / 2**30:.1f} GB of WAL, over the "
              f"{budget_bytes / 2**30:g} GB budget: dropped so the database's disk cannot fill")
    mark_broken(conn, state, reason)
    return {**state, "reason": reason}


def lost_reason(state: dict | None) -> str | None:
    """Why the slot can give no more changes (``None``: it can): the server invalidated it, its WAL past
    ``max_slot_wal_keep_size`` (4 GB on Supabase) already removed. Before, nothing read ``wal_status``: the
    archiver retried for minutes on "can no longer get changes from replication slot" while db_health said ok."""
    if not state or not state["exists"] or state["wal_status"] != "lost":
        return None
    return (f"slot {state['slot']} was invalidated by the server (wal_status lost: it held more WAL than "
            "max_slot_wal_keep_size allows, and that WAL is removed)")


def mark_broken(conn: psycopg.Connection, state: dict, reason: str) -> None:
    """Record that the chain of ``state`` ends where it was last drained, and why."""
    if state["chain"] is not None:
        conn.execute("UPDATE coldcopy_ops.change_archive SET broken_at = coalesce(broken_at, now()), "
                     "broken_reason = coalesce(broken_reason, %s), updated_at = now() WHERE slot = %s",
                     (reason, state["slot"]))
    log.error("%s; the chain %s ends at %s", reason, state["chain"], state["drained_at"])
