"""Materialized-view refresh figures at about 1 million email_events (scale 32).

The five views that are incremental summaries since migration 305 are measured as materialized views of their
definitions (``bench_full.*``, :func:`bench.incremental.create_baseline`): what their full refresh costs;
``bench/incremental.py`` sets that against their incremental apply.

1. each view refreshed CONCURRENTLY and plain in its real case: before every refresh, new events for 5 % of
   the campaigns (so the view's rows change), the two kinds alternating which goes first, ``--runs`` each;
   min–median–max, and the longest a dashboard reader of that view waited during each kind;
2. p50/p95 latency of typical dashboard queries on the views vs the same aggregates from base tables;
3. what skip-unchanged saves in a quiet hour (no writes): refreshes avoided and database time avoided;
4. how it grows: every view refreshed CONCURRENTLY after the same change at each of ``--scales``, with the
   peak RSS of the refreshing backend (it includes the shared buffers that backend touched).

    make bench            # or: .venv/bin/python -m bench.refresh [--scale 32 --scales 8,32,96 --runs 3]
    .venv/bin/python -m bench.refresh --table        # its tables in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import random
import threading
import time

import psycopg
from psycopg import sql

from bench import common
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.refresh.runs import RefreshRun
from coldcopy.refresh.views import MaterializedViewRefresher
from coldcopy.testing import local_env

CADENCES = {  # view → its cadence in hours (the DAG that refreshes it)
    "analytics.campaign_analytics": 1, "analytics.sequence_step_performance": 1,
    "analytics.email_deliverability": 2, "analytics.daily_workspace_activity": 2,
    "analytics.lead_engagement": 6, "analytics.lead_intent_summary": 6,
    "analytics.workspace_usage": 24,
}
# What is refreshed as a materialized view: the summaries' definitions as bench_full.* (see the docstring).
VIEWS = {(f"bench_full.{v.split('.')[1]}" if v in SUMMARIES else v): h for v, h in CADENCES.items()}


def fill(conn) -> None:
    """The summaries built, their definitions' materialized views created and every view filled."""
    from bench.incremental import apply_all, create_baseline

    apply_all(conn)
    create_baseline(conn)
    for view in VIEWS:
        MaterializedViewRefresher(conn, view).run(RefreshRun(run_id="bench-fill"))
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


NEW_EVENTS = """
INSERT INTO email_events (workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, occurred_at)
SELECT workspace_id, id, campaign_id, lead_id, email_account_id, 'opened', now()
FROM (SELECT m.*, row_number() OVER (PARTITION BY m.campaign_id ORDER BY m.id) AS nth FROM email_messages m
      WHERE m.campaign_id IN (SELECT id FROM campaigns ORDER BY random() LIMIT (SELECT count(*) / 20 FROM campaigns))
     ) picked
WHERE nth <= 20
"""


def refresh_with_reader(dsn: str, conn, view: str, concurrently: bool) -> tuple[float, float]:
    """One refresh after new events for 5 % of the campaigns, while a reader queries the view in a loop;
    returns (refresh seconds, the reader's longest query in seconds)."""
    conn.execute(NEW_EVENTS)
    stop, longest = threading.Event(), [0.0]

    def reader() -> None:
        with psycopg.connect(dsn, autocommit=True) as reading:
            query = sql.SQL("SELECT * FROM {} LIMIT 20").format(sql.SQL(view))
            while not stop.is_set():
                began = time.perf_counter()
                reading.execute(query).fetchall()
                longest[0] = max(longest[0], time.perf_counter() - began)
                time.sleep(0.002)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.05)
    try:
        kind = "REFRESH MATERIALIZED VIEW CONCURRENTLY {}" if concurrently else "REFRESH MATERIALIZED VIEW {}"
        seconds = timed(conn, sql.SQL(kind).format(sql.SQL(view)))
        time.sleep(0.02)
    finally:
        stop.set()
        thread.join()
    return seconds, longest[0]


def refresh_times(dsn: str, conn, runs: int) -> dict:
    results = {}
    for view in VIEWS:
        measured = common.alternating(runs, {
            "concurrent": lambda v=view: refresh_with_reader(dsn, conn, v, True),
            "plain": lambda v=view: refresh_with_reader(dsn, conn, v, False)})
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(view))).fetchone()[0]
        results[view] = {"rows": rows, **{
            kind: {"refresh_ms": common.spread([ms(s) for s, _ in pairs], 1),
                   "reader_longest_wait_ms": common.spread([ms(w) for _, w in pairs], 1)}
            for kind, pairs in measured.items()}}
    return results


def all_views_concurrently(conn, runs: int) -> dict:
    """Every view refreshed CONCURRENTLY after new events, ``runs`` times: seconds per round, the slowest view
    and the refreshing backend's peak RSS."""
    rounds, slowest = [], {}
    with common.PeakRss(conn.info.backend_pid) as backend:
        for _ in range(runs):
            total = 0.0
            for view in VIEWS:
                conn.execute(NEW_EVENTS)
                seconds = timed(conn, sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.SQL(view)))
                slowest[view] = max(slowest.get(view, 0.0), seconds)
                total += seconds
            rounds.append(total)
    view = max(slowest, key=slowest.get)
    return {"all_views_s": common.spread(rounds), "slowest_view": view, "slowest_view_s": round(slowest[view], 2),
            "backend_peak_rss_mb": backend.mb}


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
    parser.add_argument("--scales", default="8,32,96")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("refresh")))
        return
    server = local_env.admin_dsn()
    with common.bench_database(server, args.scale, "refresh") as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        fill(conn)
        results = {"refresh": refresh_times(dsn, conn, args.runs),
                   "dashboard_queries": query_latencies(conn, args.queries),
                   "skip_unchanged": quiet_hour(conn)}
    scales = [int(s) for s in args.scales.split(",")]
    growth = {}
    for scale in scales:
        with (common.bench_database(server, scale, "refresh_grow") as dsn,
              psycopg.connect(dsn, autocommit=True) as conn):
            fill(conn)
            info = common.template_info(server, scale)
            growth[scale] = {"email_events": info["counts"]["email_events"], "generate_s": info["generate_s"],
                             **all_views_concurrently(conn, args.runs)}
    common.write_results(
        "refresh", {"scale": args.scale, "scales": scales, "runs": args.runs, "queries": args.queries,
                    "order": "alternating",
                    "change_before_each_refresh": "20 'opened' events for each of 5 % of the campaigns"},
        {"rows": common.template_info(server, args.scale)["counts"], **results, "growth": growth}, server)


def table(results: dict) -> str:
    s, quiet = results["settings"], results["skip_unchanged"]
    skips = [v["decision_ms"] for v in quiet["per_view"].values() if v["decision"] == "skipped"]
    return "\n".join([
        f"Scale {s['scale']} ({results['rows']['email_events']:,} email_events, {results['rows']['leads']:,} "
        f"leads), PostgreSQL {results['machine']['postgresql']}, {results['machine']['cores']} cores. Before every "
        f"refresh, {s['change_before_each_refresh']}, so the view's rows really change; the two kinds alternate "
        f"which goes first, {s['runs']} runs each (min–median–max), while a dashboard reader queries the view in "
        f"a loop (`make bench`; `python bench/refresh.py --table` reprints these tables from "
        f"`bench/results/refresh.json`).",
        "",
        "| view | rows | REFRESH CONCURRENTLY | reader's longest wait | plain REFRESH | reader's longest wait |",
        "|---|---|---|---|---|---|",
        *[f"| {view.split('.')[-1]} | {r['rows']:,} | {_mmm(r['concurrent']['refresh_ms'])} | "
          f"**{r['concurrent']['reader_longest_wait_ms']['max']:.0f} ms** | {_mmm(r['plain']['refresh_ms'])} | "
          f"**{r['plain']['reader_longest_wait_ms']['max']:.0f} ms** |" for view, r in results["refresh"].items()],
        "",
        f"Dashboard queries, {s['queries']} per row for a random workspace after warming the cache:",
        "",
        "| dashboard query | from the view p50 / p95 | same aggregate from base tables p50 / p95 |",
        "|---|---|---|",
        *[f"| {name} | {q['view']['p50_ms']} / {q['view']['p95_ms']} ms | {q['base tables']['p50_ms']} / "
          f"{q['base tables']['p95_ms']} ms |" for name, q in results["dashboard_queries"].items()],
        "",
        f"Skip-unchanged on a quiet hour: {quiet['quiet_hour']['refreshes_avoided']} of "
        f"{quiet['quiet_hour']['refreshes_due']} hourly refreshes skipped (each skip decided in "
        f"{min(skips)}–{max(skips)} ms), "
        f"{quiet['quiet_hour']['db_ms_avoided'] / 1000:.1f} s of refresh work avoided per hour; over a quiet day "
        f"{quiet['quiet_day']['refreshes_avoided']} of {quiet['quiet_day']['refreshes_due']} scheduled refreshes "
        f"are avoided (the clock-dependent views still refresh every run).",
        "",
        f"How it grows: all {len(VIEWS)} views refreshed CONCURRENTLY, each after the same change, {s['runs']} "
        f"rounds per scale (peak RSS of the refreshing backend, sampled every 20 ms; it includes the shared "
        f"buffers that backend touched):",
        "",
        "| scale | email_events (generated in) | all views, min–median–max | slowest view (its slowest run) | "
        "backend peak RSS |",
        "|---|---|---|---|---|",
        *[f"| {scale} | {g['email_events']:,} ({g['generate_s']:.0f} s) | {g['all_views_s']['min']:.1f}–"
          f"**{g['all_views_s']['median']:.1f}**–{g['all_views_s']['max']:.1f} s | "
          f"{g['slowest_view'].split('.')[-1]} ({g['slowest_view_s']:.2f} s) | {g['backend_peak_rss_mb']:.0f} MB |"
          for scale, g in results["growth"].items()],
    ])


def _mmm(spread: dict) -> str:
    return f"{spread['min']:.0f}–**{spread['median']:.0f}**–{spread['max']:.0f} ms"


if __name__ == "__main__":
    main()
