"""Backup figures at about 1 million email_events (scale 32), against plain ``pg_dump -Fc -f`` in the same run.

1. end-to-end backup time (pg_dump -Z0 | zstd -T2 | gpg AES256 → multipart upload to a local S3 endpoint
   running in its own process) vs ``pg_dump -Fc -f local.dump`` of the same database: median of 3 each,
   side by side; object size vs dump size;
2. peak resident memory of the backup, in a fresh child process, at two database sizes (scale 8 and 32);
3. restore-verification time (download, decrypt, decompress, pg_restore into a scratch database, compare
   row counts, drop it).

    make bench            # or: .venv/bin/python bench/backups.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import psycopg  # noqa: E402

import generate_data  # noqa: E402
import local_env  # noqa: E402
from coldcopy.backups import BackupRunner  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402
from coldcopy.object_store import spaces_hook  # noqa: E402
from coldcopy.pg_tools import pg_program  # noqa: E402

BUCKET = "coldcopy-bench-backups"
PASSPHRASE = "bench-only passphrase"


def s3_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}"


def runner(dsn: str, endpoint: str) -> BackupRunner:
    os.environ["AIRFLOW_CONN_COLDCOPY_SPACES"] = local_env.spaces_connection(endpoint, BUCKET)
    client = spaces_hook().get_conn()
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    threads = int(os.environ.get("BENCH_ZSTD_THREADS", "0"))
    return BackupRunner(dsn, client, BUCKET, PASSPHRASE, **({"zstd_threads": threads} if threads else {}))


def backup_once(dsn: str, endpoint: str) -> tuple[float, int]:
    """One backup; returns (seconds, object bytes). Also the child-process entry point."""
    started = time.perf_counter()
    result = runner(dsn, endpoint).backup(retention_class="standard")
    return time.perf_counter() - started, result.manifest["byte_size"]


def plain_dump(dsn: str, path: Path) -> tuple[float, int]:
    with psycopg.connect(dsn) as conn:
        major = conn.info.server_version // 10000
    started = time.perf_counter()
    subprocess.run([pg_program("pg_dump", major), "-Fc", "-f", str(path), "-d", dsn], check=True)
    elapsed = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return elapsed, size


def peak_rss_mb(dsn: str, endpoint: str) -> float:
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'bench')!r}]; import backups as b; "
            f"b.backup_once({dsn!r}, {endpoint!r})")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")})
    return round(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 1)


def database(server: str, scale: int, created: list[str]) -> str:
    name = f"cc_bench_backup_{scale}_{uuid.uuid4().hex[:6]}"
    created.append(name)
    dsn = local_env.create_database(server, name)
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
    generate_data.generate(dsn, scale=scale)
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--small-scale", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = local_env.admin_dsn()
    s3, endpoint = s3_server()
    created: list[str] = []
    try:
        dsn = database(server, args.scale, created)
        with psycopg.connect(dsn) as conn:
            version, db_size = conn.execute(
                "SELECT current_setting('server_version'), pg_database_size(current_database())").fetchone()
        backup_once(dsn, endpoint)  # warm-up, untimed: caches and the S3 server settle
        ours, plain = [], []
        for _ in range(args.runs):  # side by side, alternating
            ours.append(backup_once(dsn, endpoint))
            plain.append(plain_dump(dsn, ROOT / "bench" / "results" / "plain.dump.tmp"))
        keys = runner(dsn, endpoint)
        latest = keys.resolve("latest")
        verify = keys.verify(latest, local_env.database_dsn(server, "postgres"))
        small = database(server, args.small_scale, created)
        with psycopg.connect(small) as conn:
            small_size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        memory = {f"scale {args.small_scale} ({small_size // 2**20} MB)": peak_rss_mb(small, endpoint),
                  f"scale {args.scale} ({db_size // 2**20} MB)": peak_rss_mb(dsn, endpoint)}
    finally:
        for name in created:
            local_env.drop_database(server, name)
        s3.terminate()
    ours_s, plain_s = statistics.median(t for t, _ in ours), statistics.median(t for t, _ in plain)
    summary = {
        "postgresql": version, "scale": args.scale, "database_size_mb": round(db_size / 2**20),
        "backup_s": {"coldcopy_pipeline_median": round(ours_s, 2), "plain_pg_dump_Fc_median": round(plain_s, 2),
                     "ratio": round(ours_s / plain_s, 2), "runs": args.runs,
                     "all": {"coldcopy": [round(t, 2) for t, _ in ours], "plain": [round(t, 2) for t, _ in plain]}},
        "size_mb": {"object": round(ours[-1][1] / 2**20, 1), "plain_dump": round(plain[-1][1] / 2**20, 1),
                    "ratio": round(ours[-1][1] / plain[-1][1], 2)},
        "peak_rss_mb": memory,
        "restore_verification_s": round(verify["verification_ms"] / 1000, 1),
    }
    (ROOT / "bench" / "results" / "backups.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
