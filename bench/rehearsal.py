"""Dress-rehearsal figures (issue 21): what the rehearsal costs over the restore it stands on, and whether the
locks it predicts are the locks production sees.

1. At ``--scale`` (32), one backup of the database is taken; then, alternating which goes first, ``--runs``
   times each: *restore alone* (the rehearsal's scratch copy: create, restore the bound backup, drop) and *the
   rehearsal* (the same copy, then the pending files applied and measured:
   :func:`coldcopy.migrations.rehearsal.rehearse`).
   Goal: rehearsal ≤ 1.2 × the restore.
2. The same pending files applied to a copy of the live database under ``bench/load.py``'s workload (pgbench,
   ``--clients`` through PgBouncer), measured the same way (the runner's sessions sampled in ``pg_locks`` every
   5 ms); per file, the strongest lock's held time, predicted (rehearsal, idle copy) against measured (live copy
   under load). Goal: each within 25 %.

The pending files are ``bench/rehearsal_files/*.sql``: a type change that rewrites ``leads`` (a hot table of the
workload), a column with a constant default (no rewrite), a concurrent index build.

    .venv/bin/python -m bench.rehearsal [--scale 32 --runs 3 --clients 100]
    .venv/bin/python -m bench.rehearsal --table      # its table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench import common
from coldcopy.backups import BackupRunner
from coldcopy.migrations import MIGRATIONS_DIR, discover_migrations, rehearsal
from coldcopy.migrations.scratch_copy import ScratchCopy
from coldcopy.testing import app_load, local_env, servers

BUCKET = "coldcopy-bench-rehearsal"
FILES = Path(__file__).resolve().parent / "rehearsal_files"


def pending_files(folder: Path) -> list:
    """The runbook's files (applied in the template) and the bench's own, as one migrations folder; the bench's
    are the pending ones."""
    for path in [*MIGRATIONS_DIR.glob("*.sql"), *FILES.glob("*.sql")]:
        (folder / path.name).symlink_to(path)
    return [m for m in discover_migrations(folder, None) if m.path.resolve().parent == FILES]


def restore_alone(runner: BackupRunner, server: str) -> float:
    started = time.perf_counter()
    with ScratchCopy(runner, server):
        pass
    return time.perf_counter() - started


def rehearse(runner: BackupRunner, server: str, files: list, out: list) -> float:
    started = time.perf_counter()
    with ScratchCopy(runner, server) as scratch:
        out.append(rehearsal.rehearse(scratch, files))
    return time.perf_counter() - started


def under_load(dsn: str, bouncer, files: list, clients: int) -> tuple[list, dict]:
    """The files applied to ``dsn`` (a copy of the live database) 3 s into the workload, measured as the
    rehearsal measures; the load runs in 5 s rounds until they are done."""
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    password = app_load.prepare(dsn)
    done, rounds = threading.Event(), []

    def load() -> None:
        while not done.is_set():
            rounds.append(app_load.run(bouncer, name, password, clients=clients, seconds=5))

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(3)
        results = rehearsal.rehearse(dsn, files)
    finally:
        done.set()
        loader.join()
    total = app_load.LoadResult(sum(r.transactions for r in rounds), sum(r.errors for r in rounds),
                                sum(r.seconds for r in rounds), [x for r in rounds for x in r.latencies_ms], [])
    return results, total.summary


def strongest(result: rehearsal.FileRehearsal) -> rehearsal.HeldLock | None:
    return result.locks[0] if result.locks else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table and exit")
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("rehearsal")))
        return
    server = local_env.admin_dsn()
    with (tempfile.TemporaryDirectory() as folder, common.bench_database(server, args.scale, "rehearsal") as live,
          common.s3_endpoint() as endpoint, servers.LocalPgBouncer(server) as bouncer):
        files = pending_files(Path(folder))
        runner = BackupRunner(live, common.spaces_bucket(endpoint, BUCKET), "bench", keyring=common.KEYRING)
        backup = runner.backup(retention_class="standard")
        rehearsals: list = []
        times = common.alternating(args.runs, {
            "restore alone": lambda: restore_alone(runner, server),
            "rehearsal (restore + pending files)": lambda: rehearse(runner, server, files, rehearsals)})
        with common.copy_of(server, live, "rehearsal_live") as copy:
            measured, load = under_load(copy, bouncer, files, args.clients)
        predicted = rehearsals[-1]
        per_file = []
        for before, after in zip(predicted, measured, strict=True):
            p, m = strongest(before), strongest(after)
            per_file.append({
                "file": before.file, "relation": p.relation if p else None, "mode": p.mode if p else None,
                "predicted_held_ms": p.held_ms if p else 0.0,
                "predicted_runs_ms": [strongest(r[i]).held_ms for r in rehearsals for i in range(len(r))
                                      if r[i].file == before.file and strongest(r[i])],
                "measured_mode": m.mode if m else None, "measured_held_ms": m.held_ms if m else 0.0,
                "ratio": round(m.held_ms / p.held_ms, 2) if p and m and p.held_ms else None,
                "rewritten": sorted(before.rewritten), "predicted_duration_ms": before.duration_ms,
                "measured_duration_ms": after.duration_ms, "errors": [before.error, after.error]})
    ratio = statistics.median(times["rehearsal (restore + pending files)"]) / statistics.median(times["restore alone"])
    common.write_results(
        "rehearsal", {"scale": args.scale, "runs": args.runs, "clients": args.clients,
                      "files": [f.file_name for f in files]},
        {"database_bytes": backup.manifest["database_size_bytes"], "backup_bytes": backup.manifest["byte_size"],
         "seconds": {k: common.spread(v) for k, v in times.items()}, "rehearsal_over_restore": round(ratio, 2),
         "locks": per_file, "load_during_live_apply": load}, server)


def table(summary: dict) -> str:
    s, sec = summary["settings"], summary["seconds"]
    restore, rehearsed = sec["restore alone"], sec["rehearsal (restore + pending files)"]
    rows = [f"Scale {s['scale']} ({summary['database_bytes'] / 2**20:,.0f} MB database, "
            f"{summary['backup_bytes'] / 2**20:,.0f} MB backup), {s['runs']} runs each, alternating:", "",
            "| | median | min–max |", "|---|---|---|",
            f"| restore alone (scratch copy: create, restore, drop) | {restore['median']:.1f} s | "
            f"{restore['min']:.1f}–{restore['max']:.1f} s |",
            f"| rehearsal (the same, plus {len(s['files'])} pending files measured) | {rehearsed['median']:.1f} s | "
            f"{rehearsed['min']:.1f}–{rehearsed['max']:.1f} s |",
            f"| **rehearsal ÷ restore** (goal ≤ 1.2) | **{summary['rehearsal_over_restore']:.2f}×** | |", "",
            f"Locks predicted by the rehearsal (idle scratch copy) against the same files applied to a copy of the "
            f"live database under the load bench's workload ({s['clients']} pgbench clients through PgBouncer: "
            f"{summary['load_during_live_apply']['tps']:,.0f} TPS, p99 "
            f"{summary['load_during_live_apply']['p99_ms']:,.0f} ms); goal: each within 25 %:", "",
            "| file | strongest lock | predicted held | measured under load | measured ÷ predicted |",
            "|---|---|---|---|---|"]
    for f in summary["locks"]:
        ratio = f"{f['ratio']:.2f}" if f["ratio"] is not None else "—"
        lock = f"{f['relation']} {f['mode']}" if f["mode"] else "none seen (held < one 5 ms sample)"
        predicted = f"{f['predicted_held_ms']:,.0f} ms" if f["mode"] else "—"
        rows.append(f"| {f['file']} | {lock} | {predicted} | {f['measured_held_ms']:,.0f} ms ({f['measured_mode']}) "
                    f"| {ratio} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
