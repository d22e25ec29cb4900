"""Decisions only the gate can make (issue 31, 1 and 9): what a ``user``-role account can write through the REST
API (an XCom entry, a task state) or a deploy can change on disk is never taken for an approval. The live attack
(XCom written and the gate marked *success* by hand in a running Airflow): tests/e2e/test_live_approval.py."""

from __future__ import annotations

import json

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import manifests
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.operators import approval
from coldcopy.operators.migrations import ApplyMigrationOperator
from tests.conftest import FakeTaskInstance
from tests.support import closed_table
from tests.support.migrations import table_exists, write

DAG_ID = "coldcopy_migrations"


@pytest.fixture
def pending_150(tmp_path, generated_db, coldcopy_conn):
    directory = write(tmp_path / "m", {"150_more.sql": closed_table("more")})
    coldcopy_conn(generated_db)
    return directory, discover_migrations(directory)[0]


def apply_with(directory, approve_xcom, run_id: str = "manual__test"):
    ti = FakeTaskInstance(dag_id=DAG_ID, task_id="m150", run_id=run_id, xcoms={"approve": approve_xcom})
    return ApplyMigrationOperator(task_id="m150", sql="150_more.sql", migrations_dir=directory).execute(
        {"ti": ti, "params": {}})


def test_a_decision_written_through_the_rest_api_applies_nothing(pending_150, generated_db, approvals):
    directory, migration = pending_150
    genuine = approvals(DAG_ID, {"decision": "apply", "request": {"files": {"150_more.sql": migration.checksum}}})
    forged = {k: v for k, v in genuine.items() if k != "signature"}  # what mallory POSTs to xcomEntries
    with pytest.raises(AirflowFailException, match="not a signed document .* written by hand through the REST API"):
        apply_with(directory, forged)
    edited = json.loads(json.dumps(genuine))
    edited["request"]["files"]["150_more.sql"] = "f" * 64  # a genuine seal over other facts
    with pytest.raises(AirflowFailException, match="signature does not verify"):
        apply_with(directory, edited)
    with pytest.raises(AirflowFailException, match="sealed for coldcopy_migrations/manual__test/approve, not this run"):
        apply_with(directory, genuine, run_id="manual__another")  # copied into another run
    asked = approval.seal(FakeTaskInstance(dag_id=DAG_ID, task_id="approve"),
                          {"decision": approval.ASKED, "request": {"files": {"150_more.sql": migration.checksum}}},
                          "coldcopy_migration_approvers")  # the question's sealed facts, copied into return_value
    with pytest.raises(AirflowFailException, match="asked and was not answered"):
        apply_with(directory, asked)
    other_key = approval.seal(FakeTaskInstance(dag_id=DAG_ID, task_id="approve"),
                              {"decision": "apply", "by": "alice", "by_id": "alice", "request": genuine["request"]},
                              "coldcopy_migration_approvers",
                              keys=manifests.Keyring.from_secret("a key mallory made up, 32+ characters long"))
    with pytest.raises(AirflowFailException, match="unknown key"):
        apply_with(directory, other_key)
    assert not table_exists(generated_db, "public.more")
    assert apply_with(directory, genuine) is True  # the gate's own seal applies


def test_an_approver_removed_from_the_variable_approves_nothing(pending_150, generated_db, approvals, monkeypatch):
    directory, migration = pending_150
    sealed = approvals(DAG_ID, {"decision": "apply", "request": {"files": {"150_more.sql": migration.checksum}}})
    monkeypatch.setenv("AIRFLOW_VAR_COLDCOPY_MIGRATION_APPROVERS", '["bob"]')
    with pytest.raises(AirflowFailException, match="'alice' is not \\(or no longer\\) one of the approvers"):
        apply_with(directory, sealed)
    assert not table_exists(generated_db, "public.more")


def test_a_stale_not_needed_is_decided_again_at_apply_time(pending_150, generated_db, approvals):
    """The gate found an empty target (no approval needed); the tasks are cleared later, when it holds data."""
    directory, _ = pending_150
    stale = approvals(DAG_ID, {"decision": approval.NOT_NEEDED, "reason": "the target holds no data"})
    with pytest.raises(AirflowFailException, match="the target now holds data"):
        apply_with(directory, stale)
    assert not table_exists(generated_db, "public.more")


def test_the_bytes_applied_are_the_bytes_checked(pending_150, generated_db, approvals, monkeypatch):
    """A deploy rewrites the file while the apply waits for the migration lock (up to 600 s): before, the checksum
    was compared and the file read again to run it, so the rewritten file ran unapproved."""
    directory, migration = pending_150
    approved = migration.checksum
    sealed = approvals(DAG_ID, {"decision": "apply", "request": {"files": {"150_more.sql": approved}}})
    waited = MigrationRunner._migration_lock

    def deploy_during_the_lock_wait(self, m):
        (directory / "150_more.sql").write_text(closed_table("sneaked"))
        return waited(self, m)

    monkeypatch.setattr(MigrationRunner, "_migration_lock", deploy_during_the_lock_wait)
    assert apply_with(directory, sealed) is True
    assert table_exists(generated_db, "public.more") and not table_exists(generated_db, "public.sneaked")

    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT checksum FROM coldcopy_ops.schema_migrations WHERE version = 150").fetchone()[
            0] == approved  # the history records what ran


def test_the_restore_gate_takes_no_forged_decision_and_knows_a_live_target_without_a_database_name(
        generated_db, coldcopy_conn, approvals, monkeypatch):
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    coldcopy_conn(generated_db)
    live = psycopg.conninfo.conninfo_to_dict(generated_db)["dbname"]
    genuine = approvals("restore_from_spaces", {"decision": "restore", "request": {"backup": "backups/x"}},
                        "coldcopy_restore_approvers")
    forged = {k: v for k, v in genuine.items() if k != "signature"}
    ti = FakeTaskInstance(dag_id="restore_from_spaces", task_id="restore", xcoms={"approve": forged})
    with pytest.raises(AirflowFailException, match="not a signed document"):
        RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=live).execute(
            {"ti": ti, "params": {}})
    # coldcopy_db with no database name connects to the login's database: that one is live too.
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DB", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres"}))
    operator = RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database="postgres")
    assert operator.is_live("postgres") and not operator.is_live(live)
    with pytest.raises(AirflowFailException, match="refusing to restore into the live database 'postgres'"):
        operator.execute({"ti": FakeTaskInstance(dag_id="restore_from_spaces", task_id="restore"), "params": {}})
