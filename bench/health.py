"""db_health figures at about 1 million email_events (scale 32) on a cluster with pg_stat_statements preloaded.

1. one db_health run: every check group in turn, as the DAG's tasks run them (record + alerts included),
   ``--runs`` times after a warm-up: per group and total, min–median–max;
2. the health page at ``--days`` of history (10-minute snapshots of every check): the route (connect, read the
   history, render) through FastAPI in-process, authorization stubbed, ``--requests`` times; alternating with
   the baseline a page would be without the history tables: running every check live on each load.

    make bench            # or: .venv/bin/python -m bench.health [--scale 32 --runs 5 --days 30 --requests 200]
    .venv/bin/python -m bench.health --table         # its tables in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import time

import psycopg
from psycopg.rows import dict_row

from bench import common
from coldcopy import health, ops_schema
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.testing import generate_data, health_history, local_env, servers


def health_run(dsn: str) -> dict[str, float]:
    """Milliseconds per group for one run of every group."""
    timings = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        ops_schema.ensure(conn, "health")
        conn.row_factory = dict_row
        t = health.Thresholds()
        for group in health.CHECKS:
            began = time.perf_counter()
            health.record(conn, health.run_group(health.Context(conn, t), group), t, run_id="bench")
            timings[group] = (time.perf_counter() - began) * 1000
    return timings


def live_page(dsn: str) -> str:
    """The baseline: what a page costs when it runs every check on load instead of reading the history."""
    from coldcopy import health_page

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        t = health.Thresholds()
        results = [r for group in health.CHECKS for r in health.run_group(health.Context(conn, t), group)]
    checks = [{"check_name": r.check, "taken_at": "2026-01-01T00:00:00", "state": r.state, "value": r.value,
               "unit": r.unit, "summary": r.summary, "details": health.as_dict(r)["details"]} for r in results]
    return health_page.render({"checks": checks, "series": {}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("health")))
        return

    cluster = servers.ThrowawayCluster({"shared_preload_libraries": "pg_stat_statements"}).start()
    try:
        dsn = local_env.create_database(cluster.dsn, "coldcopy")
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
        began = time.perf_counter()
        generate_data.generate(dsn, scale=args.scale)
        generate_s = time.perf_counter() - began
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("ANALYZE")
            events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]

        health_run(dsn)  # warm-up (creates the ops tables, fills caches)
        runs = [health_run(dsn) for _ in range(args.runs)]
        per_group = {g: common.spread([r[g] for r in runs], 1) for g in health.CHECKS}
        totals = common.spread([sum(r.values()) for r in runs], 1)

        snapshots = health_history.fill(dsn, days=args.days)
        os.environ["AIRFLOW_CONN_COLDCOPY_DB"] = local_env.airflow_connection(dsn)
        from fastapi.testclient import TestClient

        from coldcopy import health_page

        app = health_page.create_app()
        app.dependency_overrides[health_page.authorize] = lambda: None
        client = TestClient(app)
        page_ms, baseline_ms = [], []
        client.get("/")
        for _ in range(args.requests):
            began = time.perf_counter()
            response = client.get("/")
            page_ms.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200 and "<h2>Materialized views" in response.text
            if len(baseline_ms) < max(5, args.requests // 10):  # the live baseline is slow: fewer samples
                began = time.perf_counter()
                live_page(dsn)
                baseline_ms.append((time.perf_counter() - began) * 1000)
        common.write_results(
            "health", {"scale": args.scale, "runs": args.runs, "warm_up": 1, "days": args.days,
                       "requests": args.requests, "server": "throwaway PostgreSQL cluster with "
                       "shared_preload_libraries = pg_stat_statements"},
            {"email_events": events, "generate_s": round(generate_s, 1), "db_health_run_ms": totals,
             "per_group_ms": per_group, "slowest_group": max(per_group, key=lambda g: per_group[g]["median"]),
             "page": {"snapshots": snapshots, "ms": common.spread(page_ms, 1),
                      "baseline_live_checks_ms": common.spread(baseline_ms, 1),
                      "baseline_samples": len(baseline_ms)}}, dsn)
    finally:
        cluster.stop()


def table(results: dict) -> str:
    s, run, page = results["settings"], results["db_health_run_ms"], results["page"]
    slowest = results["slowest_group"]
    return "\n".join([
        f"Scale {s['scale']} ({results['email_events']:,} email_events; generated in {results['generate_s']:.0f} s) "
        f"on a {s['server']}, so the slow-query check does real work; PostgreSQL "
        f"{results['machine']['postgresql']}, {results['machine']['cores']} cores. {s['runs']} runs after a "
        f"warm-up; {s['days']} days of history; {s['requests']} page requests (`make bench`; "
        f"`python bench/health.py --table` reprints this from `bench/results/health.json`).",
        "",
        "| figure | min | median | max |",
        "|---|---|---|---|",
        f"| one `db_health` run, all {len(results['per_group_ms'])} groups (record + alert logic included) | "
        f"{run['min']:.0f} ms | **{run['median']:.0f} ms** | {run['max']:.0f} ms |",
        f"| slowest group: `{slowest}` | {results['per_group_ms'][slowest]['min']:.0f} ms | "
        f"{results['per_group_ms'][slowest]['median']:.0f} ms | {results['per_group_ms'][slowest]['max']:.0f} ms |",
        "",
        f"The page at {s['days']} days of history ({page['snapshots']:,} snapshots, one every 10 minutes per "
        f"check), through its FastAPI route in-process (connect, read the history, render; Airflow's "
        f"authorization stubbed): **p95 {page['ms']['p95']:.0f} ms**, median {page['ms']['median']:.0f} ms (max "
        f"{page['ms']['max']:.0f} ms). Alternating with it, the baseline a page would be if it ran the checks on "
        f"each load: p95 {page['baseline_live_checks_ms']['p95']:.0f} ms, median "
        f"{page['baseline_live_checks_ms']['median']:.0f} ms ({page['baseline_samples']} samples). The page's "
        f"goal is 200 ms; the history tables also keep page views off the production catalog.",
    ])


if __name__ == "__main__":
    main()
