"""db_health through dag.test(): every group's task, thresholds from the Variable and the run's params."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from coldcopy.testing.in_process import run_dag

DAGS = Path(__file__).resolve().parents[2] / "dags"




def latest(dsn: str, check: str) -> tuple[str, str]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT s.state, s.summary FROM coldcopy_ops.health_latest l "
                            "JOIN coldcopy_ops.health_snapshot s ON s.id = l.snapshot_id WHERE l.check_name = %s",
                            (check,)).fetchone()


def test_thresholds_come_from_the_variable_then_the_run(migrated_db, coldcopy_conn, dagbag, monkeypatch):
    coldcopy_conn(migrated_db)
    monkeypatch.setenv("AIRFLOW_VAR_COLDCOPY_HEALTH_THRESHOLDS", json.dumps({"storage_allocated_gb": 0.001}))
    run = run_dag(dagbag.get_dag("db_health"))
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert latest(migrated_db, "storage")[0] == "breach"  # a 1 MB allocation, from the Variable
    run = run_dag(dagbag.get_dag("db_health"), conf={"thresholds": {"storage_allocated_gb": 1000}})
    assert run.state == "success" and latest(migrated_db, "storage")[0] == "ok"  # the run's param wins
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="storage_gb"):  # an unknown name: refused, no run (issue 41)
        run_dag(dagbag.get_dag("db_health"), conf={"thresholds": {"storage_gb": 1}})
