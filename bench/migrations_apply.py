"""Time to apply all 22 migrations to an empty database: median of 5, migration runner vs plain psql.

The runner is what each ApplyMigrationOperator task does (advisory lock, checksum, history row,
lock_timeout, one transaction per file); plain ``psql -f`` of the same files is the baseline, measured in
the same run on the same server. Airflow's own task overhead is not included (see the README).

    make bench            # or: .venv/bin/python bench/migrations_apply.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import psycopg  # noqa: E402

import local_env  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402


def time_runner(dsn: str) -> float:
    migrations = discover_migrations()
    started = time.perf_counter()
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(migrations, applied_by="bench")
    return time.perf_counter() - started


def time_psql(dsn: str) -> float:
    started = time.perf_counter()
    for migration in discover_migrations():
        local_env.psql_file(dsn, migration.path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server = local_env.admin_dsn()
    with psycopg.connect(server) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    results: dict[str, list[float]] = {"runner": [], "psql": []}
    for _ in range(args.runs):
        for name, measure in (("runner", time_runner), ("psql", time_psql)):
            dbname = f"cc_bench_{uuid.uuid4().hex[:8]}"
            dsn = local_env.create_database(server, dbname)
            try:
                results[name].append(measure(dsn))
            finally:
                local_env.drop_database(server, dbname)
    summary = {
        "postgresql": version,
        "runs": args.runs,
        "median_s": {name: round(statistics.median(times), 3) for name, times in results.items()},
        "all_s": {name: [round(t, 3) for t in times] for name, times in results.items()},
    }
    (ROOT / "bench" / "results" / "migrations_apply.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"PostgreSQL {version}, {args.runs} runs, all 22 migrations on an empty database:")
    for name, median in summary["median_s"].items():
        print(f"  {name:6} median {median:.3f} s   runs: {summary['all_s'][name]}")


if __name__ == "__main__":
    main()
