"""What may stop the summaries from following their sources, and must not do so silently: a login holding the
apply's lock, a capture switched off, a table restored or replayed with triggers off, a delta table gone."""

from __future__ import annotations

import threading
import uuid
import zlib
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.incremental import capture
from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from coldcopy.refresh.incremental.summaries import CAPTURES, SUMMARIES
from coldcopy.refresh.runs import RefreshRun
from tests.support.incremental import apply_all, assert_all_equal, differences

NAME = "analytics.campaign_analytics"
FIFTY_EVENTS = ("INSERT INTO email_events (workspace_id, campaign_id, lead_id, email_account_id, event_type) "
                "SELECT workspace_id, campaign_id, lead_id, email_account_id, 'replied' FROM email_events "
                "WHERE campaign_id IS NOT NULL LIMIT 50")


def test_a_login_without_privileges_cannot_freeze_a_summary(generated_db, admin_dsn):
    """Before: the apply's advisory-lock key was computable from the repository; any login holding it made
    every apply raise SummaryBusy. Now the lock is a row only the ops role may lock."""
    apply_all(generated_db)
    role = f"cc_nobody_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA coldcopy_ops TO {role}")  # it may even see the schema
    try:
        with psycopg.connect(make_conninfo(generated_db, user=role), autocommit=True) as nobody, \
                psycopg.connect(generated_db, autocommit=True) as conn:
            old_key = zlib.crc32(f"coldcopy.incremental:{NAME}".encode())  # the key the apply once took
            nobody.execute("SELECT pg_advisory_lock(%s)", (old_key,))
            conn.execute("UPDATE campaigns SET name = name || '.' WHERE id = "
                         "(SELECT id FROM campaigns ORDER BY id LIMIT 1)")
            applied = SummaryMaintainer(conn, NAME).apply()  # was: SummaryBusy
            assert applied.mode == "incremental" and applied.groups == 1
            nobody.execute("BEGIN")  # nor can it take the lock the apply takes now, and it stays in there
            for attempt in ("SELECT FROM coldcopy_ops.ivm_apply_locks FOR UPDATE",
                            "SELECT FROM coldcopy_ops.ivm_apply_locks FOR KEY SHARE",
                            "LOCK TABLE coldcopy_ops.ivm_apply_locks IN ACCESS SHARE MODE"):
                nobody.execute("SAVEPOINT s")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    nobody.execute(attempt)
                nobody.execute("ROLLBACK TO SAVEPOINT s")
            assert SummaryMaintainer(conn, NAME).verify().equal
    finally:
        with psycopg.connect(generated_db, autocommit=True) as conn:
            conn.execute(f"REVOKE USAGE ON SCHEMA coldcopy_ops FROM {role}")
            conn.execute(f"DROP ROLE {role}")


@contextmanager
def apply_held_open(dsn: str):
    """An apply of NAME in another session, held open before its commit until the block ends."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            SummaryMaintainer(conn, NAME).apply(before_commit=lambda: (inside.set(), release.wait(60)))

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert inside.wait(60)
        yield
    finally:
        release.set()
        holder.join()


def test_a_summary_busy_past_the_limit_fails_its_refresh_instead_of_skipping(generated_db):
    apply_all(generated_db)
    with apply_held_open(generated_db), psycopg.connect(generated_db, autocommit=True) as conn:
        first = refresher_for(conn, NAME).run(RefreshRun(run_id="first"))
        assert first.action == "skipped" and "another session" in first.reason
        assert refresher_for(conn, NAME).run(RefreshRun(run_id="second")).action == "skipped"  # within the limit
        conn.execute("UPDATE coldcopy_ops.mv_refresh_log SET started_at = started_at - interval '2 hours' "
                      "WHERE view_name = %s", (NAME,))
        for run_id in ("third", "fourth"):  # every refresh past the limit fails, not only the first
            with pytest.raises(RuntimeError, match="has been since .*longer than 1:00:00"):
                refresher_for(conn, NAME).run(RefreshRun(run_id=run_id))
        assert conn.execute("SELECT array_agg(action ORDER BY started_at) FROM coldcopy_ops.mv_refresh_log "
                            "WHERE view_name = %s", (NAME,)).fetchone()[0][-4:] == ["skipped"] * 2 + ["failed"] * 2
    with psycopg.connect(generated_db, autocommit=True) as conn:  # released: the next refresh applies
        assert refresher_for(conn, NAME).run(RefreshRun(run_id="fifth")).action in ("refreshed", "skipped")
        with apply_held_open(generated_db):  # and the busy skips counted from there
            assert refresher_for(conn, NAME).run(RefreshRun(run_id="sixth")).action == "skipped"


def test_a_capture_switched_off_is_switched_on_and_its_summaries_rebuilt(generated_db, caplog):
    """Before: ensure counted the triggers by name; with them disabled (a failed replay's DISABLE TRIGGER USER)
    50 events went uncaptured and the apply found 0 groups."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE email_events DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE campaigns DISABLE TRIGGER coldcopy_ivm_update")
        conn.execute(FIFTY_EVENTS)
        conn.execute("UPDATE campaigns SET name = name || '.' WHERE id IN (SELECT id FROM campaigns LIMIT 3)")
        assert differences(conn, NAME) > 0
    with caplog.at_level("WARNING", logger="coldcopy.refresh.incremental.capture"):
        applied = apply_all(generated_db)
    readers = {s.name for s in capture.consumers("public.email_events") + capture.consumers("public.campaigns")}
    assert {n: a.mode for n, a in applied.items()} == {n: "rebuild" if n in readers else "incremental"
                                                         for n in applied}  # lead_intent_summary reads neither
    assert all("changes went uncaptured" in applied[n].reason for n in readers), applied
    assert "coldcopy_ivm_insert switched on again" in caplog.text
    assert_all_equal(generated_db, "after 50 events and 3 renames written with the capture off")
    with psycopg.connect(generated_db, autocommit=True) as conn:
        assert capture.captured(conn, "public.email_events") and capture.captured(conn, "public.campaigns")
        assert conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_rebuild_due").fetchone()[0] == 0
    assert {a.mode for a in apply_all(generated_db).values()} == {"incremental"}


def test_a_failed_replay_as_a_non_superuser_leaves_no_trigger_off(generated_db, monkeypatch):
    """Before: DISABLE TRIGGER USER committed with the replay's first batch, and a failure after it left the
    capture and the GDPR triggers off."""
    from coldcopy.pitr import replay, target

    monkeypatch.setattr(replay, "BATCH", 1)  # a commit after every transaction
    monkeypatch.setattr(target, "quiet_session", lambda conn: setattr(conn, "autocommit", False))  # no superuser
    apply_all(generated_db)  # the capture's triggers are on campaigns too
    campaign = str(uuid.uuid4())
    with pytest.raises(replay.ReplayError), psycopg.connect(generated_db) as conn:  # as recovery.replay runs it
        workspace = conn.execute("SELECT workspace_id FROM campaigns LIMIT 1").fetchone()[0]
        conn.rollback()
        replayer = replay.Replayer(conn)
        assert not replayer.replica_role
        replayer.apply({"xid": 1, "changes": [{"op": "I", "table": "public.campaigns",
                                               "new": {"id": campaign, "workspace_id": workspace, "name": "r"}}]})
        replayer.apply({"xid": 2, "changes": [{"op": "I", "table": "public.campaigns",
                                               "new": {"id": str(uuid.uuid4()), "nope": 1}}]})
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns WHERE id = %s", (campaign,)).fetchone()[0] == 1
        off = conn.execute("SELECT array_agg(tgname) FROM pg_trigger WHERE tgrelid = 'public.campaigns'::regclass "
                           "AND NOT tgisinternal AND tgenabled = 'D'").fetchone()[0]
        assert off is None and capture.captured(conn, "public.campaigns")


def test_a_table_restore_with_triggers_off_rebuilds_the_summaries_reading_it(generated_db, coldcopy_conn,
                                                                             monkeypatch):
    """A superuser's table restore (--disable-triggers) and replay (replica role) are never captured: the
    summaries reading the table rebuild, even when the restore fails after loading."""
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    coldcopy_conn(generated_db)
    apply_all(generated_db)
    target = conninfo_to_dict(generated_db)["dbname"]

    class Runner:
        def restore(self, key, dsn, *, tables, manifest):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET session_replication_role = replica")
                conn.execute(FIFTY_EVENTS)

    def replay_fails(*args, **kwargs):
        raise RuntimeError("replay failed")

    operator = RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target)
    monkeypatch.setattr(operator, "replay", replay_fails)
    with pytest.raises(RuntimeError, match="replay failed"):
        operator.restore_tables(Runner(), "key", {}, target, ["public.email_events"])
    with psycopg.connect(generated_db) as conn:
        assert differences(conn, NAME) > 0
    applied = apply_all(generated_db)
    readers = {s.name for s in capture.consumers("public.email_events")}
    assert {n: a.mode for n, a in applied.items()} == {n: "rebuild" if n in readers else "incremental"
                                                         for n in applied}
    assert all("table restore of public.email_events" in applied[n].reason for n in readers)
    assert_all_equal(generated_db, "after a table restore with triggers off")


def test_a_missing_delta_table_is_created_again_and_its_summaries_rebuilt(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("DROP TABLE coldcopy_ops.ivm_delta_campaigns")
        conn.execute("SET session_replication_role = replica")  # what a degraded capture lets through
        conn.execute("UPDATE campaigns SET name = name || '.' WHERE id IN (SELECT id FROM campaigns LIMIT 3)")
        conn.execute("RESET session_replication_role")
        applied = SummaryMaintainer(conn, NAME).apply()
        assert applied.mode == "rebuild" and "delta table was missing" in applied.reason
        assert differences(conn, NAME) == 0
        assert conn.execute("SELECT to_regclass('coldcopy_ops.ivm_delta_campaigns') IS NOT NULL").fetchone()[0]
        assert SummaryMaintainer(conn, "analytics.lead_engagement").apply().mode == "incremental"  # reads no campaign


def test_creating_a_lost_delta_table_again_locks_no_other_delta_table(generated_db):
    """Before: the whole incremental.sql ran again, whose CREATE INDEX IF NOT EXISTS takes SHARE on every delta
    table: it waited behind a writer's open transaction, and every writer after queued behind it."""
    from coldcopy.lock_retries import LockRetryPolicy

    apply_all(generated_db)
    with psycopg.connect(generated_db) as writer, psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("DROP TABLE coldcopy_ops.ivm_delta_campaigns")
        writer.execute(FIFTY_EVENTS)  # open: ROW EXCLUSIVE on ivm_delta_email_events until it commits
        once = LockRetryPolicy(attempts=1, lock_timeout_ms=500)
        applied = SummaryMaintainer(conn, NAME, lock_retry=once).apply()
        assert applied.mode == "rebuild" and "delta table was missing" in applied.reason
        writer.commit()
        assert SummaryMaintainer(conn, NAME).apply().groups > 0  # the writer's events, captured
        assert differences(conn, NAME) == 0


def test_a_source_marked_lost_by_a_writer_rebuilds_each_summary_reading_it(generated_db):
    """A row of ivm_rebuild_due without a summary (what a degraded capture trigger writes) stands for every
    summary reading its source."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("INSERT INTO coldcopy_ops.ivm_rebuild_due (source, reason) VALUES ('public.campaigns', 'lost')")
    applied = apply_all(generated_db)
    readers = {s for s in SUMMARIES if "public.campaigns" in SUMMARIES[s].sources}
    assert {s for s, a in applied.items() if a.mode == "rebuild"} == readers
    assert {a.mode for a in apply_all(generated_db).values()} == {"incremental"}


def test_an_apply_takes_no_lock_on_a_delta_table_a_writer_would_wait_on(generated_db):
    apply_all(generated_db)
    deltas = [f"coldcopy_ops.{c.delta}" for c in CAPTURES.values()]
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute(FIFTY_EVENTS)
        seen = []

        def locks() -> None:
            seen.extend(conn.execute("SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = "
                                     "pg_backend_pid() AND relation = ANY(%s::regclass[])", (deltas,)).fetchall())

        for name in SUMMARIES:
            SummaryMaintainer(conn, name).apply(before_commit=locks)
            SummaryMaintainer(conn, name).apply(force=True, before_commit=locks)
            SummaryMaintainer(conn, name).prune()
    assert seen and {mode for _, mode in seen} <= {"AccessShareLock", "RowExclusiveLock"}, seen


LOST_WRITES = {  # a delta table, and an application write its capture would record there
    "ivm_delta_campaigns": "UPDATE campaigns SET name = name || '.' WHERE id IN (SELECT id FROM campaigns LIMIT 3)",
    "ivm_delta_email_events": FIFTY_EVENTS,
    "ivm_delta_email_messages": "UPDATE email_messages SET subject = subject || '.' WHERE id IN "
                                "(SELECT id FROM email_messages WHERE sequence_id IS NOT NULL LIMIT 3)",
    "ivm_delta_intent_signals": "UPDATE intent_signals SET strength = strength + 1 WHERE id IN "
                                "(SELECT id FROM intent_signals WHERE lead_id IS NOT NULL LIMIT 3)",
}


def test_an_application_write_goes_on_when_a_delta_table_is_lost_and_the_summaries_rebuild(generated_db):
    """Before: the capture trigger failed the application's write (``relation … does not exist``). Now it writes
    on, notes the source in ivm_rebuild_due, and the summaries reading it rebuild to their definitions."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        for delta, write in LOST_WRITES.items():
            conn.execute(f"DROP TABLE coldcopy_ops.{delta}")
            conn.execute(write)  # raised UndefinedTable before
        noted = [r for (r,) in conn.execute(  # (the campaigns' row trigger notes it once per row)
            "SELECT reason FROM coldcopy_ops.ivm_rebuild_due GROUP BY reason ORDER BY min(id)")]
        assert [f"coldcopy_ops.{d} missing" in r for d, r in zip(LOST_WRITES, noted, strict=True)] == [True] * 4
    applied = apply_all(generated_db)
    assert {a.mode for a in applied.values()} == {"rebuild"}  # every summary reads one of the four
    assert_all_equal(generated_db, "after writes with their delta tables lost")
