"""Issue 41, 6: the change archive's own slot is judged by ``change_archive``, not ``replication_slots``: it is
inactive between drains by design, and gave a permanent warning ("1 inactive, retaining 0.00 GB") and "worse"
re-alerts at 0.00 GB while the archive was healthy. Real PostgreSQL with ``wal_level=logical``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from coldcopy import health, ops_schema
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.testing import local_env, servers


@pytest.fixture(scope="module")
def logical_db():
    cluster = servers.ThrowawayCluster({"wal_level": "logical", "max_replication_slots": "4"}).start()
    try:
        dsn = local_env.create_database(cluster.dsn, "coldcopy")
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="pytest")
        yield dsn
    finally:
        cluster.stop()


def slots_check(dsn: str, sink) -> health.Result:
    with psycopg.connect(dsn, autocommit=True) as conn:
        ops_schema.ensure(conn, "health")
        conn.row_factory = dict_row
        t = health.Thresholds()
        [result] = [r for r in health.run_group(health.Context(conn, t), "engine") if r.check == "replication_slots"]
        health.record(conn, [result], t, run_id="test")
        return result


def test_the_change_archives_own_slot_is_no_replication_slots_warning(logical_db, sink):
    from coldcopy.pitr.setup import Setup

    with psycopg.connect(logical_db, autocommit=True) as conn:
        Setup(conn).apply()  # what change_archive_setup does: the publication and the inactive coldcopy_pitr slot
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE NOT active").fetchone()[0] == 1
    for _ in range(2):  # every run: ok, nothing paged
        result = slots_check(logical_db, sink)
        assert result.state == "ok", result.summary
        assert "change archive's own slot" in result.summary and sink.received == []
    with psycopg.connect(logical_db, autocommit=True) as conn:  # any other inactive slot is still a warning
        conn.execute("SELECT pg_create_logical_replication_slot('forgotten', 'pgoutput')")
    try:
        result = slots_check(logical_db, sink)
        assert result.state == "warning" and "1 inactive (forgotten)" in result.summary, result.summary
        assert len(sink.received) == 1
    finally:
        with psycopg.connect(logical_db, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot('forgotten')")


def test_a_warning_alerted_at_zero_is_not_worse_for_a_few_bytes():
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    told = {"alerted_state": "warning", "alerted_value": 0.0, "alerted_at": now - timedelta(hours=1)}
    assert health.alert_for(health.Result("replication_slots", "warning", "x", 0.0004), told, now,
                            health.Thresholds()) is None
    assert health.alert_for(health.Result("replication_slots", "breach", "x", 12.0), told, now,
                            health.Thresholds()) == "worse"  # a higher state still is
