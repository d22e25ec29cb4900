"""The tables of bench/backups.py in docs/benchmarks.md, from ``bench/results/backups.json``."""

from __future__ import annotations


def table(results: dict) -> str:
    s, e2e = results["settings"], results["end_to_end"]

    def mmm(spread: dict) -> str:
        return f"{spread['min']:.2f}–**{spread['median']:.2f}**–{spread['max']:.2f} s"

    return "\n".join([
        f"Scale {s['scale']} ({results['email_events']:,} email_events, {e2e['database_mb']:,} MB database), "
        f"PostgreSQL {results['machine']['postgresql']}, {results['machine']['cores']} cores, {s['endpoint']}; one "
        f"warm-up, then {s['runs']} runs of each, alternating which goes first (`make bench`; "
        f"`python bench/backups.py --table` reprints these tables from `bench/results/backups.json`).",
        "",
        "The endpoint here is moto on the same two cores: when the last part is in, it assembles the object "
        "(CompleteMultipartUpload: reads every part, concatenates, hashes, writes) while the backup waits. "
        "Spaces does that on its own machines, so the backup's own time is until the endpoint has every part; "
        "both are shown, against both limits.",
        "",
        "| | min–median–max | ÷ physical limit (goal ≤ 1.25×) | ÷ core-counting bound (goal ≤ 1.1×) |",
        "|---|---|---|---|",
        f"| backup until every part is stored (snapshot, counts, `pg_dump -Z0 \\| zstd \\| gpg` → multipart "
        f"upload) | {mmm(e2e['backup_until_parts_stored_s'])} | **{e2e['own_ratio_to_physical_limit']}×** | "
        f"**{e2e['own_ratio_to_core_bound']}×** |",
        f"| + the endpoint assembling the object (moto, on these cores) | {mmm(e2e['endpoint_completion_s'])} | | |",
        f"| = backup end to end, manifest included | {mmm(e2e['backup_s'])} | {e2e['ratio_to_physical_limit']}× | "
        f"{e2e['ratio_to_core_bound']}× |",
        f"| physical limit: `pg_dump -Fc -Z0 --no-sync -f /dev/null` | {mmm(e2e['physical_limit_s'])} | | |",
        f"| the machine's bound, counting cores: max(dump alone {e2e['core_bound']['dump_alone_wall_s']:.2f} s (the "
        f"physical limit's median), CPU of the backup's pg_dump + backend + zstd + gpg "
        f"{e2e['core_bound']['backup_cpu_s']:.2f} s ÷ {e2e['core_bound']['cores']} cores) | "
        f"{e2e['core_bound']['bound_s']:.2f} s | | |",
        f"| runbook: `pg_dump -Fc -f backup.dump` | {mmm(e2e['runbook_s'])} | backup end to end: "
        f"**{e2e['ratio_to_runbook']}×** of it (goal ≤ 0.6×) | |",
        f"| size: our object vs the runbook's dump | {e2e['object_mb']} MB vs {e2e['runbook_dump_mb']} MB | "
        f"{round(e2e['object_mb'] / e2e['runbook_dump_mb'], 2)}× | |",
        f"| restore verification (download, decrypt, decompress, pg_restore, count, drop) | "
        f"{results['restore_verification_s']} s | | |",
        "",
        "What each stage costs, the pipeline built up into /dev/null (no upload), and variants of the whole "
        "backup, each set alternating:",
        "",
        "| pipeline | min–median–max |",
        "|---|---|",
        *[f"| `{name}` | {mmm(spread)} |".replace(" | zstd", " \\| zstd").replace(" | gpg", " \\| gpg")
          for name, spread in results["stages_into_dev_null"].items()],
        *[f"| backup end to end, {name} | {mmm(spread)} |" for name, spread in results["variants"].items()],
        "",
        f"How it grows ({s['growth_runs']} runs each, alternating; peak RSS of the backup's whole process tree — "
        "Python with Airflow's imports, pg_dump, zstd, gpg — sampled every 20 ms):",
        "",
        "| scale | email_events (generated in) | database | backup until parts stored / end to end, median | "
        "physical limit | bound (cores) | runbook | ÷ limit (own / end to end) | ÷ bound (own / end to end) | "
        "÷ runbook | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[f"| {scale} | {g['email_events']:,} ({g['generate_s']:.0f} s) | {g['database_mb']:,} MB | "
          f"{g['backup_until_parts_stored_s']['median']:.2f} s / {g['backup_s']['median']:.2f} s | "
          f"{g['physical_limit_s']['median']:.2f} s | {g['core_bound']['bound_s']:.2f} s | "
          f"{g['runbook_s']['median']:.2f} s | **{g['own_ratio_to_physical_limit']}×** / "
          f"{g['ratio_to_physical_limit']}× | **{g['own_ratio_to_core_bound']}×** / {g['ratio_to_core_bound']}× | "
          f"{g['ratio_to_runbook']}× | {g['peak_rss_mb']:.0f} MB |" for scale, g in results["growth"].items()],
        "",
        "Compression threads and levels, the whole backup end to end at each scale (alternating; the default "
        "follows the fastest at level 1):",
        "",
        "| scale | " + " | ".join(next(iter(results["growth"].values()))["threads_and_levels"]) + " |",
        "|---|" + "---|" * len(next(iter(results["growth"].values()))["threads_and_levels"]),
        *[f"| {scale} | " + " | ".join(f"{v['median']:.2f} s, {v['object_mb']:,.0f} MB"
                                       for v in g["threads_and_levels"].values()) + " |"
          for scale, g in results["growth"].items()],
    ])
