"""Restore speed and restore drills: single-stream vs parallel restore vs the machine's physical limit, a drill's
RTO broken down, and the replay's rate against the load bench's write rate.

1. At each of ``--scales``, on the shared server, each into a new empty database, alternating which goes first,
   ``--runs`` each (``--runs-at-96`` at 96): *single*, the backup from the bucket streamed ``gpg | zstd -d |
   pg_restore --single-transaction`` (before issue 34, every restore); *parallel*, the bound object decrypted
   into the spool and ``pg_restore --jobs N`` (N = the cores; whole-database restores into a private database
   now); *physical limit*, ``pg_restore --jobs N`` of an unencrypted local ``pg_dump -Fc -Z0`` file of the same
   database (nothing downloaded, decrypted or decompressed).
2. On a throwaway ``wal_level=logical`` cluster holding the ``--drill-scale`` database (bench.pitr's set-up): a
   base backup, ``--seconds`` of the load bench's workload (``--clients`` through PgBouncer) with the archive
   drained, then a restore drill as of its last second onto the shared server: the RTO by phase, the RPO, and the
   replay's changes/s against the workload's write rate.

    make bench            # or: .venv/bin/python -m bench.restore [--scales 32,96 --runs 2 --runs-at-96 1]
    .venv/bin/python -m bench.restore --table
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from bench import common
from bench.pitr import load_phase, loaded
from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.pg_tools import client_popen, pg_program
from coldcopy.pitr import chain as chains
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.refresh.erasures import Dashboards
from coldcopy.testing import local_env

PASSPHRASE = common.PASSPHRASE
JOBS = os.cpu_count() or 2


def restore_variants(server: str, scale: int, runs: int) -> dict:
    with common.bench_database(server, scale, "restore") as dsn, common.s3_endpoint() as endpoint, \
            tempfile.TemporaryDirectory() as work:
        runner = BackupRunner(dsn, common.spaces_bucket(endpoint, "coldcopy-bench-restore"), PASSPHRASE,
                              keyring=common.KEYRING)
        backup = runner.backup(retention_class="standard")
        local = str(Path(work) / "local.dump")
        dump = client_popen([pg_program("pg_dump", 15), "-Fc", "-Z0", "--no-password", "-f", local], dsn,
                            stderr=subprocess.PIPE)
        assert dump.wait() == 0, dump.stderr.read()
        phases: dict[str, list[dict]] = {"single": [], "parallel": []}

        def into_new(label: str, call) -> float:
            target = local_env.create_database(server, f"cc_bench_restored_{label}", replace=True)
            started = time.perf_counter()
            call(target)
            seconds = time.perf_counter() - started
            local_env.drop_database(server, f"cc_bench_restored_{label}")
            return seconds

        def ours(jobs: int, label: str):
            def run() -> float:
                seconds = into_new(label, lambda t: runner.restore(backup.object_key, t, manifest=backup.manifest,
                                                                  jobs=jobs))
                phases[label].append({k: round(v, 2) for k, v in runner.timings.items()})
                return seconds
            return run

        def physical() -> float:
            def run(target: str) -> None:
                restore = client_popen([pg_program("pg_restore", 15), "--no-owner", "--exit-on-error",
                                        f"--jobs={JOBS}", local], target, stderr=subprocess.PIPE)
                assert restore.wait() == 0, restore.stderr.read()
            return into_new("physical", run)

        times = common.alternating(runs, {"single": ours(1, "single"), "parallel": ours(JOBS, "parallel"),
                                          "physical_limit": physical})
        with psycopg.connect(dsn) as conn:
            events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return {"email_events": events, "database_bytes": size, "object_bytes": backup.manifest["byte_size"],
                "jobs": JOBS, "seconds": {k: common.spread(v) for k, v in times.items()}, "phases": phases}


def drill(scale: int, clients: int, seconds: int) -> dict:
    from coldcopy.gdpr import reapply_after_restore
    from coldcopy.pitr.drills.drill import RestoreDrill

    with loaded(scale, clients, "restore_drill") as setup:
        archiver = ChangeArchiver(setup.dsn, setup.bucket, PASSPHRASE, keyring=common.KEYRING)
        archiver.drain_once()
        runner = BackupRunner(setup.dsn, setup.bucket, PASSPHRASE, keyring=common.KEYRING, restore_jobs=JOBS)
        runner.backup()
        drained: list = []
        drainer = threading.Thread(target=lambda: drained.extend(
            archiver.run(until=time.monotonic() + seconds + 8, every_s=5.0)))
        drainer.start()
        summary = load_phase(setup.bouncer, setup.dbname, setup.password, clients, seconds)
        drainer.join()
        time.sleep(1.1)
        archiver.tip_every_s = 0
        archiver.drain_once()
        chain = chains.load_chain(setup.bucket, chains.list_chains(setup.bucket)[-1], common.KEYRING)
        changes = sum(s["changes"] for s in chain.segments)
        as_of = datetime.fromisoformat(chain.segments[-1]["last_commit"]).replace(microsecond=0) + timedelta(
            seconds=1)
        local_env.prepare_verify_server(setup.server)
        with psycopg.connect(setup.server, autocommit=True) as admin:  # the load bench's role: production's globals
            if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'coldcopy_app'").fetchone():
                admin.execute("CREATE ROLE coldcopy_app NOLOGIN")
        row = RestoreDrill(runner, setup.dsn, setup.server, jobs=JOBS, migrate=marker_applier,
                           reapply=lambda manifest, dsn: reapply_after_restore(
                               dsn, setup.bucket, common.KEYRING, None, common.PEPPER, Dashboards)).run(as_of)
        keep = ("rto_s", "download_s", "restore_s", "replay_s", "verify_s", "erasures_s", "rpo_s",
                "at_risk_transactions", "bytes", "rows", "changes_replayed", "segments", "jobs")
        return {"email_events": setup.events, "tps": summary["tps"],
                "write_rate_changes_s": round(changes / seconds, 1),
                "replay_changes_s": round(row["changes_replayed"] / row["replay_s"], 1),
                "sampled_keys": row["checks"]["sampled_keys"], **{k: row[k] for k in keep}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="32,96")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--runs-at-96", type=int, default=1)
    parser.add_argument("--drill-scale", type=int, default=32)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("restore")))
        return
    server = local_env.prepare_verify_server(local_env.admin_dsn())  # the roles the dump grants to
    scales = [int(s) for s in args.scales.split(",")]
    restores = {str(s): restore_variants(server, s, args.runs_at_96 if s >= 96 else args.runs) for s in scales}
    print(restores, flush=True)
    drilled = drill(args.drill_scale, args.clients, args.seconds)
    common.write_results("restore", vars(args), {"restores": restores, "drill": drilled}, server)
    print(table(common.load_results("restore")))


def table(results: dict) -> str:
    s, m = results["settings"], results["machine"]
    rows = [f"Whole-database restores into a new database on the same server, alternating which goes first, "
            f"{s['runs']} runs each ({s['runs_at_96']} at scale 96), medians (min–max): *single*, the bound object "
            f"streamed `gpg | zstd -d | pg_restore --single-transaction` (every restore before); *parallel*, the "
            f"bound object decrypted into the spool, its data offsets written (`coldcopy.backups.offsets`), then "
            f"`pg_restore --jobs N` (N = the cores); *physical limit*, "
            f"`pg_restore --jobs N` of an unencrypted local `pg_dump -Fc -Z0` file of the same database. "
            f"PostgreSQL {m['postgresql']}, {m['cores']} cores (`python -m bench.restore --table` reprints this).",
            "", "| scale (email_events, database) | single | parallel | physical limit | parallel / limit | "
            "parallel: download / decrypt / pg_restore |", "|---|---|---|---|---|---|"]
    for scale, r in results["restores"].items():
        sec = r["seconds"]

        def fmt(name: str, sec: dict = sec) -> str:
            return f"{sec[name]['median']:.1f} s ({sec[name]['min']:.1f}–{sec[name]['max']:.1f})"

        p = r["phases"]["parallel"][-1]
        rows.append(f"| {scale} ({r['email_events']:,}, {r['database_bytes'] / 2**20:,.0f} MB) | {fmt('single')} | "
                    f"{fmt('parallel')} | {fmt('physical_limit')} | "
                    f"**{sec['parallel']['median'] / sec['physical_limit']['median']:.2f}×** | "
                    f"{p['download_s']:.1f} / {p['decrypt_s']:.1f} / {p['restore_s']:.1f} s |")
    d = results["drill"]
    rows += ["", f"A restore drill at scale {s['drill_scale']} ({d['email_events']:,} email_events) after "
             f"{s['seconds']} s of the load bench's workload ({s['clients']} clients, {d['tps']:,.0f} TPS) with the "
             f"archive drained, as of its last second, onto the shared server ({d['jobs']} jobs):", "",
             "| RTO | download | restore | replay | verify | erasures | RPO | downloaded | rows | changes replayed |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| **{d['rto_s']:.1f} s** | {d['download_s']:.1f} s | {d['restore_s']:.1f} s | {d['replay_s']:.1f} s | "
             f"{d['verify_s']:.1f} s | {d['erasures_s']:.1f} s | {d['rpo_s']:.1f} s ({d['at_risk_transactions']} "
             f"commits) | {d['bytes'] / 2**20:,.0f} MB | {d['rows']:,} | {d['changes_replayed']:,} |", "",
             f"Replay: {d['replay_changes_s']:,.0f} changes/s against the workload's {d['write_rate_changes_s']:,.0f} "
             f"(**{d['replay_changes_s'] / d['write_rate_changes_s']:.1f}×**, goal 10×), {d['sampled_keys']:,} "
             "sampled keys checked equal to the archive."]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
