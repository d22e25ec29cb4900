"""Premaking email_events months (coldcopy.partitions.premaker) under lock_timeout; the horizon check."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import alerts
from coldcopy.lock_retries import LockRetriesExhausted, LockRetryPolicy
from coldcopy.operators.partitions import HorizonCheckOperator
from coldcopy.testing.alert_sink import AlertSink
from tests.support.partitions import attached, manager


def test_premake_creates_exactly_the_missing_months(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        future = attached(migrated_db)[-3:]
        for name in future:
            conn.execute(f"DROP TABLE public.{name}")
        assert manager(conn).future_months() == 0
        assert manager(conn).premake(3) == future
        assert manager(conn).premake(3) == []
        assert manager(conn).future_months() == 3


def test_horizon_check_alerts_when_future_months_run_short(migrated_db, coldcopy_conn, monkeypatch, backup_key):
    coldcopy_conn(migrated_db)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for name in attached(migrated_db)[-2:]:
            conn.execute(f"DROP TABLE public.{name}")
    ti = SimpleNamespace(dag_id="partition_maintenance", run_id="r", task_id="horizon_check")
    with AlertSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", sink.airflow_connection())
        with pytest.raises(AirflowFailException, match="only 1 future month") as failure:
            HorizonCheckOperator(task_id="horizon_check").execute({"ti": ti})
        assert sink.texts() == []  # the page goes out once, from on_failure_callback, with this reason
        alerts.on_task_failure({"ti": SimpleNamespace(**vars(ti), try_number=1), "exception": failure.value})
        [text] = sink.texts()
        assert "horizon_check failed for good" in text and "only 1 future month" in text


def test_a_conflicting_lock_makes_premake_time_out_and_retry_not_hang(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        name = attached(migrated_db)[-1]
        conn.execute(f"DROP TABLE public.{name}")
    with psycopg.connect(migrated_db) as blocker, psycopg.connect(migrated_db, autocommit=True) as conn:
        blocker.execute("LOCK TABLE public.email_events IN SHARE MODE")  # conflicts with ATTACH's lock
        started = time.monotonic()
        policy = LockRetryPolicy(attempts=3, lock_timeout_ms=200, max_lock_timeout_ms=200, backoff_s=0.1)
        with pytest.raises(LockRetriesExhausted, match="premake of email_events .* 3 attempts"):
            manager(conn, policy).premake(3)
        assert time.monotonic() - started < 5
        threading.Timer(0.5, blocker.rollback).start()
        assert manager(conn).premake(3) == [name]  # retries until the blocker is gone
