"""Point-in-time recovery under the load of bench/load.py (issue 20): what the change archive costs the
workload, how far behind it runs, what it stores, and how fast it replays.

On a throwaway cluster with ``wal_level=logical`` holding a copy of the ``--scale`` database, ``--clients``
(100) pgbench clients through Debian's PgBouncer run bench/load.py's application script, in phases of
``--seconds``, alternating: **without** a slot, and **with** the change archive draining every 5 s (a new slot
and a base backup before each). Per phase: TPS and p50/p99/max latency. With the archive: the lag of every
archived transaction (segment verified and slot advanced − commit), segment bytes per million changes, then
the restore of the base backup alone against the base backup + the phase's archive replayed (``as_of`` its
last second), and the replay's rate in changes/s against the workload's write rate.

    .venv/bin/python -m bench.pitr [--scale 32 --clients 100 --seconds 30 --rounds 2]
    .venv/bin/python -m bench.pitr --table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from bench import common
from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.pitr.setup import Setup
from coldcopy.testing import app_load, local_env, servers

PASSPHRASE = "bench-only passphrase"


def copy_into(source: str, target: str) -> None:
    """The roles (``pg_dumpall --roles-only``), then ``pg_dump -Fc | pg_restore`` of the generated database,
    into the logical cluster."""
    roles = subprocess.run([local_env.executable("pg_dumpall"), "--roles-only", "-d", source], check=True,
                           capture_output=True, text=True).stdout
    subprocess.run([local_env.executable("psql"), "-q", "-d", target], input=roles, capture_output=True,
                   text=True)  # "role postgres already exists" is expected
    dump = subprocess.Popen([local_env.executable("pg_dump"), "-Fc", "-Z0", "-d", source], stdout=subprocess.PIPE)
    subprocess.run([local_env.executable("pg_restore"), "--no-owner", "-d", target], stdin=dump.stdout, check=True)
    dump.stdout.close()
    if dump.wait():
        raise RuntimeError("pg_dump failed")


def load_phase(bouncer, dbname: str, password: str, clients: int, seconds: int) -> dict:
    rounds = [app_load.run(bouncer, dbname, password, clients=clients, seconds=5) for _ in range(seconds // 5)]
    total = app_load.LoadResult(sum(r.transactions for r in rounds), sum(r.errors for r in rounds),
                                sum(r.seconds for r in rounds), [x for r in rounds for x in r.latencies_ms],
                                [x for r in rounds for x in r.error_lines])
    return total.summary


def with_archive(cluster, dsn: str, bucket, bouncer, password: str, clients: int, seconds: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        Setup(conn).drop_slot()
    archiver = ChangeArchiver(dsn, bucket, PASSPHRASE, keyring=common.KEYRING)
    archiver.drain_once()  # a new slot, a new chain
    runner = BackupRunner(dsn, bucket, PASSPHRASE, keyring=common.KEYRING)
    base = runner.backup()
    drained: list = []
    drainer = threading.Thread(target=lambda: drained.extend(
        archiver.run(until=time.monotonic() + seconds + 8, every_s=5.0)))
    drainer.start()
    summary = load_phase(bouncer, psycopg.conninfo.conninfo_to_dict(dsn)["dbname"], password, clients, seconds)
    drainer.join()
    time.sleep(1.1)
    archiver.tip_every_s = 0
    archiver.drain_once()
    lags = sorted(x for d in drained for x in d.lags_s)
    chain = chains.load_chain(bucket, chains.list_chains(bucket)[-1], common.KEYRING)
    changes = sum(s["changes"] for s in chain.segments)
    stored = sum(s["byte_size"] for s in chain.segments)
    as_of = datetime.fromisoformat(chain.segments[-1]["last_commit"]).replace(microsecond=0) + timedelta(seconds=1)
    plan = recovery.plan(runner, as_of)
    assert plan.backup_key == base.object_key, (plan.backup_key, base.object_key)
    timings = {}
    for label in ("base", "base_and_archive"):
        target = local_env.create_database(cluster.dsn, f"bench_pitr_{label}", replace=True)
        started = time.perf_counter()
        runner.restore(plan.backup_key, target, manifest=plan.backup)
        timings[label] = time.perf_counter() - started
        if label == "base_and_archive":
            replay_began = time.perf_counter()
            report = recovery.replay(runner, plan, target, jobs=os.cpu_count() or 2,
                                     migrate=marker_applier(target))
            timings["replay"] = time.perf_counter() - replay_began
            timings[label] += timings["replay"]
        local_env.drop_database(cluster.dsn, f"bench_pitr_{label}")

    def pct(p: float) -> float:
        return round(lags[min(len(lags) - 1, int(p * len(lags)))], 1) if lags else None

    return {**summary, "segments": len(chain.segments), "changes": changes, "bytes": stored,
            "bytes_per_million_changes": round(stored / changes * 1e6) if changes else None,
            "lag_p50_s": pct(0.5), "lag_p99_s": pct(0.99), "lag_max_s": round(lags[-1], 1) if lags else None,
            "write_rate_changes_s": round(changes / seconds, 1),
            "replayed_transactions": report["transactions_replayed"],
            "replay_changes_s": round(changes / timings["replay"], 1),
            "restore_base_s": round(timings["base"], 2),
            "restore_base_and_archive_s": round(timings["base_and_archive"], 2)}


@dataclass
class Loaded:
    """The set-up both PITR benches share (:func:`loaded`)."""

    server: str
    cluster: servers.ThrowawayCluster
    dsn: str
    dbname: str
    bucket: object
    bouncer: servers.LocalPgBouncer
    password: str
    events: int


@contextmanager
def loaded(scale: int, clients: int, label: str):
    """A throwaway ``wal_level=logical`` cluster holding a copy of the ``scale`` database (``coldcopy``), PgBouncer
    in front of it, the application's role, a bucket on a local S3 endpoint, and one untimed 5 s warm-up."""
    server = local_env.admin_dsn()
    cluster = servers.ThrowawayCluster({"wal_level": "logical", "max_connections": "300",
                                        "shared_buffers": "256MB"}).start()
    try:
        with common.bench_database(server, scale, label) as source, common.s3_endpoint() as endpoint, \
                servers.LocalPgBouncer(cluster.dsn) as bouncer:
            dsn = local_env.create_database(cluster.dsn, "coldcopy")
            copy_into(source, dsn)
            with psycopg.connect(dsn, autocommit=True) as conn:
                events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
            password = app_load.prepare(dsn)
            bucket = common.spaces_bucket(endpoint, f"coldcopy-bench-{label.replace('_', '-')}")
            dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
            load_phase(bouncer, dbname, password, clients, 5)  # untimed warm-up
            yield Loaded(server, cluster, dsn, dbname, bucket, bouncer, password, events)
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("pitr")))
        return
    phases: dict[str, list[dict]] = {"without": [], "with": []}
    with loaded(args.scale, args.clients, "pitr") as setup:
        def without() -> float:
            with psycopg.connect(setup.dsn, autocommit=True) as conn:
                Setup(conn).drop_slot()
            phases["without"].append(load_phase(setup.bouncer, setup.dbname, setup.password, args.clients,
                                                args.seconds))
            print(json.dumps({"without": phases["without"][-1]}), flush=True)
            return 0.0

        def archived() -> float:
            phases["with"].append(with_archive(setup.cluster, setup.dsn, setup.bucket, setup.bouncer, setup.password,
                                               args.clients, args.seconds))
            print(json.dumps({"with": phases["with"][-1]}), flush=True)
            return 0.0

        common.alternating(args.rounds, {"without": without, "with": archived})
    common.write_results("pitr", vars(args), {"email_events": setup.events, "phases": phases}, setup.server)


def table(results: dict) -> str:
    settings, phases = results["settings"], results["phases"]
    w, o = phases["with"], phases["without"]

    def med(rows: list[dict], key: str) -> float:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(statistics.median(values), 1) if values else float("nan")

    lines = [
        f"| scale {settings['scale']} ({results['email_events']:,} email_events), {settings['clients']} clients "
        f"through PgBouncer, {settings['seconds']} s phases, {settings['rounds']} rounds alternating | "
        "without a slot | with the change archive |",
        "|---|---|---|",
        f"| workload TPS (median) | {med(o, 'tps'):,} | {med(w, 'tps'):,} |",
        f"| workload p99 / max, ms (median) | {med(o, 'p99_ms')} / {med(o, 'max_ms')} | "
        f"{med(w, 'p99_ms')} / {med(w, 'max_ms')} ({med(w, 'p99_ms') / med(o, 'p99_ms'):.2f}× p99) |",
        f"| archive lag p50 / p99 / max, s (every transaction: commit → segment verified, slot advanced) | | "
        f"{med(w, 'lag_p50_s')} / {med(w, 'lag_p99_s')} / {max(r['lag_max_s'] for r in w)} (goal ≤ 60) |",
        f"| segment bytes per million changes | | {med(w, 'bytes_per_million_changes') / 2**20:.1f} MiB |",
        f"| replay rate vs the workload's write rate, changes/s | | {med(w, 'replay_changes_s'):,} vs "
        f"{med(w, 'write_rate_changes_s'):,} ({med(w, 'replay_changes_s') / med(w, 'write_rate_changes_s'):.1f}×) |",
        f"| restore: base backup alone vs base + the phase's archive ({med(w, 'changes'):,} changes) as of its "
        f"last second, s | | {med(w, 'restore_base_s')} vs {med(w, 'restore_base_and_archive_s')} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
