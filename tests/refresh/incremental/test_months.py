"""Which months of email_events the capture counts (coldcopy_ops.ivm_months), found by attacking the delta
capture (helper-11): a TRUNCATE under an older snapshot, writes into a detached month (an erasure, a tenant), a
plain ATTACH, a job killed between its DETACH and its record. Before the fix each left a summary different from
its definition while it stayed on deltas."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.change_tracking import record_partition
from coldcopy.refresh.incremental.aggregates import AGGREGATES
from tests.support.incremental import (
    always_by_groups,  # noqa: F401 - the fixture
    apply_all,
    assert_all_equal,
)

OLD_MONTH = ("SELECT name, range_start, range_end FROM app.email_events_partitions p WHERE EXISTS (SELECT 1 FROM "
             "email_events e WHERE e.occurred_at >= p.range_start AND e.occurred_at < p.range_end AND "
             "e.campaign_id IS NOT NULL) ORDER BY range_start LIMIT 1")


def detach(conn, month: str, *, record: bool = True) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("ALTER TABLE email_events DETACH PARTITION {}").format(sql.Identifier("public", month)))
        if record:
            record_partition(conn, "public.email_events", f"public.{month}")


def test_a_truncate_under_an_older_snapshot_rebuilds_instead_of_missing_rows(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        month = conn.execute("SELECT name FROM app.email_events_partitions WHERE range_start <= now() AND "
                             "range_end > now()").fetchone()[0]
    old = psycopg.connect(generated_db)
    old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    old.execute("SELECT 1")  # its snapshot: before the insert below
    with psycopg.connect(generated_db, autocommit=True) as writer:
        writer.execute("INSERT INTO email_events (workspace_id, campaign_id, lead_id, message_id, email_account_id, "
                       "event_type, occurred_at) SELECT workspace_id, campaign_id, lead_id, message_id, "
                       "email_account_id, 'opened', now() FROM email_events WHERE campaign_id IS NOT NULL AND "
                       "lead_id IS NOT NULL AND email_account_id IS NOT NULL LIMIT 3")
    old.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier("public", month)))  # removes those 3 rows too
    old.commit()
    old.close()
    applied = apply_all(generated_db)
    assert {applied[n].mode for n in AGGREGATES} == {"rebuild"}
    assert all("repeatable read" in applied[n].reason for n in AGGREGATES)
    assert_all_equal(generated_db, "after a TRUNCATE in a REPEATABLE READ transaction")


def test_writes_into_a_detached_month_are_not_the_summaries(generated_db):
    """An erasure deletes a subject's rows from months in their grace period; a tenant keeps its grants on them."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        month = conn.execute(OLD_MONTH).fetchone()[0]
        detach(conn, month)
        apply_all(generated_db)
        table = sql.Identifier("public", month)
        conn.execute(sql.SQL("DELETE FROM {} WHERE ctid IN (SELECT ctid FROM {} WHERE campaign_id IS NOT NULL "
                             "LIMIT 5)").format(table, table))
        conn.execute(sql.SQL("UPDATE {} SET lead_id = gen_random_uuid() WHERE ctid IN (SELECT ctid FROM {} "
                             "WHERE lead_id IS NOT NULL LIMIT 5)").format(table, table))
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
    applied = apply_all(generated_db)
    assert {(applied[n].mode, applied[n].method) for n in AGGREGATES} == {("incremental", "delta")}
    assert_all_equal(generated_db, f"after writes into the detached {month}")


def test_a_plain_attach_or_an_unrecorded_detach_rebuilds_once(generated_db):
    """The importer's advice for a grace-period month is a plain ATTACH; a job killed between its DETACH and its
    record leaves a month detached uncounted."""
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        month, start, end = conn.execute(OLD_MONTH).fetchone()
        detach(conn, month, record=False)  # killed before its record
        applied = apply_all(generated_db)
        assert {applied[n].mode for n in AGGREGATES} == {"rebuild"}
        assert all(month in applied[n].reason for n in AGGREGATES)
        assert_all_equal(generated_db, f"after {month} detached unrecorded")
        record_partition(conn, "public.email_events", f"public.{month}")  # the record, late: nothing twice
        assert {a.mode for a in apply_all(generated_db).values()} == {"incremental"}
        assert_all_equal(generated_db, f"after {month}'s late record")
        conn.execute(sql.SQL("ALTER TABLE email_events ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier("public", month), sql.Literal(start), sql.Literal(end)))  # plain, no record
    applied = apply_all(generated_db)
    assert {applied[n].mode for n in AGGREGATES} == {"rebuild"}
    assert_all_equal(generated_db, f"after {month} attached plainly")
    assert {a.mode for a in apply_all(generated_db).values()} == {"incremental"}  # once


def test_the_counted_months_dropped_by_hand_stop_no_write_and_rebuild_once(generated_db):
    apply_all(generated_db)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        month = conn.execute(OLD_MONTH).fetchone()[0]
        conn.execute("DROP TABLE coldcopy_ops.ivm_months")
        conn.execute(sql.SQL("DELETE FROM {} WHERE ctid IN (SELECT ctid FROM {} LIMIT 3)").format(
            sql.Identifier("public", month), sql.Identifier("public", month)))  # straight into a month: goes on
        conn.execute("INSERT INTO email_events (workspace_id, event_type) SELECT id, 'sent' FROM workspaces LIMIT 2")
    applied = apply_all(generated_db)
    assert {applied[n].mode for n in AGGREGATES} == {"rebuild"}
    assert_all_equal(generated_db, "after coldcopy_ops.ivm_months was dropped")
    assert {a.mode for a in apply_all(generated_db).values()} == {"incremental"}
