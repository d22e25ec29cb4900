"""The engine: cache hits, wraparound, long transactions, lock waits, slots, sequences, vacuum."""

from __future__ import annotations

import logging

from coldcopy.health.redaction import _REDACTED_QUERY, _redacted
from coldcopy.health.results import GB, Context, Result, graded

log = logging.getLogger(__name__)


# -- engine ---------------------------------------------------------------------------------------------

def check_engine(c: Context) -> list[Result]:
    return [cache_hit(c), wraparound(c), long_transactions(c), lock_waits(c), replication_slots(c),
            sequences(c), stale_vacuum(c)]


def cache_hit(c: Context) -> Result:
    counters = c.one("SELECT blks_hit::bigint AS hit, blks_read::bigint AS read FROM pg_stat_database "
                     "WHERE datname = current_database()")
    previous = c.previous("cache_hit")
    hit, read = counters["hit"], counters["read"]
    prev = previous["details"] if previous else {}
    if prev.get("hit") is not None and prev["hit"] <= hit and prev["read"] <= read:
        hit, read = hit - prev["hit"], read - prev["read"]  # since the last run, not since the stats reset
    details = {**counters, "blocks_judged": hit + read}
    if hit + read < max(c.t.cache_min_blocks, 1):
        return Result("cache_hit", "ok", f"too little traffic to judge ({hit + read} blocks since the last run)",
                      None, "%", details, higher_is_worse=False)
    ratio = 100.0 * hit / (hit + read)
    if early := c.too_early():
        return Result("cache_hit", "ok", f"{early}: {ratio:.2f} % so far", None, "%", {**details, "too_early": True},
                      higher_is_worse=False)
    return Result("cache_hit", graded(ratio, c.t.cache_hit_warn_pct, c.t.cache_hit_breach_pct, higher_is_worse=False),
                  f"{ratio:.2f} % of {hit + read:,} block reads served from shared buffers", ratio, "%", details,
                  higher_is_worse=False)


def wraparound(c: Context) -> Result:
    databases = c.rows("SELECT datname, age(datfrozenxid)::bigint AS xid_age, mxid_age(datminmxid)::bigint AS "
                       "mxid_age FROM pg_database ORDER BY 2 DESC")
    oldest = c.rows("SELECT format('%I.%I', n.nspname, c.relname) AS table, age(c.relfrozenxid)::bigint AS xid_age "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm', 't') "
                    "ORDER BY 2 DESC LIMIT 5")
    worst = max(max(d["xid_age"], d["mxid_age"]) for d in databases)
    return Result("wraparound", graded(worst, c.t.xid_age_warn, c.t.xid_age_breach),
                  f"oldest unfrozen transaction ID age {worst:,} (warn {c.t.xid_age_warn:,}, critical "
                  f"{c.t.xid_age_breach:,}; wraparound at 2^31)", worst, "xids",
                  {"databases": databases, "oldest_tables": oldest})


def long_transactions(c: Context) -> Result:
    sessions = _redacted(c.rows(f"""
        SELECT pid, usename AS user, application_name AS application, state,
               round(extract(epoch FROM now() - xact_start))::int AS transaction_s,
               round(extract(epoch FROM now() - CASE WHEN state = 'active' THEN query_start ELSE state_change END))::int
                 AS state_s,
               {_REDACTED_QUERY.format(col="query")} AS query
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
          AND ((state LIKE 'idle in transaction%%' AND now() - state_change > make_interval(secs => %s))
            OR (state = 'active' AND now() - query_start > make_interval(secs => %s)))
        ORDER BY xact_start""", (c.t.idle_in_transaction_s, c.t.long_statement_s)))
    # Our own jobs (application_name coldcopy:…) run long on purpose (backups, VACUUM) under their own timeouts.
    offending = [s for s in sessions if not (s["application"] or "").startswith("coldcopy")]
    idle = [s for s in offending if s["state"] != "active"]
    running = [s for s in offending if s["state"] == "active"]
    worst = max((s["state_s"] for s in offending), default=0)
    parts = []
    if idle:
        parts.append(f"{len(idle)} session(s) idle in a transaction over {c.t.idle_in_transaction_s:g} s")
    if running:
        parts.append(f"{len(running)} statement(s) running over {c.t.long_statement_s:g} s")
    return Result("long_transactions", "breach" if offending else "ok",
                  "; ".join(parts) or "no long-idle transaction or long-running statement", worst, "s",
                  {"sessions": sessions}, worse_by_value=False)


def lock_waits(c: Context) -> Result:
    waiting = _redacted(c.rows(f"""
        SELECT a.pid, a.usename AS user, a.application_name AS application,
               round(extract(epoch FROM now() - w.waitstart))::int AS waiting_s, w.mode,
               w.locktype, w.relation::regclass::text AS relation, pg_blocking_pids(a.pid) AS blocked_by,
               {_REDACTED_QUERY.format(col="a.query")} AS query
        FROM pg_stat_activity a
        JOIN LATERAL (SELECT min(waitstart) AS waitstart, min(mode) AS mode, min(locktype) AS locktype,
                             min(relation::int)::oid AS relation
                      FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) w ON w.waitstart IS NOT NULL
        WHERE a.pid <> pg_backend_pid() ORDER BY w.waitstart"""))
    blockers = {pid for w in waiting for pid in w["blocked_by"]}
    holders = _redacted(c.rows(f"""
        SELECT pid, usename AS user, application_name AS application, state,
               round(extract(epoch FROM now() - xact_start))::int AS transaction_s,
               {_REDACTED_QUERY.format(col="query")} AS query
        FROM pg_stat_activity WHERE pid = ANY(%s)""", (list(blockers),))) if blockers else []
    worst = max((w["waiting_s"] for w in waiting), default=0)
    return Result("lock_waits", graded(worst, c.t.lock_wait_warn_s, c.t.lock_wait_breach_s) if waiting else "ok",
                  f"{len(waiting)} session(s) waiting on a lock, longest {worst} s, blocked by pid(s) "
                  f"{', '.join(map(str, sorted(blockers)))}" if waiting else "no session waiting on a lock",
                  worst, "s", {"waiting": waiting, "blockers": holders}, worse_by_value=False)


def replication_slots(c: Context) -> Result:
    """Every slot's retained WAL, and inactive slots (nothing drains them). The change archive's own slot
    (``coldcopy_pitr`` of this database) is judged by the ``change_archive`` check, against its own budget: it is
    inactive between two drains by design, so it is listed here but never counted (issue 41: a permanent warning
    "1 inactive, retaining 0.00 GB" while the archive was healthy)."""
    from coldcopy.change_slot import SLOT

    slots = c.rows("""
        SELECT slot_name, slot_type, active, database = current_database() AND slot_name = %s AS change_archive,
               CASE WHEN pg_is_in_recovery() THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END AS retained_bytes
        FROM pg_replication_slots ORDER BY slot_name""", (SLOT,))
    judged = [s for s in slots if not s["change_archive"]]
    worst = max((s["retained_bytes"] or 0 for s in judged), default=0)
    inactive = [s["slot_name"] for s in judged if not s["active"]]
    state = graded(worst / GB, c.t.slot_retained_warn_gb, c.t.slot_retained_breach_gb)
    if inactive and state == "ok":
        state = "warning"
    summary = (f"{len(judged)} slot(s)" + (f", {len(inactive)} inactive ({', '.join(inactive)})" if inactive else "")
               + f", retaining up to {worst / GB:.2f} GB of WAL" if judged else "no replication slots")
    if len(judged) < len(slots):
        summary += "; the change archive's own slot is judged by change_archive"
    return Result("replication_slots", state, summary, worst / GB, "GB", {"slots": slots})


def sequences(c: Context) -> Result:
    near = c.rows("""
        SELECT format('%I.%I', schemaname, sequencename) AS sequence, data_type::text, last_value, max_value,
               round(100.0 * last_value / max_value, 2)::float AS used_pct
        FROM pg_sequences WHERE last_value IS NOT NULL AND increment_by > 0
        ORDER BY last_value::numeric / max_value DESC LIMIT 10""")
    worst = near[0]["used_pct"] if near else 0.0
    return Result("sequences", graded(worst, c.t.sequence_warn_pct, c.t.sequence_breach_pct),
                  f"the most used sequence is at {worst:.2f} % of its maximum", worst, "%", {"top": near})


def stale_vacuum(c: Context) -> Result:
    stale = c.rows("""
        SELECT format('%%I.%%I', schemaname, relname) AS table, n_dead_tup AS dead_rows,
               n_mod_since_analyze AS modified_since_analyze,
               greatest(last_vacuum, last_autovacuum) AS last_vacuum,
               greatest(last_analyze, last_autoanalyze) AS last_analyze
        FROM pg_stat_user_tables
        WHERE schemaname <> 'coldcopy_ops'
          AND ((n_dead_tup > 0 AND coalesce(greatest(last_vacuum, last_autovacuum), '-infinity')
                  < now() - make_interval(days => %s))
            OR (n_mod_since_analyze > 0 AND coalesce(greatest(last_analyze, last_autoanalyze), '-infinity')
                  < now() - make_interval(days => %s)))
        ORDER BY n_dead_tup + n_mod_since_analyze DESC""",
        (int(c.t.stale_vacuum_days), int(c.t.stale_vacuum_days)))
    return Result("stale_vacuum", "warning" if stale else "ok",
                  f"{len(stale)} changed table(s) not vacuumed or analyzed for {c.t.stale_vacuum_days:g} days"
                  if stale else f"every changed table vacuumed and analyzed within {c.t.stale_vacuum_days:g} days",
                  len(stale), "tables", {"tables": stale[:25]})
