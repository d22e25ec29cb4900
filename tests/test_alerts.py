"""Alerts really arrive: a failing task and a missed deadline each POST to a webhook sink on loopback."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from coldcopy import alerts, failure_reasons
from coldcopy.testing.in_process import run_dag

FAILING_DAG = '''
"""Fails on purpose: a test of alert delivery."""
from datetime import timedelta

from airflow.sdk import DAG, task

from coldcopy import alerts, failure_reasons
from coldcopy.dag_defaults import START_DATE, default_args

with DAG(
    dag_id="alert_test_failing", schedule=None, start_date=START_DATE, default_args=default_args(retries=0),
    deadline=alerts.deadline(timedelta(minutes=5), expected="the alert test"),
):
    @task
    def breaks():
        raise RuntimeError("disk on fire")

    breaks()
'''


@pytest.fixture
def failing_dag(tmp_path, airflow_db):
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    (tmp_path / "alert_test_failing.py").write_text(FAILING_DAG)
    bag = DagBag(dag_folder=str(tmp_path))
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.get_dag("alert_test_failing")


def test_failing_task_alert_is_delivered(sink, failing_dag):
    run = run_dag(failing_dag)
    assert run.state == "failed"
    [text] = sink.texts()
    assert "task_failed" in text and "breaks failed" in text and "disk on fire" in text
    assert sink.received[0]["body"]["alert"]["dag_id"] == "alert_test_failing"
    # What to do, where the log is, and no Python class name (before: "RuntimeError: disk on fire", no next step)
    assert "RuntimeError" not in text
    assert "\nNext: open the log below, then the alert_test_failing runbook" in text
    assert "\nLog: http" in text and "/dags/alert_test_failing/runs/" in text and "/tasks/breaks" in text


@pytest.mark.parametrize("error, step", [
    (RuntimeError("canceling statement due to lock timeout"), "db_health's blocking-queries check"),
    (RuntimeError("no coldcopy_verify_db connection: nothing to restore onto"), "add the connection named"),
    (type("Picky", (Exception,), {"next_step": "trigger it again with latest"})("no backup matches"),
     "trigger it again with latest"),
])
def test_a_failure_alert_says_the_next_step(error, step):
    assert step in failure_reasons.next_step(error, "some_dag")
    assert failure_reasons.plain_reason(error) == str(error) and failure_reasons.plain_reason(KeyError()) == "key error"


def test_missed_deadline_alert_is_delivered_through_the_scheduler_and_triggerer_code(sink, failing_dag):
    """The scheduler's Deadline.handle_miss queues the DAG's callback; the triggerer's CallbackTrigger runs it."""
    from airflow.models.deadline import Deadline
    from airflow.models.trigger import Trigger
    from airflow.sdk import timezone
    from airflow.triggers.callback import CallbackTrigger
    from airflow.utils.session import create_session

    run = run_dag(failing_dag)
    [alert] = failing_dag.deadline
    with create_session() as session:
        deadline = Deadline(
            deadline_time=timezone.utcnow() - timedelta(minutes=1), callback=alert.callback,
            dagrun_id=run.id, deadline_alert_id=None, dag_id=failing_dag.dag_id,
        )
        session.add(deadline)
        session.flush()
        deadline.handle_miss(session=session)
        session.flush()
        trigger = session.get(Trigger, deadline.callback.trigger_id)
        classpath, kwargs = trigger.classpath, dict(trigger.kwargs)
    assert classpath == "airflow.triggers.callback.CallbackTrigger"
    assert kwargs["callback_path"] == "coldcopy.alerts.on_deadline_missed"

    async def run_trigger() -> list:
        return [event.payload async for event in CallbackTrigger(**kwargs).run()]

    delivered_before = len(sink.received)  # the run's own task_failed alert
    events = asyncio.run(run_trigger())
    assert events[-1]["state"] == "success", events
    [text] = sink.texts()[delivered_before:]
    assert "deadline_missed" in text and "finish within 0:05:00" in text and "alert_test_failing" in text


def test_without_an_alert_connection_it_warns_and_does_not_fail(caplog, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_COLDCOPY_ALERTS_SMTP", raising=False)
    with caplog.at_level(logging.WARNING, logger="coldcopy.alerts"):
        assert alerts.send(alerts.Alert(kind="threshold_breached", summary="dead tuples at 40%")) == 0
    assert "no alert connection" in caplog.text and "dead tuples at 40%" in caplog.text


def test_a_broken_channel_does_not_raise(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", '{"conn_type": "http", "host": "http://127.0.0.1:9"}')
    with caplog.at_level(logging.ERROR, logger="coldcopy.alerts"):
        assert alerts.send(alerts.Alert(kind="task_failed", summary="x")) == 0
    assert "alert channel HttpNotifier failed" in caplog.text


def test_every_dag_alerts_on_failure_and_has_a_deadline():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "dags"))
    for dag_id, dag in bag.dags.items():
        for task in dag.tasks:
            assert alerts.on_task_failure in (task.on_failure_callback or []), f"{dag_id}.{task.task_id}"
        if dag.schedule is not None:  # DAGs triggered by hand have a person watching them
            assert dag.deadline, f"{dag_id} has no deadline"
            assert dag.deadline[0].callback.path == "coldcopy.alerts.on_deadline_missed"


def _miss_deadline(dag, run, deadline_time) -> list:
    """What the scheduler (Deadline.handle_miss) and then the triggerer (CallbackTrigger) do for a missed deadline;
    returns the trigger's events."""
    from airflow.models.deadline import Deadline
    from airflow.models.trigger import Trigger
    from airflow.triggers.callback import CallbackTrigger
    from airflow.utils.session import create_session

    [alert] = dag.deadline
    with create_session() as session:
        deadline = Deadline(deadline_time=deadline_time, callback=alert.callback, dagrun_id=run.id,
                            deadline_alert_id=None, dag_id=dag.dag_id)
        session.add(deadline)
        session.flush()
        deadline.handle_miss(session=session)
        session.flush()
        kwargs = dict(session.get(Trigger, deadline.callback.trigger_id).kwargs)

    async def run_trigger() -> list:
        return [event.payload async for event in CallbackTrigger(**kwargs).run()]

    return asyncio.run(run_trigger())


def test_no_deadline_alert_for_a_run_that_failed_before_its_deadline(sink, failing_dag):
    """Issue 41, 6: a run failed (paged once), and 8 minutes later its deadline paged again."""
    run = run_dag(failing_dag)
    assert run.state == "failed" and len(sink.received) == 1
    events = _miss_deadline(failing_dag, run, run.end_date + timedelta(minutes=5))
    assert events[-1]["state"] == "success", events
    assert len(sink.received) == 1, sink.texts()


def test_a_failed_catch_up_run_does_not_repeat_the_same_page(sink, failing_dag, empty_db, coldcopy_conn):
    """Issue 41, 6: a scheduled run and the catch-up run with it failed on the same error: one page, not two (real
    PostgreSQL: coldcopy_db records what was paged); another error still pages."""
    coldcopy_conn(empty_db)
    assert run_dag(failing_dag).state == "failed" and len(sink.received) == 1
    assert run_dag(failing_dag).state == "failed" and len(sink.received) == 1  # the same error, an hour not over
    alerts.on_task_failure({"ti": type("TI", (), {"dag_id": failing_dag.dag_id, "run_id": "r3", "task_id": "breaks",
                                                  "try_number": 1})(), "exception": RuntimeError("disk gone")})
    assert len(sink.received) == 2 and "disk gone" in sink.texts()[1]


def test_a_deadline_of_a_run_still_running_or_unreadable_pages():
    """Before: an end_date of None with a deadline_time that was no ISO time raised ValueError in the triggerer."""
    assert alerts.ended_before(None, "now") is False
    assert alerts.ended_before("2026-01-01T00:00:00Z", "soon") is False
    assert alerts.ended_before("2026-01-01T00:00:00Z", "2026-01-01T00:05:00+00:00") is True
