"""analytics.workspace_usage (migration 308) by deltas: its two windows (this UTC month; 30 days to the microsecond)
follow the clock with no change captured — across the edge's hour, a midnight, a month's turn, a clock set back —
and only the workspaces whose figures can have moved are written."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from tests.support.incremental import differences

NAME = "analytics.workspace_usage"
# the definition's two windows with the clock of the last apply for now() (what that apply left in the summary)
AS_OF = """UPDATE analytics.workspace_usage u SET
             emails_sent_this_month = (SELECT count(*) FROM public.email_events e WHERE e.workspace_id = u.workspace_id
               AND e.event_type = 'sent' AND e.occurred_at >= date_trunc('month', %(clock)s::timestamptz
               AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
             emails_sent_30d = (SELECT count(*) FROM public.email_events e WHERE e.workspace_id = u.workspace_id
               AND e.event_type = 'sent' AND e.occurred_at >= %(clock)s::timestamptz - interval '30 days')"""


def _edge_events(conn) -> list:
    """Two workspaces' sent events 30 days ago, 10 to 50 minutes either side of the edge, and on this month's
    first midnight and just before it; returns the workspaces."""
    workspaces = [r[0] for r in conn.execute("SELECT DISTINCT workspace_id FROM email_events LIMIT 2")]
    conn.execute(
        "INSERT INTO email_events (workspace_id, campaign_id, lead_id, email_account_id, event_type, occurred_at) "
        "SELECT e.workspace_id, e.campaign_id, e.lead_id, e.email_account_id, 'sent', t FROM (SELECT DISTINCT ON "
        "(workspace_id) * FROM email_events WHERE workspace_id = ANY(%s)) e, (SELECT now() - interval '30 days' "
        "+ interval '10 minutes' * g FROM generate_series(-5, 5) g UNION ALL SELECT date_trunc('month', now()) "
        "UNION ALL SELECT date_trunc('month', now()) - interval '1 microsecond') v(t)", (workspaces,))
    return workspaces


@pytest.mark.parametrize("moved", ["1 hour", "1 day", "40 days", "-1 hour"])
def test_the_windows_follow_the_clock_with_no_change_captured(generated_db, moved):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        maintainer = SummaryMaintainer(conn, NAME)
        assert maintainer.apply().mode == "rebuild"
        edge = _edge_events(conn)
        applied = maintainer.apply()
        assert (applied.mode, applied.method) == ("incremental", "delta")
        assert differences(conn, NAME) == 0
        # the last apply was ``moved`` ago: its clock on record, the windows as that clock gave them
        clock = conn.execute("SELECT now() - %s::interval", (moved,)).fetchone()[0]
        conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = %s WHERE summary = %s", (clock, NAME))
        conn.execute(AS_OF, {"clock": clock})
        assert differences(conn, NAME) > 0  # the edge's events: in one window and not the other

        applied = maintainer.apply()
        assert applied.mode == "incremental" and applied.method == "delta", applied
        assert differences(conn, NAME) == 0
        if moved in ("1 hour", "-1 hour"):  # within the day: the workspaces with sent events on the edge's days
            sending = conn.execute(
                "SELECT count(DISTINCT workspace_id) FROM email_events WHERE event_type = 'sent' AND occurred_at "
                ">= date_trunc('day', now() - interval '30 days' - interval '1 hour') AND occurred_at < "
                "date_trunc('day', now() - interval '30 days' + interval '1 hour') + interval '1 day'").fetchone()[0]
            assert len(edge) <= applied.groups <= sending, (applied, sending)  # written: those whose figures moved


def test_a_clock_set_back_past_the_state_rebuilds(generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        maintainer = SummaryMaintainer(conn, NAME)
        maintainer.apply()
        conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = now() + interval '3 days' WHERE summary = %s",
                     (NAME,))
        applied = maintainer.apply()
        assert applied.mode == "rebuild" and differences(conn, NAME) == 0


def test_the_counts_move_only_for_the_workspaces_whose_rows_changed(generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        maintainer = SummaryMaintainer(conn, NAME)
        maintainer.apply()
        a, b = [r[0] for r in conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 2")]
        conn.execute("UPDATE leads SET workspace_id = %s WHERE id IN (SELECT id FROM leads WHERE workspace_id = %s "
                     "LIMIT 2)", (b, a))
        conn.execute("UPDATE campaigns SET status = 'active' WHERE workspace_id = %s", (a,))
        conn.execute("UPDATE leads SET first_name = 'x' WHERE workspace_id = %s", (b,))  # no column it reads
        assert conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_delta_workspaces WHERE workspace_id NOT IN "
                            "(%s, %s)", (a, b)).fetchone()[0] == 0
        maintainer.apply()
        assert differences(conn, NAME) == 0


def test_a_delta_table_shared_by_four_sources_is_created_again_once(generated_db):
    """helper-18: ivm_delta_workspaces serves four captures; it was recreated once per capture, the second time
    its index already there (DuplicateTable), so every apply failed for good."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        maintainer = SummaryMaintainer(conn, NAME)
        maintainer.apply()
        conn.execute("DROP TABLE coldcopy_ops.ivm_delta_workspaces")
        conn.execute("INSERT INTO leads (workspace_id, email) SELECT id, 'lost@example.com' FROM workspaces LIMIT 1")
        applied = maintainer.apply()
        assert applied.mode == "rebuild" and "delta table was missing" in applied.reason
        assert differences(conn, NAME) == 0 and maintainer.apply().mode == "incremental"


def test_clocks_set_back_a_little_at_a_time_past_the_state_rebuild_it(generated_db):
    """helper-18: each set-back under a day passed a check against the last apply's clock, while the state had
    dropped the days the windows read again: the first day the state holds is recorded and checked."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        maintainer = SummaryMaintainer(conn, NAME)
        maintainer.apply()
        # the state as a build 40 days ahead left it (its first day then), the last apply's clock 20 hours ahead
        conn.execute("UPDATE coldcopy_ops.ivm_state SET first_day = (now() + interval '9 days')::date, "
                     "clock_at = now() + interval '20 hours' WHERE summary = %s", (NAME,))
        applied = maintainer.apply()
        assert applied.mode == "rebuild", applied
        assert differences(conn, NAME) == 0
        assert conn.execute("SELECT first_day = ((date_trunc('day', now() AT TIME ZONE 'UTC') - interval '31 days'))"
                            "::date FROM coldcopy_ops.ivm_state WHERE summary = %s", (NAME,)).fetchone()[0]
