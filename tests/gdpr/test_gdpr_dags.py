"""gdpr_requests and gdpr_retention through dag.test(): mapped tasks per request and per policy, request states."""

from __future__ import annotations

from pathlib import Path

import psycopg

from coldcopy.testing.in_process import run_dag

DAGS = Path(__file__).resolve().parents[2] / "dags"




def test_gdpr_requests_dag_handles_each_verified_request_in_its_own_task(generated_db, coldcopy_conn, spaces,
                                                                         backup_key, dagbag, dpo):
    coldcopy_conn(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        leads = conn.execute("SELECT workspace_id, email FROM leads ORDER BY id LIMIT 3").fetchall()
        ids = [conn.execute("INSERT INTO data_subject_requests (workspace_id, email, request_type, status) "
                            "VALUES (%s, %s, %s, %s) RETURNING id", (ws, email, kind, status)).fetchone()[0]
               for (ws, email), (kind, status) in zip(leads, [("access", "verified"), ("erasure", "verified"),
                                                               ("erasure", "received")], strict=True)]
    run = run_dag(dagbag.get_dag("gdpr_requests"))
    tis = run.get_task_instances()
    assert run.state == "success", {(ti.task_id, ti.map_index): ti.state for ti in tis}
    assert sorted(ti.map_index for ti in tis if ti.task_id == "handle_request") == [0, 1]
    with psycopg.connect(generated_db) as conn:
        states = dict(conn.execute("SELECT id, status FROM data_subject_requests WHERE id = ANY(%s)", (ids,)))
    assert [states[i] for i in ids] == ["completed", "completed", "received"]
    [delivered] = [r["body"] for r in dpo.received]  # the access export's link and passphrase, to the DPO only
    assert delivered["request_id"] == str(ids[0]) and delivered["passphrase"]
    with psycopg.connect(generated_db) as conn:
        notes = " ".join(n for (n,) in conn.execute("SELECT coalesce(notes, '') FROM data_subject_requests"))
    assert delivered["passphrase"] not in notes and delivered["url"] not in notes
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        values = [str(x.value) for x in session.query(XComModel).filter(XComModel.run_id == run.run_id)]
    assert values and not any(delivered["passphrase"] in v for v in values)


def test_gdpr_retention_dag_skips_a_bad_policy_and_applies_the_rest(generated_db, coldcopy_conn, spaces, backup_key,
                                                                    dagbag):
    coldcopy_conn(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        workspace = conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()[0]
        for table in ("email_events", "no_such_table"):
            conn.execute("INSERT INTO data_retention_policies (workspace_id, table_name, retain_for) "
                         "VALUES (%s, %s, '180 days')", (workspace, table))
    run = run_dag(dagbag.get_dag("gdpr_retention"))
    states = sorted(ti.state for ti in run.get_task_instances() if ti.task_id == "apply_policy")
    assert run.state == "success" and states == ["skipped", "success"]
    with psycopg.connect(generated_db) as conn:
        outcomes = dict(conn.execute("SELECT table_name, outcome FROM coldcopy_ops.retention_log"))
        assert outcomes == {"email_events": "done", "no_such_table": "skipped"}
        assert conn.execute("SELECT count(*) FROM email_events WHERE workspace_id = %s "
                            "AND occurred_at < now() - interval '180 days'", (workspace,)).fetchone()[0] == 0
