"""The migration approval question as the approver reads it (issue 41, 10): only the choices that differ, and
what is not known said so rather than shown as "—" (which read as "no risk"). The live question: tests/e2e."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.migrations import rehearsal
from coldcopy.operators.migrations import MigrationApprovalOperator
from tests.conftest import FakeTaskInstance


def plan(*files: str) -> list[dict]:
    return [{"file": f, "phase": int(f[0]), "status": "pending", "checksum": "0" * 64} for f in files]


def ask(pending: tuple[str, ...], rehearsed: dict | None = None) -> tuple[MigrationApprovalOperator, str]:
    gate = MigrationApprovalOperator(task_id="approve")
    ti = FakeTaskInstance(dag_id="coldcopy_migrations", task_id="approve",
                          xcoms={"plan": plan(*pending), "rehearse": rehearsed})
    _, body, _ = gate.describe({"ti": ti, "params": {}})
    return gate, body


@pytest.mark.parametrize(("pending", "options"), [
    (("150_a.sql", "250_b.sql"), ["apply", "apply phase 1 only", "reject"]),
    (("250_b.sql", "350_c.sql"), ["apply", "reject"]),  # phase 1 has nothing pending: "phase 1 only" does nothing
    (("150_a.sql", "160_b.sql"), ["apply", "reject"]),  # phase 1 is all that is pending: the same as "apply"
])
def test_apply_phase_1_only_is_offered_only_when_it_differs_from_apply(empty_db, coldcopy_conn, pending, options):
    coldcopy_conn(empty_db)
    gate, body = ask(pending)
    assert gate.options == options
    assert ("*apply phase 1 only*" in body) is ("apply phase 1 only" in options)


def test_without_pg_stat_statements_the_tables_the_application_would_queue_on_are_unknown_not_none(
        empty_db, coldcopy_conn):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
        assert rehearsal.hot_tables(conn) is None  # was set(): the same as "none of them"
    widen = rehearsal.FileRehearsal("150_a.sql", 1200.0, [rehearsal.HeldLock("public.leads", "AccessExclusiveLock",
                                                                              1100.0)])
    unknown = rehearsal.table([widen], hot_known=False)
    assert unknown.splitlines()[-1].endswith("| unknown (pg_stat_statements is not installed) |")
    assert rehearsal.table([widen]).splitlines()[-1].endswith("| none |")  # known, and none of them
    coldcopy_conn(empty_db)
    _, body = ask(("150_a.sql",), {"backup": "k", "files": [widen.as_dict()], "table": unknown, "hot_tables": None})
    assert "unknown (pg_stat_statements is not installed)" in body and "is unknown**: pg_stat_statements" in body
    _, body = ask(("150_a.sql",), {"backup": "k", "files": [widen.as_dict()], "table": rehearsal.table([widen]),
                                   "hot_tables": []})
    assert "would queue on is unknown" not in body and "unknown (pg_stat_statements" not in body
