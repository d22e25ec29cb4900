"""Slow statements from pg_stat_statements (estimated p95)."""

from __future__ import annotations

import logging

import psycopg

from coldcopy.health.redaction import _REDACTED_QUERY, _redacted
from coldcopy.health.results import Context, Result

log = logging.getLogger(__name__)


# -- slow queries ---------------------------------------------------------------------------------------

ENABLE_PG_STAT_STATEMENTS = {  # the hint for the server at hand (Context.server_kind)
    "supabase": "pg_stat_statements is {what}: enable it under Database → Extensions (Supabase preloads it)",
    "local": "pg_stat_statements is {what}: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements', "
             "restart the server, then CREATE EXTENSION pg_stat_statements",
    "other": "pg_stat_statements is {what}: have it added to shared_preload_libraries (a managed database: the "
             "provider's parameter settings), restart, then CREATE EXTENSION pg_stat_statements",
}


def check_slow_queries(c: Context) -> list[Result]:
    if not c.one("SELECT count(*) AS n FROM pg_extension WHERE extname = 'pg_stat_statements'")["n"]:
        return [Result("slow_queries", "unknown", ENABLE_PG_STAT_STATEMENTS[c.server_kind()].format(
            what="not installed"), details={"installed": False})]
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
        return [Result("slow_queries", "unknown", ENABLE_PG_STAT_STATEMENTS[c.server_kind()].format(
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
