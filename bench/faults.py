"""The fault campaign (issue 45): every job of :data:`coldcopy.testing.faults.JOBS` killed at each named step
boundary it reports, at ``--extra`` other step times and ``--instants`` random instants, rerun, its next run's part
done, and checked; per job and fault kind: faults, reruns that finished the job, invariant violations, objects and
databases left, time to recover (the rerun against a clean run).

    .venv/bin/python -m bench.faults [--seed 45 --extra 8 --instants 8 --jobs backup,migrations]
    .venv/bin/python -m bench.faults --table      # docs/safety.md's table, from bench/results/faults.json
"""

from __future__ import annotations

import argparse
import statistics

from bench import common
from coldcopy.testing import servers
from coldcopy.testing.faults import JOBS, Campaign

KINDS = {"step": "SIGKILL at a step", "instant": "SIGKILL at an instant", "restart": "server restarted mid-run",
         "double": "two runs at once", "disk_full": "spool filesystem full",
         **{f"bucket {f}": f"bucket: {d}" for f, d in (
             ("500", "500 InternalError"), ("503", "503 ServiceUnavailable"), ("slowdown", "503 SlowDown"),
             ("reset", "connection reset mid-answer"), ("truncate", "GET body truncated"),
             ("slow", "answer past the read timeout"))}}


def _kind(trial: dict) -> str:
    return f"bucket {trial['target'].split()[0]}" if trial["kind"] == "bucket" else trial["kind"]


def summary(trials: list[dict]) -> dict:
    by: dict[str, dict] = {}
    for t in trials:
        kind = _kind(t)
        entry = by.setdefault(f"{t['job']}|{kind}", {"job": t["job"], "kind": kind, "faults": 0, "killed": 0,
                                                    "finished": 0, "violations": 0, "left": 0, "recovery": [],
                                                    "injected": 0})
        entry["faults"] += 1
        entry["killed"] += t["killed"]
        entry["finished"] += t["rerun_ok"]
        entry["violations"] += len(t["violations"])
        entry["left"] += t["left"]
        entry["injected"] += t.get("injected", 0)
        entry["recovery"].append(t["rerun_s"] / t["clean_s"] if t["clean_s"] else 0)
    for entry in by.values():
        entry["recovery"] = round(statistics.median(entry["recovery"]), 2)
    return by


def table(results: dict) -> str:
    s = results["settings"]
    rows = results["summary"].values()
    steps = {t["target"].split("#")[0] for t in results["trials"] if t["kind"] == "step" and t["killed"]}
    lines = [f"The fault campaign (`python -m bench.faults`, seed {s['seed']}): each job run in its own process "
             "group and SIGKILLed at each named step boundary it reports (`coldcopy.steps`), at "
             f"{s['extra']} more step times and {s['instants']} random instants per job; the server restarted "
             "mid-run, two runs at once, the spool's filesystem full (512 kB tmpfs), the bucket failing (a proxy "
             "in front of the S3 server answering one request, or 20 in a row, with 500, 503, SlowDown, a reset "
             "connection, a truncated GET or an answer past the 5 s read timeout); then rerun, then its "
             "next run's part, then one invariant checker (`coldcopy.testing.faults.invariants`). PostgreSQL "
             f"{results['machine']['postgresql']}, {results['machine']['cores']} cores.", "",
             "| job | fault | faults | bucket requests failed | first run cut short | rerun finished the job | "
             "invariant violations | left after the next run | recovery (rerun / clean run) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["job"], r["kind"])):
        lines.append(f"| {r['job']} | {KINDS.get(r['kind'], r['kind'])} | {r['faults']} | "
                     f"{r.get('injected', 0) if r['kind'].startswith('bucket') else '–'} | {r['killed']} | "
                     f"{r['finished']} | **{r['violations']}** | {r['left']} | {r['recovery']:.2f}× |")
    total = sum(r["faults"] for r in rows)
    bad = sum(r["violations"] for r in rows)
    lines += ["", f"In all: **{total} faults**, {len(steps)} distinct step boundaries killed, **{bad} violations** "
              "(goal: every boundary of every job, ≥ 500 faults, 0 violations)."]
    found = sorted({v for t in results["trials"] for v in t["violations"]})
    if found:
        lines += ["", "Violations found (each to be fixed and reproduced as a regular test):", ""]
        lines += [f"- {v}" for v in found[:30]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=45)
    parser.add_argument("--extra", type=int, default=8)
    parser.add_argument("--instants", type=int, default=8)
    parser.add_argument("--bucket", type=int, default=8, help="bucket faults per job beyond one of each kind")
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("faults")))
        return
    cluster = servers.ThrowawayCluster().start()  # its own server: no other job's scratch databases in the checks
    try:
        server = cluster.dsn
        with common.s3_endpoint() as endpoint, \
                Campaign(server, endpoint, seed=args.seed, restart=cluster.restart) as campaign:
            trials = []
            for job in args.jobs.split(","):  # written after each job: a run stopped part-way keeps what it did
                trials += campaign.run([job], extra=args.extra, instants=args.instants, bucket=args.bucket)
                write(args, trials, server)
    finally:
        cluster.stop()
    print(table(common.load_results("faults")))


def write(args, trials: list[dict], server: str) -> None:
    common.write_results("faults", {"seed": args.seed, "extra": args.extra, "instants": args.instants,
                                    "bucket": args.bucket, "jobs": args.jobs.split(",")},
                         {"summary": summary(trials), "trials": trials}, server, echo=False)


if __name__ == "__main__":
    main()
