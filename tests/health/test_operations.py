"""Operations checks (coldcopy.health.operations): views past their cadence, the partition horizon."""

from __future__ import annotations

import psycopg

from coldcopy import ops_schema
from tests.support.health import (
    texts,
)


def test_views_older_than_their_cadence_and_a_short_partition_horizon(checker, migrated_db, sink):
    c = checker()
    ops_schema.ensure(psycopg.connect(migrated_db, autocommit=True), "refresh_tracking")
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for view, age in [("analytics.campaign_analytics", "5 hours"), ("analytics.sequence_step_performance",
                                                                        "10 minutes")]:
            conn.execute("INSERT INTO coldcopy_ops.mv_refresh_log (view_name, run_id, started_at, finished_at, "
                         "duration_ms, action, reason) VALUES (%s, 't', now() - %s::interval, now() - %s::interval, "
                         "1, 'refreshed', 'test')", (view, age, age))
        ahead = conn.execute("SELECT name FROM app.email_events_partitions "
                             "WHERE range_start >= app.month_start_utc(now(), 2) ORDER BY range_start").fetchall()
        for (name,) in ahead:  # keep one month ahead only
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier("public", name)))
    results = c.run("ops_freshness")
    views = {v["view"]: v for v in results["view_freshness"].details["views"]}
    assert views["analytics.campaign_analytics"]["state"] == "breach"  # 5 h > 2 × 1 h + 20 min
    assert views["analytics.sequence_step_performance"]["state"] == "ok"
    assert views["analytics.workspace_usage"]["state"] == "breach"  # never refreshed by us
    assert results["view_freshness"].state == "breach"
    horizon = results["partition_horizon"]
    assert horizon.state == "breach" and horizon.value == 1
    assert results["backup_age"].state == "breach" and "no verified" in results["backup_age"].summary
    assert sum("partition_horizon breach" in t for t in texts(sink)) == 1
    c.run("ops_freshness")
    assert sum("partition_horizon" in t for t in texts(sink)) == 1
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("SELECT app.create_email_events_partition(app.month_start_utc(now(), 2))")
        conn.execute("SELECT app.create_email_events_partition(app.month_start_utc(now(), 3))")
    assert c.run("ops_freshness")["partition_horizon"].state == "ok"
    assert sum("partition_horizon resolved" in t for t in texts(sink)) == 1
