"""CPU (a proxy) and the freshness of the ops jobs themselves: views, horizon, backups, maintenance."""

from __future__ import annotations

import logging

from coldcopy.health.results import RANK, Context, Result, graded, iso
from coldcopy.refresh_schedule import REFRESH_JOBS

log = logging.getLogger(__name__)


# -- cpu ------------------------------------------------------------------------------------------------

CPU_NOTE = ("A managed database does not expose CPU to SQL: this is active backends per core, a proxy. The real "
            "CPU figure (runbook: > 70 % sustained) comes from the provider's metrics (Supabase: Reports → "
            "Database; or its Prometheus endpoint).")


def check_cpu(c: Context) -> list[Result]:
    # Not db_health's own sessions: its check groups run side by side, and counting their probes made the check
    # measure itself (a warning, then "resolved", from nothing but its own run).
    active = c.one("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' "
                   "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                   "AND application_name NOT LIKE 'coldcopy:db\\_health.%'")["n"]
    pct = 100.0 * active / c.t.cpu_cores
    over = pct >= c.t.active_per_core_breach_pct
    earlier = c.recent_values("cpu_load", c.t.active_sustained_runs - 1)
    sustained = over and len(earlier) == c.t.active_sustained_runs - 1 and all(
        v is not None and v >= c.t.active_per_core_breach_pct for v in earlier)
    state = "breach" if sustained else "warning" if over else "ok"
    return [Result("cpu_load", state, f"{active} active backend(s) on {c.t.cpu_cores} core(s) ({pct:.0f} %)"
                   + (f", over {c.t.active_per_core_breach_pct:g} % for {c.t.active_sustained_runs} runs"
                      if sustained else ""), pct, "%", {"active": active, "cores": c.t.cpu_cores, "note": CPU_NOTE})]


# -- ops freshness --------------------------------------------------------------------------------------

def check_ops_freshness(c: Context) -> list[Result]:
    from coldcopy.health.drift import schema_drift
    from coldcopy.health.drills import restore_drill
    from coldcopy.health.summaries import summaries

    return [view_freshness(c), summaries(c), restore_drill(c), partition_horizon(c), backup_age(c), maintenance_age(c),
            scratch_databases(c), schema_drift(c)]


def scratch_databases(c: Context) -> Result:
    """Copies of production a killed task left on this server (:mod:`coldcopy.scratch`): a breach once past
    the task's timeout (the next job of that kind sweeps it), or at once when PUBLIC may connect to one; and
    support copies (:mod:`coldcopy.support_copies`) past their expiry (``gdpr_retention`` drops them)."""
    from coldcopy import scratch, support_copies

    left = scratch.leftovers(c.conn)
    expired = [e["database"] for e in left if e["expired"]]
    open_ = [e["database"] for e in left if e["public_connect"]]
    copies = support_copies.active(c.conn)
    stale = [e["schema"] for e in copies if e["expired"]]
    details = {"databases": [iso(e) for e in left], "support_copies": [iso(e) for e in copies]}
    if expired or open_ or stale:
        return Result("scratch_databases", "breach", "copies of production left behind: " + "; ".join(
            filter(None, [f"past their task's timeout: {', '.join(expired)}" if expired else "",
                          f"open to PUBLIC: {', '.join(open_)}" if open_ else "",
                          f"support copies past their expiry: {', '.join(stale)}" if stale else ""])) +
            " (the next rehearsal, verification or restore sweeps the expired databases, gdpr_retention the "
            "support copies; DROP DATABASE … WITH (FORCE))", len(set(expired) | set(open_)) + len(stale),
            "databases", details)
    return Result("scratch_databases", "ok", f"{len(left)} scratch database(s), none past its task's timeout; "
                  f"{len(copies)} support cop{'y' if len(copies) == 1 else 'ies'}, none expired",
                  len(left), "databases", details)


def view_freshness(c: Context) -> Result:
    logged = c.has_table("coldcopy_ops.mv_refresh_log")
    summaries = c.has_table("coldcopy_ops.ivm_state")
    views, worst = [], 0.0
    for dag_id, job in REFRESH_JOBS.items():
        for view in job.views:
            row = c.one("SELECT (SELECT ispopulated FROM pg_matviews WHERE format('%%I.%%I', schemaname, "
                        "matviewname) = %s) AS populated, NULL::timestamptz AS fresh_at, now() AS now", (view,))
            if row["populated"] is None and c.has_table(view):  # an incremental summary: populated once built
                row["populated"] = summaries and c.one(
                    "SELECT count(*) > 0 AS built FROM coldcopy_ops.ivm_state WHERE summary = %s", (view,))["built"]
            if logged:
                row["fresh_at"] = c.one(
                    "SELECT max(finished_at) AS t FROM coldcopy_ops.mv_refresh_log WHERE view_name = %s "
                    "AND action IN ('refreshed', 'skipped')", (view,))["t"]
            age = (row["now"] - row["fresh_at"]).total_seconds() if row["fresh_at"] else None
            late_after = job.cadence * c.t.view_late_factor + job.deadline
            cadences = age / job.cadence.total_seconds() if age is not None else None
            state = ("breach" if row["populated"] is None or age is None or age > late_after.total_seconds()
                     else "warning" if age > (job.cadence + job.deadline).total_seconds() else "ok")
            views.append({"view": view, "dag_id": dag_id, "cadence_s": job.cadence.total_seconds(), "age_s": age,
                          "state": state, "populated": row["populated"], "fresh_at": row["fresh_at"],
                          "dag_paused": dag_id in c.paused_dags})
            worst = max(worst, cadences if cadences is not None else float("inf"))
    state = max((v["state"] for v in views), key=RANK.get)
    late = [v for v in views if v["state"] != "ok"]
    paused = sorted({v["dag_id"] for v in late if v["dag_paused"]})
    summary = (f"{len(late)} view(s) older than their cadence allows: {', '.join(v['view'] for v in late)}" if late
               else f"all {len(views)} views within their cadence")
    if paused:
        summary += f" ({'; '.join(f'{d} is paused' for d in paused)}: unpause it in Airflow)"
    return Result("view_freshness", state, summary, None if worst == float("inf") else worst, "cadences",
                  {"views": views}, worse_by_value=False)


def partition_horizon(c: Context) -> Result:
    if not c.has_table("app.email_events_partitions"):
        return Result("partition_horizon", "breach", "email_events is not partitioned (migration 202 missing)", 0,
                      "months", higher_is_worse=False)
    row = c.one("SELECT count(*) FILTER (WHERE range_start >= app.month_start_utc(now(), 1)) AS ahead, "
                "max(range_end) AS covered_until FROM app.email_events_partitions")
    ahead = row["ahead"]
    return Result("partition_horizon", graded(ahead, c.t.partition_months_warn, c.t.partition_months_breach,
                                              higher_is_worse=False),
                  f"{ahead} month(s) of email_events partitions ahead of this one (inserts safe until "
                  f"{row['covered_until']:%Y-%m-%d})" if row["covered_until"] else "no email_events partitions",
                  ahead, "months", {"covered_until": row["covered_until"]}, higher_is_worse=False)


def backup_age(c: Context) -> Result:
    last = c.one("""
        SELECT object_key, verified_at, byte_size, round(extract(epoch FROM now() - verified_at) / 3600, 2)::float
                 AS age_h
        FROM coldcopy_ops.backup_log WHERE kind = 'database' AND verification = 'verified' AND deleted_at IS NULL
        ORDER BY verified_at DESC LIMIT 1""") if c.has_table("coldcopy_ops.backup_log") else None
    if last is None:
        return Result("backup_age", "breach", "no verified database backup on record", None, "h")
    state = "breach" if last["age_h"] > c.t.backup_max_age_h else "ok"
    return Result("backup_age", state, f"last verified backup {last['age_h']:.1f} h old ({last['object_key']})",
                  last["age_h"], "h", last, worse_by_value=False)


def maintenance_age(c: Context) -> Result:
    if not c.has_table("coldcopy_ops.maintenance_log"):
        return Result("maintenance_age", "warning", "db_maintenance_daily has never run", None, "h")
    last = c.one("SELECT round(extract(epoch FROM now() - max(started_at)) / 3600, 2)::float AS age_h "
                 "FROM coldcopy_ops.maintenance_log WHERE action = 'purge_cache'")["age_h"]
    recent = c.rows("SELECT action, target, outcome, started_at, duration_ms, left(detail, 160) AS detail "
                    "FROM coldcopy_ops.maintenance_log ORDER BY started_at DESC LIMIT 15")
    if last is None:
        return Result("maintenance_age", "warning", "db_maintenance_daily has never run", None, "h",
                      {"recent": recent})
    return Result("maintenance_age", graded(last, c.t.maintenance_warn_age_h, c.t.maintenance_breach_age_h),
                  f"last daily maintenance {last:.1f} h ago", last, "h", {"recent": recent}, worse_by_value=False)
