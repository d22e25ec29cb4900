"""The CeleryExecutor for real (issue 23): Debian's redis-server and two ``airflow celery worker`` processes
(worker-a, worker-b, two slots each) beside the scheduler. The mapped archives spread over both workers and the
``coldcopy_db_heavy`` pool holds across them; a worker killed with SIGKILL mid-archive is detected and its month
retried on the other worker (once the scheduler finds it without heartbeat), ending verified with every row and
no unfinished upload."""

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
    live, api = celery_live, celery_api
    live.reset_target(generated_template)
    with HeavyStatements(live.target_dsn) as heavy:  # the scheduled run: its data interval picks the months
        run = live.scheduled_run(api, DAG_ID, timeout_s=400)
    run_id = run["dag_run_id"]
    assert run["state"] == "success"
    archives = archive_tis(live, api, run_id)
    assert len(archives) >= 3 and {ti["state"] for ti in archives} == {"success"}
    everything = live.task_instances(api, DAG_ID, run_id)
    assert {ti["hostname"] for ti in everything} == {"worker-a", "worker-b"}, [
        (ti["task_id"], ti["map_index"], ti["hostname"]) for ti in everything]
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
