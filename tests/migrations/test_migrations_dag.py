"""The coldcopy_migrations DAG: an empty database built, the phase gate, approvals of exactly what is shown."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from coldcopy.migrations import discover_migrations
from coldcopy.operators.migrations import (
    ApplyMigrationOperator,
    MigrationApprovalOperator,
    MigrationPlanOperator,
    PhaseGateOperator,
)
from tests.conftest import FakeTaskInstance
from tests.support import closed_table
from tests.support.migrations import (
    history,
    run_dag,
    runner_for,
    table_exists,
    write,
)


def test_dag_builds_empty_database_and_second_run_applies_nothing(empty_db, coldcopy_conn, migrations_dag):
    coldcopy_conn(empty_db)
    run, states = run_dag(migrations_dag)
    assert run.state == "success", states
    first = history(empty_db)
    files = discover_migrations()
    assert [(v, n, c) for v, n, c, _ in first] == [(m.version, m.name, m.checksum) for m in files]
    assert len(first) == 26

    run, _ = run_dag(migrations_dag)
    assert run.state == "success"
    assert history(empty_db) == first  # same rows, same applied_at: nothing re-applied


def test_phase_gate(empty_db, coldcopy_conn, airflow_db):
    coldcopy_conn(empty_db)
    migrations = discover_migrations()
    gate = PhaseGateOperator(task_id="gate", phase=2)
    with pytest.raises(AirflowFailException, match="phase 2 .* not applied: 100_auth_and_workspaces.sql"):
        gate.execute({"params": {"dry_run": False}})
    with pytest.raises(AirflowSkipException, match="dry run: phase 2 would wait"):  # a dry run only reports
        gate.execute({"params": {"dry_run": True}})
    runner_for(empty_db).apply_all([m for m in migrations if m.phase == 1], applied_by="test")
    gate.execute({"params": {"dry_run": False}})
    with pytest.raises(AirflowFailException, match="phase 3 .* not applied: 201_"):
        PhaseGateOperator(task_id="gate3", phase=3).execute({"params": {"dry_run": False}})


def test_the_gate_asks_only_when_something_would_change_data_and_a_file_applies_only_when_approved(
        tmp_path, generated_db, empty_db, coldcopy_conn, approvals):
    """The approval gate's own decision to ask (the live question and answers: tests/e2e/test_live_approval.py), and
    the file task's refusal without a decision to apply, or of bytes other than those shown."""
    directory = write(tmp_path / "m", {"150_more.sql": closed_table("more"),
                                       "250_later.sql": closed_table("later")})
    migration = discover_migrations(directory)[0]
    gate = MigrationApprovalOperator(task_id="approve", migrations_dir=directory)
    coldcopy_conn(generated_db)  # holds data; 150_more.sql is pending there
    assert gate.not_needed({"params": {"dry_run": True}}) == "dry run: nothing is applied"
    assert gate.not_needed({"params": {"dry_run": False}}) is None  # asked
    coldcopy_conn(empty_db)
    assert "holds no data" in gate.not_needed({"params": {}})

    def TaskInstance(decision):  # noqa: N802 - reads as the class it stands for
        sealed = approvals("coldcopy_migrations", decision) if decision else None
        return FakeTaskInstance(dag_id="coldcopy_migrations", task_id="m150", xcoms={"approve": sealed})

    apply = ApplyMigrationOperator(task_id="m150", sql="150_more.sql", migrations_dir=directory)
    coldcopy_conn(generated_db)
    for decision, refusal in [
        (None, "not approved in this run"),
        ({"decision": "reject"}, "not approved in this run"),
        ({"decision": "apply", "request": {"files": {"150_more.sql": "0" * 64}}}, "not the file that was rehearsed"),
    ]:
        with pytest.raises(AirflowFailException, match=refusal):
            apply.execute({"ti": TaskInstance(decision), "params": {}})
    assert not table_exists(generated_db, "public.more")
    phase_1_only = TaskInstance({"decision": "apply phase 1 only"})
    with pytest.raises(AirflowSkipException, match="approved for phase 1 only"):
        ApplyMigrationOperator(task_id="m250", sql="250_later.sql", migrations_dir=directory).execute(
            {"ti": phase_1_only, "params": {}})
    assert phase_1_only.pushed["skip_reason"] == "250_later.sql: approved for phase 1 only"  # for the run's note
    approved = TaskInstance({"decision": "apply", "request": {"files": {"150_more.sql": migration.checksum}}})
    assert apply.execute({"ti": approved, "params": {}}) is True
    assert approved.pushed["result"] == "150_more.sql: applied"
    assert table_exists(generated_db, "public.more")


def test_the_gate_puts_to_the_approver_the_files_its_body_shows_not_one_added_since_the_plan(
        tmp_path, generated_db, coldcopy_conn, approvals):
    """The body lists the plan task's pending files; the facts the apply step holds the files to are those same
    files with the plan's checksums. Before, the gate planned again: a file written between the plan and the
    question was in the facts (so applied once approved) without being in the body the approver read."""
    directory = write(tmp_path / "m", {"150_more.sql": closed_table("more")})
    coldcopy_conn(generated_db)
    plan_ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="plan")
    plan = MigrationPlanOperator(task_id="plan", migrations_dir=directory).execute({"ti": plan_ti, "params": {}})
    write(directory, {"160_added_since.sql": closed_table("sneaked")})
    gate = MigrationApprovalOperator(task_id="approve", migrations_dir=directory)
    ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="approve", xcoms={"plan": plan})
    subject, body, facts = gate.describe({"ti": ti, "params": {}})
    assert "150_more.sql" in body and "160_added_since.sql" not in body
    assert facts["files"] == {"150_more.sql": discover_migrations(directory)[0].checksum}
    apply = ApplyMigrationOperator(task_id="m160", sql="160_added_since.sql", migrations_dir=directory)
    approved = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="m160",
                                xcoms={"approve": approvals("coldcopy_migrations",
                                                            {"decision": "apply", "request": facts})})
    with pytest.raises(AirflowFailException, match="not the file that was rehearsed and approved"):
        apply.execute({"ti": approved, "params": {}})
    assert not table_exists(generated_db, "public.sneaked")
