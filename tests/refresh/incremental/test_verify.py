"""The daily verify of the summaries against their definitions: a difference is repaired and alerted once."""

from __future__ import annotations

import psycopg

from coldcopy.operators.refresh import VerifySummariesOperator
from coldcopy.refresh.incremental.summaries import SUMMARIES
from tests.conftest import FakeTaskInstance
from tests.support.incremental import apply_all, assert_all_equal, differences


def verify(context_ti) -> list[dict]:
    return VerifySummariesOperator(task_id="verify_summaries").execute(
        {"ti": context_ti, "params": {}})


def test_a_summary_that_drifted_is_repaired_and_alerted_once(generated_db, coldcopy_conn, sink):
    coldcopy_conn(generated_db)
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        # what no capture sees: a write with triggers off (a replica-mode session), straight to the summary
        conn.execute("SET session_replication_role = replica")
        leads = [r[0] for r in conn.execute(
            "DELETE FROM email_events WHERE id IN (SELECT id FROM email_events WHERE lead_id IS NOT NULL "
            "ORDER BY id LIMIT 5) RETURNING lead_id").fetchall()]
        conn.execute("UPDATE analytics.campaign_analytics SET sent = sent + 1 WHERE campaign_id = "
                     "(SELECT campaign_id FROM analytics.campaign_analytics ORDER BY campaign_id LIMIT 1)")
        differed = sorted(name for name in SUMMARIES if differences(conn, name))
        assert "analytics.campaign_analytics" in differed and "analytics.lead_engagement" in differed
    first = {r["summary"]: r for r in verify(FakeTaskInstance(dag_id="refresh_workspace_usage"))}
    assert set(first) == set(SUMMARIES)
    assert sorted(name for name, r in first.items() if r["repaired"]) == differed
    assert all(r["missing"] + r["extra"] > 0 for name, r in first.items() if name in differed)
    assert_all_equal(generated_db, "repaired")
    with psycopg.connect(generated_db, autocommit=True) as conn:  # the aggregate state was repaired too: a later
        conn.execute("INSERT INTO email_events (workspace_id, lead_id, event_type) "  # delta adds to the right counts
                     "SELECT workspace_id, id, 'opened' FROM leads WHERE id = ANY(%s)", (leads,))
    apply_all(generated_db)
    assert_all_equal(generated_db, "a change after the repair")
    alerts = [a["body"]["text"] for a in sink.received]
    assert sorted(a.split(": ")[1].split(" differed")[0] for a in alerts) == differed  # one per summary that differed
    second = verify(FakeTaskInstance(dag_id="refresh_workspace_usage"))
    assert all(r["missing"] == r["extra"] == 0 and not r["repaired"] for r in second)
    assert len(sink.received) == len(differed)  # nothing new to say
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE repaired) FROM coldcopy_ops.ivm_verifications"
                            ).fetchone() == (2 * len(SUMMARIES), len(differed))


def test_the_health_check_warns_on_a_repaired_summary(generated_db, coldcopy_conn, sink):
    from psycopg.rows import dict_row

    from coldcopy.health.results import Context, Thresholds
    from coldcopy.health.summaries import summaries

    coldcopy_conn(generated_db)
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True, row_factory=dict_row) as conn:
        before = summaries(Context(conn, Thresholds()))
        assert before.state == "ok" and "not verified" in before.summary
        verify(FakeTaskInstance(dag_id="refresh_workspace_usage"))
        assert summaries(Context(conn, Thresholds())).state == "ok"
        conn.execute("UPDATE analytics.lead_engagement SET opens = opens + 1 WHERE lead_id = "
                     "(SELECT lead_id FROM analytics.lead_engagement LIMIT 1)")
        verify(FakeTaskInstance(dag_id="refresh_workspace_usage"))
        after = summaries(Context(conn, Thresholds()))
        assert after.state == "warning" and "analytics.lead_engagement" in after.summary
