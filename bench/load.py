"""Application traffic through a real PgBouncer while every ops job runs, beside the runbook's naive commands.

At scale 32 (about 1M email_events): pgbench, ``--clients`` (100) through Debian's PgBouncer with
include/pgbouncer.ini (transaction pooling, auth_query), ``bench/load_sql/coldcopy_app.sql`` (inserts into
email_events, lead and campaign updates, dashboard and recent-events reads), for ``--seconds`` per phase at
least, the job starting 2 s in (the load runs in 5 s rounds until the job is done); the jobs connect
directly. Per phase: TPS, p50/p95/p99/max latency, errors, the job's own time, and the longest lock wait of
any session seen by sampling ``pg_locks.waitstart`` every 100 ms.
Phases: idle; each job the way its DAG's tasks run it; then the runbook's naive command for the same work.

    make bench            # or: .venv/bin/python -m bench.load [--scale 32 --clients 100 --seconds 30]
    .venv/bin/python -m bench.load --table           # the table of docs/benchmarks.md from bench/results/load.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench import common
from coldcopy.backups import BackupRunner
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.maintenance import Maintenance
from coldcopy.migrations import MIGRATIONS_DIR, discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.partitions import PartitionManager
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.runs import RefreshRun
from coldcopy.refresh_schedule import REFRESH_JOBS
from coldcopy.testing import app_load, local_env, servers

POLICY = LockRetryPolicy.growing(1000, 6)
VIEWS = [v for job in REFRESH_JOBS.values() for v in job.views]


class LockWaitSampler:
    """The longest lock wait of any session, from ``pg_locks.waitstart`` every 100 ms."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.longest_ms, self.stop = dsn, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                waited = conn.execute("SELECT coalesce(max(extract(epoch FROM now() - waitstart)) * 1000, 0) "
                                      "FROM pg_locks WHERE NOT granted AND waitstart IS NOT NULL").fetchone()[0]
                self.longest_ms = max(self.longest_ms, float(waited))
                time.sleep(0.1)

    def __enter__(self) -> LockWaitSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def phase(name: str, dsn: str, bouncer, dbname: str, password: str, clients: int, seconds: int, job) -> dict:
    """Load in 5-second pgbench rounds until the job is done and at least ``seconds`` have passed."""
    rounds: list[app_load.LoadResult] = []
    job_done = threading.Event()
    began = time.perf_counter()

    def load() -> None:
        while not (job_done.is_set() and time.perf_counter() - began >= seconds):
            rounds.append(app_load.run(bouncer, dbname, password, clients=clients, seconds=5))

    loader = threading.Thread(target=load)
    with LockWaitSampler(dsn) as sampler:
        loader.start()
        time.sleep(2)
        job_began = time.perf_counter()
        try:
            detail = job() if job else None
        finally:
            job_s = time.perf_counter() - job_began
            job_done.set()
            loader.join()
    total = app_load.LoadResult(sum(r.transactions for r in rounds), sum(r.errors for r in rounds),
                                sum(r.seconds for r in rounds), [x for r in rounds for x in r.latencies_ms],
                                [x for r in rounds for x in r.error_lines])
    summary = {"phase": name, **total.summary, "job_s": round(job_s, 2) if job else None,
               "longest_lock_wait_ms": round(sampler.longest_ms, 1), "detail": detail,
               "errors_seen": total.error_lines[:3]}
    print(json.dumps(summary, default=str), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table and exit")
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("load")))
        return
    server = local_env.admin_dsn()
    with (common.bench_database(server, args.scale, "load") as dsn, common.s3_endpoint() as endpoint,
          servers.LocalPgBouncer(server) as bouncer):
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
            for view in VIEWS:  # populated once, as production's views and summaries are
                refresher_for(conn, view, lock_retry=POLICY).run(RefreshRun("fill"))
        password = app_load.prepare(dsn)
        bucket = "coldcopy-load"
        spaces = common.spaces_bucket(endpoint, bucket)
        key = common.KEYRING
        conn = psycopg.connect(dsn, autocommit=True)

        def migrations():
            with tempfile.TemporaryDirectory() as folder:
                extra = common.ROOT / "bench" / "load_sql" / "migrations"
                for path in [*MIGRATIONS_DIR.glob("*.sql"), *extra.glob("*.sql")]:
                    (Path(folder) / path.name).symlink_to(path)
                applied = MigrationRunner(lambda: psycopg.connect(dsn), lock_retry=POLICY).apply_all(
                    discover_migrations(Path(folder)), applied_by="bench")
            return [m.file_name for m in applied]

        def refreshes():
            return [refresher_for(conn, v, lock_retry=POLICY, force=True).run(RefreshRun("load")).mode
                    for v in VIEWS]

        manager = PartitionManager(conn, keyring=key, lock_retry=POLICY, passphrase="bench")
        months = manager.archive_candidates()

        def partitions():
            made = manager.premake(months_ahead=4)
            manager.archive(months[0], spaces)
            return {"premade": made, "archived": months[0].name}

        def backup():
            return BackupRunner(dsn, spaces, "bench", keyring=common.KEYRING).backup().manifest["byte_size"]

        maintenance = Maintenance(conn, lock_retry=POLICY)

        def daily():
            return [maintenance.run(t) for t in maintenance.vacuum_plan()[0]]

        def bloat():  # a week of writes, made before the weekly phase (its own row locks are not the job's)
            for statement in ("UPDATE campaigns SET name = name",
                              "UPDATE leads SET status = status WHERE hashtext(id::text) % 3 = 0",
                              "DELETE FROM intent_signals WHERE hashtext(id::text) % 2 = 0"):
                conn.execute(statement)
            conn.execute("ANALYZE")

        def weekly():
            planned = maintenance.invalid_leftovers() + maintenance.reindex_plan() + maintenance.full_vacuum_plan()[0]
            return [maintenance.run(t) for t in planned]

        def naive_refresh():
            for view in VIEWS:
                conn.execute(f"REFRESH MATERIALIZED VIEW {view}")

        def naive_detach():
            conn.execute(f"ALTER TABLE public.email_events DETACH PARTITION public.{months[1].name}")

        def naive_vacuum_full():
            conn.execute("VACUUM FULL")
            conn.execute(f'REINDEX DATABASE "{name}"')

        def naive_dump():
            dump = subprocess.Popen([local_env.executable("pg_dump"), "-Fc", "-d", dsn], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-c"], stdin=dump.stdout, stdout=subprocess.DEVNULL, check=True)
            dump.wait()

        jobs = [("idle", None), ("coldcopy_migrations (305 index concurrently, 306 column)", migrations),
                ("refreshes: all 7 views, concurrently", refreshes), ("runbook: plain REFRESH of all 7", naive_refresh),
                ("partition_maintenance (premake, archive + detach concurrently)", partitions),
                ("runbook: plain DETACH PARTITION", naive_detach),
                ("backup_to_spaces (pg_dump | zstd | gpg → S3)", backup), ("runbook: pg_dump | gzip", naive_dump),
                ("db_maintenance_daily", daily), ("db_maintenance_weekly, bloat present", weekly),
                ("runbook: VACUUM FULL + REINDEX DATABASE", naive_vacuum_full)]
        phase("warm-up (not reported)", dsn, bouncer, name, password, args.clients, 10, None)
        phases = []
        for label, job in jobs:
            if job is weekly:
                bloat()
            phases.append(phase(label, dsn, bouncer, name, password, args.clients, args.seconds, job))
        conn.close()
    common.write_results(
        "load", {"scale": args.scale, "clients": args.clients, "seconds_per_phase": args.seconds, "warm_up_s": 10,
                 "pgbouncer": "1.18, include/pgbouncer.ini, transaction pooling"},
        {"email_events": events, "phases": phases}, server)


def table(summary: dict) -> str:
    """The README's table, from the results file (``python bench/load.py --table`` reprints it)."""
    s = summary["settings"]
    rows = [f"Scale {s['scale']} ({summary['email_events']:,} email_events), {s['clients']} pgbench clients of the "
            f"ColdCopy workload through PgBouncer {s['pgbouncer']} (pool of 25), every phase at least "
            f"{s['seconds_per_phase']} s, the job starting 2 s in and the load going on until it is done; the jobs "
            f"run the same code as their DAGs' tasks, on a direct connection; lock waits sampled from "
            f"`pg_locks.waitstart` every 100 ms (`make bench`; `python bench/load.py --table` reprints this table "
            f"from `bench/results/load.json`). {summary['machine']['cores']} cores shared by PostgreSQL "
            f"{summary['machine']['postgresql']}, PgBouncer, pgbench, moto's S3 server and the jobs.",
            "",
            "| phase | job | TPS | p50 | p95 | p99 | max | errors | longest lock wait |",
            "|---|---|---|---|---|---|---|---|---|"]
    for p in summary["phases"]:
        job = f"{p['job_s']:.1f} s" if p["job_s"] is not None else "—"
        phase_name = p["phase"].replace("|", "\\|")
        rows.append(f"| {phase_name} | {job} | {p['tps']:,.0f} | {p['p50_ms']:,.0f} ms | {p['p95_ms']:,.0f} ms | "
                    f"{p['p99_ms']:,.0f} ms | {p['max_ms']:,.0f} ms | {p['errors']} | "
                    f"{p['longest_lock_wait_ms']:,.0f} ms |")
    idle = summary["phases"][0]
    ours = [p for p in summary["phases"][1:] if not p["phase"].startswith("runbook")]
    rows += ["", f"Every job: {sum(p['errors'] for p in ours)} application errors, p99 at most "
                 f"{max(p['p99_ms'] for p in ours):,.0f} ms against {idle['p99_ms']:,.0f} ms idle (goal: within 2× "
                 f"of idle), max ≤ {max(p['max_ms'] for p in ours):,.0f} ms (goal < 1 s). An untimed 10 s of load "
                 f"warms the caches first."]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
