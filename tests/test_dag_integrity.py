"""Every DAG file loads, and every DAG carries what on-call relies on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) >= len(list(DAGS.glob("*.py")))


def test_every_dag_is_documented_owned_tagged_and_retried(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.description and len(dag.description) <= 200 and "\n" not in dag.description, \
            f"{dag_id}: needs a one-line description for the DAG list"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id}: doc_md missing or too thin for on-call"
        assert dag.max_active_runs == 1, f"{dag_id}: max_active_runs must be 1"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id}: no owner"
            assert task.retries >= 2, f"{dag_id}.{task.task_id}: retries {task.retries} < 2"


def test_migrations_dag_shape(dagbag):
    dag = dagbag.get_dag("coldcopy_migrations")
    assert dag.schedule is None
    assert set(dag.task_group.children) == {"plan", "rehearse", "approve", "approve_second", "phase_1_core",
                                            "phase_2_performance", "phase_3_advanced"}
    assert dag.get_task("rehearse").upstream_task_ids == {"plan"}  # nothing touches the target before it
    assert dag.get_task("approve").upstream_task_ids == {"rehearse"}  # the approver sees the rehearsal
    assert dag.get_task("approve_second").upstream_task_ids == {"approve"}  # a second person, when a file needs one
    assert dag.get_task("phase_1_core.100_auth_and_workspaces").upstream_task_ids == {"approve_second"}
    assert dag.get_task("approve").response_timeout.total_seconds() == 24 * 3600
    assert dag.get_task("approve").defaults == ["reject"]  # what the timeout answers
    from coldcopy.migrations import discover_migrations

    applies = [t.task_id for t in dag.tasks if type(t).__name__ == "ApplyMigrationOperator"]
    files = sorted(path.stem for path in (DAGS.parent / "sql" / "migrations").glob("*.sql"))
    assert [a.split(".", 1)[1] for a in applies] == files  # every file has its task, in file order
    assert len(applies) == len(discover_migrations())
    gate = dag.get_task("phase_2_performance.gate")
    assert "phase_1_core.113_salesforce_integration" in gate.upstream_task_ids
    # Files run strictly one after another.
    for earlier, later in zip(applies, applies[1:], strict=False):
        chain_ok = earlier in dag.get_task(later).upstream_task_ids or "gate" in "".join(
            dag.get_task(later).upstream_task_ids
        )
        assert chain_ok, f"{later} does not wait for {earlier}"


def test_refresh_dags_schedules_pool_and_deadlines(dagbag):
    """Every materialized view the migrations create is refreshed by exactly one DAG, on its job's cron, in the
    heavy pool, with a deadline shorter than its cadence (a run must end before the next is due)."""
    import re

    from coldcopy.dag_defaults import HEAVY_POOL
    from coldcopy.refresh_schedule import REFRESH_JOBS

    created = {f"analytics.{m}" for path in (DAGS.parent / "sql" / "migrations").glob("*.sql")
               for m in re.findall(r"CREATE MATERIALIZED VIEW (?:IF NOT EXISTS )?analytics\.(\w+)", path.read_text())}
    refreshed = []
    for dag_id, job in REFRESH_JOBS.items():
        dag = dagbag.get_dag(dag_id)
        assert dag.timetable.expression == job.cron and str(dag.timetable.timezone) in ("UTC", "Timezone('UTC')")
        [deadline] = dag.deadline
        assert deadline.interval < job.cadence
        assert all(task.pool == HEAVY_POOL for task in dag.tasks)
        refreshed += [t.view for t in dag.tasks if hasattr(t, "view")]
    assert created and sorted(refreshed) == sorted(created)


def test_refresh_cadences_match_their_crons():
    from croniter import croniter

    from coldcopy.refresh_schedule import REFRESH_JOBS

    for dag_id, job in REFRESH_JOBS.items():
        runs = croniter(job.cron, datetime(2026, 1, 1, 3, 30))
        first, second = runs.get_next(datetime), runs.get_next(datetime)
        assert second - first == job.cadence, dag_id


def test_db_health_every_10_minutes_one_task_per_check_group(dagbag):
    from coldcopy.health import CHECKS

    dag = dagbag.get_dag("db_health")
    assert dag.timetable.expression == "*/10 * * * *" and dag.max_active_runs == 1
    assert {t.task_id for t in dag.tasks} == {*CHECKS, "prune_history"}
    assert dag.deadline[0].interval.total_seconds() == 8 * 60


def test_maintenance_dags_schedules_pool_and_deadlines(dagbag):
    from coldcopy.dag_defaults import HEAVY_POOL

    for dag_id, cron, hours in (("partition_maintenance", "0 1 * * *", 3), ("backup_to_spaces", "0 3 * * *", 2),
                                ("db_maintenance_daily", "30 4 * * *", 2), ("db_maintenance_weekly", "0 5 * * 0", 4)):
        dag = dagbag.get_dag(dag_id)
        assert dag.timetable.expression == cron
        assert dag.deadline[0].interval.total_seconds() == hours * 3600
        assert all(task.pool == HEAVY_POOL for task in dag.tasks)
    for dag_id in ("partition_restore", "restore_from_spaces"):
        assert dagbag.get_dag(dag_id).schedule is None


def test_parsing_the_dags_imports_no_driver_or_web_framework():
    """The dag-processor re-parses every file every 30 s: db_health.py once imported psycopg at parse (321 ms)."""
    import subprocess
    import sys

    probe = ("import glob, sys\nfrom airflow.dag_processing.dagbag import DagBag\n"
             "for f in sorted(glob.glob('dags/*.py')):\n    DagBag(dag_folder=f)\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'boto3', 'fastapi'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=DAGS.parent)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_first_retry_delay_follows_coldcopy_retry_delay_s_and_refuses_nonsense(monkeypatch):
    from datetime import timedelta

    from coldcopy.dag_defaults import RETRY_DELAY_ENV, default_args, retry_delay

    monkeypatch.delenv(RETRY_DELAY_ENV, raising=False)
    assert default_args()["retry_delay"] == timedelta(minutes=1)
    monkeypatch.setenv(RETRY_DELAY_ENV, "5")
    assert default_args()["retry_delay"] == timedelta(seconds=5)
    assert default_args(retry_delay=timedelta(seconds=30))["retry_delay"] == timedelta(seconds=30)  # a DAG's own
    for bad in ("soon", "0", "86400"):
        monkeypatch.setenv(RETRY_DELAY_ENV, bad)
        with pytest.raises(ValueError, match=RETRY_DELAY_ENV):
            retry_delay()


def test_every_dag_can_be_triggered_from_the_form_with_its_defaults(dagbag):
    """Issue 41: a param the form holds required (its type without "null") with an empty default turned the Trigger
    form red and kept its button disabled; every DAG's defaults must also pass their own schemas (Airflow's
    ParamsDict validation, what a trigger runs)."""
    from coldcopy.dag_params import required_in_form

    for dag_id, dag in dagbag.dags.items():
        dag.params.validate()  # raises ParamValidationError naming the param
        for name, param in dag.params.items():
            if required_in_form(param):
                assert param.value not in (None, "", []), f"{dag_id}.{name}: required in the form, empty by default"


@pytest.mark.parametrize(("dag_id", "conf", "refused"), [
    ("restore_from_spaces", {"as_of": "2026-11-29T16:00:05Z", "workspace_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                             "target_schema": "support_ws1", "tables": ["public.workspaces"]}, None),
    ("restore_from_spaces", {"as_of": None, "workspace_id": None, "target_schema": None, "tables": None}, None),
    ("restore_from_spaces", {"as_of": "yesterday"}, "as_of"),
    ("restore_from_spaces", {"as_of": "2026-11-29 16:00:05"}, "as_of"),  # no zone: would restore the wrong hour
    ("restore_from_spaces", {"workspace_id": "acme"}, "workspace_id"),
    ("restore_from_spaces", {"target_schema": "Support-Copy"}, "target_schema"),
    ("restore_from_spaces", {"backup": "last week"}, "backup"),
    ("restore_from_spaces", {"tables": ["workspaces"]}, "tables"),
    ("restore_drill", {"as_of": "2026-12-04T03:00:05+00:00"}, None),
    ("restore_drill", {"as_of": "now"}, "as_of"),
    ("partition_restore", {"month": "2025-13-01"}, "month"),
])
def test_a_bad_param_is_refused_before_the_run(dagbag, dag_id, conf, refused):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    def trigger():  # what a trigger does: the DAG's params, the run's conf over them, validated
        params = ParamsDict(dagbag.get_dag(dag_id).params)
        params.update(conf)
        return params.validate()

    if refused is None:
        trigger()
        return
    with pytest.raises(ParamValidationError, match=f"param {refused}"):
        trigger()


def test_an_empty_optional_param_reaches_the_task_as_empty_text():
    from jinja2 import Template

    from coldcopy.dag_params import text

    assert Template(text("as_of")).render(params={"as_of": None}) == ""  # not "None"
    assert Template(text("as_of")).render(params={"as_of": "2026-11-29T16:00:05Z"}) == "2026-11-29T16:00:05Z"
