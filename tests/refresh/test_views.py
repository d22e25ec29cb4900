"""Refreshes of the materialized views and the incremental summaries, against real PostgreSQL with generated data."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.refresh.runs import RefreshRun
from coldcopy.refresh.views import MaterializedViewRefresher
from coldcopy.testing.in_process import run_dag
from tests.support.incremental import probe_view

DAGS = Path(__file__).resolve().parents[2] / "dags"
REFRESH_DAGS = {
    "refresh_campaign_analytics": ["analytics.campaign_analytics", "analytics.sequence_step_performance"],
    "refresh_email_deliverability": ["analytics.email_deliverability", "analytics.daily_workspace_activity"],
    "refresh_lead_engagement": ["analytics.lead_engagement", "analytics.lead_intent_summary"],
    "refresh_workspace_usage": ["analytics.workspace_usage"],
}




def refresh(dsn: str, view: str, run_id: str, **kwargs):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return refresher_for(conn, view, **kwargs).run(RefreshRun(run_id=run_id))


def log_rows(dsn: str, view: str | None = None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT view_name, action, mode, reason, run_id FROM coldcopy_ops.mv_refresh_log "
            "WHERE %s::text IS NULL OR view_name = %s ORDER BY id", (view, view),
        ).fetchall()


def view_equals_its_query(conn, view: str) -> bool:
    """The materialized view, or the summary, equals what its definition computes now, row for row."""
    of = f"{view}_definition" if view in SUMMARIES else view
    definition = conn.execute("SELECT pg_get_viewdef(%s::regclass)", (of,)).fetchone()[0].rstrip().rstrip(";")
    both_ways = sql.SQL("SELECT count(*) FROM ((TABLE {v} EXCEPT ALL ({q})) UNION ALL (({q}) EXCEPT ALL TABLE {v})) d")
    diff = conn.execute(both_ways.format(v=sql.SQL(view), q=sql.SQL(definition))).fetchone()[0]
    return diff == 0


def test_each_refresh_dag_end_to_end_matches_the_base_tables(generated_db, coldcopy_conn, dagbag, airflow_db):
    coldcopy_conn(generated_db)
    for dag_id, views in REFRESH_DAGS.items():
        run = run_dag(dagbag.get_dag(dag_id), conf={"force": False})
        assert run.state == "success", dag_id
        verify = {"verify_summaries": "success"} if dag_id == "refresh_workspace_usage" else {}
        assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
            **{f"refresh_{v.split('.')[1]}": "success" for v in views}, **verify}
    with psycopg.connect(generated_db) as conn:
        for views in REFRESH_DAGS.values():
            for view in views:
                assert view_equals_its_query(conn, view), view
        # The same aggregates computed independently from the base tables:
        per_campaign = conn.execute("""
            SELECT c.id, count(e.*) FILTER (WHERE e.event_type = 'sent'),
                   count(DISTINCT e.message_id) FILTER (WHERE e.event_type = 'opened'),
                   count(e.*) FILTER (WHERE e.event_type = 'replied')
            FROM campaigns c LEFT JOIN email_events e ON e.campaign_id = c.id GROUP BY c.id ORDER BY 1""").fetchall()
        from_view = conn.execute(
            "SELECT campaign_id, sent, opened, replied FROM analytics.campaign_analytics ORDER BY 1").fetchall()
        assert from_view == per_campaign and sum(r[1] for r in from_view) > 10_000
        [(leads_total, leads_in_view)] = conn.execute(
            "SELECT (SELECT count(*) FROM leads), (SELECT sum(leads) FROM analytics.workspace_usage)").fetchall()
        assert leads_total == leads_in_view == 6000
        [(opens, opens_in_view)] = conn.execute(
            "SELECT (SELECT count(*) FROM email_events WHERE event_type = 'opened' AND lead_id IS NOT NULL), "
            "(SELECT sum(opens) FROM analytics.lead_engagement)").fetchall()
        assert opens == opens_in_view > 0
        [(bounces, bounces_in_view)] = conn.execute(
            "SELECT (SELECT count(*) FROM email_events WHERE event_type = 'bounced' "
            "        AND occurred_at >= date_trunc('day', now()) - interval '90 days'), "
            "(SELECT sum(bounced) FROM analytics.email_deliverability)").fetchall()
        assert bounces == bounces_in_view > 0
    first = [r for r in log_rows(generated_db) if r[1] == "refreshed"]
    assert len(first) == 7  # created WITH NO DATA: a view's first fill is plain; a summary's is a rebuild
    assert {r[0]: r[2] for r in first} == {v: "rebuild" if v in SUMMARIES else "plain"
                                           for views in REFRESH_DAGS.values() for v in views}

    # A manual trigger stands for "now": nothing changed → skipped; after an application write → refreshed.
    dag = dagbag.get_dag("refresh_campaign_analytics")
    assert run_dag(dag, conf={"force": False}).state == "success"
    assert [r[1:3] for r in log_rows(generated_db, "analytics.campaign_analytics")][-1] == ("skipped", None)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("INSERT INTO email_events (workspace_id, campaign_id, event_type) "
                     "SELECT workspace_id, id, 'replied' FROM campaigns ORDER BY id LIMIT 1")
    assert run_dag(dag, conf={"force": False}).state == "success"
    assert [r[1:3] for r in log_rows(generated_db, "analytics.campaign_analytics")][-1] == ("refreshed", "incremental")


def test_skip_unchanged_then_refresh_after_any_change(generated_db):
    view = "analytics.campaign_analytics"
    assert refresh(generated_db, view, "r1").mode == "rebuild"
    quiet = refresh(generated_db, view, "r2")
    assert quiet.action == "skipped" and "no source change" in quiet.reason

    with psycopg.connect(generated_db, autocommit=True) as conn:
        campaign, sent_before = conn.execute(
            "SELECT campaign_id, sent FROM analytics.campaign_analytics ORDER BY sent DESC LIMIT 1").fetchone()
        changes = {
            "insert": ("INSERT INTO email_events (workspace_id, campaign_id, event_type) "
                       "SELECT workspace_id, id, 'sent' FROM campaigns WHERE id = %s", (campaign,)),
            # straight into the current month's partition, bypassing the parent
            "insert into a partition": (
                sql.SQL("INSERT INTO {} (id, workspace_id, campaign_id, event_type, occurred_at) "
                        "SELECT -1, workspace_id, id, 'sent', now() FROM campaigns WHERE id = %s").format(
                    sql.Identifier(conn.execute("SELECT app.email_events_partition_name(now())").fetchone()[0])),
                (campaign,)),
            "update": ("UPDATE campaigns SET name = name || ' (renamed)' WHERE id = %s", (campaign,)),
            "delete": ("DELETE FROM email_events WHERE id = -1", ()),
        }
        for label, (statement, params) in changes.items():
            conn.execute(statement, params)
            outcome = refresh(generated_db, view, f"after {label}")
            assert outcome.action == "refreshed" and "changed" in outcome.reason, label
            assert refresh(generated_db, view, f"quiet after {label}").action == "skipped", label
        sent_after, name = conn.execute(
            "SELECT sent, name FROM analytics.campaign_analytics WHERE campaign_id = %s", (campaign,)).fetchone()
        assert sent_after == sent_before + 1 and name.endswith("(renamed)")

        # an aborted write is no change
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            conn.execute("UPDATE campaigns SET name = 'x' WHERE id = %s", (campaign,))
            conn.execute("SELECT 1 / 0")
        assert refresh(generated_db, view, "after rollback").action == "skipped"


def test_a_write_in_flight_during_a_refresh_is_not_lost(generated_db):
    """A write that commits after the refresh took its snapshot makes the next run refresh."""
    view = "analytics.lead_engagement"
    refresh(generated_db, view, "fill")
    with psycopg.connect(generated_db) as writer:
        writer.execute("INSERT INTO email_events (workspace_id, lead_id, event_type) "
                       "SELECT workspace_id, id, 'replied' FROM leads ORDER BY id LIMIT 1")  # not committed yet
        with psycopg.connect(generated_db, autocommit=True) as other:
            # a change the summary reads (an update of columns it does not read is no change: test_delta)
            other.execute("UPDATE email_events SET event_type = CASE event_type WHEN 'opened' THEN 'clicked' ELSE "
                          "'opened' END WHERE id = (SELECT max(id) FROM email_events WHERE lead_id IS NOT NULL)")
        during = refresh(generated_db, view, "during")  # sees the committed update, not the open insert
        assert during.action == "refreshed"
        writer.commit()
    after = refresh(generated_db, view, "after")
    assert after.action == "refreshed" and "changed" in after.reason
    assert refresh(generated_db, view, "quiet").action == "skipped"
    with psycopg.connect(generated_db) as conn:
        assert view_equals_its_query(conn, view)


def test_readers_keep_reading_while_a_refresh_runs(generated_db):
    refresh(generated_db, "analytics.campaign_analytics", "fill")
    refresh(generated_db, "analytics.sequence_step_performance", "fill-seq")
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE campaign_sequences SET variant = variant || '!'")  # a column the summary reads
    # Hold a source table so the refresh, once it has locked the view, waits ~1.5 s on it.
    blocker = psycopg.connect(generated_db)
    blocker.execute("LOCK TABLE public.campaign_sequences IN ACCESS EXCLUSIVE MODE")
    threading.Timer(1.5, blocker.rollback).start()
    outcome: list = []
    policy = LockRetryPolicy(attempts=2, lock_timeout_ms=5000, max_lock_timeout_ms=5000)
    refresher = threading.Thread(target=lambda: outcome.append(
        refresh(generated_db, "analytics.sequence_step_performance", "seq", lock_retry=policy)))
    refresher.start()
    reads, worst = 0, 0.0
    with psycopg.connect(generated_db, autocommit=True) as reader:
        reader.execute("SET statement_timeout = '1s'")
        while refresher.is_alive():
            began = time.monotonic()
            reader.execute("SELECT count(*), sum(sent) FROM analytics.sequence_step_performance s "
                           "JOIN analytics.campaign_analytics c USING (campaign_id)")
            worst = max(worst, time.monotonic() - began)
            reads += 1
    blocker.close()
    # every step changed: each one's row written again from the state (row locks only, never a lock readers wait on)
    assert outcome and outcome[0].action == "refreshed" and outcome[0].mode == "incremental"
    assert outcome[0].duration_ms >= 1000  # the reads really overlapped the refresh
    assert reads > 10 and worst < 0.5


def test_backfill_of_unchanged_intervals_refreshes_once(generated_db, coldcopy_conn, dagbag, airflow_db):
    coldcopy_conn(generated_db)
    dag = dagbag.get_dag("refresh_lead_engagement")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    logical_dates = [now - timedelta(hours=6 * k) for k in (8, 7, 6, 5)]  # oldest first, like a backfill
    for logical_date in logical_dates:
        assert run_dag(dag, conf={"force": False}, logical_date=logical_date).state == "success"
    actions = [r[1] for r in log_rows(generated_db, "analytics.lead_engagement")]
    assert actions == ["refreshed", "skipped", "skipped", "skipped"]
    reasons = [r[3] for r in log_rows(generated_db, "analytics.lead_engagement")]
    assert all("already covered by the refresh" in r for r in reasons[1:])
    with psycopg.connect(generated_db) as conn:
        intervals = conn.execute("SELECT data_interval_end FROM coldcopy_ops.mv_refresh_log "
                                 "WHERE view_name = 'analytics.lead_engagement' ORDER BY id").fetchall()
    assert [i for (i,) in intervals] == sorted(i for (i,) in intervals) and intervals[-1][0] < now
    # the clock-dependent view too: one refresh, then covered
    assert [r[1] for r in log_rows(generated_db, "analytics.lead_intent_summary")] == [
        "refreshed", "skipped", "skipped", "skipped"]


def test_failure_is_logged_and_raised(generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn, psycopg.connect(generated_db) as holder:
        refresher_for(conn, "analytics.campaign_analytics").run(RefreshRun(run_id="fill"))
        conn.execute("UPDATE campaigns SET name = name")
        # the apply reads campaigns (its frame): held, its statement outlives the 1 ms (an apply quick enough
        # finished inside it on CI, and raised nothing); let go after 10 s whatever happens
        holder.execute("LOCK TABLE campaigns IN ACCESS EXCLUSIVE MODE")
        release = threading.Timer(10, holder.rollback)
        release.start()
        refresher = refresher_for(conn, "analytics.campaign_analytics", statement_timeout="1ms")
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                refresher.run(RefreshRun(run_id="too slow"))
        finally:
            release.cancel()
            holder.rollback()
    assert log_rows(generated_db)[-1][1] == "failed" and "statement timeout" in log_rows(generated_db)[-1][3]


def test_unknown_view_is_a_clear_error(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn, pytest.raises(ValueError, match="no such materialized"):
        MaterializedViewRefresher(conn, "analytics.nope")


def test_refreshes_installing_tracking_at_once_do_not_collide(generated_db):
    """Refresh DAGs started together on a fresh database share source tables (email_events and partitions): the
    materialized views' change trigger and the summaries' capture are each installed exactly once."""
    from coldcopy.refresh.incremental import capture

    jobs = [probe_view(generated_db), "analytics.workspace_usage", "analytics.lead_intent_summary",
            "analytics.campaign_analytics",
            "analytics.email_deliverability", "analytics.lead_engagement", "analytics.daily_workspace_activity"]
    barrier, errors, installed = threading.Barrier(len(jobs)), [], []

    def install(view: str) -> None:
        try:
            with psycopg.connect(generated_db, autocommit=True) as conn:
                if view in SUMMARIES:
                    barrier.wait()
                    installed.extend(("capture", t) for t in capture.ensure(conn, SUMMARIES[view]))
                else:
                    refresher = MaterializedViewRefresher(conn, view)
                    barrier.wait()
                    installed.extend(("tracking", t) for t in refresher.ensure_change_tracking())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=install, args=(v,)) for v in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(installed) == len(set(installed))  # each table exactly once of each kind
    assert ("tracking", "email_events") in installed and ("capture", "email_events") in installed
    with psycopg.connect(generated_db) as conn:
        for trigger in ("coldcopy_track_changes", *capture.TRIGGERS):
            missing = conn.execute(
                "SELECT count(*) FROM pg_class c WHERE c.relname LIKE 'email_events%%' AND c.relkind IN ('r', 'p') "
                "AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = %s)",
                (trigger,)).fetchone()[0]
            assert missing == 0, trigger


def test_a_failure_quoting_row_values_is_logged_without_them(generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.pii_probe (k int, email text)")
        conn.execute("INSERT INTO public.pii_probe VALUES (1, 'first@example.com')")
        conn.execute("CREATE MATERIALIZED VIEW analytics.pii_probe_mv AS SELECT k, email FROM public.pii_probe")
        conn.execute("CREATE UNIQUE INDEX ON analytics.pii_probe_mv (email)")
        conn.execute("INSERT INTO public.pii_probe VALUES (2, 'first@example.com')")  # duplicates the key
        with pytest.raises(psycopg.Error) as failure:
            MaterializedViewRefresher(conn, "analytics.pii_probe_mv", force=True).run(RefreshRun(run_id="pii"))
    assert "first@example.com" in str(failure.value)  # PostgreSQL's DETAIL quotes the row...
    [row] = [r for r in log_rows(generated_db, "analytics.pii_probe_mv") if r[1] == "failed"]
    assert "first@example.com" not in row[3] and row[3].startswith(type(failure.value).__name__)
