"""When a summary is rebuilt instead of applied: a changed definition, a restored copy, the window moving, most
groups changed."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from tests.support.incremental import (
    always_by_groups,  # noqa: F401 - the fixture
    apply_all,
    assert_all_equal,
    differences,
)


def test_a_definition_changed_by_a_migration_is_rebuilt(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        definition = conn.execute("SELECT pg_get_viewdef('analytics.lead_engagement_definition')").fetchone()[0]
        assert "(10 * count(*)" in definition
        conn.execute("CREATE OR REPLACE VIEW analytics.lead_engagement_definition AS "
                     + definition.rstrip().rstrip(";").replace("(10 * count(*)", "(11 * count(*)"))
        assert differences(conn, "analytics.lead_engagement") > 0
        applied = SummaryMaintainer(conn, "analytics.lead_engagement").apply()
        assert applied.mode == "rebuild" and "definition changed" in applied.reason
        # its aggregate state (emails weighted 10) is no longer the definition: proven so, it goes by groups
        assert applied.method == "groups"
        assert differences(conn, "analytics.lead_engagement") == 0
        conn.execute("UPDATE email_events SET event_type = 'replied' WHERE id IN (SELECT id FROM email_events "
                     "WHERE lead_id IS NOT NULL ORDER BY id LIMIT 50)")
        again = SummaryMaintainer(conn, "analytics.lead_engagement").apply()
        assert (again.mode, again.method) == ("incremental", "groups")
        assert differences(conn, "analytics.lead_engagement") == 0


def test_a_restored_copy_rebuilds_instead_of_trusting_its_watermark(generated_db, new_database):
    apply_all(generated_db)
    dbname = psycopg.conninfo.conninfo_to_dict(generated_db)["dbname"]
    copy = new_database(template=dbname)  # another database: its state's watermark is not its own
    with psycopg.connect(copy, autocommit=True) as conn:
        applied = SummaryMaintainer(conn, "analytics.daily_workspace_activity").apply()
        assert applied.mode == "rebuild" and "another cluster or database" in applied.reason


def test_the_window_moving_past_a_day_drops_and_recuts_its_groups(generated_db):
    """Yesterday's apply held the day that has left the 90-day window since: today's apply removes it."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        for name, columns in (("analytics.daily_workspace_activity", "workspace_id, day, event_type, events"),
                              ("analytics.email_deliverability", "workspace_id, email_account_id, day, sent, "
                               "delivered, bounced, hard_bounces, complaints, bounce_rate, complaint_rate")):
            left_day = conn.execute("SELECT ((date_trunc('day', now() AT TIME ZONE 'UTC') - interval '91 days'))::date"
                                    ).fetchone()[0]
            account = conn.execute("SELECT id, workspace_id FROM email_accounts LIMIT 1").fetchone()
            values = ((account[1], left_day, "sent", 7) if "activity" in name else
                      (account[1], account[0], left_day, 7, 7, 0, 0, 0, 0, 0))
            conn.execute(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.SQL(name), sql.SQL(columns), sql.SQL(", ").join(sql.Literal(v) for v in values)))
            conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = now() - interval '1 day' WHERE summary = %s",
                         (name,))
            assert differences(conn, name) == 1
            applied = SummaryMaintainer(conn, name).apply()
            assert applied.mode == "incremental" and applied.groups >= 1
            assert differences(conn, name) == 0, name


def test_a_premade_month_is_captured_and_a_write_straight_into_it_counted(generated_db):
    from datetime import UTC, datetime, timedelta

    from coldcopy.partitions import PartitionManager
    from tests.conftest import KEYRING

    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        manager = PartitionManager(conn, keyring=KEYRING, passphrase="test")
        [created] = manager.premake(months_ahead=3, now=datetime.now(UTC) + timedelta(days=31))
        assert capture.captured(conn, f"public.{created}")
        conn.execute(sql.SQL("INSERT INTO {} (id, workspace_id, campaign_id, lead_id, event_type, occurred_at) "
                             "SELECT -row_number() OVER (), workspace_id, campaign_id, lead_id, 'replied', "
                             "p.range_start + interval '1 hour' "
                             "FROM email_events, app.email_events_partitions p WHERE p.name = %s LIMIT 30").format(
            sql.Identifier("public", created)), (created,))
    applied = apply_all(generated_db)
    assert applied["analytics.campaign_analytics"].groups > 0
    assert_all_equal(generated_db, f"after writes straight into {created}")


def test_most_groups_changed_is_a_rebuild(generated_db, monkeypatch):
    """The groups method (a summary whose aggregate no longer states its definition goes by it): recomputing most
    groups one by one costs more than the definition once."""
    from coldcopy.refresh.incremental import maintainer

    monkeypatch.setattr(maintainer, "REBUILD_SHARE", 0.25)
    apply_all(generated_db)
    name = "analytics.sequence_step_performance"
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE coldcopy_ops.ivm_state SET method = 'groups' WHERE summary = %s", (name,))
        steps = conn.execute("SELECT count(*) FROM campaign_sequences").fetchone()[0]
        conn.execute("UPDATE campaign_sequences SET variant = variant || '.' WHERE id IN "
                     "(SELECT id FROM campaign_sequences "
                     "ORDER BY id LIMIT 2)")
        few = SummaryMaintainer(conn, name).apply()
        assert (few.mode, few.method, few.groups) == ("incremental", "groups", 2)
        conn.execute("UPDATE campaign_sequences SET variant = variant || '.' WHERE id IN "
                     "(SELECT id FROM campaign_sequences "
                     "ORDER BY id LIMIT %s)", (steps * 6 // 10,))
        most = SummaryMaintainer(conn, name).apply()
        assert most.mode == "rebuild" and "a rebuild costs less" in most.reason
        assert differences(conn, name) == 0


def test_a_change_larger_than_a_share_of_the_events_is_a_rebuild(generated_db, monkeypatch):
    """The delta method (campaign_analytics): a change of more than DELTA_REBUILD_SHARE of email_events' rows costs more
    applied than the state built again in one pass; a campaign renamed (no event) stays a delta."""
    from coldcopy.refresh.incremental import maintainer

    monkeypatch.setattr(maintainer, "DELTA_REBUILD_SHARE", 0.1)
    apply_all(generated_db)
    name = "analytics.campaign_analytics"
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("ANALYZE email_events")
        conn.execute("UPDATE campaigns SET name = name || '.' WHERE id IN (SELECT id FROM campaigns LIMIT 6)")
        renamed = SummaryMaintainer(conn, name).apply()
        assert (renamed.mode, renamed.method, renamed.groups) == ("incremental", "delta", 6)
        conn.execute("UPDATE email_events SET event_type = CASE event_type WHEN 'sent' THEN 'opened' ELSE 'sent' END "
                     "WHERE id IN (SELECT id FROM email_events ORDER BY random() LIMIT "
                     "(SELECT count(*) * 2 / 10 FROM email_events))")  # 20 %: 40 % of rows captured, signed
        most = SummaryMaintainer(conn, name).apply()
        assert most.mode == "rebuild" and "a rebuild costs less" in most.reason and most.method == "delta"
        assert differences(conn, name) == 0


def test_a_rebuild_writes_only_the_state_rows_that_differ(generated_db):
    """Before: a rebuild emptied each aggregate state and filled it again (every row a dead tuple and a new one,
    twice the state's size in WAL). Now a forced rebuild after one event changed writes that event's groups only."""
    states = ("ivm_agg_lead_engagement", "ivm_agg_campaign_analytics", "ivm_mult_campaign_analytics",
              "ivm_msg_events", "ivm_agg_sequence_step_performance")
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        def rows() -> dict[str, set]:
            return {t: {r for r in conn.execute(sql.SQL("SELECT ctid::text, xmin::text FROM {}").format(
                sql.Identifier("coldcopy_ops", t))).fetchall()} for t in states}

        before = rows()
        conn.execute("UPDATE email_events SET event_type = 'opened' WHERE id = (SELECT id FROM email_events WHERE "
                     "lead_id IS NOT NULL AND campaign_id IS NOT NULL AND message_id IS NOT NULL AND event_type = "
                     "'sent' ORDER BY id LIMIT 1)")
        for name in ("analytics.lead_engagement", "analytics.campaign_analytics",
                     "analytics.sequence_step_performance"):
            assert SummaryMaintainer(conn, name).apply(force=True).mode == "rebuild"
        written = {t: len(now - before[t]) for t, now in rows().items()}
    assert 0 < sum(written.values()) <= 6 and all(n <= 2 for n in written.values()), written
    assert_all_equal(generated_db, "after forced rebuilds")
