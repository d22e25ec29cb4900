"""Time to apply every migration to an empty database: migration runner vs plain psql, alternating.

The runner is what each ApplyMigrationOperator task does (advisory lock, checksum, history row,
lock_timeout, one transaction per file); plain ``psql -f`` of the same files is the baseline, measured in
the same run on the same server. Airflow's own task overhead is not included (see docs/benchmarks.md).

    make bench            # or: .venv/bin/python -m bench.migrations_apply [--runs 5]
    .venv/bin/python -m bench.migrations_apply --table     # the row of docs/benchmarks.md from its results
"""

from __future__ import annotations

import argparse
import time

import psycopg

from bench import common
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.testing import local_env


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


def on_fresh_database(server: str, measure) -> float:
    with common.scratch_database(server, "migrations") as dsn:
        return measure(dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--table", action="store_true", help="print the row of docs/benchmarks.md of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("migrations_apply")))
        return
    server = local_env.admin_dsn()
    times = common.alternating(args.runs, {"runner": lambda: on_fresh_database(server, time_runner),
                                           "psql": lambda: on_fresh_database(server, time_psql)})
    common.write_results(
        "migrations_apply", {"runs": args.runs, "order": "alternating", "database": "a fresh one per run"},
        {"migrations": len(discover_migrations()), "seconds": {name: common.spread(t) for name, t in times.items()}},
        server)


def table(results: dict) -> str:
    runner, psql = results["seconds"]["runner"], results["seconds"]["psql"]
    header = "| figure | how | result |\n|---|---|---|\n"
    return header + (f"| apply all {results['migrations']} migrations to an empty database | "
            f"`bench/migrations_apply.py`: "
            f"{results['settings']['runs']} runs each, alternating, each on a fresh database; baseline: `psql -f` of "
            f"the same files | runner **{runner['median']:.2f} s** ({runner['min']:.2f}–{runner['max']:.2f}), "
            f"psql {psql['median']:.2f} s ({psql['min']:.2f}–{psql['max']:.2f}) |")


if __name__ == "__main__":
    main()
