"""The health run (coldcopy.health): alert policy, thresholds, a failing check, every group, history pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coldcopy import health


def test_alert_policy_reminds_and_escalates_but_never_repeats(migrated_db):
    t = health.Thresholds()
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    breach = health.Result("storage", "breach", "x", 82.0)
    told = {"alerted_state": "breach", "alerted_value": 82.0, "alerted_at": now - timedelta(hours=1)}
    assert health.alert_for(breach, None, now, t) == "entered"
    assert health.alert_for(breach, told, now, t) is None
    assert health.alert_for(breach, {**told, "alerted_at": now - timedelta(hours=6)}, now, t) == "reminder"
    assert health.alert_for(health.Result("storage", "breach", "x", 97.0), told, now, t) is None  # < 25 % further
    assert health.alert_for(health.Result("storage", "breach", "x", 103.0), told, now, t) == "worse"
    assert health.alert_for(health.Result("x", "breach", "x", 1.0),
                            {**told, "alerted_state": "warning", "alerted_value": 1.0}, now, t) == "worse"
    assert health.alert_for(health.Result("x", "warning", "x", 1.0),
                            {**told, "alerted_state": "warning", "alerted_at": now - timedelta(days=1)}, now,
                            t) is None  # warnings are told once, no reminders
    ages = health.Result("lock_waits", "breach", "x", 600.0, worse_by_value=False)
    assert health.alert_for(ages, {**told, "alerted_value": 40.0}, now, t) is None  # waits grow by themselves
    assert health.alert_for(health.Result("x", "unknown", "x"), told, now, t) is None
    assert health.alert_for(health.Result("x", "ok", "x"), told, now, t) == "resolved"
    lower = health.Result("partition_horizon", "breach", "x", 0, higher_is_worse=False)
    assert health.alert_for(lower, {**told, "alerted_value": 1.0}, now, t) == "worse"


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="unknown health threshold 'storage_gb'"):
        health.Thresholds.from_overrides({"storage_gb": 10})
    with pytest.raises(ValueError, match="must be a number"):
        health.Thresholds.from_overrides({"cpu_cores": "four"})
    assert health.Thresholds.from_overrides({"cpu_cores": 4.0}, {"storage_allocated_gb": 250}).cpu_cores == 4


def test_a_check_that_errors_is_unknown_and_fails(checker, migrated_db, sink):
    c = checker()
    c.conn.execute("SET statement_timeout = '300ms'")
    blocker = psycopg.connect(migrated_db)
    blocker.execute("LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE")
    try:
        [result] = health.run_group(health.Context(c.conn, c.t), "sizes")
    finally:
        blocker.rollback()
        blocker.close()
    health.record(c.conn, [result], c.t)
    assert result.state == "unknown" and result.failed and "QueryCanceled" in result.summary
    latest = c.conn.execute("SELECT state FROM coldcopy_ops.health_snapshot WHERE check_name = 'sizes' "
                            "ORDER BY taken_at DESC LIMIT 1").fetchone()
    assert latest["state"] == "unknown" and not sink.received


def test_every_group_runs_on_a_generated_database(checker, generated_db):
    c = checker(generated_db)
    ran = set()
    for group in health.CHECKS:
        for name, result in c.run(group).items():
            assert not result.failed, (group, result.summary)
            assert result.state in ("ok", "warning", "breach", "unknown")
            ran.add(name)
    stored = {r["check_name"] for r in c.conn.execute("SELECT DISTINCT check_name FROM coldcopy_ops.health_snapshot")}
    assert stored == ran and len(ran) > len(health.CHECKS)  # every result kept; groups hold several checks
    assert "pgbouncer_pools" not in stored  # no coldcopy_pgbouncer connection here
    assert "change_archive" in stored


def test_prune_keeps_90_days(checker):
    c = checker()
    c.conn.execute("INSERT INTO coldcopy_ops.health_snapshot (check_name, taken_at, state, summary) "
                   "SELECT 'storage', now() - g * interval '1 day' - interval '1 hour', 'ok', 'x' "
                   "FROM generate_series(0, 99) g")
    assert health.prune(c.conn, 90, batch=7) == 10
    assert c.conn.execute("SELECT count(*) AS n FROM coldcopy_ops.health_snapshot").fetchone()["n"] == 90
