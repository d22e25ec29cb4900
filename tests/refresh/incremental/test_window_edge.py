"""analytics.lead_intent_summary (migration 307): a 90-day window to the microsecond, maintained by lead. The leads
whose signals aged out since the last apply are recomputed with no change captured; no other lead is."""

from __future__ import annotations

import psycopg

from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from tests.support.incremental import always_by_groups, differences  # noqa: F401 - the fixture

NAME = "analytics.lead_intent_summary"
# the definition with the clock of the last apply for now() (what that apply left in the summary)
AS_OF = """SELECT i.workspace_id, i.lead_id, count(*), sum(i.strength), max(i.detected_at),
                  array_agg(DISTINCT i.signal_type ORDER BY i.signal_type)
           FROM public.intent_signals i
           WHERE i.lead_id = ANY(%(leads)s) AND i.detected_at >= %(clock)s::timestamptz - interval '90 days'
           GROUP BY i.workspace_id, i.lead_id"""


def test_signals_that_aged_out_leave_the_summary_with_no_change_captured(generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        maintainer = SummaryMaintainer(conn, NAME)
        assert maintainer.apply().mode == "rebuild"
        leads = [r[0] for r in conn.execute("SELECT id FROM leads ORDER BY id LIMIT 5")]
        # each of five leads: a signal of 90 days and 10 to 50 minutes ago (in the window an hour ago, out of it
        # now), and one of yesterday that stays
        conn.execute("INSERT INTO intent_signals (workspace_id, lead_id, signal_type, strength, detected_at) "
                     "SELECT workspace_id, id, 'funding', 7, now() - interval '90 days' - interval '10 minutes' * g "
                     "FROM leads, generate_series(1, 5) g WHERE id = ANY(%(l)s) UNION ALL SELECT workspace_id, id, "
                     "'news', 1, now() - interval '1 day' FROM leads WHERE id = ANY(%(l)s)", {"l": leads})
        assert maintainer.apply().groups == 5  # the inserts, captured
        # The last apply an hour ago: its clock on record, those leads' rows as its window gave them.
        clock = conn.execute("SELECT now() - interval '1 hour'").fetchone()[0]
        conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = %s WHERE summary = %s", (clock, NAME))
        conn.execute("DELETE FROM analytics.lead_intent_summary WHERE lead_id = ANY(%s)", (leads,))
        conn.execute("INSERT INTO analytics.lead_intent_summary " + AS_OF, {"leads": leads, "clock": clock})
        assert conn.execute("SELECT count(*) FROM analytics.lead_intent_summary WHERE lead_id = ANY(%s) "
                            "AND 'funding' = ANY(signal_types)", (leads,)).fetchone()[0] == 5
        assert differences(conn, NAME) > 0
        aged = conn.execute("SELECT count(DISTINCT lead_id) FROM intent_signals WHERE lead_id IS NOT NULL AND "
                            "detected_at >= %s::timestamptz - interval '90 days' AND detected_at < now() - "
                            "interval '90 days'", (clock,)).fetchone()[0]

        applied = maintainer.apply()
        assert applied.mode == "incremental" and 5 <= applied.groups <= aged + 1, (applied, aged)
        assert differences(conn, NAME) == 0
        assert conn.execute("SELECT count(*) FROM analytics.lead_intent_summary WHERE lead_id = ANY(%s) "
                            "AND signal_types = ARRAY['news'] AND signals = 1", (leads,)).fetchone()[0] == 5
        # A clock set back (the last apply's an hour ahead of now): the signals its window had left out come back.
        conn.execute("INSERT INTO intent_signals (workspace_id, lead_id, signal_type, strength, detected_at) "
                     "SELECT workspace_id, id, 'tech_change', 3, now() - interval '90 days' + interval '20 minutes' "
                     "FROM leads WHERE id = ANY(%s)", (leads,))
        assert maintainer.apply().groups == 5
        conn.execute("UPDATE coldcopy_ops.ivm_state SET clock_at = now() + interval '1 hour' WHERE summary = %s",
                     (NAME,))
        conn.execute("DELETE FROM analytics.lead_intent_summary WHERE lead_id = ANY(%s)", (leads,))
        conn.execute("INSERT INTO analytics.lead_intent_summary " + AS_OF,
                     {"leads": leads, "clock": conn.execute("SELECT now() + interval '1 hour'").fetchone()[0]})
        assert differences(conn, NAME) > 0
        assert maintainer.apply().mode == "incremental" and differences(conn, NAME) == 0


def test_a_truncate_under_an_older_snapshot_rebuilds_instead_of_missing_what_committed_since(generated_db):
    """helper-12's finding: a TRUNCATE in a REPEATABLE READ transaction captured the leads its snapshot saw; the
    signals committed (and applied) after that snapshot went with the TRUNCATE uncaptured, and their leads stayed
    in the summary for good (5,500 rows in its repro)."""
    with psycopg.connect(generated_db, autocommit=True) as ops, psycopg.connect(generated_db) as old:
        maintainer = SummaryMaintainer(ops, NAME)
        maintainer.apply()
        old.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        old.execute("SELECT count(*) FROM intent_signals")  # its snapshot, taken now
        ops.execute("INSERT INTO intent_signals (workspace_id, lead_id, signal_type, strength, detected_at) "
                    "SELECT workspace_id, id, 'news', 1, now() - interval '1 day' FROM leads LIMIT 200")
        assert maintainer.apply().groups >= 200
        old.execute("TRUNCATE intent_signals")
        old.commit()
        applied = maintainer.apply()
        assert applied.mode == "rebuild" and "TRUNCATE of public.intent_signals in a repeatable read" in applied.reason
        assert differences(ops, NAME) == 0
        assert ops.execute("SELECT count(*) FROM analytics.lead_intent_summary").fetchone()[0] == 0
