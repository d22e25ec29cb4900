"""Issue 41, 6: one page per mistake. A bad ``thresholds`` param is refused before a run exists; a bad threshold
Variable fails every check task of db_health, and pages once (real PostgreSQL, the alert sink)."""

from __future__ import annotations

import json

import psycopg
import pytest

from coldcopy.testing.in_process import run_dag


def test_a_bad_thresholds_param_is_refused_before_the_run(dagbag):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    for bad in ({"storage_allocated_gb": "lots"}, {"storage_gb": 250}, {"cpu_cores": 2.5}):
        params = ParamsDict(dagbag.get_dag("db_health").params)
        with pytest.raises(ParamValidationError, match="param thresholds"):
            params.update({"thresholds": bad})
            params.validate()
    params = ParamsDict(dagbag.get_dag("db_health").params)
    params.update({"thresholds": {"storage_allocated_gb": 250, "cpu_cores": 4}})
    assert params.validate()["thresholds"]["cpu_cores"] == 4


def test_a_bad_threshold_variable_pages_once_per_dag_not_once_per_task(migrated_db, coldcopy_conn, dagbag, sink,
                                                                       monkeypatch):
    coldcopy_conn(migrated_db)
    monkeypatch.setenv("AIRFLOW_VAR_COLDCOPY_HEALTH_THRESHOLDS", json.dumps({"storage_allocated_gb": "lots"}))
    run = run_dag(dagbag.get_dag("db_health"), require_results=False)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and list(states.values()).count("failed") >= 8, states
    [alert] = [r["body"]["alert"] for r in sink.received]
    assert alert["kind"] == "task_failed" and "storage_allocated_gb must be a number" in alert["summary"]
    again = run_dag(dagbag.get_dag("db_health"), require_results=False)  # the next run, 10 minutes later
    assert again.state == "failed" and len(sink.received) == 1
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT repeats FROM coldcopy_ops.alert_sent").fetchone()[0] >= 8 + 8
