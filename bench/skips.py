"""What a skip costs in the live stack (issue 24): a refresh task that decides in milliseconds that nothing changed,
and a 24-run backfill of one refresh DAG, under Airflow's default ``[workers] min_heartbeat_interval`` (5 s)
and ours (1 s), alternating which goes first.

Where the 5 s went: the task process sends its SKIPPED state as a message to its supervisor, which reports it
(``finish``, with the end date) only once it has seen the process exit. The supervisor reads the process's four
sockets until each is closed, checks once whether the process has exited, and otherwise ``select``s again — on
no socket at all, for up to ``min_heartbeat_interval`` (airflow/sdk/execution_time/supervisor.py
``_monitor_subprocess``). Measured with that loop instrumented (``/proc/<pid>/status`` sampled every 0.5 ms):
the task process is still running when its last socket closes and becomes a zombie 0.8–2.5 ms later; when the
check falls in that window the task — and its pool slot — stays "running" for the whole interval. Two tasks
ending at once on two cores (the refresh DAG's two views) fall in it about half the time; a lone task rarely.
The minimal DAG (``probe_skip``: two tasks that skip, no ColdCopy code in it; the stack loads the project's
plugins as always) shows the same. The setting bounds it; its cost is a heartbeat API call per running task
per second at most. The exit sentinel (coldcopy.exit_sentinel) removes it: the last EOF comes after the task can be
reaped, so neither setting's skips wait.

Per setting: a stack of its own (metadata in a throwaway database, the project's DAGs and plugins, coldcopy_db a
scale-1 generated database); ``--probes`` manual runs of the minimal ``probe_skip`` DAG and of
``refresh_campaign_analytics`` after its first refresh (its tasks skip: nothing changed); then a backfill of the
24 hours before the current one (max 4 active runs): wall time from creation to complete, and task durations.

    .venv/bin/python -m bench.skips [--probes 6 --rounds 1]
    .venv/bin/python -m bench.skips --table          # its table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from coldcopy.testing import local_env

DAG_ID = "refresh_campaign_analytics"
PROBE = '''
from datetime import datetime
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowSkipException

with DAG("probe_skip", schedule=None, start_date=datetime(2026, 1, 1)):
    @task
    def skips():
        raise AirflowSkipException("nothing changed")
    skips()
    skips.override(task_id="skips_too")()  # two at once, as the refresh DAG's two views
'''


def wait_run(api, dag_id: str, run_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"] not in ("success", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{dag_id} {run_id} did not finish in {timeout_s} s")
        time.sleep(0.2)


def durations(api, dag_id: str, run_id: str, state: str = "skipped") -> list[float]:
    tis = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return [ti["duration"] for ti in tis if ti["state"] == state and ti["duration"] is not None]


def one_setting(interval: int, server: str, template: str, probes: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch, common.scratch_database(server, f"skips_db_{interval}",
                                                                           template) as target:
        dags = Path(scratch) / "dags"
        dags.mkdir()
        shutil.copy(common.ROOT / "dags" / f"{DAG_ID}.py", dags)
        (dags / "probe_skip.py").write_text(PROBE)
        with common.live_stack(server, f"skips_{interval}", {"coldcopy_db": local_env.airflow_connection(target)},
                               dags_folder=dags,
                               extra_env={"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(interval)}) as stack:
            api = stack.client()
            while api.get("/dags").json()["total_entries"] < 2:
                time.sleep(1)
            result: dict = {"probe_skip_s": [], "refresh_skip_s": []}
            for dag_id in ("probe_skip", DAG_ID):
                api.patch(f"/dags/{dag_id}", json={"is_paused": False})
            first = api.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
            wait_run(api, DAG_ID, first)  # the first refresh: the later runs find nothing changed
            for _ in range(probes):
                for dag_id, key in (("probe_skip", "probe_skip_s"), (DAG_ID, "refresh_skip_s")):
                    run_id = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
                    wait_run(api, dag_id, run_id)
                    result[key] += durations(api, dag_id, run_id)
            to_date = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
            started = time.perf_counter()
            response = api.post("/backfills", json={"dag_id": DAG_ID, "from_date": (to_date - timedelta(hours=23))
                                                    .isoformat(), "to_date": to_date.isoformat(),
                                                    "max_active_runs": 4})
            response.raise_for_status()
            while not api.get("/backfills", params={"dag_id": DAG_ID}).json()["backfills"][0]["completed_at"]:
                time.sleep(0.5)
            runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "backfill", "limit": 100}).json()["dag_runs"]
            finished = max(datetime.fromisoformat(r["end_date"]) for r in runs)
            first_queued = min(datetime.fromisoformat(r["queued_at"] or r["start_date"]) for r in runs)
            result["backfill"] = {
                "runs": len(runs), "states": sorted({r["state"] for r in runs}),
                "wall_s": round((finished - first_queued).total_seconds(), 1),
                "wall_incl_completion_s": round(time.perf_counter() - started, 1),
                "skipped_task_s": common.spread([d for r in runs for d in durations(api, DAG_ID, r["dag_run_id"])]),
                "refreshed_tasks": sum(len(durations(api, DAG_ID, r["dag_run_id"], "success")) for r in runs)}
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table and exit")
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("skips")))
        return
    server = local_env.admin_dsn()
    template = common.template_database(server, 1)
    settings = {"default (5 s)": 5, "ours (1 s)": 1}
    collected: dict[str, list[dict]] = {name: [] for name in settings}
    for round_number in range(args.rounds):
        for name in settings if round_number % 2 == 0 else reversed(list(settings)):
            collected[name].append(one_setting(settings[name], server, template, args.probes))
            print(json.dumps({name: collected[name][-1]}, default=str), flush=True)
    results = {}
    for name, rounds in collected.items():
        results[name] = {
            "min_heartbeat_interval_s": settings[name],
            "probe_skip_s": common.spread([d for r in rounds for d in r["probe_skip_s"]]),
            "refresh_skip_s": common.spread([d for r in rounds for d in r["refresh_skip_s"]]),
            "backfill_wall_s": statistics.median(r["backfill"]["wall_s"] for r in rounds),
            "backfill": rounds[-1]["backfill"]}
    common.write_results("skips", {"probes": args.probes, "rounds": args.rounds, "backfill_hours": 24,
                                   "backfill_max_active_runs": 4, "executor": "LocalExecutor, parallelism 4",
                                   "pool": "coldcopy_db_heavy, 2 slots"}, {"by_setting": results}, server)


def table(summary: dict) -> str:
    s, settings = summary["by_setting"], summary["settings"]
    runs = next(iter(s.values()))["probe_skip_s"]["runs"]
    rows = [f"Live stack (LocalExecutor, parallelism 4, pool `coldcopy_db_heavy` of 2); task duration as Airflow "
            f"records it (start to end), {runs} skipped tasks of each DAG ({settings['probes']} runs of its two "
            f"tasks, which run at once); a backfill of the 24 hours before the current one of "
            f"`{DAG_ID}` (max 4 active runs), first queued to last finished "
            f"({settings['rounds']} round(s), alternating which setting goes first):", "",
            "| `[workers] min_heartbeat_interval` | minimal DAG's skip (median / max) | refresh task's skip "
            "(median / max) | 24-run backfill | backfill's skipped tasks (median / max) | refreshes |",
            "|---|---|---|---|---|---|"]
    for name, r in s.items():
        rows.append(f"| {name} | {r['probe_skip_s']['median']:.2f} / {r['probe_skip_s']['max']:.2f} s | "
                    f"{r['refresh_skip_s']['median']:.2f} / {r['refresh_skip_s']['max']:.2f} s | "
                    f"{r['backfill_wall_s']:.0f} s ({r['backfill']['runs']} runs) | "
                    f"{r['backfill']['skipped_task_s']['median']:.2f} / {r['backfill']['skipped_task_s']['max']:.2f} s"
                    f" | {r['backfill']['refreshed_tasks']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
