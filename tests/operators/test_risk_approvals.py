"""Approvals by risk (issue 44): a destructive or security-relevant file applies only with a second, different
approver's sealed *approve*; a file touching drifted objects only when the approver accepted the drift; one
approval is enough for a safe file. The live two-person run: tests/e2e/test_live_approval.py."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.migrations import discover_migrations
from coldcopy.operators import approval
from coldcopy.operators.migration_approval import ACCEPT_DRIFT, APPROVE, SECOND_TASK_ID, needs_second
from coldcopy.operators.migrations import ApplyMigrationOperator
from tests.conftest import FakeTaskInstance
from tests.support import closed_table
from tests.support.migrations import table_exists, write

DAG_ID = "coldcopy_migrations"
VARIABLE = "coldcopy_migration_approvers"
DROP = "ALTER TABLE public.leads DROP COLUMN company;\n"
SAFE = closed_table("more")


@pytest.fixture
def two_approvers(monkeypatch, approvals):
    monkeypatch.setenv("AIRFLOW_VAR_COLDCOPY_MIGRATION_APPROVERS", '["alice", "bob"]')
    return approvals


def _pending(tmp_path, generated_db, coldcopy_conn, text: str):
    directory = write(tmp_path / "m", {"150_change.sql": text})
    coldcopy_conn(generated_db)
    return directory, discover_migrations(directory)[0]


def _second(record: dict) -> dict:
    return approval.seal(FakeTaskInstance(dag_id=DAG_ID, task_id=SECOND_TASK_ID), record, VARIABLE)


def _apply(directory, xcoms: dict):
    ti = FakeTaskInstance(dag_id=DAG_ID, task_id="m150", xcoms=xcoms)
    return ApplyMigrationOperator(task_id="m150", sql="150_change.sql", migrations_dir=directory).execute(
        {"ti": ti, "params": {}})


def _company_kept(dsn: str) -> bool:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'leads' "
                            "AND column_name = 'company'").fetchone()[0] == 1


def test_a_destructive_file_waits_for_a_second_different_approver(tmp_path, generated_db, coldcopy_conn,
                                                                  two_approvers):
    directory, migration = _pending(tmp_path, generated_db, coldcopy_conn, DROP)
    request = {"files": {"150_change.sql": migration.checksum}, "grades": {"150_change.sql": "destructive"}}
    first = two_approvers(DAG_ID, {"decision": "apply", "request": request})
    with pytest.raises(AirflowFailException, match="destructive: it needs a second approver's 'approve'"):
        _apply(directory, {"approve": first})  # one approval; or approve_second marked success by hand (no XCom)
    forged = {k: v for k, v in _second({"decision": APPROVE, "by": "bob", "by_id": "bob", "request": request}).items()
              if k != "signature"}
    with pytest.raises(AirflowFailException, match="not a signed document"):
        _apply(directory, {"approve": first, SECOND_TASK_ID: forged})  # a user-role account's XCom
    same = _second({"decision": APPROVE, "by": "alice", "by_id": "alice", "request": request})
    with pytest.raises(AirflowFailException, match="not another person"):
        _apply(directory, {"approve": first, SECOND_TASK_ID: same})
    other_file = _second({"decision": APPROVE, "by": "bob", "by_id": "bob",
                          "request": {"files": {"150_change.sql": "0" * 64}}})
    with pytest.raises(AirflowFailException, match="second approver was not shown this file"):
        _apply(directory, {"approve": first, SECOND_TASK_ID: other_file})
    assert _company_kept(generated_db)
    bob = _second({"decision": APPROVE, "by": "bob", "by_id": "bob", "request": request})
    assert _apply(directory, {"approve": first, SECOND_TASK_ID: bob}) is True
    assert not _company_kept(generated_db)


def test_a_safe_file_applies_on_one_approval(tmp_path, generated_db, coldcopy_conn, two_approvers):
    directory, migration = _pending(tmp_path, generated_db, coldcopy_conn, SAFE)
    first = two_approvers(DAG_ID, {"decision": "apply", "request": {"files": {"150_change.sql": migration.checksum}}})
    assert _apply(directory, {"approve": first}) is True and table_exists(generated_db, "public.more")


def test_drift_the_files_touch_must_be_accepted(tmp_path, generated_db, coldcopy_conn, two_approvers):
    directory, migration = _pending(tmp_path, generated_db, coldcopy_conn, SAFE)
    request = {"files": {"150_change.sql": migration.checksum}, "drift_touched": ["index public.more_by_hand"]}
    plain = two_approvers(DAG_ID, {"decision": "apply", "request": request})
    with pytest.raises(AirflowFailException, match="did not accept the drift"):
        _apply(directory, {"approve": plain})
    accepted = two_approvers(DAG_ID, {"decision": ACCEPT_DRIFT, "request": request})
    assert _apply(directory, {"approve": accepted}) is True


def test_a_blocking_file_approved_by_its_author_needs_another_person():
    from coldcopy.migrations import risk

    graded = risk.grade_text("150_x.sql", "-- coldcopy:author alice\nCREATE INDEX x ON public.leads (email);",
                             populated={"public.leads"})
    assert graded.grade == "blocking" and graded.approvals == 1
    assert needs_second(graded, {"by_id": "alice"}) and not needs_second(graded, {"by_id": "bob"})
