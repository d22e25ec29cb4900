"""Incremental maintenance of the analytics summaries, on real PostgreSQL: after any mix of writes the summaries
equal their definitions, row for row."""

from __future__ import annotations

import os
import random
import threading
import time

import psycopg
import pytest
from psycopg import sql

from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.maintainer import SummaryBusy, SummaryMaintainer
from coldcopy.refresh.incremental.summaries import SUMMARIES
from coldcopy.refresh.runs import RefreshRun


@pytest.fixture(autouse=True)
def always_by_groups(monkeypatch):
    """These tests prove the group-by-group path: no apply turns into a rebuild because most groups changed
    (the small test data would make most of them do so; test_most_groups_changed_is_a_rebuild checks that)."""
    from coldcopy.refresh.incremental import maintainer

    monkeypatch.setattr(maintainer, "REBUILD_SHARE", float("inf"))


EVENT_TYPES = ["sent", "delivered", "opened", "clicked", "replied", "bounced", "complained", "unsubscribed"]


def differences(conn, name: str) -> int:
    """Rows of the summary not in its definition plus rows of the definition not in the summary (one statement:
    one snapshot, one now())."""
    return conn.execute(sql.SQL(
        "SELECT count(*) FROM ((TABLE {s} EXCEPT ALL TABLE {d}) UNION ALL (TABLE {d} EXCEPT ALL TABLE {s})) x").format(
        s=sql.SQL(name), d=sql.SQL(f"{name}_definition"))).fetchone()[0]


def apply_all(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: SummaryMaintainer(conn, name).apply() for name in SUMMARIES}


def assert_all_equal(dsn: str, note: str = "") -> None:
    with psycopg.connect(dsn) as conn:
        diff = {name: differences(conn, name) for name in SUMMARIES}
    assert diff == dict.fromkeys(SUMMARIES, 0), note


def ids(conn, table: str, n: int = 1) -> list:
    return [r[0] for r in conn.execute(sql.SQL("SELECT id FROM {} ORDER BY random() LIMIT %s").format(
        sql.Identifier(table)), (n,)).fetchall()]


def random_round(conn, rnd: random.Random) -> list[str]:
    """A random mix of the writes the application and the ops jobs make; returns what it did."""
    done = []
    for _ in range(rnd.randint(2, 5)):
        kind = rnd.choice(["insert", "move", "delete", "messages", "campaigns", "sequences", "truncate"])
        n = rnd.randint(1, 300)
        if kind == "insert":  # new events, some outside the 90-day window, some without campaign/lead/account
            conn.execute(
                "INSERT INTO email_events (workspace_id, campaign_id, lead_id, message_id, email_account_id, "
                "event_type, bounce_type, occurred_at) SELECT workspace_id, "
                "CASE WHEN random() < 0.9 THEN campaign_id END, CASE WHEN random() < 0.9 THEN lead_id END, "
                "message_id, CASE WHEN random() < 0.9 THEN email_account_id END, "
                "(%s::text[])[1 + floor(random() * 8)::int], CASE WHEN random() < 0.5 THEN 'hard' END, "
                "now() - random() * interval '120 days' FROM email_events ORDER BY random() LIMIT %s", (EVENT_TYPES, n))
        elif kind == "move":  # between campaigns, leads, types, days (and months: partitions), accounts
            campaign, lead = ids(conn, "campaigns")[0], conn.execute(
                "SELECT id, workspace_id FROM leads ORDER BY random() LIMIT 1").fetchone()
            conn.execute(
                "UPDATE email_events SET campaign_id = CASE WHEN random() < 0.3 THEN %s ELSE campaign_id END, "
                "lead_id = CASE WHEN random() < 0.3 THEN %s ELSE lead_id END, "
                "workspace_id = CASE WHEN random() < 0.1 THEN %s ELSE workspace_id END, "
                "event_type = CASE WHEN random() < 0.5 THEN (%s::text[])[1 + floor(random() * 8)::int] "
                "ELSE event_type END, "
                "occurred_at = occurred_at - CASE WHEN random() < 0.4 AND occurred_at > now() - interval '300 days' "
                "THEN random() * interval '40 days' ELSE '0' END "
                "WHERE id IN (SELECT id FROM email_events ORDER BY random() LIMIT %s)",
                (campaign, lead[0], lead[1], EVENT_TYPES, n))
        elif kind == "delete":
            conn.execute("DELETE FROM email_events WHERE id IN "
                         "(SELECT id FROM email_events ORDER BY random() LIMIT %s)", (n,))
        elif kind == "messages":  # messages moved between steps, turned inbound, deleted
            step = ids(conn, "campaign_sequences")[0]
            conn.execute("UPDATE email_messages SET sequence_id = CASE WHEN random() < 0.5 THEN %s END, "
                         "direction = CASE WHEN random() < 0.2 THEN 'inbound' ELSE direction END "
                         "WHERE id IN (SELECT id FROM email_messages ORDER BY random() LIMIT %s)", (step, n))
            conn.execute("DELETE FROM email_messages WHERE id IN (SELECT id FROM email_messages ORDER BY random() "
                         "LIMIT 5)")
        elif kind == "campaigns":  # renamed, paused, one deleted (its steps cascade, its messages set null)
            conn.execute("UPDATE campaigns SET name = name || '+', status = 'paused' WHERE id = ANY(%s)",
                         (ids(conn, "campaigns", 3),))
            if rnd.random() < 0.3:
                conn.execute("DELETE FROM campaigns WHERE id = %s", (ids(conn, "campaigns")[0],))
        elif kind == "sequences":
            conn.execute("UPDATE campaign_sequences SET variant = 'B' WHERE id = ANY(%s) AND NOT EXISTS (SELECT 1 "
                         "FROM campaign_sequences o WHERE o.campaign_id = campaign_sequences.campaign_id AND "
                         "o.step_number = campaign_sequences.step_number AND o.variant = 'B')",
                         (ids(conn, "campaign_sequences", 2),))
        elif kind == "truncate" and rnd.random() < 0.3:  # a whole month, straight on its partition
            month = conn.execute("SELECT name FROM app.email_events_partitions ORDER BY random() LIMIT 1"
                                 ).fetchone()[0]
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier("public", month)))
            kind = f"truncate {month}"
        done.append(f"{kind} {n}")
    return done


def test_random_writes_leave_every_summary_equal_to_its_definition(generated_db):
    seed = int(os.environ.get("COLDCOPY_IVM_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    first = apply_all(generated_db)
    assert {a.mode for a in first.values()} == {"rebuild"}
    assert_all_equal(generated_db, "after the first build")
    history = []
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("SELECT setseed(%s)", (rnd.random() * 2 - 1,))
        for round_ in range(14):
            if rnd.random() < 0.5:  # some writes in one transaction, some in many
                with conn.transaction():
                    history.append(random_round(conn, rnd))
            else:
                history.append(random_round(conn, rnd))
            # a writer commits while the applies run: its change lands in this round or the next, never lost
            writer = threading.Thread(target=lambda: psycopg.connect(generated_db, autocommit=True).execute(
                "INSERT INTO email_events (workspace_id, campaign_id, lead_id, email_account_id, event_type) "
                "SELECT workspace_id, campaign_id, lead_id, email_account_id, 'replied' FROM email_events LIMIT 20"))
            writer.start()
            applied = apply_all(generated_db)
            writer.join()
            assert {a.mode for a in applied.values()} == {"incremental"}, (seed, round_)
            apply_all(generated_db)
            assert_all_equal(generated_db, f"seed {seed}, round {round_}: {history}")
    with psycopg.connect(generated_db, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_delta_email_events").fetchone()[0]
        SummaryMaintainer(conn, "analytics.campaign_analytics").prune()
        # every key all five summaries have applied is gone (a transaction of another session still open on
        # this server holds the horizon back: what it may yet need stays)
        horizon = conn.execute("SELECT min(pg_snapshot_xmin(watermark)) FROM coldcopy_ops.ivm_state").fetchone()[0]
        left = conn.execute("SELECT count(*), count(*) FILTER (WHERE txid < %s) FROM "
                            "coldcopy_ops.ivm_delta_email_events", (horizon,)).fetchone()
        assert left[1] == 0 and left[0] <= before


def test_a_detached_month_leaves_the_summaries_as_the_definition_does(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        month = conn.execute("SELECT name FROM app.email_events_partitions p WHERE EXISTS (SELECT 1 FROM "
                             "email_events e WHERE e.occurred_at >= p.range_start AND e.occurred_at < p.range_end "
                             "AND e.occurred_at > now() - interval '60 days') ORDER BY range_start LIMIT 1"
                             ).fetchone()[0]
        conn.execute(sql.SQL("ALTER TABLE email_events DETACH PARTITION {}").format(sql.Identifier(month)))
        apply_all(generated_db)  # DDL fires no trigger: without the partition's keys, nothing is recomputed
        assert differences(conn, "analytics.campaign_analytics") > 0  # the bug the record below prevents
        with conn.transaction():
            capture.record_partition(conn, "public.email_events", f"public.{month}")
    apply_all(generated_db)
    assert_all_equal(generated_db, f"after detaching {month}")


def test_a_killed_apply_loses_and_doubles_nothing(generated_db):
    apply_all(generated_db)
    name = "analytics.lead_engagement"
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE email_events SET event_type = 'replied' WHERE id IN (SELECT id FROM email_events "
                     "WHERE lead_id IS NOT NULL ORDER BY id LIMIT 200)")
    with psycopg.connect(generated_db, autocommit=True) as victim, \
            psycopg.connect(generated_db, autocommit=True) as killer:
        pid = victim.info.backend_pid

        def kill() -> None:  # after the groups were replaced, before the watermark commits with them
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
            time.sleep(0.2)

        with pytest.raises(psycopg.OperationalError):
            SummaryMaintainer(victim, name).apply(before_commit=kill)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        assert differences(conn, name) > 0  # nothing of the killed apply stayed
        again = SummaryMaintainer(conn, name).apply()
        assert again.mode == "incremental" and again.groups > 0
        assert differences(conn, name) == 0
        assert conn.execute("SELECT count(*) FROM analytics.lead_engagement").fetchone()[0] == \
            conn.execute("SELECT count(*) FROM analytics.lead_engagement_definition").fetchone()[0]


def test_concurrent_applies_one_applies_the_other_skips_and_writers_do_not_wait(generated_db):
    apply_all(generated_db)
    name = "analytics.campaign_analytics"
    with psycopg.connect(generated_db, autocommit=True) as conn:
        campaign = ids(conn, "campaigns")[0]
        conn.execute("UPDATE campaigns SET name = 'renamed' WHERE id = %s", (campaign,))
    inside, release, results = threading.Event(), threading.Event(), []

    def first() -> None:
        with psycopg.connect(generated_db, autocommit=True) as conn:
            results.append(SummaryMaintainer(conn, name).apply(
                before_commit=lambda: (inside.set(), release.wait(30))))

    holder = threading.Thread(target=first)
    holder.start()
    assert inside.wait(30)
    try:
        with psycopg.connect(generated_db, autocommit=True) as conn:
            with pytest.raises(SummaryBusy):
                SummaryMaintainer(conn, name).apply()
            skipped = refresher_for(conn, name).run(RefreshRun(run_id="second"))
            assert skipped.action == "skipped" and "another session" in skipped.reason
            # the application writes the very rows being recomputed without waiting on the apply
            conn.execute("SET lock_timeout = '1s'")
            began = time.monotonic()
            conn.execute("UPDATE campaigns SET status = 'active' WHERE id = %s", (campaign,))
            conn.execute("INSERT INTO email_events (workspace_id, campaign_id, event_type) "
                         "SELECT workspace_id, id, 'sent' FROM campaigns WHERE id = %s", (campaign,))
            assert time.monotonic() - began < 1
            # and readers read the summary as it was
            assert conn.execute("SELECT name FROM analytics.campaign_analytics WHERE campaign_id = %s",
                                (campaign,)).fetchone()[0] != "renamed"
    finally:
        release.set()
        holder.join()
    assert results and results[0].groups >= 1
    apply_all(generated_db)
    assert_all_equal(generated_db)


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
        assert differences(conn, "analytics.lead_engagement") == 0
        assert SummaryMaintainer(conn, "analytics.lead_engagement").apply().mode == "incremental"


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
    from coldcopy.refresh.incremental import maintainer

    monkeypatch.setattr(maintainer, "REBUILD_SHARE", 0.25)
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE campaigns SET name = name || '.' WHERE id IN (SELECT id FROM campaigns LIMIT 2)")
        few = SummaryMaintainer(conn, "analytics.campaign_analytics").apply()
        assert few.mode == "incremental" and few.groups == 2  # 2 of 20
        conn.execute("UPDATE campaigns SET name = name || '.' WHERE id IN (SELECT id FROM campaigns LIMIT 6)")
        most = SummaryMaintainer(conn, "analytics.campaign_analytics").apply()
        assert most.mode == "rebuild" and "a rebuild costs less" in most.reason
        assert differences(conn, "analytics.campaign_analytics") == 0
