"""The incremental summaries (coldcopy.refresh.incremental): equal to their definitions after random writes,
detaches, killed and concurrent applies."""

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
from coldcopy.refresh.incremental.aggregates import AGGREGATES
from coldcopy.refresh.incremental.maintainer import SummaryBusy, SummaryMaintainer
from coldcopy.refresh.runs import RefreshRun
from tests.support.incremental import (
    always_by_groups,  # noqa: F401 - the fixture
    apply_all,
    assert_all_equal,
    differences,
    ids,
    random_round,
)


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
            assert {n: applied[n].method for n in AGGREGATES} == dict.fromkeys(AGGREGATES, "delta"), (seed, round_)
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
        # DDL fires no trigger: unrecorded, the detach is found by the counted months' check, and rebuilds
        applied = apply_all(generated_db)
        assert applied["analytics.campaign_analytics"].mode == "rebuild" and month in applied[
            "analytics.campaign_analytics"].reason
        assert differences(conn, "analytics.campaign_analytics") == 0
        with conn.transaction():  # the record, late, counts nothing twice
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
