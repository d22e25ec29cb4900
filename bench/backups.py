"""Backup figures against the physical limit of a logical backup and the runbook's command.

1. end to end (the backup task's code: snapshot, per-table counts, ``pg_dump -Z0 | zstd | gpg AES256`` →
   multipart upload to a local S3 endpoint in its own process, manifest) vs the physical limit
   ``pg_dump -Fc -Z0 --no-sync -f /dev/null`` (reading and serializing the data, nothing else) vs the
   runbook's ``pg_dump -Fc -f backup.dump``, alternating which goes first, ``--runs`` each at ``--scale``;
   object size vs the runbook's dump; the machine's bound counting cores (:func:`core_bound`) from these same
   runs;
2. what each stage adds: the pipeline built up one stage at a time into /dev/null, and variants of the
   backup (zstd level and threads), each alternating with the default;
3. the backup, the physical limit and the runbook at each of ``--scales``, with the peak resident memory of
   the backup's whole process tree (Python, pg_dump, zstd, gpg) and the generator's time per scale;
4. restore verification (download, decrypt, decompress, pg_restore into a scratch database, count, drop).

    make bench            # or: .venv/bin/python -m bench.backups [--scale 32 --scales 8,32,96 --runs 5]
    .venv/bin/python -m bench.backups --table        # its tables in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench import common
from bench.backups_table import table  # noqa: F401 - bench.readme calls bench.backups.table
from coldcopy.backups import BackupRunner
from coldcopy.pg_tools import pg_program
from coldcopy.testing import local_env

BUCKET = "coldcopy-bench-backups"
PASSPHRASE = "bench-only passphrase"


def runner(dsn: str, endpoint: str, **options) -> BackupRunner:
    return BackupRunner(dsn, common.spaces_bucket(endpoint, BUCKET), PASSPHRASE, keyring=common.KEYRING,
                        **options)


def backup_once(dsn: str, endpoint: str, options: dict | None = None, timings: dict | None = None
                ) -> tuple[float, int]:
    """One backup; returns (seconds, object bytes). Also the child-process entry point. ``timings`` receives
    the endpoint's own share: ``completion_s`` (CompleteMultipartUpload) and ``until_parts_stored_s`` (the
    backup's time without it)."""
    backups = runner(dsn, endpoint, **(options or {}))
    started = time.perf_counter()
    result = backups.backup(retention_class="standard")
    seconds = time.perf_counter() - started
    if timings is not None:
        timings.update(completion_s=result.completion_s, until_parts_stored_s=seconds - result.completion_s)
    return seconds, result.manifest["byte_size"]


def pg_dump(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return pg_program("pg_dump", conn.info.server_version // 10000)


def shell(command: str) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - started


def physical_limit(dsn: str) -> float:
    return shell(f"{pg_dump(dsn)} -Fc -Z0 --no-sync -f /dev/null -d '{dsn}'")


def runbook(dsn: str, sizes: list[int]) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        seconds = shell(f"{pg_dump(dsn)} -Fc -f {scratch}/backup.dump -d '{dsn}'")
        sizes.append(Path(scratch, "backup.dump").stat().st_size)
    return seconds


STAGES = {
    "pg_dump -Fc -Z0 > /dev/null (the physical limit)": "{dump} > /dev/null",
    "… | zstd -1 -T1 > /dev/null": "{dump} | zstd -q -1 -T1 -c > /dev/null",
    "… | zstd -1 -T1 | gpg AES256 > /dev/null": "{dump} | zstd -q -1 -T1 -c | {gpg} > /dev/null",
}


def stages(dsn: str, runs: int) -> dict:
    """The pipeline built up one stage at a time, into /dev/null (no upload), alternating."""
    gpg = ("gpg --batch --quiet --no-tty --pinentry-mode loopback --symmetric --cipher-algo AES256 "
           "--compress-algo none --passphrase bench -o -")
    dump = f"{pg_dump(dsn)} -Fc -Z0 -d '{dsn}'"
    variants = {name: (lambda c=command: shell(c.format(dump=dump, gpg=gpg))) for name, command in STAGES.items()}
    return {name: common.spread(times) for name, times in common.alternating(runs, variants).items()}


VARIANTS = {"default (zstd -1, every core)": {}, "pipes of 1 MiB": {"pipe_bytes": 2**20},
            "parts of 16 MiB": {"part_size": 16 * 2**20}, "parts of 5 MiB": {"part_size": 5 * 2**20}}
CORES = os.cpu_count() or 2


def thread_variants() -> dict[str, dict]:
    """zstd threads (1, cores − 1, every core) at level 1, and levels at every core: what the default follows."""
    threads = sorted({1, max(1, CORES - 1), CORES})
    named = {f"zstd -1 -T{n}" + (" (cores − 1)" if n == CORES - 1 else "") + (" (every core)" if n == CORES else ""):
             {"zstd_threads": n, "zstd_level": 1} for n in threads}
    named.update({f"zstd -3 -T{CORES}": {"zstd_threads": CORES, "zstd_level": 3},
                  f"zstd --fast=1 -T{CORES}": {"zstd_threads": CORES, "zstd_level": -1}})
    return named


def threads_and_levels(dsn: str, endpoint: str, runs: int) -> dict:
    """Each of :func:`thread_variants` as the whole backup, alternating; time and object size."""
    sizes: dict[str, int] = {}

    def once(name: str, options: dict) -> float:
        seconds, sizes[name] = backup_once(dsn, endpoint, options)
        return seconds

    calls = {name: (lambda n=name, o=options: once(n, o)) for name, options in thread_variants().items()}
    return {name: {**common.spread(times), "object_mb": round(sizes[name] / 2**20, 1)}
            for name, times in common.alternating(runs, calls).items()}


def _backend_cpu_s(dsn: str, done: threading.Event, out: list) -> None:
    """CPU seconds of pg_dump's backend (``/proc/<pid>/stat``: the server is local), read until ``done``: a bare
    ``pg_dump``'s, or the backup's (``coldcopy:pg_dump:…``, :func:`coldcopy.kill_targets.client_application_name`)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(dsn, autocommit=True) as conn:
        pid, last = None, 0.0
        while not done.is_set():
            if pid is None:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE (application_name = 'pg_dump' OR application_name "
                    "LIKE 'coldcopy:pg\\_dump:%') AND datname = current_database()").fetchone()
                pid = row[0] if row else None
            if pid is not None:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    last = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
                except (FileNotFoundError, ProcessLookupError):
                    break
            time.sleep(0.02)
        out.append(last)


def measured(dsn: str, call):
    """``call()``'s result and the CPU seconds of the processes it ran (its waited-for children: pg_dump, zstd,
    gpg, from ``getrusage``) plus pg_dump's backend's."""
    done, backend = threading.Event(), []
    sampler = threading.Thread(target=_backend_cpu_s, args=(dsn, done, backend))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.start()
    try:
        result = call()
    finally:
        done.set()
        sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, children + (backend[0] if backend else 0.0)


def core_bound(physical_limit_s: list[float], backup_cpu_s: list[float]) -> dict:
    """The machine's bound for dump + compress + encrypt: max(wall time of the dump alone, CPU seconds of
    pg_dump, its backend, zstd and gpg ÷ cores), medians of the very runs it is compared with: the physical
    limit's, alternating with the backup, and the backup's own processes."""
    wall, cpu = statistics.median(physical_limit_s), statistics.median(backup_cpu_s)
    return {"dump_alone_wall_s": round(wall, 2), "backup_cpu_s": round(cpu, 2), "cores": CORES,
            "bound_s": round(max(wall, cpu / CORES), 2)}


def variants(dsn: str, endpoint: str, runs: int) -> dict:
    calls = {name: (lambda o=options: backup_once(dsn, endpoint, o)[0]) for name, options in VARIANTS.items()}
    return {name: common.spread(times) for name, times in common.alternating(runs, calls).items()}


def three_way(dsn: str, endpoint: str, runs: int) -> dict:
    backup_once(dsn, endpoint)  # warm-up, untimed: caches and the S3 server settle
    objects, dumps, shares, cpu = [], [], [], []

    def ours() -> float:
        shares.append({})
        (seconds, size), cpu_s = measured(dsn, lambda: backup_once(dsn, endpoint, timings=shares[-1]))
        objects.append(size)
        cpu.append(cpu_s)
        return seconds

    times = common.alternating(runs, {"backup": ours, "physical_limit": lambda: physical_limit(dsn),
                                      "runbook": lambda: runbook(dsn, dumps)})
    spreads = {name: common.spread(values) for name, values in times.items()}
    median = {name: s["median"] for name, s in spreads.items()}
    own = common.spread([t["until_parts_stored_s"] for t in shares])
    figure = {**{f"{name}_s": s for name, s in spreads.items()},
              "backup_until_parts_stored_s": own,
              "endpoint_completion_s": common.spread([t["completion_s"] for t in shares]),
              "ratio_to_physical_limit": round(median["backup"] / median["physical_limit"], 2),
              "own_ratio_to_physical_limit": round(own["median"] / median["physical_limit"], 2),
              "ratio_to_runbook": round(median["backup"] / median["runbook"], 2),
              "object_mb": round(objects[-1] / 2**20, 1), "runbook_dump_mb": round(dumps[-1] / 2**20, 1),
              "core_bound": core_bound(times["physical_limit"], cpu)}
    return {**figure, **ratios_to_core_bound(figure)}


def ratios_to_core_bound(figure: dict) -> dict:
    bound = figure["core_bound"]["bound_s"]
    return {"ratio_to_core_bound": round(figure["backup_s"]["median"] / bound, 2),
            "own_ratio_to_core_bound": round(figure["backup_until_parts_stored_s"]["median"] / bound, 2)}


def database_mb(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return round(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--scales", default="8,32,96")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--growth-runs", type=int, default=3)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    parser.add_argument("--rerun-scales", default="",
                        help="only measure the growth at these scales again (e.g. 96, after a disturbed run), keeping "
                             "the rest of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("backups")))
        return
    scales = [int(s) for s in args.scales.split(",")]
    server = local_env.admin_dsn()
    if args.rerun_scales:
        last = common.load_results("backups")
        with common.s3_endpoint() as endpoint:
            for scale in [int(s) for s in args.rerun_scales.split(",")]:
                last["growth"][str(scale)] = growth_at(server, endpoint, scale, last["settings"]["growth_runs"])
        settings = last.pop("settings")
        last.pop("machine")
        common.write_results("backups", settings, last, server)
        return
    with common.s3_endpoint() as endpoint:
        with common.bench_database(server, args.scale, "backup") as dsn:
            main_figure = {"database_mb": database_mb(dsn), **three_way(dsn, endpoint, args.runs)}
            by_stage = stages(dsn, args.runs)
            by_variant = variants(dsn, endpoint, args.runs)
            backups = runner(dsn, endpoint)
            verification = backups.verify(backups.resolve("latest")[0], local_env.database_dsn(server, "postgres"))
        growth = {scale: growth_at(server, endpoint, scale, args.growth_runs) for scale in scales}
    common.write_results(
        "backups",
        {"scale": args.scale, "scales": scales, "runs": args.runs, "growth_runs": args.growth_runs, "warm_up": 1,
         "order": "alternating", "endpoint": "moto server in its own process on loopback",
         "backup": f"BackupRunner defaults: pg_dump -Fc -Z0 | zstd -1 -T{CORES} (every core) | gpg AES256 "
                   "--compress-algo none"},
        {"email_events": common.template_info(server, args.scale)["counts"]["email_events"],
         "end_to_end": main_figure, "stages_into_dev_null": by_stage, "variants": by_variant, "growth": growth,
         "restore_verification_s": round(verification["verification_ms"] / 1000, 1)}, server)


def growth_at(server: str, endpoint: str, scale: int, runs: int) -> dict:
    with common.bench_database(server, scale, "backup_grow") as dsn:
        _, peak = common.peak_rss_of_call("backups", "backup_once", dsn, endpoint)
        info = common.template_info(server, scale)
        figure = {"email_events": info["counts"]["email_events"], "generate_s": info["generate_s"],
                  "database_mb": database_mb(dsn), "peak_rss_mb": peak, **three_way(dsn, endpoint, runs),
                  "threads_and_levels": threads_and_levels(dsn, endpoint, runs)}
    return figure


if __name__ == "__main__":
    main()
