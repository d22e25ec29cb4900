"""What the incremental summaries' tests share: applying every summary, comparing each with its definition, random
writes."""

from __future__ import annotations

import random

import psycopg
import pytest
from psycopg import sql

from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from coldcopy.refresh.incremental.summaries import SUMMARIES


@pytest.fixture(autouse=True)
def always_by_groups(monkeypatch):
    """These tests prove the group-by-group path: no apply turns into a rebuild because most groups changed
    (the small test data would make most of them do so; test_most_groups_changed_is_a_rebuild checks that)."""
    from coldcopy.refresh.incremental import maintainer

    monkeypatch.setattr(maintainer, "REBUILD_SHARE", float("inf"))
    monkeypatch.setattr(maintainer, "DELTA_REBUILD_SHARE", float("inf"))


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
    assert diff == dict.fromkeys(SUMMARIES, 0), f"{note}: rows differing {diff}"


def ids(conn, table: str, n: int = 1) -> list:
    return [r[0] for r in conn.execute(sql.SQL("SELECT id FROM {} ORDER BY random() LIMIT %s").format(
        sql.Identifier(table)), (n,)).fetchall()]


def random_round(conn, rnd: random.Random) -> list[str]:
    """A random mix of the writes the application and the ops jobs make; returns what it did."""
    done = []
    for _ in range(rnd.randint(2, 5)):
        kind = rnd.choice(["insert", "move", "delete", "extremes", "messages", "campaigns", "sequences", "truncate",
                           "signals", "workspaces"])
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
        elif kind == "extremes":  # the events holding leads' last engagement: deleted, or no longer engagement
            latest = ("SELECT DISTINCT ON (lead_id) id FROM email_events WHERE lead_id IS NOT NULL AND event_type IN "
                      "('opened', 'clicked', 'replied') ORDER BY lead_id, occurred_at DESC, random()")
            conn.execute(f"DELETE FROM email_events WHERE id IN (SELECT id FROM ({latest}) l ORDER BY random() "
                         "LIMIT %s)", (n // 2 + 1,))
            conn.execute(f"UPDATE email_events SET event_type = 'sent' WHERE id IN (SELECT id FROM ({latest}) l "
                         "ORDER BY random() LIMIT %s)", (n // 2 + 1,))
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
        elif kind == "signals":  # intent signals: new (some past the 90-day edge, some at it, some of no lead),
            # moved across the edge or to another lead, their strength changed, deleted; rarely all truncated
            conn.execute(
                "INSERT INTO intent_signals (workspace_id, lead_id, signal_type, strength, detected_at) "
                "SELECT workspace_id, CASE WHEN random() < 0.9 THEN id END, (ARRAY['website_visit', 'funding', "
                "'news'])[1 + floor(random() * 3)::int], round((random() * 10)::numeric, 2), now() - CASE "
                "WHEN random() < 0.3 THEN interval '90 days' + (random() - 0.5) * interval '2 hours' "
                "ELSE random() * interval '120 days' END FROM leads ORDER BY random() LIMIT %s", (n,))
            conn.execute(
                "UPDATE intent_signals SET detected_at = CASE WHEN random() < 0.5 THEN detected_at "
                "+ (random() - 0.5) * interval '20 days' ELSE detected_at END, strength = strength + 1, "
                "lead_id = CASE WHEN random() < 0.2 THEN (SELECT id FROM leads l WHERE l.workspace_id = "
                "intent_signals.workspace_id ORDER BY random() LIMIT 1) ELSE lead_id END "
                "WHERE id IN (SELECT id FROM intent_signals ORDER BY random() LIMIT %s)", (n,))
            conn.execute("DELETE FROM intent_signals WHERE id IN (SELECT id FROM intent_signals ORDER BY random() "
                         "LIMIT %s)", (n // 3,))
            if rnd.random() < 0.05:
                conn.execute("TRUNCATE intent_signals")
                kind = "signals truncated"
        elif kind == "workspaces":
            workspace_rows(conn, rnd, n)
        elif kind == "truncate" and rnd.random() < 0.3:  # a whole month, straight on its partition
            month = conn.execute("SELECT name FROM app.email_events_partitions ORDER BY random() LIMIT 1"
                                 ).fetchone()[0]
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier("public", month)))
            kind = f"truncate {month}"
        done.append(f"{kind} {n}")
    return done


def workspace_rows(conn, rnd: random.Random, n: int) -> None:
    """workspace_usage's small tables: leads added, moved between workspaces, deleted; members' status; accounts
    added and deleted; campaigns (re)activated or moved; a plan changed; a workspace made (with a member, a lead, a
    sent event at the 30-day edge) and, sometimes, one deleted (its rows cascade); sent events at the windows'
    edges (30 days ago to the hour, this month's first day)."""
    a, b = (ids(conn, "workspaces", 2) * 2)[:2]
    conn.execute("INSERT INTO leads (workspace_id, email) SELECT %s, 'ivm-' || gen_random_uuid() || '@example.com' "
                 "FROM generate_series(1, %s)", (a, n % 20 + 1))
    conn.execute("UPDATE leads SET workspace_id = %s WHERE id IN (SELECT id FROM leads WHERE workspace_id = %s "
                 "ORDER BY random() LIMIT 3)", (b, a))
    conn.execute("DELETE FROM leads WHERE id IN (SELECT id FROM leads ORDER BY random() LIMIT 2) "
                 "AND NOT EXISTS (SELECT 1 FROM email_events e WHERE e.lead_id = leads.id)")
    conn.execute("UPDATE workspace_members SET status = CASE status WHEN 'active' THEN 'removed' ELSE 'active' END "
                 "WHERE ctid IN (SELECT ctid FROM workspace_members ORDER BY random() LIMIT 2)")
    conn.execute("UPDATE campaigns SET status = CASE WHEN random() < 0.5 THEN 'active' ELSE 'paused' END "
                 "WHERE id = ANY(%s)", (ids(conn, "campaigns", 3),))
    conn.execute("UPDATE workspaces SET plan = CASE plan WHEN 'growth' THEN 'starter' ELSE 'growth' END, "
                 "monthly_email_quota = monthly_email_quota + 1 WHERE id = %s", (b,))
    conn.execute("INSERT INTO email_events (workspace_id, campaign_id, lead_id, email_account_id, event_type, "
                 "occurred_at) SELECT workspace_id, campaign_id, lead_id, email_account_id, 'sent', t FROM "
                 "(SELECT * FROM email_events WHERE workspace_id = %s LIMIT 3) e, (VALUES (now() - interval '30 days' "
                 "+ (random() - 0.5) * interval '2 hours'), (date_trunc('month', now())), "
                 "(date_trunc('month', now()) - interval '1 microsecond')) v(t)", (a,))
    if rnd.random() < 0.3:
        owner = conn.execute("SELECT user_id FROM workspace_members LIMIT 1").fetchone()[0]
        made = conn.execute("INSERT INTO workspaces (name, slug, owner_id) VALUES ('ivm', 'ivm-' || gen_random_uuid(), "
                            "%s) RETURNING id", (owner,)).fetchone()[0]
        conn.execute("INSERT INTO email_accounts (workspace_id, email) SELECT %s, 'ivm-' || gen_random_uuid() "
                     "|| '@example.com'", (made,))
        if rnd.random() < 0.5:
            conn.execute("DELETE FROM workspaces WHERE id = %s", (made,))


def probe_view(dsn: str) -> str:
    """A materialized view over email_events (the seven dashboards are summary tables now): what the materialized
    views' path (coldcopy.refresh.views) is tested on."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW analytics.usage_probe AS SELECT w.id AS workspace_id, "
                     "(SELECT count(*) FROM public.email_events e WHERE e.workspace_id = w.id) AS events "
                     "FROM public.workspaces w")
        conn.execute("CREATE UNIQUE INDEX ON analytics.usage_probe (workspace_id)")
    return "analytics.usage_probe"
