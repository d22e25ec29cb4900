"""The CeleryExecutor for real (issue 23): Debian's redis-server and two ``airflow celery worker`` processes
(worker-a, worker-b, two slots each) beside the scheduler. The mapped archives spread over both workers and the
``coldcopy_db_heavy`` pool holds across them; a worker killed with SIGKILL mid-archive is detected and its month
retried on the other worker (once the scheduler finds it without heartbeat), ending verified with every row and
no unfinished upload. A task marked failed through the API has its statement ended by on_kill on its worker; a
final failure alerts once from the worker; a backfill spread over both workers costs one refresh."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

pytestmark = pytest.mark.e2e

DAG_ID = "partition_maintenance"


class HeavyStatements:
    """The most sessions of partition_maintenance's tasks (every one in the heavy pool) active at once on the
    target, sampled every 20 ms."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.most, self.stop = dsn, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                tasks = conn.execute(
                    "SELECT count(DISTINCT application_name) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name LIKE %s AND state <> 'idle'", (f"coldcopy:{DAG_ID}.%",)).fetchone()[0]
                self.most = max(self.most, tasks)
                time.sleep(0.02)

    def __enter__(self) -> HeavyStatements:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def archive_tis(live, api, run_id: str) -> list[dict]:
    return [ti for ti in live.task_instances(api, DAG_ID, run_id) if ti["task_id"] == "archive"]


def test_mapped_archives_spread_over_both_workers_within_the_heavy_pool(celery_live, celery_api, generated_template):
    """worker-b takes nothing until an archive runs on worker-a; then worker-a is drained (it finishes what it
    holds) and worker-b takes the rest. Left to Celery, both heavy-pool slots may land on one worker. While
    worker-a still runs its archives, worker-b has free slots the pool must keep empty."""
    live, api = celery_live, celery_api
    live.reset_target(generated_template)
    switched = []

    def hand_over_once_worker_a_archives(run: dict) -> None:
        if not switched and any(ti["state"] == "running" and ti["hostname"] == "worker-a"
                                for ti in archive_tis(live, api, run["dag_run_id"])):
            live.stack.consume("worker-a", on=False)  # first: for a moment nobody takes a task, never both
            live.stack.consume("worker-b", on=True)
            switched.append(time.monotonic())

    live.stack.consume("worker-b", on=False)
    try:
        with HeavyStatements(live.target_dsn) as heavy:  # the scheduled run: its data interval picks the months
            run = live.scheduled_run(api, DAG_ID, timeout_s=400, while_waiting=hand_over_once_worker_a_archives)
    finally:
        live.stack.consume("worker-a", on=True)
        live.stack.consume("worker-b", on=True)
    run_id = run["dag_run_id"]
    assert run["state"] == "success" and switched
    archives = archive_tis(live, api, run_id)
    assert len(archives) >= 3 and {ti["state"] for ti in archives} == {"success"}
    assert {ti["hostname"] for ti in archives} == {"worker-a", "worker-b"}, [
        (ti["map_index"], ti["hostname"]) for ti in archives]
    # Four worker slots, two heavy-pool slots: never more than two of the DAG's tasks on the database at once.
    assert 1 <= heavy.most <= 2, heavy.most


def test_a_worker_killed_mid_archive_hands_the_month_to_the_other_worker(celery_live, celery_api, generated_template):
    live, api = celery_live, celery_api
    live.reset_target(generated_template)
    with psycopg.connect(live.target_dsn) as conn:
        [oldest] = conn.execute("SELECT name FROM app.email_events_partitions ORDER BY range_start LIMIT 1").fetchone()
        rows = conn.execute(f"SELECT count(*) FROM public.{oldest}").fetchone()[0]  # noqa: S608 - catalog name
    live.trigger(api, DAG_ID)  # unpaused: this run, or the scheduled one if this stack had none yet, archives
    run_id, victim = None, None
    try:
        deadline = time.monotonic() + 180
        while victim is None:  # the oldest month's archive running: its worker dies under it, SIGKILL
            assert time.monotonic() < deadline, "the archive of the oldest month never started"
            running = api.get(f"/dags/{DAG_ID}/dagRuns", params={"state": "running"}).json()["dag_runs"]
            for ti in [t for r in running for t in archive_tis(live, api, r["dag_run_id"])]:
                if ti["rendered_map_index"] == oldest and ti["state"] == "running" and ti["hostname"]:
                    victim, run_id = ti["hostname"], ti["dag_run_id"]
                    live.stack.kill_worker(victim)
                    break
            time.sleep(0.1)
        assert live.wait_run(api, DAG_ID, run_id, timeout_s=400) == "success"
    finally:
        live.set_paused(api, DAG_ID, True)
        if victim and victim not in live.stack.processes:
            live.stack.start_worker(victim)  # the next test has both again
    [month] = [ti for ti in archive_tis(live, api, run_id) if ti["rendered_map_index"] == oldest]
    survivor = ({"worker-a", "worker-b"} - {victim}).pop()
    assert month["try_number"] >= 2 and month["hostname"] == survivor, month
    with psycopg.connect(live.target_dsn) as conn:
        state, archived_rows = conn.execute("SELECT state, row_count FROM coldcopy_ops.partition_archive WHERE "
                                            "partition_name = %s", (oldest,)).fetchone()
    assert (state, archived_rows) == ("detached", rows)
    assert live.s3_client.list_multipart_uploads(Bucket=live.bucket).get("Uploads", []) == []


def test_a_task_marked_failed_in_the_ui_has_its_backend_terminated_on_its_worker(celery_live, celery_api):
    """on_kill where the task runs: the API server marks the task failed, the worker's supervisor learns it at
    its next heartbeat and terminates the task process, whose on_kill ends the statement on the database."""
    live, api = celery_live, celery_api
    live.reset_target()
    run_id = live.trigger(api, "e2e_on_kill")
    name = "coldcopy:e2e_on_kill.holds"

    def backends() -> list[tuple]:
        with psycopg.connect(live.target_dsn, autocommit=True) as conn:
            return conn.execute("SELECT pid, state, query FROM pg_stat_activity WHERE application_name = %s",
                                (name,)).fetchall()

    deadline = time.monotonic() + 120
    while not [b for b in backends() if "pg_sleep" in b[2] and b[1] == "active"]:
        assert time.monotonic() < deadline, ("the task's statement never started",
                                             live.task_instances(api, "e2e_on_kill", run_id), backends())
        time.sleep(0.2)
    [ti] = live.task_instances(api, "e2e_on_kill", run_id)
    assert ti["state"] == "running" and ti["hostname"] in ("worker-a", "worker-b"), ti
    response = api.patch(f"/dags/e2e_on_kill/dagRuns/{run_id}/taskInstances/holds", json={"new_state": "failed"})
    assert response.status_code == 200, response.text
    marked = time.monotonic()
    while backends():
        assert time.monotonic() - marked < 20, f"the task's backend outlived its task: {backends()}"
        time.sleep(0.2)
    assert live.wait_run(api, "e2e_on_kill", run_id, timeout_s=60) == "failed"
    assert ti["hostname"] in live.stack.processes  # the worker itself lives on


def test_one_alert_per_final_failure_from_the_workers(celery_live, celery_api):
    """The failure callback runs in the task's process, on whichever worker ran its last try."""
    from tests.e2e.conftest import one_alert_per_final_failure

    tis = one_alert_per_final_failure(celery_live, celery_api)
    assert {ti["hostname"] for ti in tis} <= {"worker-a", "worker-b"}


def test_a_backfill_spread_over_both_workers_costs_one_refresh(celery_live, celery_api, generated_template):
    """The refresh's state is in the database, not in a worker: the backfill's first runs go to worker-a, the
    rest to worker-b (worker-b takes no task until two runs are done, then worker-a is drained, as on-call
    drains a worker), and the views are still refreshed once. Left to Celery, two heavy-pool slots may all
    land on one worker."""
    from datetime import UTC, datetime, timedelta

    from tests.e2e.test_live_airflow import wait_backfill

    live, api = celery_live, celery_api
    live.reset_target(generated_template)
    dag_id, views = "refresh_campaign_analytics", ["campaign_analytics", "sequence_step_performance"]
    to_date = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    live.set_paused(api, dag_id, False)
    live.stack.consume("worker-b", on=False)
    try:
        response = api.post("/backfills", json={
            "dag_id": dag_id, "from_date": (to_date - timedelta(hours=7)).isoformat(), "to_date": to_date.isoformat(),
            "max_active_runs": 4})
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 120
        while sum(r["state"] == "success" for r in api.get(f"/dags/{dag_id}/dagRuns", params={
                "run_type": "backfill", "limit": 100}).json()["dag_runs"]) < 2:
            assert time.monotonic() < deadline, "no two backfill runs done on worker-a within 120 s"
            time.sleep(0.5)
        live.stack.consume("worker-a", on=False)
        live.stack.consume("worker-b", on=True)
        runs = wait_backfill(live, api, dag_id)
    finally:
        live.set_paused(api, dag_id, True)
        live.stack.consume("worker-a", on=True)
        live.stack.consume("worker-b", on=True)
    assert len(runs) >= 7 and {r["state"] for r in runs} == {"success"}
    tis = [ti for r in runs for ti in live.task_instances(api, dag_id, r["dag_run_id"])]
    assert {ti["hostname"] for ti in tis} == {"worker-a", "worker-b"}, [
        (ti["dag_run_id"], ti["task_id"], ti["hostname"]) for ti in tis]
    with psycopg.connect(live.target_dsn) as conn:
        for view in views:
            log = conn.execute("SELECT run_id, action FROM coldcopy_ops.mv_refresh_log WHERE view_name = %s "
                               "ORDER BY id", (f"analytics.{view}",)).fetchall()
            backfilled = [action for run_id, action in log if run_id.startswith("backfill")]
            assert len(backfilled) == len(runs) and backfilled.count("refreshed") <= 1, (view, log)
            assert [action for _, action in log].count("refreshed") == 1, (view, log)
