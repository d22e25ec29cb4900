"""Scrape latency of ``/coldcopy-health/metrics`` (issue 23) with 30 days of ``db_health`` history behind it, against
the naive endpoint that runs the checks on every scrape, alternating.

The plugin's FastAPI app served by uvicorn on loopback (as the api-server serves it), a scale-1 generated database
with ``--days`` of history every 10 minutes (``coldcopy.testing.health_history``), ``--scrapes`` GETs with the
bearer token per round; the baseline is the same request with every health check run live first (what a scrape
would cost without the history tables). Goal: p95 ≤ 50 ms.

    .venv/bin/python -m bench.metrics [--days 30 --scrapes 50 --rounds 4]
    .venv/bin/python -m bench.metrics --table        # its table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import httpx
import psycopg
from psycopg.rows import dict_row

from bench import common
from coldcopy.testing import health_history, local_env

TOKEN = "bench metrics token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table and exit")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("metrics")))
        return
    import uvicorn

    from coldcopy import health
    from coldcopy.health_page import create_app

    local_env.prepare_airflow()
    server = local_env.admin_dsn()
    with common.bench_database(server, 1, "metrics") as dsn:
        snapshots = health_history.fill(dsn, days=args.days)
        os.environ["AIRFLOW_CONN_COLDCOPY_DB"] = local_env.airflow_connection(dsn)
        os.environ["AIRFLOW_CONN_COLDCOPY_METRICS_TOKEN"] = json.dumps({"conn_type": "generic", "password": TOKEN})
        port = local_env.free_port()
        uv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=uv.run, daemon=True).start()
        while not uv.started:
            time.sleep(0.05)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"})
        size = len(client.get("/metrics").content)  # warm-up, untimed

        def scrape() -> float:
            started = time.perf_counter()
            assert client.get("/metrics").status_code == 200
            return (time.perf_counter() - started) * 1000

        def checks_then_scrape() -> float:
            started = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
                for group in health.CHECKS:
                    health.run_group(health.Context(conn, health.Thresholds()), group)
            assert client.get("/metrics").status_code == 200
            return (time.perf_counter() - started) * 1000

        served: list[float] = []
        naive: list[float] = []
        for round_number in range(args.rounds):
            order = [(served, scrape), (naive, checks_then_scrape)]
            for out, call in order if round_number % 2 == 0 else reversed(order):
                out.extend(call() for _ in range(args.scrapes if call is scrape else max(1, args.scrapes // 10)))
        uv.should_exit = True
    common.write_results("metrics", {"days": args.days, "scrapes_per_round": args.scrapes, "rounds": args.rounds,
                                     "server": "uvicorn, the plugin's app, loopback"},
                         {"snapshots": snapshots, "bytes": size, "scrape_ms": common.spread(served, 1),
                          "checks_then_scrape_ms": common.spread(naive, 1)}, server)


def table(summary: dict) -> str:
    s, ours, naive = summary["settings"], summary["scrape_ms"], summary["checks_then_scrape_ms"]
    return "\n".join([
        f"{s['days']} days of history ({summary['snapshots']:,} snapshots), {s['rounds']} rounds alternating, "
        f"{s['server']}; {summary['bytes']:,} bytes per scrape:", "",
        "| | p50 | p95 | max | scrapes |", "|---|---|---|---|---|",
        f"| `/coldcopy-health/metrics` from the history (goal p95 ≤ 50 ms) | {ours['median']:.1f} ms | "
        f"**{ours['p95']:.1f} ms** | {ours['max']:.1f} ms | {ours['runs']} |",
        f"| baseline: every check run live, then the scrape | {naive['median']:.1f} ms | {naive['p95']:.1f} ms | "
        f"{naive['max']:.1f} ms | {naive['runs']} |"])


if __name__ == "__main__":
    main()
