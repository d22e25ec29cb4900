"""Task throughput of ``partition_maintenance`` at scale 32 (issue 23): the LocalExecutor against Celery with one
and with two workers, each setting a live stack of its own on a fresh copy of the same database and bucket.

The scheduled run of the latest interval, once per setting and round (it archives every month older than 12
months, premakes, detaches and checks what to drop): wall time from the run's queued time to its end, task
instances per minute over that time, and the sum of the tasks' own durations. Every setting has the same
``coldcopy_db_heavy`` pool (2 slots) and four task slots in all: LocalExecutor parallelism 4; Celery one worker
of concurrency 4, or two of concurrency 2. The settings alternate which goes first when ``--rounds`` > 1.

    .venv/bin/python -m bench.executors [--scale 32 --rounds 1]
    .venv/bin/python -m bench.executors --table          # its table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from datetime import datetime

from bench import common
from coldcopy.testing import local_env

DAG_ID = "partition_maintenance"
SETTINGS = {
    "LocalExecutor (parallelism 4)": {"executor": "LocalExecutor", "parallelism": 4},
    "Celery, 1 worker × 4 slots": {"executor": "CeleryExecutor", "workers": 1, "worker_concurrency": 4},
    "Celery, 2 workers × 2 slots": {"executor": "CeleryExecutor", "workers": 2, "worker_concurrency": 2},
}


def one_run(name: str, setting: dict, server: str, endpoint: str, scale: int) -> dict:
    label = "".join(c for c in name.lower() if c.isalnum())[:20]
    bucket = f"coldcopy-bench-exec-{secrets.token_hex(4)}"
    common.spaces_bucket(endpoint, bucket)
    secret = lambda: json.dumps({"conn_type": "generic", "password": secrets.token_urlsafe(24)})  # noqa: E731
    with common.bench_database(server, scale, f"exec_{label}") as target, common.live_stack(server, f"exec_{label}", {
            "coldcopy_db": local_env.airflow_connection(target),
            "coldcopy_spaces": local_env.spaces_connection(endpoint, bucket),
            "coldcopy_backup_key": secret(), "coldcopy_manifest_key": secret(), "coldcopy_subject_pepper": secret(),
    }, **setting) as stack:
        api = stack.client()
        deadline = time.monotonic() + 180
        while api.get(f"/dags/{DAG_ID}").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{DAG_ID} not serialized within 180 s")
            time.sleep(1)
        # Unpaused, the scheduler creates the run of the latest interval, which archives (a manual run
        # triggered beside it would find the months taken): that run is the one measured.
        api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        deadline = time.monotonic() + 900
        while True:
            runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"]
            if runs and (run := runs[0])["state"] in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{DAG_ID}: no finished scheduled run in 900 s")
            time.sleep(0.5)
        run_id = run["dag_run_id"]
        api.patch(f"/dags/{DAG_ID}", json={"is_paused": True})
        tis = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 200}).json()[
            "task_instances"]
        ran = [ti for ti in tis if ti["duration"] is not None and ti["state"] in ("success", "skipped")]
        wall = (datetime.fromisoformat(run["end_date"]) -
                datetime.fromisoformat(run["queued_at"] or run["start_date"])).total_seconds()
        said = {}
        for ti in ran:
            entry = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/xcomEntries/result",
                            params={"map_index": ti["map_index"]})
            said[f"{ti['task_id']}[{ti['map_index']}]"] = entry.json().get("value") if entry.is_success else None
        return {"state": run["state"], "tasks": len(ran), "wall_s": round(wall, 1), "said": said,
                "tasks_per_min": round(len(ran) / wall * 60, 1),
                "archives": sum(ti["task_id"] == "archive" for ti in ran),
                "task_s_sum": round(sum(ti["duration"] for ti in ran), 1),
                "hosts": sorted({ti["hostname"] for ti in ran})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table and exit")
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated setting names (a probe; results not written)")
    args = parser.parse_args()
    only = [n for n in args.only.split(",") if n]
    if args.table:
        print(table(common.load_results("executors")))
        return
    server = local_env.admin_dsn()
    collected: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with common.s3_endpoint() as endpoint:
        for round_number in range(args.rounds):
            for name in (SETTINGS if round_number % 2 == 0 else reversed(list(SETTINGS))):
                if only and name not in only:
                    continue
                collected[name].append(one_run(name, SETTINGS[name], server, endpoint, args.scale))
                print(json.dumps({name: collected[name][-1]}), flush=True)
    if only:
        return
    results = {name: {"wall_s": statistics.median(r["wall_s"] for r in rounds),
                      "wall_s_spread": common.spread([r["wall_s"] for r in rounds]),
                      "tasks_per_min": statistics.median(r["tasks_per_min"] for r in rounds), "last": rounds[-1]}
               for name, rounds in collected.items()}
    common.write_results("executors", {"scale": args.scale, "rounds": args.rounds, "dag": DAG_ID,
                                       "pool": "coldcopy_db_heavy, 2 slots", "task_slots": 4,
                                       "email_events": common.template_info(server, args.scale)["counts"][
                                           "email_events"]},
                         {"by_setting": results}, server)


def table(results: dict) -> str:
    s = results["settings"]

    def wall(r: dict) -> str:
        spread = r.get("wall_s_spread")
        return f"{r['wall_s']:.1f} s" + (f" ({spread['min']:.1f}–{spread['max']:.1f})" if spread and
                                         spread["runs"] > 1 else "")

    return "\n".join([
        f"`{s['dag']}` at scale {s['scale']} ({s['email_events']:,} email_events), {results['machine']['cores']} "
        f"cores, four task slots in every setting and the heavy pool of 2; {s['rounds']} round(s), alternating "
        "which setting goes first; wall time from the run's queue time to its end:",
        "",
        "| executor | tasks (archives) | wall time, median (min–max) | tasks per minute, median | "
        "sum of task durations (last round) | hosts |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | {r['last']['tasks']} ({r['last']['archives']}) | {wall(r)} | "
          f"**{r['tasks_per_min']:.1f}** | {r['last']['task_s_sum']:.1f} s | {', '.join(r['last']['hosts'])} |"
          for name, r in results["by_setting"].items()],
    ])


if __name__ == "__main__":
    main()
