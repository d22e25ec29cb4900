"""The UPDATE capture of campaigns and campaign_sequences (coldcopy.refresh.incremental.update_filter): a row
trigger filtered to the columns the definitions read, found in the catalog and kept in step with them."""

from __future__ import annotations

import psycopg

from coldcopy.refresh.incremental import update_filter
from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from coldcopy.refresh.incremental.summaries import CAPTURES
from tests.support.incremental import (
    always_by_groups,  # noqa: F401 - the fixture
    apply_all,
    differences,
)

CAMPAIGNS = "analytics.campaign_analytics"
STEPS = "analytics.sequence_step_performance"


def _recorded(conn, delta: str) -> int:
    return conn.execute(f"SELECT count(*) FROM coldcopy_ops.{delta}").fetchone()[0]


def _when_columns(conn, table: str) -> list[str]:
    return sorted(r[0] for r in conn.execute(
        "SELECT a.attname::text FROM pg_trigger t JOIN pg_depend d ON d.classid = 'pg_trigger'::regclass "
        "AND d.objid = t.oid JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE t.tgrelid = %s::regclass AND t.tgname = 'coldcopy_ivm_update'", (table,)))


def test_the_applications_touch_of_a_campaign_records_nothing_and_a_rename_is_applied(generated_db):
    """Before: every ``UPDATE campaigns SET updated_at = now()`` (the application's, on every send) ran the
    statement trigger and recorded the campaign: about 150 µs on a 65 µs update, and a group to apply."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        assert _when_columns(conn, "public.campaigns") == ["id", "name", "status", "workspace_id"]
        assert _when_columns(conn, "public.campaign_sequences") == [
            "campaign_id", "id", "step_number", "variant", "workspace_id"]
        before = _recorded(conn, "ivm_delta_campaigns"), _recorded(conn, "ivm_delta_campaign_sequences")
        conn.execute("UPDATE campaigns SET updated_at = now(), name = name")
        conn.execute("UPDATE campaign_sequences SET subject = subject || '!', delay_days = delay_days + 1")
        assert (_recorded(conn, "ivm_delta_campaigns"), _recorded(conn, "ivm_delta_campaign_sequences")) == before
        assert SummaryMaintainer(conn, CAMPAIGNS).apply().groups == 0
        campaign, step = conn.execute("SELECT (SELECT id FROM campaigns ORDER BY id LIMIT 1), "
                                      "(SELECT id FROM campaign_sequences ORDER BY id LIMIT 1)").fetchone()
        conn.execute("UPDATE campaigns SET name = name || ' (renamed)', updated_at = now() WHERE id = %s", (campaign,))
        conn.execute("UPDATE campaign_sequences SET variant = variant || '2' WHERE id = %s", (step,))
        assert (_recorded(conn, "ivm_delta_campaigns"), _recorded(conn, "ivm_delta_campaign_sequences")) == (
            before[0] + 1, before[1] + 1)
        for name in (CAMPAIGNS, STEPS):
            applied = SummaryMaintainer(conn, name).apply()
            assert (applied.mode, applied.groups) == ("incremental", 1), name
            assert differences(conn, name) == 0, name


def test_a_statement_trigger_of_an_earlier_version_is_replaced_under_the_lock_without_a_rebuild(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("DROP TRIGGER coldcopy_ivm_update ON campaigns")
        conn.execute("CREATE TRIGGER coldcopy_ivm_update AFTER UPDATE ON campaigns REFERENCING OLD TABLE AS ivm_old "
                     "NEW TABLE AS ivm_new FOR EACH STATEMENT EXECUTE FUNCTION coldcopy_ops.ivm_capture_ids()")
        conn.execute("UPDATE campaigns SET status = 'paused' WHERE id = (SELECT id FROM campaigns ORDER BY id "
                     "LIMIT 1 OFFSET 1)")  # recorded by the old trigger: the state stays good
        applied = SummaryMaintainer(conn, CAMPAIGNS).apply()
        assert (applied.mode, applied.groups) == ("incremental", 1)
        assert _when_columns(conn, "public.campaigns") == ["id", "name", "status", "workspace_id"]
        assert differences(conn, CAMPAIGNS) == 0
        relid = conn.execute("SELECT 'public.campaigns'::regclass::oid").fetchone()[0]
        assert not update_filter.stale(conn, relid, update_filter.read_columns(conn, "public.campaigns"))


def test_a_definition_reading_another_column_makes_the_trigger_follow(generated_db):
    """A migration makes campaign_analytics' definition read campaigns.created_at (a filter every row passes): the
    next apply rebuilds (its definition changed) and replaces the trigger, whose WHEN then names created_at; an
    update of it is recorded and applied."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        body = conn.execute("SELECT pg_get_viewdef('analytics.campaign_analytics_definition'::regclass)").fetchone()[0]
        conn.execute("CREATE OR REPLACE VIEW analytics.campaign_analytics_definition AS "
                     + body.rstrip().rstrip(";") + " WHERE c.created_at IS NOT NULL OR c.created_at IS NULL")
        assert SummaryMaintainer(conn, CAMPAIGNS).apply().mode == "rebuild"
        assert "created_at" in _when_columns(conn, "public.campaigns")
        before = _recorded(conn, "ivm_delta_campaigns")
        conn.execute("UPDATE campaigns SET created_at = created_at - interval '1 day' WHERE id = (SELECT id "
                     "FROM campaigns ORDER BY id LIMIT 1)")
        assert _recorded(conn, "ivm_delta_campaigns") == before + 1
        applied = SummaryMaintainer(conn, CAMPAIGNS).apply()
        assert (applied.mode, applied.groups) == ("incremental", 1)
        assert differences(conn, CAMPAIGNS) == 0


def test_every_capture_of_ids_has_its_updates_filtered():
    assert {t for t, c in CAPTURES.items() if c.function in ("ivm_capture_ids", "ivm_capture_workspace_ids")} == {
        t for t, c in CAPTURES.items() if c.row_updates}


def test_the_applications_updates_of_leads_record_nothing_unless_a_lead_changes_workspace(generated_db):
    """workspace_usage reads leads' workspace only: the update capture of leads names that column alone, so the
    application's updates of a lead (status, last contacted…) run no trigger and record no workspace."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        assert _when_columns(conn, "public.leads") == ["workspace_id"]
        assert _when_columns(conn, "public.workspace_members") == ["status", "workspace_id"]
        before = _recorded(conn, "ivm_delta_workspaces")
        conn.execute("UPDATE leads SET first_name = coalesce(first_name, '') || '.'")
        assert _recorded(conn, "ivm_delta_workspaces") == before
        a, b = [r[0] for r in conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 2")]
        conn.execute("UPDATE leads SET workspace_id = %s WHERE id = (SELECT id FROM leads WHERE workspace_id = %s "
                     "LIMIT 1)", (b, a))
        assert _recorded(conn, "ivm_delta_workspaces") == before + 2  # the lead's workspace before and after
        applied = SummaryMaintainer(conn, "analytics.workspace_usage").apply()
        assert (applied.mode, applied.method) == ("incremental", "delta")
        assert differences(conn, "analytics.workspace_usage") == 0


def test_a_summary_whose_migration_waits_does_not_stop_the_others_capture(generated_db):
    """helper-18: with 308 not applied yet (workspace_usage still a materialized view, no definition), the campaigns'
    update filter read every consumer's definition and campaign_analytics failed on every refresh."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("DROP VIEW analytics.workspace_usage_definition")
        applied = SummaryMaintainer(conn, CAMPAIGNS).apply()
        assert applied.mode == "rebuild" and differences(conn, CAMPAIGNS) == 0
        assert "workspace_id" in _when_columns(conn, "public.campaigns")
