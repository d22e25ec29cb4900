"""The summaries kept by signed deltas of their aggregate state (coldcopy.refresh.incremental.delta): the clock
passing midnight, a TRUNCATE through the partitioned parent, a month detached and attached again, the capture's
signs, an inconsistent state."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.change_tracking import record_partition
from coldcopy.refresh.incremental.aggregates import AGGREGATES, EVENT_ROWS
from coldcopy.refresh.incremental.delta import DeltaApplier
from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from tests.support.incremental import (
    always_by_groups,  # noqa: F401 - the fixture
    apply_all,
    assert_all_equal,
    differences,
)

DAY_WINDOWS = [a for a in AGGREGATES.values() if getattr(a, "window_days", None) is not None]


def test_the_clock_passing_midnight_drops_the_day_that_left_the_window(generated_db):
    """The summaries as an apply left them yesterday (the definition at yesterday's clock: one more day at the
    window's start, its groups in the state and the summary; the state's clock a day back), then today's apply
    with no change of data. Before: nothing dropped the day, the dashboards kept 91 days."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        for a in DAY_WINDOWS:
            applier, yesterday = DeltaApplier(conn, a), f"day = {a.cutoff()} - 1"
            added = conn.execute(sql.SQL("INSERT INTO {} ({}) {}").format(
                applier.state, sql.SQL(", ").join(map(sql.Identifier, applier._columns())),
                applier.grouped(sql.SQL(EVENT_ROWS), signed=False, window=yesterday))).rowcount
            assert added > 0, a.summary  # the test data has events on that day
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM ({}) p WHERE {}").format(
                applier.summary, applier.rows.projected(), sql.SQL(yesterday)))
            conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = clock_at - interval '1 day' "
                         "WHERE summary = %s", (a.summary,))
    with psycopg.connect(generated_db, autocommit=True) as conn:
        for a in DAY_WINDOWS:
            assert differences(conn, a.summary) > 0  # yesterday's window is not today's
            applied = SummaryMaintainer(conn, a.summary).apply()
            assert (applied.mode, applied.method) == ("incremental", "delta") and applied.groups > 0
            assert differences(conn, a.summary) == 0, a.summary
            stale = conn.execute(sql.SQL("SELECT count(*) FROM coldcopy_ops.{} WHERE day < {}").format(
                sql.Identifier(a.state), sql.SQL(a.cutoff()))).fetchone()[0]
            assert stale == 0


def test_a_truncate_through_the_parent_counts_each_row_out_once(generated_db):
    """TRUNCATE email_events fires the parent's BEFORE TRUNCATE trigger and every partition's: the parent's
    records nothing (its partitions record their own rows), else every event would be counted out twice."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("TRUNCATE email_events")
        total = conn.execute("SELECT coalesce(sum(n), 0) FROM coldcopy_ops.ivm_delta_email_events "
                             "WHERE occurred_at IS NOT NULL").fetchone()[0]
        rows = conn.execute("SELECT sum(rows) FROM coldcopy_ops.ivm_agg_lead_engagement").fetchone()[0]
        assert -total >= rows > 0
    applied = apply_all(generated_db)
    assert {applied[n].method for n in AGGREGATES} == {"delta"}
    assert_all_equal(generated_db, "after TRUNCATE email_events")
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.lead_engagement").fetchone()[0] == 0


def test_a_month_detached_then_attached_again_is_counted_out_then_in(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        month, start, end = conn.execute(
            "SELECT name, range_start, range_end FROM app.email_events_partitions p WHERE EXISTS (SELECT 1 FROM "
            "email_events e WHERE e.occurred_at >= p.range_start AND e.occurred_at < p.range_end "
            "AND e.occurred_at > now() - interval '60 days') ORDER BY range_start LIMIT 1").fetchone()
        table = sql.Identifier("public", month)
        with conn.transaction():
            conn.execute(sql.SQL("ALTER TABLE email_events DETACH PARTITION {}").format(table))
            record_partition(conn, "public.email_events", f"public.{month}")
        assert apply_all(generated_db)["analytics.lead_engagement"].method == "delta"
        assert_all_equal(generated_db, f"after detaching {month}")
        with conn.transaction():
            conn.execute(sql.SQL("ALTER TABLE email_events ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                table, sql.Literal(start), sql.Literal(end)))
            record_partition(conn, "public.email_events", f"public.{month}")
    apply_all(generated_db)
    assert_all_equal(generated_db, f"after attaching {month} again")


def test_an_update_of_columns_no_summary_reads_captures_nothing(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_delta_email_events").fetchone()[0]
        conn.execute("UPDATE email_events SET metadata = '{\"seen\": true}', user_agent = 'x' WHERE id IN "
                     "(SELECT id FROM email_events ORDER BY id LIMIT 500)")
        assert conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_delta_email_events").fetchone()[0] == before


def test_a_state_gone_below_zero_is_rebuilt_not_trusted(generated_db):
    apply_all(generated_db)
    name = "analytics.email_deliverability"
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE coldcopy_ops.ivm_agg_email_deliverability SET sent = 0, rows = 0 WHERE "
                     "(email_account_id, day, workspace_id) = (SELECT email_account_id, day, workspace_id FROM "
                     "analytics.email_deliverability WHERE sent > 0 ORDER BY day DESC LIMIT 1) RETURNING 1").fetchone()
        conn.execute("DELETE FROM email_events WHERE (email_account_id, (occurred_at AT TIME ZONE 'UTC')::date) = "
                     "(SELECT email_account_id, day FROM coldcopy_ops.ivm_agg_email_deliverability WHERE rows = 0) "
                     "AND event_type = 'sent'")
        applied = SummaryMaintainer(conn, name).apply()
        assert applied.mode == "rebuild" and "below zero" in applied.reason and applied.method == "delta"
        assert differences(conn, name) == 0


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_changed_groups_rows_are_read_once_not_once_per_state_row(generated_db):
    """The rows of a few thousand changed groups of a two-column key (lead_engagement's): before, one
    ``= ANY(ARRAY(…))`` per key column was estimated at a row, and PostgreSQL rescanned the changed keys once per
    state row it matched (4.5 s for 10,000 leads at scale 32, the 1 % apply's whole cost). The test data is too
    small for that plan; the misestimate that chose it is asserted."""
    apply_all(generated_db)
    a = AGGREGATES["analytics.lead_engagement"]
    with psycopg.connect(generated_db) as conn:
        conn.execute("CREATE TEMP TABLE ivm_keys AS SELECT lead_id, workspace_id FROM "
                     "coldcopy_ops.ivm_agg_lead_engagement ORDER BY random() LIMIT 2000")
        conn.execute("ANALYZE ivm_keys")
        keys = conn.execute("SELECT count(*) FROM ivm_keys").fetchone()[0]
        assert keys > 500
        query = DeltaApplier(conn, a).rows.projected("ivm_keys")
        plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(query)).fetchone()[0][0]["Plan"]
        scans = [n for n in _nodes(plan) if n.get("Relation Name") == "ivm_keys"]
        assert scans and all(n["Actual Loops"] == 1 for n in scans), scans
        assert plan["Actual Rows"] == keys
        # the estimate is what chose the plan: before, 3 rows for these 2,000 (at scale 32, 1 for 10,000)
        assert plan["Plan Rows"] >= keys / 10, plan["Plan Rows"]
