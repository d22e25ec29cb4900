"""Partition rotation figures: archive of one month against the runbook's manual archive, and how it grows.

1. archive one month (export + manifest + verify from the bucket) vs the runbook's manual archive of the same
   partition, ``psql -c "\\copy (SELECT * FROM month ORDER BY id) TO STDOUT CSV HEADER" | gzip > month.csv.gz``,
   alternating, ``--runs`` of each at ``--scale``; min–median–max;
2. where the archive's time goes: each piece timed on its own (row-versions scan, COPY out, gzip, upload,
   read-back), ``--runs`` each, median;
3. the same archive and baseline at each of ``--scales`` (a month of that scale), with the peak resident
   memory of the archive's whole process tree in a fresh interpreter, and the generator's time per scale;
4. the longest wait a concurrent writer saw during a full rotation (premake + archive + detach of every month
   past 12), with ``DETACH … CONCURRENTLY`` vs a plain ``DETACH PARTITION``, while a dashboard-like reader keeps
   half-second queries running on email_events.

    make bench            # or: .venv/bin/python -m bench.partitions [--scale 32 --scales 8,32,96 --runs 5]
    .venv/bin/python -m bench.partitions --table     # its tables in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import tempfile
import threading
import time
import zlib

import psycopg
from psycopg import sql

from bench import common
from coldcopy.crypto import gpg_symmetric
from coldcopy.partitions import COPY_OUT_SQL, ROW_VERSIONS_SQL, PartitionManager, read_back
from coldcopy.testing import local_env

BUCKET = "coldcopy-bench"
KEY = common.KEYRING


def archive_one(dsn: str, endpoint: str, partition: str) -> float:
    """Export + verify one partition (no detach); returns seconds. Also the child-process entry point."""
    bucket = common.spaces_bucket(endpoint, BUCKET)
    with psycopg.connect(dsn, autocommit=True) as conn:
        manager = PartitionManager(conn, keyring=KEY, passphrase=common.PASSPHRASE)
        [target] = [p for p in manager.partitions() if p.name == partition]
        started = time.perf_counter()
        manager.export(target, bucket)
        manager.verify(target, bucket)
        return time.perf_counter() - started


def runbook_archive(dsn: str, partition: str) -> float:
    """The runbook's manual archive: psql's \\copy piped into gzip, into a local file."""
    query = f"\\copy (SELECT * FROM {partition} ORDER BY id) TO STDOUT CSV HEADER"
    with tempfile.TemporaryDirectory() as scratch:
        command = (f"{local_env.executable('psql')} -X -q {' '.join(local_env.client_args(dsn))} "
                   f"-c '{query}' | gzip > {scratch}/month.csv.gz")
        started = time.perf_counter()
        subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
        return time.perf_counter() - started


def pieces(dsn: str, endpoint: str, partition: str, runs: int) -> dict:
    """Each piece of the archive on its own, median of ``runs`` (seconds)."""
    bucket = common.spaces_bucket(endpoint, BUCKET)
    table = sql.Identifier(partition)
    key = f"bench/pieces/{partition}.csv.gz.gpg"
    timings: dict[str, list[float]] = {}

    def timed(name, work):
        started = time.perf_counter()
        result = work()
        timings.setdefault(name, []).append(time.perf_counter() - started)
        return result

    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(runs):
            timed("row-versions scan (count, sum over id and xmin, occurred_at range)",
                  lambda: conn.execute(sql.SQL(ROW_VERSIONS_SQL).format(table)).fetchone())

            def copy_out() -> bytes:
                with conn.cursor() as cur, cur.copy(sql.SQL(COPY_OUT_SQL).format(table)) as copy:
                    return b"".join(copy)

            csv_bytes = timed("COPY … ORDER BY id to the client", copy_out)
            gzipped = timed("gzip -6 of the CSV (one thread)", functools.partial(gzip_all, csv_bytes))
            sealed = timed("gpg AES256 of the gzip (the backup passphrase)",
                           functools.partial(gpg_symmetric, gzipped, common.PASSPHRASE, "--compress-algo", "none"))
            timed("multipart upload to the S3 endpoint", functools.partial(upload, bucket, key, sealed))
            timed("read back: download, sha256, decrypt, gunzip, sha256",
                  lambda: read_back(bucket, key, common.PASSPHRASE))
    return {"csv_mb": round(len(csv_bytes) / 2**20, 1), "gzip_mb": round(len(gzipped) / 2**20, 1),
            "seconds": {name: round(statistics.median(values), 3) for name, values in timings.items()}}


def gzip_all(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def upload(bucket, key: str, data: bytes) -> None:
    with bucket.upload(key) as parts:
        parts.write(data)
        parts.complete()


def archive_vs_runbook(dsn: str, endpoint: str, partition: str, runs: int) -> dict:
    archive_one(dsn, endpoint, partition)  # warm-up: caches, the endpoint's first bucket write
    times = common.alternating(runs, {"archive": lambda: archive_one(dsn, endpoint, partition),
                                      "runbook": lambda: runbook_archive(dsn, partition)})
    ours, runbook = common.spread(times["archive"]), common.spread(times["runbook"])
    return {"archive_s": ours, "runbook_s": runbook, "ratio_median": round(ours["median"] / runbook["median"], 2)}


def month_of(dsn: str, offset: int = 3) -> tuple[str, int]:
    with psycopg.connect(dsn) as conn:
        month = conn.execute("SELECT name FROM app.email_events_partitions ORDER BY range_start OFFSET %s LIMIT 1",
                             (offset,)).fetchone()[0]
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(month))).fetchone()[0]
    return month, rows


def rotation_writer_wait(dsn: str, endpoint: str, concurrent: bool) -> dict:
    """Full rotation under a writer and a slow reader; returns the writer's longest wait and counts."""
    bucket = common.spaces_bucket(endpoint, BUCKET)
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
            manager = PartitionManager(conn, keyring=KEY, passphrase=common.PASSPHRASE)
            manager.premake(3)
            months = manager.archive_candidates()
            for month in months:
                manager.export(month, bucket)
                manager.verify(month, bucket)
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
    parser.add_argument("--scales", default="8,32,96")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("partitions")))
        return
    scales = [int(s) for s in args.scales.split(",")]
    server = local_env.admin_dsn()
    with common.s3_endpoint() as endpoint:
        with common.bench_database(server, args.scale, "parts") as dsn:
            month, rows = month_of(dsn)
            main_figure = {"partition": month, "rows": rows, **archive_vs_runbook(dsn, endpoint, month, args.runs)}
            profile = pieces(dsn, endpoint, month, args.runs)
            waits = {}
            for label, concurrent in (("detach_concurrently", True), ("plain_detach", False)):
                with common.bench_database(server, args.scale, f"rot_{label[:5]}") as copy:
                    waits[label] = rotation_writer_wait(copy, endpoint, concurrent)
        growth = {}
        for scale in scales:
            with common.bench_database(server, scale, "parts_grow") as dsn:
                month, rows = month_of(dsn)
                figure = archive_vs_runbook(dsn, endpoint, month, args.runs)
                _, peak = common.peak_rss_of_call("partitions", "archive_one", dsn, endpoint, month)
                growth[scale] = {"email_events": common.template_info(server, scale)["counts"]["email_events"],
                                 "generate_s": common.template_info(server, scale)["generate_s"],
                                 "partition": month, "rows": rows, "peak_rss_mb": peak, **figure}
    common.write_results(
        "partitions",
        {"scale": args.scale, "scales": scales, "runs": args.runs, "warm_up": 1, "order": "alternating",
         "endpoint": "moto's S3 server in its own process on loopback", "gzip_level": 6},
        {"email_events": common.template_info(server, args.scale)["counts"]["email_events"],
         "archive_one_month": main_figure, "archive_pieces": profile, "growth": growth,
         "rotation_writer_wait": waits}, server)


def table(results: dict) -> str:
    main_figure, pieces_, waits = (results["archive_one_month"], results["archive_pieces"],
                                   results["rotation_writer_wait"])
    s = results["settings"]

    def mmm(spread: dict) -> str:
        return f"{spread['min']:.2f}–**{spread['median']:.2f}**–{spread['max']:.2f} s"

    lines = [
        f"Scale {s['scale']} ({results['email_events']:,} email_events), PostgreSQL "
        f"{results['machine']['postgresql']}, {results['machine']['cores']} cores, "
        f"{s['endpoint']}; one warm-up, then {s['runs']} runs of "
        f"each, alternating which goes first (`make bench`; `python bench/partitions.py --table` reprints these "
        f"tables from `bench/results/partitions.json`).",
        "",
        "| figure | min–median–max |",
        "|---|---|",
        f"| archive one month (`{main_figure['partition']}`, {main_figure['rows']:,} rows): export + manifest + "
        f"verify from the bucket | {mmm(main_figure['archive_s'])} |",
        f"| runbook: `psql -c \"\\copy (SELECT * … ORDER BY id) TO STDOUT CSV HEADER\" \\| gzip > month.csv.gz` "
        f"| {mmm(main_figure['runbook_s'])} |",
        f"| ratio of the medians (goal ≤ 2×) | **{main_figure['ratio_median']}×** |",
        "",
        f"Where the archive's time goes, each piece on its own (median of {s['runs']}; CSV "
        f"{pieces_['csv_mb']} MB, gzip'd {pieces_['gzip_mb']} MB). The archive runs the COPY, gzip and upload "
        f"at once (gzip in its own thread, parts uploaded from another), so it costs less than their sum:",
        "",
        "| piece | median |",
        "|---|---|",
        *[f"| {name} | {seconds * 1000:.0f} ms |" for name, seconds in pieces_["seconds"].items()],
        "",
        "How it grows (a month at each scale; peak RSS of the archive's whole process tree, a fresh interpreter "
        "with Airflow's imports, sampled every 20 ms):",
        "",
        "| scale | email_events (generated in) | month rows | archive, median | runbook, median | ratio | "
        "peak RSS |",
        "|---|---|---|---|---|---|---|",
        *[f"| {scale} | {g['email_events']:,} ({g['generate_s']:.0f} s) | {g['rows']:,} | "
          f"{g['archive_s']['median']:.2f} s | {g['runbook_s']['median']:.2f} s | {g['ratio_median']}× | "
          f"{g['peak_rss_mb']:.0f} MB |" for scale, g in results["growth"].items()],
        "",
        "| full rotation under a writer and a reader running 0.5 s queries | months | writer's longest wait | p99 |",
        "|---|---|---|---|",
        *[f"| {label} | {w['months']} | **{w['max_wait_ms']:.0f} ms** | {w['p99_wait_ms']:.0f} ms |"
          for label, w in (("`DETACH … CONCURRENTLY` (ours)", waits["detach_concurrently"]),
                           ("plain `DETACH PARTITION`", waits["plain_detach"]))],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
