"""The runbook's monitoring queries and scaling triggers as checks with history and alerts (``db_health``).

Each check group (one task of the DAG) returns :class:`Result` rows: a state (``ok``, ``warning``,
``breach``, ``unknown``), a key figure charted on the health page, a one-line summary and the details on-call
needs. :func:`record` writes them to ``coldcopy_ops.health_snapshot`` and alerts through
:mod:`coldcopy.alerts` only on a change worth a message (:func:`alert_for`).

Thresholds (:class:`Thresholds`) have documented defaults; the Airflow Variable ``coldcopy_health_thresholds``
(JSON) and the DAG param ``thresholds`` override them, read when the task runs.

Nothing here stores a statement's literals: query texts are shown with their string literals replaced by
``?``, as pg_stat_statements shows them, so no e-mail address lands in 90 days of history.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from coldcopy import alerts
from coldcopy.refresh_jobs import REFRESH_JOBS

log = logging.getLogger(__name__)

THRESHOLDS_VARIABLE = "coldcopy_health_thresholds"
RANK = {"ok": 0, "warning": 1, "breach": 2}
GB = 1024**3
# A statement as the server shows it, read raw (bounded) and then redacted by :func:`redact` before anything
# keeps it: its string literals may hold personal data.
_REDACTED_QUERY = "left({col}, 4000)"
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def redact(text: str | None, limit: int = 160) -> str | None:
    """``text`` with every string literal replaced by ``?``: standard ``'…'`` (``''`` inside), escape strings
    ``E'…\\'…'``, dollar quotes ``$$…$$`` / ``$tag$…$tag$``, and a literal cut off by
    ``track_activity_query_size`` (everything from its opening quote). Quoted identifiers are kept."""
    if text is None:
        return None
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        word_before = i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")
        if ch == '"':  # a quoted identifier: kept as it is
            end = text.find('"', i + 1)
            end = n if end == -1 else end + 1
            out.append(text[i:end])
            i = end
            continue
        escape = ch in "eE" and i + 1 < n and text[i + 1] == "'" and not word_before
        if ch == "'" or escape:
            j = i + 2 if escape else i + 1
            while j < n:
                if escape and text[j] == "\\":
                    j += 2
                elif text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    j += 2
                elif text[j] == "'":
                    break
                else:
                    j += 1
            out.append("?")
            i = j + 1
            continue
        tag = _DOLLAR_TAG.match(text, i) if ch == "$" and not word_before else None
        if tag:
            end = text.find(tag.group(0), tag.end())
            out.append("?")
            i = n if end == -1 else end + len(tag.group(0))
            continue
        out.append(ch)
        i += 1
    return "".join(out)[:limit]


def _redacted(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["query"] = redact(row.get("query"))
    return rows


@dataclass(frozen=True)
class Thresholds:
    """Defaults of every check (the runbook's "When to Scale" triggers and check_postgres' defaults)."""

    storage_allocated_gb: float = 100.0  # the plan's disk (runbook: 100 GB)
    storage_warn_pct: float = 70.0
    storage_breach_pct: float = 80.0
    slow_p95_ms: float = 200.0  # estimated p95 (mean + 2·stddev) of a statement with real traffic
    slow_min_calls: int = 100
    unused_index_min_bytes: int = 1024**2
    connections_warn_pct: float = 70.0
    connections_breach_pct: float = 80.0
    cache_hit_warn_pct: float = 99.0
    cache_hit_breach_pct: float = 95.0
    cache_min_blocks: int = 10_000  # fewer block reads than this since the last run: too little traffic to judge
    xid_age_warn: int = 1_300_000_000
    xid_age_breach: int = 1_400_000_000
    idle_in_transaction_s: float = 60.0
    long_statement_s: float = 300.0
    lock_wait_warn_s: float = 5.0
    lock_wait_breach_s: float = 30.0
    slot_retained_warn_gb: float = 1.0
    slot_retained_breach_gb: float = 10.0
    sequence_warn_pct: float = 75.0
    sequence_breach_pct: float = 90.0
    stale_vacuum_days: float = 2.0
    cpu_cores: int = 2  # of the database server (not visible from SQL on a managed database)
    active_per_core_breach_pct: float = 70.0
    active_sustained_runs: int = 3  # consecutive runs over the line before it is a breach (30 min)
    view_late_factor: float = 2.0  # breach when a view is older than this many cadences (+ its deadline)
    partition_months_warn: int = 3
    partition_months_breach: int = 2
    backup_max_age_h: float = 26.0
    maintenance_warn_age_h: float = 26.0
    maintenance_breach_age_h: float = 74.0
    reminder_hours: float = 6.0
    worse_margin: float = 0.25  # a value 25 % further past its threshold than last alerted is "worse"
    history_days: int = 90

    @classmethod
    def from_overrides(cls, *overrides: dict | None) -> Thresholds:
        """Defaults updated by each mapping in turn; an unknown name or a non-number is an error."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict = {}
        for override in overrides:
            for name, value in (override or {}).items():
                if name not in known:
                    raise ValueError(f"unknown health threshold {name!r}; known: {', '.join(sorted(known))}")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"health threshold {name} must be a number, got {value!r}")
                values[name] = int(value) if known[name] == "int" else float(value)
        return cls(**values)


@dataclass
class Result:
    check: str
    state: str
    summary: str
    value: float | None = None
    unit: str = ""
    details: dict = field(default_factory=dict)
    higher_is_worse: bool = True
    worse_by_value: bool = True  # False for ages: they grow by themselves, reminders cover them
    failed: bool = False  # the check itself errored: reported as unknown, and the task fails


def graded(value: float, warn: float, breach: float, *, higher_is_worse: bool = True) -> str:
    if higher_is_worse:
        return "breach" if value >= breach else "warning" if value >= warn else "ok"
    return "breach" if value < breach else "warning" if value < warn else "ok"


@dataclass
class Context:
    conn: psycopg.Connection  # autocommit, dict rows
    t: Thresholds
    pgbouncer_dsn: str | None = None

    def rows(self, query, params=None) -> list[dict]:
        return self.conn.execute(query, params).fetchall()

    def one(self, query, params=None) -> dict:
        return self.conn.execute(query, params).fetchone()

    def previous(self, check: str, before: timedelta = timedelta(0)) -> dict | None:
        """The latest snapshot of ``check`` at least ``before`` old."""
        return self.conn.execute(
            "SELECT taken_at, state, value, details FROM coldcopy_ops.health_snapshot WHERE check_name = %s "
            "AND taken_at <= now() - %s ORDER BY taken_at DESC LIMIT 1", (check, before)).fetchone()

    def recent_values(self, check: str, runs: int) -> list[float | None]:
        rows = self.conn.execute(
            "SELECT value FROM coldcopy_ops.health_snapshot WHERE check_name = %s ORDER BY taken_at DESC LIMIT %s",
            (check, runs)).fetchall()
        return [r["value"] for r in rows]

    def has_table(self, name: str) -> bool:
        return self.one("SELECT to_regclass(%s) IS NOT NULL AS found", (name,))["found"]


# -- sizes ----------------------------------------------------------------------------------------------

def check_sizes(c: Context) -> list[Result]:
    db_bytes = c.one("SELECT pg_database_size(current_database()) AS b")["b"]
    tables = c.rows("""
        SELECT format('%I.%I', n.nspname, r.relname) AS name, sum(pg_table_size(p.oid))::bigint AS table_bytes,
               sum(pg_indexes_size(p.oid))::bigint AS index_bytes,
               sum(CASE WHEN p.reltoastrelid <> 0 THEN pg_total_relation_size(p.reltoastrelid) ELSE 0 END)::bigint
                 AS toast_bytes,
               sum(pg_total_relation_size(p.oid))::bigint AS total_bytes
        FROM pg_class p
        JOIN pg_class r ON r.oid = coalesce(pg_partition_root(p.oid), p.oid)
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE p.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        GROUP BY 1 ORDER BY total_bytes DESC LIMIT 25""")
    allocated = c.t.storage_allocated_gb * GB
    pct = 100.0 * db_bytes / allocated
    day_ago = c.previous("storage", timedelta(hours=23))
    growth = None
    if day_ago and day_ago["details"].get("db_bytes") is not None:
        days = (c.one("SELECT now() AS t")["t"] - day_ago["taken_at"]).total_seconds() / 86400
        growth = (db_bytes - day_ago["details"]["db_bytes"]) / days
        then = {t["name"]: t["total_bytes"] for t in day_ago["details"].get("tables", [])}
        for table in tables:
            if table["name"] in then:
                table["growth_bytes_per_day"] = int((table["total_bytes"] - then[table["name"]]) / days)
    state = graded(pct, c.t.storage_warn_pct, c.t.storage_breach_pct)
    summary = f"{db_bytes / GB:.2f} GB of {c.t.storage_allocated_gb:g} GB allocated ({pct:.1f} %)"
    if growth is not None:
        summary += f", growing {growth / GB:+.2f} GB/day"
    return [Result("storage", state, summary, pct, "%", {
        "db_bytes": db_bytes, "allocated_bytes": int(allocated), "growth_bytes_per_day": growth, "tables": tables})]


# -- slow queries ---------------------------------------------------------------------------------------

ENABLE_PG_STAT_STATEMENTS = (
    "pg_stat_statements is {what}: on Supabase enable it under Database → Extensions; elsewhere add it to "
    "shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements")


def check_slow_queries(c: Context) -> list[Result]:
    if not c.one("SELECT count(*) AS n FROM pg_extension WHERE extname = 'pg_stat_statements'")["n"]:
        return [Result("slow_queries", "unknown", ENABLE_PG_STAT_STATEMENTS.format(what="not installed"),
                       details={"installed": False})]
    schema = c.one("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                   "WHERE e.extname = 'pg_stat_statements'")["nspname"]
    # PG13+ names (total_exec_time …); PG17 renamed blk_read_time/blk_write_time to shared_blk_*.
    io = ("shared_blk_read_time + shared_blk_write_time" if c.conn.info.server_version >= 170000
          else "blk_read_time + blk_write_time")
    query = psycopg.sql.SQL("""
        SELECT queryid::text, {redacted} AS query, calls, round(total_exec_time::numeric, 1)::float AS total_ms,
               round(mean_exec_time::numeric, 2)::float AS mean_ms,
               round((mean_exec_time + 2 * stddev_exec_time)::numeric, 2)::float AS p95_estimate_ms,
               rows, round(({io})::numeric, 1)::float AS io_ms
        FROM {view} s
        WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())""").format(
        redacted=psycopg.sql.SQL(_REDACTED_QUERY.format(col="s.query")), io=psycopg.sql.SQL(io),
        view=psycopg.sql.Identifier(schema, "pg_stat_statements"))
    try:
        with c.conn.transaction():
            by_total = _redacted(c.rows(query + psycopg.sql.SQL(" ORDER BY total_exec_time DESC LIMIT 10")))
            by_mean = _redacted(c.rows(query + psycopg.sql.SQL(
                " AND calls >= %s ORDER BY mean_exec_time DESC LIMIT 10"), (c.t.slow_min_calls,)))
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return [Result("slow_queries", "unknown", ENABLE_PG_STAT_STATEMENTS.format(
            what="installed but not loaded (shared_preload_libraries)"), details={"installed": False})]
    worst = max((q["p95_estimate_ms"] for q in by_mean), default=0.0)
    slow = [q for q in by_mean if q["p95_estimate_ms"] > c.t.slow_p95_ms]
    state = "breach" if slow else "ok"
    summary = (f"{len(slow)} statement(s) with ≥ {c.t.slow_min_calls} calls have an estimated p95 over "
               f"{c.t.slow_p95_ms:g} ms (worst {worst:.0f} ms)" if slow else
               f"worst estimated p95 {worst:.1f} ms among statements with ≥ {c.t.slow_min_calls} calls")
    return [Result("slow_queries", state, summary, worst, "ms", {
        "installed": True, "by_total_time": by_total, "by_mean_time": by_mean,
        "p95_note": "p95 is estimated as mean + 2·stddev (pg_stat_statements keeps no percentiles)"})]


# -- indexes --------------------------------------------------------------------------------------------

def check_indexes(c: Context) -> list[Result]:
    since = c.one("SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()")["stats_reset"]
    # A partitioned index counts the scans of all its partitions' indexes.
    unused = c.rows("""
        SELECT format('%%I.%%I', n.nspname, ri.relname) AS index, format('%%I.%%I', n.nspname, rt.relname) AS table,
               sum(s.idx_scan)::bigint AS scans, sum(pg_relation_size(s.indexrelid))::bigint AS bytes
        FROM pg_stat_user_indexes s
        JOIN pg_class ri ON ri.oid = coalesce(pg_partition_root(s.indexrelid), s.indexrelid)
        JOIN pg_index i ON i.indexrelid = ri.oid
        JOIN pg_class rt ON rt.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ri.relnamespace
        WHERE NOT i.indisunique AND NOT i.indisprimary AND n.nspname <> 'coldcopy_ops'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ri.oid)
        GROUP BY 1, 2 HAVING sum(s.idx_scan) = 0 AND sum(pg_relation_size(s.indexrelid)) >= %s
        ORDER BY bytes DESC""", (c.t.unused_index_min_bytes,))
    duplicates = c.rows("""
        SELECT format('%I.%I', n.nspname, t.relname) AS table,
               array_agg(format('%I.%I', n.nspname, x.relname) ORDER BY x.relname) AS indexes,
               sum(pg_relation_size(x.oid))::bigint AS bytes
        FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = x.relnamespace
        WHERE NOT x.relispartition AND n.nspname NOT IN ('pg_catalog', 'pg_toast', 'information_schema')
        GROUP BY n.nspname, t.relname, i.indrelid, x.relam, i.indkey::text, i.indclass::text, i.indcollation::text,
                 coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), '')
        HAVING count(*) > 1 ORDER BY bytes DESC""")
    unused_bytes = sum(u["bytes"] for u in unused)
    return [
        Result("unused_indexes", "warning" if unused else "ok",
               f"{len(unused)} non-unique index(es) never scanned since {since or 'the stats reset'}, "
               f"{unused_bytes / 1024**2:.1f} MB" if unused else "every index above the size floor is used",
               len(unused), "indexes", {"stats_since": since, "indexes": unused}),
        Result("duplicate_indexes", "warning" if duplicates else "ok",
               f"{len(duplicates)} set(s) of duplicate indexes (same table, columns, opclass, predicate)"
               if duplicates else "no duplicate indexes", len(duplicates), "sets", {"duplicates": duplicates}),
    ]


# -- connections ----------------------------------------------------------------------------------------

def check_connections(c: Context) -> list[Result]:
    row = c.one("""
        SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
               current_setting('max_connections')::int AS max,
               current_setting('superuser_reserved_connections')::int AS reserved
        FROM pg_stat_activity""")
    by_app = c.rows("""
        SELECT coalesce(nullif(application_name, ''), '(none)') AS application, usename AS user,
               count(*) FILTER (WHERE state = 'active') AS active,
               count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction, count(*) AS total
        FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2 ORDER BY total DESC LIMIT 20""")
    usable = row["max"] - row["reserved"]
    pct = 100.0 * row["used"] / usable
    results = [Result("connections", graded(pct, c.t.connections_warn_pct, c.t.connections_breach_pct),
                      f"{row['used']} of {usable} usable connections ({pct:.0f} %)", pct, "%",
                      {**row, "by_application": by_app})]
    if c.pgbouncer_dsn:
        results.append(pgbouncer_pools(c.pgbouncer_dsn))
    return results


def pgbouncer_pools(dsn: str) -> Result:
    """PgBouncer's ``SHOW POOLS`` (admin console, simple query protocol): clients waiting = pool exhausted."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as console:
        pools = [{k: (v if isinstance(v, int | str | None) else str(v)) for k, v in p.items()}
                 for p in console.execute("SHOW POOLS").fetchall()]
    waiting = sum(int(p.get("cl_waiting") or 0) for p in pools)
    worst_wait = max((int(p.get("maxwait") or 0) for p in pools), default=0)
    return Result("pgbouncer_pools", "breach" if waiting else "ok",
                  f"{waiting} client(s) waiting for a server connection (longest {worst_wait} s): pool exhausted"
                  if waiting else "no client waiting for a server connection", waiting, "clients", {"pools": pools})


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
    if hit + read < c.t.cache_min_blocks:
        return Result("cache_hit", "ok", f"too little traffic to judge ({hit + read} blocks since the last run)",
                      None, "%", details, higher_is_worse=False)
    ratio = 100.0 * hit / (hit + read)
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
    slots = c.rows("""
        SELECT slot_name, slot_type, active,
               CASE WHEN pg_is_in_recovery() THEN NULL
                    ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END AS retained_bytes
        FROM pg_replication_slots""")
    worst = max((s["retained_bytes"] or 0 for s in slots), default=0)
    inactive = [s["slot_name"] for s in slots if not s["active"]]
    state = graded(worst / GB, c.t.slot_retained_warn_gb, c.t.slot_retained_breach_gb)
    if inactive and state == "ok":
        state = "warning"
    summary = (f"{len(slots)} slot(s), {len(inactive)} inactive, retaining up to {worst / GB:.2f} GB of WAL"
               if slots else "no replication slots")
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


# -- cpu ------------------------------------------------------------------------------------------------

CPU_NOTE = ("A managed database does not expose CPU to SQL: this is active backends per core, a proxy. The real "
            "CPU figure (runbook: > 70 % sustained) comes from the provider's metrics (Supabase: Reports → "
            "Database; or its Prometheus endpoint).")


def check_cpu(c: Context) -> list[Result]:
    active = c.one("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' "
                   "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")["n"]
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
    return [view_freshness(c), partition_horizon(c), backup_age(c), maintenance_age(c)]


def view_freshness(c: Context) -> Result:
    logged = c.has_table("coldcopy_ops.mv_refresh_log")
    views, worst = [], 0.0
    for dag_id, job in REFRESH_JOBS.items():
        for view in job.views:
            row = c.one("SELECT (SELECT ispopulated FROM pg_matviews WHERE format('%%I.%%I', schemaname, "
                        "matviewname) = %s) AS populated, NULL::timestamptz AS fresh_at, now() AS now", (view,))
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
                          "state": state, "populated": row["populated"], "fresh_at": row["fresh_at"]})
            worst = max(worst, cadences if cadences is not None else float("inf"))
    state = max((v["state"] for v in views), key=RANK.get)
    late = [v["view"] for v in views if v["state"] != "ok"]
    summary = (f"{len(late)} view(s) older than their cadence allows: {', '.join(late)}" if late
               else f"all {len(views)} views within their cadence")
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


CHECKS: dict[str, Callable[[Context], list[Result]]] = {
    "sizes": check_sizes,
    "slow_queries": check_slow_queries,
    "indexes": check_indexes,
    "connections": check_connections,
    "engine": check_engine,
    "cpu": check_cpu,
    "ops_freshness": check_ops_freshness,
}


def run_group(c: Context, group: str) -> list[Result]:
    """Run one group; a check that errors becomes an ``unknown`` result marked failed (never "healthy")."""
    try:
        return CHECKS[group](c)
    except psycopg.Error as error:
        if not c.conn.closed and c.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            c.conn.rollback()
        return [Result(group, "unknown", f"check failed: {alerts.reason_of(error)}", failed=True)]


# -- history and alerts ---------------------------------------------------------------------------------

def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def alert_for(result: Result, previous: dict | None, now: datetime, t: Thresholds) -> str | None:
    """Why to alert about ``result`` given what was last alerted (``health_alert_state`` row), or None.

    ``entered`` a warning or breach; ``worse`` (higher state, or the value moved ``worse_margin`` further than
    last alerted); ``reminder`` of a breach every ``reminder_hours``; ``resolved`` once back to ok.
    """
    if result.state == "unknown":
        return None  # the check did not measure: nothing to announce or clear (a failed check fails its task)
    before = previous["alerted_state"] if previous and previous["alerted_state"] else "ok"
    if result.state == "ok":
        return "resolved" if before != "ok" else None
    if RANK[result.state] > RANK[before]:
        return "entered" if before == "ok" else "worse"
    last_value = previous["alerted_value"]
    if result.worse_by_value and result.value is not None and last_value is not None:
        moved = result.value - last_value if result.higher_is_worse else last_value - result.value
        if moved > abs(last_value) * t.worse_margin and moved > 0:
            return "worse"
    if result.state == "breach" and now - previous["alerted_at"] >= timedelta(hours=t.reminder_hours):
        return "reminder"
    return None


def _message(result: Result, reason: str, run_id: str | None) -> alerts.Alert:
    kind = "resolved" if reason == "resolved" else "threshold_breached"
    lead = {"entered": result.state, "worse": f"{result.state}, worse", "reminder": f"still {result.state}",
            "resolved": "resolved"}[reason]
    return alerts.Alert(kind=kind, summary=f"{result.check} {lead}: {result.summary}", dag_id="db_health",
                        run_id=run_id, details={"check": result.check, "state": result.state, "value": result.value,
                                 "unit": result.unit, "reason": reason})


def record(conn: psycopg.Connection, results: list[Result], t: Thresholds, run_id: str | None = None) -> list[str]:
    """Write each result to the history and send the alerts it calls for; returns the alerts' texts."""
    sent = []
    for result in results:
        with conn.transaction():
            now = conn.execute("SELECT now() AS now").fetchone()["now"]
            conn.execute(
                "WITH s AS (INSERT INTO coldcopy_ops.health_snapshot "
                "(check_name, state, value, unit, summary, details, run_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING check_name, id) "
                "INSERT INTO coldcopy_ops.health_latest SELECT check_name, id FROM s "
                "ON CONFLICT (check_name) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id",
                (result.check, result.state, result.value, result.unit, result.summary,
                 psycopg.types.json.Jsonb(_jsonable(result.details)), run_id))
            if result.state == "unknown":
                continue
            previous = conn.execute("SELECT * FROM coldcopy_ops.health_alert_state WHERE check_name = %s FOR UPDATE",
                                    (result.check,)).fetchone()
            reason = alert_for(result, previous, now, t)
            if reason:
                alert = _message(result, reason, run_id)
                alerts.send(alert)  # before the state is saved: a crash here repeats the alert, never loses it
                sent.append(alert.text)
            changed = previous is None or previous["state"] != result.state
            conn.execute("""
                INSERT INTO coldcopy_ops.health_alert_state AS s (check_name, state, since, alerted_at, alerted_state,
                                                                  alerted_value)
                VALUES (%(check)s, %(state)s, %(now)s, %(alerted_at)s, %(alerted_state)s, %(value)s)
                ON CONFLICT (check_name) DO UPDATE SET
                  state = EXCLUDED.state, since = CASE WHEN %(changed)s THEN EXCLUDED.since ELSE s.since END,
                  alerted_at = coalesce(EXCLUDED.alerted_at, s.alerted_at),
                  alerted_state = CASE WHEN %(alerted)s THEN EXCLUDED.alerted_state ELSE s.alerted_state END,
                  alerted_value = CASE WHEN %(alerted)s THEN EXCLUDED.alerted_value ELSE s.alerted_value END""",
                {"check": result.check, "state": result.state, "now": now, "changed": changed,
                 "alerted": bool(reason), "alerted_at": now if reason else None,
                 "alerted_state": result.state if reason else None, "value": result.value})
    return sent


def prune(conn: psycopg.Connection, days: int, batch: int = 5000) -> int:
    """Delete snapshots older than ``days`` in batches (each its own transaction); returns how many."""
    total = 0
    while deleted := conn.execute(
            "DELETE FROM coldcopy_ops.health_snapshot WHERE id IN (SELECT id FROM coldcopy_ops.health_snapshot "
            "WHERE taken_at < now() - make_interval(days => %s) LIMIT %s)", (days, batch)).rowcount:
        total += deleted
    return total


def as_dict(result: Result) -> dict:
    return _jsonable(asdict(result))
