"""`make airflow` figures: seconds from the command to the UI answering (warm venv, data kept from the first
start), the memory of the stack's processes once idle (PSS and RSS), and the wall time of the end-to-end tests.

    make bench            # or: .venv/bin/python -m bench.make_airflow [--starts 3] [--idle 30]
    .venv/bin/python -m bench.make_airflow --table  # its tables in docs/benchmarks.md

Uses the real `make airflow` home (.airflow/, .pgdata/airflow) on a free port; nothing else is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]

from coldcopy.testing.local_env import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "make_airflow.json"

KINDS = (("api_server", "api-server"), ("api-server", "api-server"), ("LocalExecutor", "LocalExecutor workers"),
         ("serve-logs", "log servers"), ("scheduler", "scheduler"), ("dag-processor", "dag-processor"),
         ("triggerer", "triggerer"), ("airflow_local.py", "launcher (moto S3, webhook sink)"))


def stack_memory_mb(pid: int) -> dict[str, dict[str, float]]:
    """PSS and RSS per kind of process: the launcher's tree and the embedded PostgreSQL it started.

    PSS splits shared pages between the processes sharing them (LocalExecutor workers are forks of the
    scheduler): its total is what the stack really occupies; the RSS total counts shared pages many times.
    """
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    postmasters = [p for p in psutil.process_iter(["cmdline"]) if ".pgdata/airflow" in " ".join(p.info["cmdline"] or [])
                   and p.pid not in {q.pid for q in processes}]
    processes += [q for p in postmasters for q in (p, *p.children())]
    totals: dict[str, dict[str, float]] = {}
    for process in processes:
        try:
            cmdline = " ".join(process.cmdline())
            kind = next((name for key, name in KINDS if key in cmdline),
                        "embedded postgres" if "postgres" in cmdline else "other")
            memory = process.memory_full_info()
            entry = totals.setdefault(kind, {"pss": 0.0, "rss": 0.0, "processes": 0})
            entry["pss"] += memory.pss / 2**20
            entry["rss"] += memory.rss / 2**20
            entry["processes"] += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return {k: {m: round(v, 1) for m, v in e.items()} for k, e in sorted(totals.items())}


def one_start(port: int, idle_s: float) -> tuple[float, dict]:
    env = {**os.environ, "AIRFLOW_PORT": str(port)}
    started = time.perf_counter()
    launcher = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "airflow_local.py")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if launcher.poll() is not None:
                raise SystemExit(f"make airflow exited with {launcher.returncode}; see .airflow/logs/")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2, follow_redirects=True).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        to_ui = time.perf_counter() - started
        time.sleep(idle_s)
        return to_ui, stack_memory_mb(launcher.pid)
    finally:
        launcher.terminate()
        launcher.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30, help="seconds idle before RSS is read")
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    one_start(free_port(), 0)  # warm-up: first-start work (migrations, data) is not part of the figure
    starts, rss = [], []
    for _ in range(args.starts):
        seconds, memory = one_start(free_port(), args.idle)
        starts.append(round(seconds, 1))
        rss.append(memory)
    started = time.perf_counter()
    e2e = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/e2e"], cwd=ROOT, capture_output=True,
                         text=True)
    e2e_s = time.perf_counter() - started
    result = {
        "settings": {"starts": args.starts, "idle_s": args.idle, "cpus": os.cpu_count(), "parallelism": 4},
        "start_to_ui_s": {"min": min(starts), "median": statistics.median(starts), "max": max(starts)},
        "memory_mb_by_kind": rss[-1],
        "pss_mb_total": round(sum(e["pss"] for e in rss[-1].values()), 1),
        "rss_mb_total": round(sum(e["rss"] for e in rss[-1].values()), 1),
        "e2e_tests": {"seconds": round(e2e_s, 1), "outcome": e2e.stdout.strip().splitlines()[-1]},
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def table(results: dict) -> str:
    s, start, e2e = results["settings"], results["start_to_ui_s"], results["e2e_tests"]
    tests = e2e["outcome"].split(" passed")[0]
    by_pss = sorted(results["memory_mb_by_kind"].items(), key=lambda item: -item[1]["pss"])
    return "\n".join([
        f"Defaults of the script (`make bench`; `python bench/make_airflow.py --table` reprints this from "
        f"`bench/results/make_airflow.json`): one warm-up start (first-start work such as migrating and filling "
        f"`coldcopy_db` is not part of the figure), then {s['starts']} starts of `scripts/airflow_local.py` on a "
        f"free port, each timed from the command to `GET /` answering 200, memory read after {s['idle_s']:g} s "
        f"idle; then `pytest tests/e2e` timed once. Warm venv, data kept from the warm-up, {s['cpus']} cores, "
        f"parallelism {s['parallelism']}.",
        "",
        "| figure | result |",
        "|---|---|",
        f"| `make airflow` → the UI answering (min–median–max of {s['starts']}) | **{start['median']} s** "
        f"({start['min']}–{start['max']} s) |",
        f"| memory of the stack once idle: PSS (shared pages split between the processes sharing them) | "
        f"**{results['pss_mb_total']:.0f} MB** PSS; {results['rss_mb_total']:.0f} MB summed RSS (counts the "
        f"executor's forked workers' shared pages four times) |",
        f"| the end-to-end tests (`tests/e2e`, {tests} tests: live stack start, every scenario, UI in Chromium) | "
        f"**{e2e['seconds']:.0f} s** ({e2e['outcome']}) |",
        "",
        "| process | PSS MB | RSS MB | processes |",
        "|---|---|---|---|",
        *[f"| {kind} | {m['pss']:.0f} | {m['rss']:.0f} | {m['processes']} |" for kind, m in by_pss],
    ])


if __name__ == "__main__":
    main()
