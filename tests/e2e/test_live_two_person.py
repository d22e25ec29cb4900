"""Approvals by risk in the live Airflow (issue 44): a destructive file (a column dropped) waits for two people.
The first approver's *apply* applies nothing; ``approve_second`` then asks the other approvers only (the first
gets 403); the second person's *approve* applies it. A ``user``-role account that writes ``approve_second``'s
XCom and marks it *success* applies nothing."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from tests.e2e.conftest import alerts_for
from tests.e2e.test_live_approval import set_approvers, wait_task

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_two_person_migration"


def _column_kept(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return bool(conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND "
                                 "table_name = 'leads' AND column_name = 'company'").fetchone())


def _hitl(run_id: str, task_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


@pytest.fixture
def populated(live, api, generated_template):
    live.reset_target(generated_template)
    set_approvers(api, "coldcopy_migration_approvers", ["approver", "second"])
    return live.target_dsn


def _first_applies(live, api, run_id: str) -> dict:
    wait_task(live, api, DAG_ID, run_id, "approve", {"awaiting_input"}, 400)
    time.sleep(4)  # as a person would (tests/e2e/test_live_approval.py, parked)
    detail = api.get(_hitl(run_id, "approve")).json()
    assert "**Risk: destructive**" in detail["body"] and "drops column company" in detail["body"], detail["body"]
    with live.stack.client("approver") as approver:
        assert approver.patch(_hitl(run_id, "approve"), json={"chosen_options": ["apply"]}).status_code == 200
    return wait_task(live, api, DAG_ID, run_id, "approve_second", {"awaiting_input", "failed", "success"}, 300)


def test_a_destructive_file_waits_for_a_second_person(live, api, populated):
    run_id = live.trigger(api, DAG_ID)
    second = _first_applies(live, api, run_id)
    assert second["state"] == "awaiting_input", second
    assert _column_kept(populated)  # one approval applied nothing
    detail = api.get(_hitl(run_id, "approve_second")).json()
    assert [u["id"] for u in detail["assigned_users"]] == ["second"] and detail["options"] == ["approve", "reject"]
    time.sleep(4)
    with live.stack.client("approver") as approver:  # the first approver cannot be the second
        assert approver.patch(_hitl(run_id, "approve_second"), json={"chosen_options": ["approve"]}).status_code == 403
    with live.stack.client("second") as other:
        assert other.patch(_hitl(run_id, "approve_second"), json={"chosen_options": ["approve"]}).status_code == 200
    assert live.wait_run(api, DAG_ID, run_id, timeout_s=300) == "success"
    assert not _column_kept(populated)


def test_a_second_approval_forged_by_a_user_account_applies_nothing(live, api, populated):
    run_id = live.trigger(api, DAG_ID)
    assert _first_applies(live, api, run_id)["state"] == "awaiting_input"
    first = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve/xcomEntries/return_value").json()
    first = first["value"] if isinstance(first["value"], dict) else json.loads(first["value"])
    forged = {**first, "gate": "approve_second", "decision": "approve", "by": "second", "by_id": "second"}
    forged.pop("signature", None)
    base = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve_second"
    with live.stack.client("mallory") as mallory:
        assert mallory.patch(_hitl(run_id, "approve_second"), json={"chosen_options": ["approve"]}).status_code == 403
        assert mallory.post(f"{base}/xcomEntries", json={"key": "return_value", "value": forged}).status_code == 201
        assert mallory.patch(base, json={"new_state": "success"}).status_code == 200
    assert live.wait_run(api, DAG_ID, run_id, timeout_s=300) == "failed"
    assert _column_kept(populated)
    time.sleep(3)
    [alert] = alerts_for(live, DAG_ID, run_id)
    assert "not a signed document" in json.dumps(alert)
