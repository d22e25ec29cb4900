"""The change archive's slot and lag (point-in-time recovery, :mod:`coldcopy.pitr`); drops the slot past the
hard WAL budget so an undrained slot can never fill the database's disk."""

from __future__ import annotations

from coldcopy import change_slot as budget
from coldcopy.health.results import GB, RANK, Context, Result, graded, iso


def check_change_archive(c: Context) -> list[Result]:
    dropped = budget.enforce(c.conn, int(c.t.change_archive_budget_gb * GB))
    state = budget.slot_state(c.conn)
    if state is None:
        return [Result("change_archive", "ok", "change archive not set up (change_archive_setup): no point-in-time "
                       "recovery beyond the last backup")]
    details = iso(state)
    if lost := budget.lost_reason(state):  # invalidated by the server: no drain can go on
        budget.mark_broken(c.conn, state, lost)
        since = state["drained_at"]
        return [Result("change_archive", "breach", f"chain {state['chain']} broken: {lost}; point-in-time recovery "
                       f"reaches {since:%Y-%m-%d %H:%M:%S} UTC at most" if since else f"chain broken: {lost}",
                       None, "", details)]
    if dropped or not state["exists"]:
        since = state["drained_at"]
        summary = (f"chain {state['chain']} broken: {state['broken_reason'] or 'the slot is gone'}; point-in-time "
                   f"recovery reaches {since:%Y-%m-%d %H:%M:%S} UTC at most until the next backup after the archive "
                   "restarts" if since else f"chain {state['chain']} broken: the slot is gone")
        return [Result("change_archive", "breach", summary, None, "", details)]
    if state.get("anchor_problem"):  # the bucket holds less than the database recorded: the archiver refuses
        return [Result("change_archive", "breach", f"the archive in the bucket differs from the database's record: "
                       f"{state['anchor_problem']}", None, "", details)]
    retained = (state["retained_bytes"] or 0) / GB
    lag_min = (state["lag_s"] or 0) / 60 if state["drained_at"] else None
    by_wal = graded(retained, c.t.change_archive_retained_warn_gb, c.t.change_archive_retained_breach_gb)
    by_lag = graded(lag_min, c.t.change_archive_lag_warn_min, c.t.change_archive_lag_breach_min) \
        if lag_min is not None else "warning"
    # The server's own limit (max_slot_wal_keep_size: 4 GB on Supabase) comes before ours: "unreserved" means
    # the WAL the slot needs is already past it and goes at the next checkpoint, "extended" that it is near.
    by_server = {"unreserved": "breach", "extended": "warning"}.get(state["wal_status"], "ok")
    worst = max(by_wal, by_lag, by_server, key=RANK.get)
    summary = (f"slot retains {retained:.2f} GB of WAL (dropped at {c.t.change_archive_budget_gb:g} GB"
               + (f", {state['safe_wal_size'] / GB:.2f} GB more before the server invalidates it"
                  if state["safe_wal_size"] is not None else "") + f"; wal_status {state['wal_status']}); "
               + (f"every commit older than {lag_min:.1f} min is archived (segment {state['seq']})"
                  if lag_min is not None else "nothing archived yet"))
    return [Result("change_archive", worst, summary, lag_min, "min", details, worse_by_value=False)]
