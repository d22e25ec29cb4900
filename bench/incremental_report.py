"""The docs/benchmarks.md text of ``bench/incremental.py``'s results (``python -m bench.incremental --table``)."""

from __future__ import annotations

FIXED_ROWS = 3000  # as bench/incremental.py
PATTERNS = ("arrivals", "mixed")


def table(results: dict) -> str:
    s = results["settings"]
    first = next(iter(next(iter(results["scales"].values()))["fractions"].values()))
    n = {5: "five", 6: "six", 7: "seven"}.get(len(first["per_view"]), str(len(first["per_view"])))
    rows = [f"All {n} incremental summaries after a change of email_events, applied (and their applied deltas "
            f"pruned, as the refresh jobs do{'' if s.get('pruned') else ': not in this run'}) vs the same {n} "
            "definitions refreshed as materialized views (`REFRESH … CONCURRENTLY`, the refresh jobs' way before "
            "migration 305); the two alternate which goes first, " + ", ".join(
                f"{r.get('runs', s.get('runs'))} runs at scale {k}" for k, r in results["scales"].items()) +
            " (medians, min–max)" + ("; between runs, untimed, the churned tables are vacuumed as autovacuum "
                                     "does between hourly refreshes" if s.get("pruned") else "") + ". The "
            f"change: *arrivals*, new events of the last hour for the messages of 5 % of the campaigns (those "
            f"sending now: the application's steady state); *mixed*, half new "
            f"events, four tenths updates of random events of any age (type, campaign, a day earlier), a tenth "
            f"deletes (the worst case: old groups everywhere). PostgreSQL {results['machine']['postgresql']}, "
            f"{results['machine']['cores']} cores (`make bench`; `python -m bench.incremental --table` reprints "
            f"this from `bench/results/incremental.json`).",
            "",
            "| scale (email_events) | change | incremental | full refresh | ratio | slowest summary (incr. / full) |",
            "|---|---|---|---|---|---|"]
    for scale, r in results["scales"].items():
        for label, f in r["fractions"].items():
            inc, full, fraction = f["incremental_s"], f["full_s"], f["fraction"]
            change = (f"{f['pattern']} the same rows" if label.endswith(" rows") else
                      f"{f['pattern']} {fraction * 100:g} %")
            slowest = max(f["per_view"], key=lambda v: f["per_view"][v]["incremental"])
            pv = f["per_view"][slowest]
            rows.append(f"| {scale} ({r['email_events']:,}) | {change} ({f['changed_rows']:,}) | "
                        f"{inc['median']:.2f} s ({inc['min']:.2f}–{inc['max']:.2f}) | {full['median']:.2f} s "
                        f"({full['min']:.2f}–{full['max']:.2f}) | **{inc['median'] / full['median']:.2f}×** | "
                        f"{slowest.split('.')[-1]} ({pv['incremental']:.2f} / {pv['full']:.2f} s) |")
    scales = results["scales"]
    small, large = scales[min(scales, key=int)], scales[max(scales, key=int)]
    for pattern in PATTERNS:
        key = f"{pattern} {FIXED_ROWS} rows"
        if key in small["fractions"] and key in large["fractions"]:
            a = small["fractions"][key]["incremental_s"]["median"]
            b = large["fractions"][key]["incremental_s"]["median"]
            rows.append("")
            rows.append(f"Flat in the data ({pattern}): the same {FIXED_ROWS:,} changed rows cost {a:.3f} s at scale "
                        f"{min(scales, key=int)} and {b:.3f} s at scale {max(scales, key=int)} "
                        f"(**{b / a:.2f}×**, goal ≤ 1.5×).")
    for scale, r in scales.items():
        if "clock_move_s" in r:
            full = min(f["full_s"]["median"] for f in r["fractions"].values())
            h, clock = r["helper_bytes"], r["clock_move_s"]["median"]
            rows.append("")
            rows.append(f"Scale {scale}: the first apply after a midnight with no data change {clock:.3f} s "
                        f"(**{clock / full:.3f}×** the quickest full refresh, {full:.2f} s; goal ≤ 0.02×); "
                        f"the helper tables (aggregate states, multiplicities, per-message rows, pruned deltas) "
                        f"{h['helpers'] / 2**20:.1f} MiB against email_events' {h['email_events'] / 2**20:.0f} MiB "
                        f"as the bench's churn left them (**{float(h['share']) * 100:.1f} %**, goal ≤ 30 %)" + (
                            f", {h['helpers_compact'] / 2**20:.1f} MiB compacted (**"
                            f"{float(h['share_compact']) * 100:.1f} %**)" if "helpers_compact" in h else "") + ".")
    t = results.get("trigger_cost")
    if t is None:
        return "\n".join(rows + ["", "The capture's cost to the application: not measured in this run."])
    w, wo = t["with capture"], t["without capture"]
    rows += ["", f"The capture's cost to the application: the load bench's workload, {s['clients']} clients through "
                 f"PgBouncer at scale {s['load_scale']}, {s['load_rounds']} rounds of 10 s each with the capture "
                 f"triggers installed and dropped, alternating: p99 **{w['p99_ms']['median']:.1f} ms** with, "
                 f"{wo['p99_ms']['median']:.1f} ms without (**{w['p99_ms']['median'] / wo['p99_ms']['median']:.2f}×**, "
                 f"goal ≤ 1.05×); p50 {w['p50_ms']['median']:.1f} / {wo['p50_ms']['median']:.1f} ms; TPS "
                 f"{w['tps']['median']:,.0f} / {wo['tps']['median']:,.0f} "
                 f"(**{w['tps']['median'] / wo['tps']['median']:.2f}×**, goal ≥ 0.95×); errors {w['errors']} / "
                 f"{wo['errors']}.",
             "", f"The daily verify (an apply, then EXCEPT ALL both ways on its snapshot), all {n} summaries: " +
             "; ".join(f"scale {scale}: {sum(v['ms'] for v in r['verify'].values()) / 1000:.1f} s"
                       for scale, r in results["scales"].items()) + "."]
    return "\n".join(rows)
