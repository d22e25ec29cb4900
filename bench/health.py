"""db_health figures at about 1 million email_events (scale 32) on a cluster with pg_stat_statements preloaded.

1. one db_health run: every check group in turn, as the DAG's tasks run them (record + alerts included),
   ``--runs`` times after a warm-up: per group and total, min–median–max;
2. the health page at ``--days`` of history (10-minute snapshots of every check): the route (connect, read the
   history, render) through FastAPI in-process, authorization stubbed, ``--requests`` times; alternating with
   the baseline a page would be without the history tables: running every check live on each load.

    make bench            # or: .venv/bin/python bench/health.py [--scale 32 --runs 5 --days 30 --requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

import generate_data  # noqa: E402
import health_history  # noqa: E402
import local_env  # noqa: E402
from coldcopy import health, ops_schema  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402


def spread(values: list[float]) -> dict:
    values = sorted(values)
    return {"min": round(values[0], 1), "median": round(statistics.median(values), 1), "max": round(values[-1], 1),
            "p95": round(values[min(len(values) - 1, int(0.95 * len(values)))], 1)}


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
    args = parser.parse_args()

    cluster = local_env.ThrowawayCluster({"shared_preload_libraries": "pg_stat_statements"}).start()
    try:
        dsn = local_env.create_database(cluster.dsn, "coldcopy")
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
        began = time.perf_counter()
        generate_data.generate(dsn, scale=args.scale)
        generate_s = time.perf_counter() - began
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("ANALYZE")
            version = conn.execute("SHOW server_version").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]

        health_run(dsn)  # warm-up (creates the ops tables, fills caches)
        runs = [health_run(dsn) for _ in range(args.runs)]
        per_group = {g: spread([r[g] for r in runs]) for g in health.CHECKS}
        totals = spread([sum(r.values()) for r in runs])

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
    finally:
        cluster.stop()

    summary = {
        "postgresql": version, "scale": args.scale, "email_events": events, "generate_s": round(generate_s, 1),
        "runs": args.runs, "db_health_run_ms": totals, "per_group_ms": per_group,
        "slowest_group": max(per_group, key=lambda g: per_group[g]["median"]),
        "page": {"days": args.days, "snapshots": snapshots, "requests": args.requests, "ms": spread(page_ms),
                 "baseline_live_checks_ms": spread(baseline_ms), "baseline_samples": len(baseline_ms)},
    }
    (ROOT / "bench" / "results" / "health.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
