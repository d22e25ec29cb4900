"""Materialized-view refresh figures at about 1 million email_events (scale 32).

1. time of each view's refresh, CONCURRENTLY vs plain (median of 3, after a source change);
2. p50/p95 latency of typical dashboard queries on the views vs the same aggregates from base tables;
3. what skip-unchanged saves in a quiet hour (no writes): refreshes avoided and database time avoided.

    make bench            # or: .venv/bin/python bench/refresh.py [--scale 32] [--queries 200]

Runs on the server local_env picks (127.0.0.1:5432 here), in a fresh database it drops afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

import generate_data  # noqa: E402
import local_env  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402
from coldcopy.refresh import MaterializedViewRefresher, RefreshRun  # noqa: E402

VIEWS = {  # view → its cadence in hours (the DAG that refreshes it)
    "analytics.campaign_analytics": 1, "analytics.sequence_step_performance": 1,
    "analytics.email_deliverability": 2, "analytics.daily_workspace_activity": 2,
    "analytics.lead_engagement": 6, "analytics.lead_intent_summary": 6,
    "analytics.workspace_usage": 24,
}
# (name, query on the view, the same answer computed from the base tables); %(ws)s is a workspace id.
DASHBOARD_QUERIES = [
    ("campaign list with funnel",
     "SELECT campaign_id, name, sent, delivered, opened, replied, open_rate, reply_rate "
     "FROM analytics.campaign_analytics WHERE workspace_id = %(ws)s ORDER BY sent DESC",
     "SELECT c.id, c.name, count(*) FILTER (WHERE e.event_type = 'sent'), "
     "count(*) FILTER (WHERE e.event_type = 'delivered'), "
     "count(DISTINCT e.message_id) FILTER (WHERE e.event_type = 'opened'), "
     "count(*) FILTER (WHERE e.event_type = 'replied') "
     "FROM campaigns c LEFT JOIN email_events e ON e.campaign_id = c.id WHERE c.workspace_id = %(ws)s "
     "GROUP BY c.id, c.name ORDER BY 3 DESC"),
    ("workspace usage card",
     "SELECT * FROM analytics.workspace_usage WHERE workspace_id = %(ws)s",
     "SELECT (SELECT count(*) FROM leads WHERE workspace_id = %(ws)s), "
     "(SELECT count(*) FROM email_events WHERE workspace_id = %(ws)s AND event_type = 'sent' "
     "   AND occurred_at >= now() - interval '30 days')"),
    ("deliverability, last 30 days",
     "SELECT day, sum(sent), sum(bounced), sum(complaints) FROM analytics.email_deliverability "
     "WHERE workspace_id = %(ws)s AND day >= current_date - 30 GROUP BY day ORDER BY day",
     "SELECT (occurred_at AT TIME ZONE 'UTC')::date, count(*) FILTER (WHERE event_type = 'sent'), "
     "count(*) FILTER (WHERE event_type = 'bounced'), count(*) FILTER (WHERE event_type = 'complained') "
     "FROM email_events WHERE workspace_id = %(ws)s AND occurred_at >= current_date - 30 GROUP BY 1 ORDER BY 1"),
    ("top 50 engaged leads",
     "SELECT lead_id, engagement_score FROM analytics.lead_engagement WHERE workspace_id = %(ws)s "
     "ORDER BY engagement_score DESC LIMIT 50",
     "SELECT lead_id, least(100, count(*) FILTER (WHERE event_type = 'opened') "
     "+ 3 * count(*) FILTER (WHERE event_type = 'clicked') + 10 * count(*) FILTER (WHERE event_type = 'replied')) "
     "FROM email_events WHERE workspace_id = %(ws)s AND lead_id IS NOT NULL GROUP BY lead_id ORDER BY 2 DESC LIMIT 50"),
]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timed(conn, statement, params=None) -> float:
    started = time.perf_counter()
    conn.execute(statement, params)
    return time.perf_counter() - started


def refresh_times(conn) -> dict:
    results = {}
    for view in VIEWS:
        name = sql.SQL(view)
        plain, concurrent = [], []
        for _ in range(3):
            conn.execute("UPDATE campaigns SET name = name WHERE id = (SELECT id FROM campaigns LIMIT 1)")
            plain.append(timed(conn, sql.SQL("REFRESH MATERIALIZED VIEW {}").format(name)))
            concurrent.append(timed(conn, sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(name)))
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
        results[view] = {"rows": rows, "plain_ms": ms(statistics.median(plain)),
                         "concurrent_ms": ms(statistics.median(concurrent))}
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def query_latencies(conn, queries: int) -> dict:
    workspaces = [w for (w,) in conn.execute("SELECT id FROM workspaces ORDER BY id").fetchall()]
    rng = random.Random(7)
    results = {}
    for name, on_view, on_base in DASHBOARD_QUERIES:
        for source, statement in (("view", on_view), ("base tables", on_base)):
            for ws in workspaces[:3]:  # warm the cache: dashboards read hot data
                conn.execute(statement, {"ws": ws})
            times = [timed(conn, statement, {"ws": rng.choice(workspaces)}) for _ in range(queries)]
            results.setdefault(name, {})[source] = {"p50_ms": ms(percentile(times, 50)),
                                                    "p95_ms": ms(percentile(times, 95))}
    return results


def quiet_hour(conn) -> dict:
    """One more decision per view with nothing written since the last refresh, vs refreshing anyway."""
    for view in VIEWS:
        MaterializedViewRefresher(conn, view, force=True).run(RefreshRun(run_id="bench-baseline"))
    per_view = {}
    for view in VIEWS:
        outcome = MaterializedViewRefresher(conn, view).run(RefreshRun(run_id="bench-quiet-hour"))
        forced = MaterializedViewRefresher(conn, view, force=True).run(RefreshRun(run_id="bench-forced"))
        per_view[view] = {"decision": outcome.action, "decision_ms": outcome.duration_ms,
                          "refresh_ms": forced.duration_ms}
    hourly = [v for v, h in VIEWS.items() if h == 1]
    due_per_day = {v: 24 // h for v, h in VIEWS.items()}
    avoided_per_day = sum(n for v, n in due_per_day.items() if per_view[v]["decision"] == "skipped")
    return {
        "per_view": per_view,
        "quiet_hour": {
            "refreshes_due": len(hourly),
            "refreshes_avoided": sum(per_view[v]["decision"] == "skipped" for v in hourly),
            "db_ms_avoided": sum(per_view[v]["refresh_ms"] - per_view[v]["decision_ms"] for v in hourly
                                 if per_view[v]["decision"] == "skipped"),
        },
        "quiet_day": {"refreshes_due": sum(due_per_day.values()), "refreshes_avoided": avoided_per_day},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    server = local_env.admin_dsn()
    name = f"cc_bench_refresh_{uuid.uuid4().hex[:8]}"
    dsn = local_env.create_database(server, name)
    try:
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
        started = time.perf_counter()
        counts = generate_data.generate(dsn, scale=args.scale)
        generation_s = round(time.perf_counter() - started, 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            for view in VIEWS:  # first fill
                MaterializedViewRefresher(conn, view).run(RefreshRun(run_id="bench-fill"))
            summary = {
                "postgresql": version, "scale": args.scale, "rows": counts, "generation_s": generation_s,
                "refresh": refresh_times(conn),
                "dashboard_queries": query_latencies(conn, args.queries),
                "skip_unchanged": quiet_hour(conn),
            }
    finally:
        local_env.drop_database(server, name)
    (ROOT / "bench" / "results" / "refresh.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"PostgreSQL {version}, scale {args.scale}: {counts['email_events']:,} email_events "
          f"(generated in {generation_s} s)")
    print("refresh time (median of 3):")
    for view, r in summary["refresh"].items():
        print(f"  {view:38} {r['rows']:>8} rows  concurrent {r['concurrent_ms']:>9} ms  plain {r['plain_ms']:>9} ms")
    print(f"dashboard queries ({args.queries} each, random workspace):")
    for query, sources in summary["dashboard_queries"].items():
        figures = [f"{source}: p50 {v['p50_ms']} ms p95 {v['p95_ms']} ms" for source, v in sources.items()]
        print(f"  {query:30} " + "   ".join(figures))
    quiet = summary["skip_unchanged"]
    print(f"quiet hour: {quiet['quiet_hour']['refreshes_avoided']}/{quiet['quiet_hour']['refreshes_due']} hourly "
          f"refreshes skipped, {quiet['quiet_hour']['db_ms_avoided']} ms of refresh work avoided; quiet day: "
          f"{quiet['quiet_day']['refreshes_avoided']}/{quiet['quiet_day']['refreshes_due']} refreshes avoided")


if __name__ == "__main__":
    main()
