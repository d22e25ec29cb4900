"""Partition rotation figures at about 1 million email_events over 15 months (scale 32).

1. time to archive one month (export + verify from the bucket) vs a plain ``COPY … TO`` a local file of the
   same partition, in the same run;
2. peak resident memory of the archive step at two partition sizes (a generated month, and a month ten
   times larger), each in a fresh child process: it should be flat;
3. the longest wait a concurrent writer saw during a full rotation (premake + archive + detach of every
   month past 12), with ``DETACH … CONCURRENTLY`` vs the same rotation using a plain ``DETACH PARTITION``,
   while a dashboard-like reader keeps half-second queries running on email_events.

    make bench            # or: .venv/bin/python bench/partitions.py [--scale 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

import generate_data  # noqa: E402
import local_env  # noqa: E402
from coldcopy import manifests  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402
from coldcopy.object_store import spaces_hook  # noqa: E402
from coldcopy.partitions import PartitionManager  # noqa: E402

BUCKET = "coldcopy-bench"


def connect_spaces(endpoint: str):
    os.environ["AIRFLOW_CONN_COLDCOPY_SPACES"] = local_env.spaces_connection(endpoint, BUCKET)
    client = spaces_hook().get_conn()
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client


def archive_one(dsn: str, endpoint: str, partition: str) -> float:
    """Export + verify one partition (no detach); returns seconds. Also the child-process entry point."""
    client = connect_spaces(endpoint)
    with psycopg.connect(dsn, autocommit=True) as conn:
        manager = PartitionManager(conn, manifest_key=manifests.signing_key("bench only"))
        [target] = [p for p in manager.partitions() if p.name == partition]
        started = time.perf_counter()
        manager.export(target, client, BUCKET)
        manager.verify(target, client, BUCKET)
        return time.perf_counter() - started


def copy_to_local_file(dsn: str, partition: str) -> float:
    path = ROOT / "bench" / "results" / f"{partition}.csv.tmp"
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, open(path, "wb") as out:
        with cur.copy(sql.SQL("COPY (SELECT * FROM {} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)")
                      .format(sql.Identifier(partition))) as copy:
            for chunk in copy:
                out.write(chunk)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def peak_rss_mb(dsn: str, endpoint: str, partition: str) -> float:
    """Peak RSS of a fresh process archiving ``partition``."""
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'bench')!r}]; import partitions as b; "
            f"b.archive_one({dsn!r}, {endpoint!r}, {partition!r})")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")})
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(after, before) / 1024, 1)  # ru_maxrss is in KiB on Linux


def make_large_month(dsn: str, source: str, factor: int = 10) -> tuple[str, int]:
    """A future month filled with ``factor`` copies of ``source``'s rows; returns its name and row count."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        target = conn.execute("SELECT name FROM app.email_events_partitions ORDER BY range_start DESC LIMIT 1"
                              ).fetchone()[0]
        conn.execute(sql.SQL(
            "INSERT INTO email_events (workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, "
            "bounce_type, metadata, occurred_at) "
            "SELECT workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type, bounce_type, "
            "metadata, least(p.range_end - interval '1 second', p.range_start + (occurred_at - date_trunc('month', "
            "occurred_at))) FROM {}, generate_series(1, %s), app.email_events_partitions p WHERE p.name = %s"
        ).format(sql.Identifier(source)), (factor, target))
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(target))).fetchone()[0]
    return target, rows


def rotation_writer_wait(dsn: str, endpoint: str, concurrent: bool) -> dict:
    """Full rotation under a writer and a slow reader; returns the writer's longest wait and counts."""
    client = connect_spaces(endpoint)
    stop = threading.Event()
    waits: list[float] = []

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            ws = conn.execute("SELECT id FROM workspaces LIMIT 1").fetchone()[0]
            while not stop.is_set():
                began = time.perf_counter()
                conn.execute("INSERT INTO email_events (workspace_id, event_type) VALUES (%s, 'sent')", (ws,))
                waits.append(time.perf_counter() - began)
                time.sleep(0.005)

    def reader() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("SELECT count(*), pg_sleep(0.5) FROM email_events "
                             "WHERE occurred_at > now() - interval '1 hour'")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            manager = PartitionManager(conn, manifest_key=manifests.signing_key("bench only"))
            manager.premake(3)
            months = manager.archive_candidates()
            for month in months:
                manager.export(month, client, BUCKET)
                manager.verify(month, client, BUCKET)
                if concurrent:
                    manager.detach(month)
                else:
                    detach = sql.SQL("ALTER TABLE email_events DETACH PARTITION {}")
                    conn.execute(detach.format(sql.Identifier(month.name)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {"months": len(months), "seconds": round(time.perf_counter() - started, 1), "writes": len(waits),
            "max_wait_ms": round(max(waits) * 1000, 1),
            "p99_wait_ms": round(sorted(waits)[int(len(waits) * 0.99)] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    args = parser.parse_args()
    server = local_env.admin_dsn()
    endpoint = local_env.LocalS3().start()
    base = f"cc_bench_parts_{uuid.uuid4().hex[:8]}"
    created = [base]
    try:
        dsn = local_env.create_database(server, base)
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
        counts = generate_data.generate(dsn, scale=args.scale)
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            month = conn.execute("SELECT name FROM app.email_events_partitions p ORDER BY range_start OFFSET 3 LIMIT 1"
                                 ).fetchone()[0]
            month_rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(month))).fetchone()[0]
        archive_s = min(archive_one(dsn, endpoint.url, month) for _ in range(3))
        copy_s = min(copy_to_local_file(dsn, month) for _ in range(3))
        large, large_rows = make_large_month(dsn, month)
        memory = {month: {"rows": month_rows, "peak_rss_mb": peak_rss_mb(dsn, endpoint.url, month)},
                  large: {"rows": large_rows, "peak_rss_mb": peak_rss_mb(dsn, endpoint.url, large)}}
        waits = {}
        for label, concurrent in (("detach_concurrently", True), ("plain_detach", False)):
            name = f"{base}_{label[:5]}"
            created.append(name)
            waits[label] = rotation_writer_wait(local_env.create_database(server, name, template=base),
                                                endpoint.url, concurrent)
    finally:
        for name in created:
            local_env.drop_database(server, name)
        endpoint.stop()
    summary = {"postgresql": version, "scale": args.scale, "email_events": counts["email_events"],
               "archive_one_month": {"partition": month, "rows": month_rows, "export_verify_s": round(archive_s, 2),
                                     "copy_to_local_file_s": round(copy_s, 2)},
               "archive_peak_rss": memory, "rotation_writer_wait": waits}
    (ROOT / "bench" / "results" / "partitions.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
