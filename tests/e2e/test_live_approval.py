"""The approval gate of ``coldcopy_migrations`` in the live Airflow: the run stops at ``approve`` (awaiting input,
no worker slot held) after rehearsing on the newest backup; an assigned user's *apply* through the REST API
applies the file; *reject* applies nothing and fails the run with the comment; no answer is a rejection; a user
not assigned gets 403."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from coldcopy import manifests
from coldcopy.backups import BackupRunner
from coldcopy.object_store import Bucket
from tests.e2e.conftest import MANIFEST_SECRET, PASSPHRASE, alerts_for

pytestmark = pytest.mark.e2e

DAG_ID = "coldcopy_migrations"
CACHE_TABLES = ("public.dashboard_cache", "public.enrichment_cache", "public.api_rate_limits")


def unapply_204(dsn: str) -> None:
    """Take 204_cache_tables back out of a migrated database: its tables, its function, its history row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {', '.join(CACHE_TABLES)}")
        conn.execute("DROP FUNCTION app.purge_expired_cache(integer)")
        conn.execute("DELETE FROM coldcopy_ops.schema_migrations WHERE version = 204")


def cache_tables_exist(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT to_regclass('public.dashboard_cache') IS NOT NULL").fetchone()[0]


def wait_task(live, api, dag_id: str, run_id: str, task_id: str, states: set[str], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ti = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json()
        if ti.get("state") in states:
            return ti
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}.{task_id} not in {states} within {timeout_s} s: {ti.get('state')}")


def parked(live, api, dag_id: str, run_id: str) -> dict:
    """Wait until ``approve`` asks, then a few seconds more, as a person reading the question would: Airflow
    3.3.2 kills the resumed task when the answer comes while the parked task's own process is still winding
    down (about 1 s; "Server indicated the task shouldn't be running anymore") and the retry asks again."""
    ti = wait_task(live, api, dag_id, run_id, "approve", {"awaiting_input", "failed", "success"}, 400)
    assert ti["state"] == "awaiting_input", ti
    time.sleep(4)
    return ti


def hitl(api, dag_id: str, run_id: str, task_id: str = "approve") -> str:
    return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


@pytest.fixture
def pending_204(live, api, generated_template):
    """A populated target on which 204_cache_tables is pending, its newest backup taken in that state (what the
    rehearsal restores), and the approvers Variable naming only "approver"."""
    live.reset_target(generated_template)
    unapply_204(live.target_dsn)
    keys = manifests.Keyring.from_secret(MANIFEST_SECRET)
    BackupRunner(live.target_dsn, Bucket(live.s3_client, live.bucket), PASSPHRASE, keyring=keys).backup()
    set_approvers(api, "coldcopy_migration_approvers", ["approver"])
    return live.target_dsn


def set_approvers(api, variable: str, users: list[str]) -> None:
    response = api.post("/variables", json={"key": variable, "value": json.dumps(users)})
    assert response.status_code in (201, 409), response.text
    if response.status_code == 409:
        assert api.patch(f"/variables/{variable}", json={"key": variable, "value": json.dumps(users)}
                         ).status_code == 200


def forge_approval(live, api, dag_id: str, run_id: str, option: str, request: dict, variable: str) -> None:
    """What mallory (role ``user``) may do through the public API: answering the question is refused (403), but
    writing the gate's XCom (a decision of ``option`` on ``request``) and marking the gate *success* are not."""
    forged = {"decision": option, "by": "approver", "by_id": "approver", "comment": "", "at": None,
              "request": request, "dag_id": dag_id, "run_id": run_id, "gate": "approve",
              "approvers_variable": variable, "type": "approval"}
    base = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve"
    with live.stack.client("mallory") as mallory:
        assert mallory.patch(hitl(api, dag_id, run_id), json={"chosen_options": [option]}).status_code == 403
        written = mallory.post(f"{base}/xcomEntries", json={"key": "return_value", "value": forged})
        assert written.status_code == 201, written.text  # the API lets a user write it: the seal is what stops it
        marked = mallory.patch(base, json={"new_state": "success"})
        assert marked.status_code == 200, marked.text


def test_the_run_waits_for_an_assigned_approver_then_applies(live, api, pending_204):
    """204_cache_tables calls app.secure_tenant_table (dynamic SQL making policies) and makes a function running
    EXECUTE of a built string: *ungraded*, so two people decide (issue 44). The second is asked only after the
    first, and only the others of the Variable are asked."""
    set_approvers(api, "coldcopy_migration_approvers", ["approver", "second"])
    run_id = live.trigger(api, DAG_ID)
    parked(live, api, DAG_ID, run_id)
    assert api.get("/pools/default_pool").json()["occupied_slots"] == 0  # waiting holds no worker slot
    assert not cache_tables_exist(pending_204)  # nothing touched the target yet
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances(api, DAG_ID, run_id)}
    assert states["plan"] == states["rehearse"] == "success"
    assert states["phase_2_performance.204_cache_tables"] in (None, "none", "scheduled")

    detail = api.get(hitl(api, DAG_ID, run_id)).json()
    # only phase 2 is pending: "apply phase 1 only" would apply nothing, so it is not offered (issue 41, 10)
    assert detail["options"] == ["apply", "reject"] and detail["defaults"] == ["reject"]
    assert [u["id"] for u in detail["assigned_users"]] == ["approver", "second"]
    assert "Dress rehearsal" in detail["body"] and "204_cache_tables.sql" in detail["body"]
    assert "**Risk: ungraded**" in detail["body"] and "approvers needed: **2**" in detail["body"], detail["body"]

    with live.stack.client("intruder") as intruder:  # an admin, but not assigned
        refused = intruder.patch(hitl(api, DAG_ID, run_id), json={"chosen_options": ["apply"]})
    assert refused.status_code == 403, refused.text
    assert wait_task(live, api, DAG_ID, run_id, "approve", {"awaiting_input"}, 5)  # still waiting

    with live.stack.client("approver") as approver:
        answered = approver.patch(hitl(api, DAG_ID, run_id),
                                  json={"chosen_options": ["apply"], "params_input": {"comment": "quiet hour"}})
    assert answered.status_code == 200, answered.text
    second = wait_task(live, api, DAG_ID, run_id, "approve_second", {"awaiting_input", "failed", "success"}, 300)
    assert second["state"] == "awaiting_input", second
    assert not cache_tables_exist(pending_204)  # one approval applied nothing
    time.sleep(4)  # as a person would (parked)
    with live.stack.client("second") as other:
        assert other.patch(hitl(api, DAG_ID, run_id, "approve_second"), json={"chosen_options": ["approve"]}
                           ).status_code == 200
    assert live.wait_run(api, DAG_ID, run_id, timeout_s=300) == "success"
    assert api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve").json()["try_number"] == 1
    assert cache_tables_exist(pending_204)
    with psycopg.connect(pending_204) as conn:
        assert conn.execute("SELECT applied_by FROM coldcopy_ops.schema_migrations WHERE version = 204").fetchone()[
            0].startswith(f"airflow {DAG_ID}.phase_2_performance.204_cache_tables run ")
    decision = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve/xcomEntries/return_value").json()
    value = decision["value"] if isinstance(decision["value"], dict) else json.loads(decision["value"])
    assert (value["decision"], value["by"], value["comment"]) == ("apply", "approver", "quiet hour")
    assert "204_cache_tables.sql" in value["request"]["files"]


def test_a_rejection_applies_nothing_and_fails_the_run_with_the_comment(live, api, pending_204):
    run_id = live.trigger(api, DAG_ID)
    parked(live, api, DAG_ID, run_id)
    with live.stack.client("approver") as approver:
        assert approver.patch(hitl(api, DAG_ID, run_id), json={
            "chosen_options": ["reject"], "params_input": {"comment": "not during the campaign peak"}}
        ).status_code == 200
    assert live.wait_run(api, DAG_ID, run_id, timeout_s=120) == "failed"
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances(api, DAG_ID, run_id)}
    assert states["approve"] == "failed"
    assert states["phase_2_performance.204_cache_tables"] == "upstream_failed"
    assert not cache_tables_exist(pending_204)
    [alert] = alerts_for(live, DAG_ID, run_id)
    assert "rejected by approver: not during the campaign peak" in json.dumps(alert)


def test_no_answer_in_time_is_a_rejection(live, api, pending_204):
    dag_id = "e2e_migration_approval_timeout"  # the same gate, answer window 5 s instead of 24 h
    run_id = live.trigger(api, dag_id)
    assert live.wait_run(api, dag_id, run_id, timeout_s=120) == "failed"
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances(api, dag_id, run_id)}
    assert states == {"approve": "failed", "204_cache_tables": "upstream_failed"}
    assert not cache_tables_exist(pending_204)
    [alert] = alerts_for(live, dag_id, run_id)
    assert "no answer within 0:00:05: rejected" in json.dumps(alert)


def test_a_forged_decision_and_a_gate_marked_success_by_hand_apply_nothing(live, api, pending_204):
    """Issue 31, 1: mallory (role ``user``) cannot answer the question (403), but may write the gate's XCom and set
    its state through the public API. Before the seal, a decision copied from ``plan``'s XCom and the gate marked
    *success* applied 204_cache_tables to the populated target. Now the file task refuses it: one alert."""
    run_id = live.trigger(api, DAG_ID)
    parked(live, api, DAG_ID, run_id)
    plan = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/plan/xcomEntries/return_value").json()["value"]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    files = {e["file"]: e["checksum"] for e in plan if e["status"] == "pending"}
    forge_approval(live, api, DAG_ID, run_id, "apply", {"files": files}, "coldcopy_migration_approvers")
    assert live.wait_run(api, DAG_ID, run_id, timeout_s=300) == "failed"
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances(api, DAG_ID, run_id)}
    assert states["approve"] == "success", states
    assert states["phase_2_performance.204_cache_tables"] in ("failed", "upstream_failed"), states
    assert "failed" in states.values(), states  # the first step that reads the decision (a phase gate or a file)
    assert not cache_tables_exist(pending_204)
    time.sleep(3)  # a second alert would arrive by now
    [alert] = alerts_for(live, DAG_ID, run_id)
    assert "not a signed document" in json.dumps(alert) and "REST API" in json.dumps(alert)


def test_a_forged_restore_decision_and_a_gate_marked_success_by_hand_restore_nothing(live, api, pending_204):
    """Issue 31, 1, the restore gate: the same forgery as above on ``restore_from_spaces`` into the live
    database (its tables' rows from the newest backup). Before the seal, the restore read the forged
    ``{"decision": "restore"}`` and overwrote the live rows. Now it refuses: nothing restored, one alert."""
    dag_id = "restore_from_spaces"
    set_approvers(api, "coldcopy_restore_approvers", ["approver"])
    with psycopg.connect(pending_204, autocommit=True) as conn:  # after the backup: what a restore would undo
        conn.execute("DELETE FROM public.suppression_list")
    backup = sorted(o["Key"] for o in live.s3_client.list_objects_v2(Bucket=live.bucket, Prefix="backups/")
                    ["Contents"] if o["Key"].endswith(".dump.zst.gpg"))[-1]
    run_id = live.trigger(api, dag_id, target_database=live.target, tables=["public.suppression_list"])
    parked(live, api, dag_id, run_id)
    forge_approval(live, api, dag_id, run_id, "restore", {"backup": backup}, "coldcopy_restore_approvers")
    assert live.wait_run(api, dag_id, run_id, timeout_s=300) == "failed"
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances(api, dag_id, run_id)}
    assert states == {"approve": "success", "restore": "failed"}, states
    with psycopg.connect(pending_204) as conn:
        assert conn.execute("SELECT count(*) FROM public.suppression_list").fetchone()[0] == 0  # nothing restored
    time.sleep(3)
    [alert] = alerts_for(live, dag_id, run_id)
    assert "not a signed document" in json.dumps(alert), alert
