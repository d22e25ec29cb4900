"""What binding every object to its signed manifest costs (issue 19), and the GDPR rewrite of an archive.

1. **Restore** of the whole database at ``--scale`` into an empty database: the restore path as it runs
   (spool the object to a private file while hashing it, compare key, size and sha256 with the signed manifest,
   then ``gpg`` gated on its status → ``zstd -d`` → ``pg_restore``) against the path before binding (the object
   streamed straight from the bucket into ``gpg --decrypt | zstd -d | pg_restore``, no check), alternating.
2. **Verification** (restore into a scratch database, count every table, drop it): the same two paths.
3. **Archive rewrite** of one month holding ``--subjects`` erased people (``ArchiveScrubber.scrub``: stream
   back, decrypt, leave their records out, gzip, encrypt, upload, sign) against exporting that month afresh
   (``PartitionManager.export``), alternating.

    .venv/bin/python -m bench.trust [--scale 32 --runs 3 --subjects 100]
    .venv/bin/python -m bench.trust --table
"""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid

import psycopg

from bench import common
from coldcopy import kill_targets
from coldcopy.backups import BackupRunner, _count, _Pipeline
from coldcopy.crypto import gpg_decrypt_popen
from coldcopy.pg_tools import client_popen, minimal_env, pg_program
from coldcopy.refresh.erasures import Dashboards
from coldcopy.testing import local_env

BUCKET = "coldcopy-bench-trust"
PASSPHRASE = "bench-only passphrase"


def unbound_restore(runner: BackupRunner, key: str, target: str) -> None:
    """The restore before binding: the object streamed from the bucket straight into gpg, nothing checked."""
    gpg, _ = gpg_decrypt_popen(runner.passphrase, subprocess.PIPE, subprocess.PIPE)
    zstd = kill_targets.popen(["zstd", "-q", "-d", "-c"], stdin=gpg.stdout, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=minimal_env())
    restore = client_popen([pg_program("pg_restore", 15), "--no-owner", "--exit-on-error", "--single-transaction"],
                           target, stdin=zstd.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gpg.stdout.close()
    zstd.stdout.close()
    pipeline = _Pipeline({"gpg": gpg, "zstd": zstd, "pg_restore": restore})
    for chunk in runner.bucket.read(key):
        gpg.stdin.write(chunk)
    gpg.stdin.close()
    if failures := pipeline.failures():
        raise RuntimeError(failures)


def timed_restore(server: str, restore, counts: dict | None = None) -> float:
    name = f"cc_bench_trust_{uuid.uuid4().hex[:8]}"
    target = local_env.create_database(server, name)
    try:
        started = time.perf_counter()
        restore(target)
        if counts is not None:  # verification: every table counted against the manifest
            with psycopg.connect(target) as conn:
                assert all(_count(conn, t) == n for t, n in counts.items())
        return time.perf_counter() - started
    finally:
        local_env.drop_database(server, name)


def restores(server: str, dsn: str, endpoint: str, runs: int) -> dict:
    runner = BackupRunner(dsn, common.spaces_bucket(endpoint, BUCKET), PASSPHRASE, keyring=common.KEYRING)
    result = runner.backup(retention_class="standard")
    key, manifest = result.object_key, runner.manifest(result.object_key)
    restore = common.alternating(runs, {
        "bound": lambda: timed_restore(server, lambda t: runner.restore(key, t, manifest=manifest)),
        "unbound": lambda: timed_restore(server, lambda t: unbound_restore(runner, key, t)),
    })
    verify = common.alternating(runs, {
        "bound": lambda: timed_restore(server, lambda t: runner.restore(key, t, manifest=manifest),
                                       manifest["row_counts"]),
        "unbound": lambda: timed_restore(server, lambda t: unbound_restore(runner, key, t), manifest["row_counts"]),
    })
    return {"object_mb": round(result.manifest["byte_size"] / 2**20, 1),
            "restore_s": {k: common.spread(v) for k, v in restore.items()},
            "verify_s": {k: common.spread(v) for k, v in verify.items()}}


def rewrite(server: str, dsn: str, endpoint: str, runs: int, subjects: int) -> dict:
    from coldcopy.gdpr import Gdpr
    from coldcopy.partitions import PartitionManager
    from coldcopy.partitions.scrubber import ArchiveScrubber

    bucket = common.spaces_bucket(endpoint, BUCKET)
    export_bucket = common.spaces_bucket(endpoint, BUCKET + "-export")
    client = bucket.client
    with common.copy_of(server, dsn, "trust_export") as other, \
            psycopg.connect(other, autocommit=True) as export_conn, psycopg.connect(dsn, autocommit=True) as conn:
        exporter = PartitionManager(export_conn, keyring=common.KEYRING, passphrase=PASSPHRASE)
        manager = PartitionManager(conn, keyring=common.KEYRING, passphrase=PASSPHRASE)
        month = max(manager.archive_candidates(), key=lambda p: conn.execute(
            f"SELECT count(*) FROM public.{p.name}").fetchone()[0])
        rows = conn.execute(f"SELECT count(*) FROM public.{month.name}").fetchone()[0]
        manager.archive(month, bucket)
        gdpr = Gdpr(conn, dashboards=Dashboards, keyring=common.KEYRING, pepper=common.PEPPER)
        people = conn.execute(f"SELECT DISTINCT l.workspace_id, l.email FROM public.{month.name} e "
                              "JOIN leads l ON l.id = e.lead_id LIMIT %s", (subjects,)).fetchall()
        for workspace_id, email in people:  # the ledger entries (the month is detached: its rows go too)
            gdpr.erase(gdpr.find(workspace_id, email=email), str(uuid.uuid4()))
        seq, erased = ArchiveScrubber(manager).ledger()
        manifest = manager.read_manifest(month, bucket)
        signed_manifest = client.get_object(Bucket=BUCKET, Key=month.manifest_key)["Body"].read()
        client.copy_object(Bucket=BUCKET, Key=f"{manifest['object_key']}.keep",
                           CopySource={"Bucket": BUCKET, "Key": manifest["object_key"]})
        removed = []

        def scrub() -> float:  # from the original archive every round
            client.copy_object(Bucket=BUCKET, Key=manifest["object_key"],
                               CopySource={"Bucket": BUCKET, "Key": f"{manifest['object_key']}.keep"})
            client.put_object(Bucket=BUCKET, Key=month.manifest_key, Body=signed_manifest)
            started = time.perf_counter()
            done = ArchiveScrubber(manager).scrub(month, bucket, seq, erased)
            removed.append(done.removed)
            return time.perf_counter() - started

        def export() -> float:  # the same month, still attached in a copy of the database
            started = time.perf_counter()
            exporter.export(month, export_bucket)
            return time.perf_counter() - started

        timings = common.alternating(runs, {"rewrite": scrub, "export": export})
    return {"partition": month.name, "rows": rows, "subjects": len(people), "removed_rows": removed[0],
            "seconds": {k: common.spread(v) for k, v in timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("trust")))
        return
    server = local_env.admin_dsn()
    with common.s3_endpoint() as endpoint, common.bench_database(server, args.scale, "trust") as dsn:
        results = {"restore": restores(server, dsn, endpoint, args.runs),
                   "rewrite": rewrite(server, dsn, endpoint, args.runs, args.subjects)}
    common.write_results("trust", vars(args), results, server)


def table(results: dict) -> str:
    def mmm(spread: dict) -> str:
        return f"{spread['min']}–**{spread['median']}**–{spread['max']} s"

    r, w = results["restore"], results["rewrite"]
    scale = results["settings"]["scale"]
    ratio = lambda d: d["bound"]["median"] / d["unbound"]["median"]  # noqa: E731
    return "\n".join([
        "| at scale " + str(scale) + f" ({r['object_mb']} MB object), {r['restore_s']['bound']['runs']} runs each, "
        "alternating | bound to the signed manifest | before (streamed, unchecked) | ratio |",
        "|---|---|---|---|",
        f"| restore of the whole database | {mmm(r['restore_s']['bound'])} | {mmm(r['restore_s']['unbound'])} | "
        f"{ratio(r['restore_s']):.2f}× |",
        f"| verification (restore, count every table) | {mmm(r['verify_s']['bound'])} | "
        f"{mmm(r['verify_s']['unbound'])} | {ratio(r['verify_s']):.2f}× |",
        "",
        f"| archive of {w['partition']} ({w['rows']:,} rows), {w['subjects']} erased people "
        f"({w['removed_rows']:,} of its rows) | seconds |",
        "|---|---|",
        f"| rewrite without them (`ArchiveScrubber.scrub`) | {mmm(w['seconds']['rewrite'])} |",
        f"| for scale: exporting the month afresh (`PartitionManager.export`) | {mmm(w['seconds']['export'])} |",
    ]) + "\n"


if __name__ == "__main__":
    main()
