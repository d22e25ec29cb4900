"""The ``jobs`` of a restore drill and of restore_from_spaces (issue 40, 11): each job is a connection to the target
server (``pg_restore --jobs``, the replay's lanes), so both have a maximum, in the DAG's param schema (refused
before a run) and in the operator (a run from the API or a test that skips the schema); restore_from_spaces has
the param at all (it always used one per CPU: 1 is the fallback to one connection)."""

from __future__ import annotations

import pytest
from airflow.models.connection import Connection
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

from coldcopy.operators.backups import MAX_JOBS
from coldcopy.operators.drills import RestoreDrillOperator
from coldcopy.operators.restore import RestoreFromSpacesOperator


@pytest.mark.parametrize("dag_id", ["restore_drill", "restore_from_spaces"])
def test_the_jobs_param_has_a_maximum(dagbag, dag_id):
    def trigger(jobs):
        params = ParamsDict(dagbag.get_dag(dag_id).params)
        params.update({"jobs": jobs})
        return params.validate()

    assert trigger(MAX_JOBS)["jobs"] == MAX_JOBS and trigger(1)["jobs"] == 1
    for refused in (MAX_JOBS + 1, 10_000, -1):
        with pytest.raises(ParamValidationError, match="param jobs"):
            trigger(refused)
    assert dagbag.get_dag(dag_id).get_task({"restore_drill": "drill"}.get(dag_id, "restore")).jobs == \
        "{{ params.jobs }}"


def test_the_operators_refuse_too_many_jobs_and_cap_the_cores():
    verify = Connection(conn_id="coldcopy_verify_db", conn_type="postgres", extra='{"cores": 500}')
    assert RestoreDrillOperator(task_id="drill", jobs="0").restore_jobs(verify) == MAX_JOBS
    assert RestoreDrillOperator(task_id="drill", jobs="3").restore_jobs(verify) == 3
    for refused in (str(MAX_JOBS + 1), "10000", "-2", "many"):
        with pytest.raises(AirflowFailException, match="jobs"):
            RestoreDrillOperator(task_id="drill", jobs=refused).restore_jobs(verify)
        with pytest.raises(AirflowFailException, match="jobs"):
            RestoreFromSpacesOperator.checked_jobs(refused)
    assert RestoreFromSpacesOperator.checked_jobs("1") == 1 and RestoreFromSpacesOperator.checked_jobs("") == 0
