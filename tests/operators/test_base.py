"""Tasks can be stopped: ``on_kill`` leaves nothing running on the server or as a child process."""

from __future__ import annotations

import threading
import time

import psutil
import psycopg

from coldcopy.operators.backups import BackupDatabaseOperator
from coldcopy.operators.base import ColdCopyOperator


def ours(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT pid, application_name, state FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()


def children() -> list[str]:
    return [p.name() for p in psutil.Process().children(recursive=True)
            if p.name() in ("pg_dump", "zstd", "gpg")]


def test_on_kill_stops_the_backends_and_the_child_processes_of_a_running_backup(
        generated_db, coldcopy_conn, spaces, backup_key):
    coldcopy_conn(generated_db)
    operator = BackupDatabaseOperator(task_id="backup_database")
    errors = []
    with psycopg.connect(generated_db) as blocker:
        # An UNLOGGED cache table: not in the manifest's counts, but dumped, so pg_dump itself waits for ever.
        blocker.execute("LOCK TABLE public.dashboard_cache IN ACCESS EXCLUSIVE MODE")

        def run() -> None:
            try:
                operator.execute({"ti": None, "params": {}})
            except BaseException as error:  # noqa: BLE001 - expected: the task was killed
                errors.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while not any(app.startswith("coldcopy:pg_dump:") for _, app, _ in ours(generated_db)):
            assert time.monotonic() < deadline, f"pg_dump never started: {errors} {ours(generated_db)}"
            time.sleep(0.2)
        assert set(children()) == {"pg_dump", "zstd", "gpg"}
        killed_at = time.monotonic()
        operator.on_kill()
        while ours(generated_db) and time.monotonic() - killed_at < 1.0:
            time.sleep(0.05)
        left = [row for row in ours(generated_db) if row[0] != blocker.info.backend_pid]
        assert left == [], left  # the snapshot session and pg_dump's backend are gone within a second
        assert children() == []
        thread.join(30)
    assert errors and not thread.is_alive()


def test_every_operator_has_a_time_limit_and_on_kill():
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    for dag in bag.dags.values():
        for task in dag.tasks:
            operator_class = getattr(task, "operator_class", type(task))  # mapped tasks: their operator
            assert issubclass(operator_class, ColdCopyOperator), f"{dag.dag_id}.{task.task_id}"
            timeout = task.execution_timeout or operator_class.default_execution_timeout  # mapped: set at run
            assert 0 < timeout.total_seconds() <= 3 * 3600, f"{dag.dag_id}.{task.task_id}"
