"""Engine checks (coldcopy.health.engine): idle transactions, blocked sessions and their blockers, cache hit."""

from __future__ import annotations

import threading
import time

import psycopg

from tests.support.health import (
    texts,
)


def test_idle_in_transaction_session_then_resolved(checker, migrated_db, sink):
    c = checker(idle_in_transaction_s=1)
    idle = psycopg.connect(migrated_db, application_name="the-app")
    idle.execute("SELECT 1")  # a transaction left open
    time.sleep(1.5)
    result = c.run("engine")["long_transactions"]
    assert result.state == "breach"
    assert [s["application"] for s in result.details["sessions"]] == ["the-app"]
    assert sum("long_transactions breach" in t for t in texts(sink)) == 1
    c.run("engine")
    assert sum("long_transactions" in t for t in texts(sink)) == 1
    idle.rollback()
    assert c.run("engine")["long_transactions"].state == "ok"
    assert sum("long_transactions resolved" in t for t in texts(sink)) == 1
    idle.close()


def test_a_blocked_session_and_who_blocks_it(checker, migrated_db, sink):
    c = checker(lock_wait_warn_s=0.2, lock_wait_breach_s=1)
    holder = psycopg.connect(migrated_db, application_name="holder")
    holder.execute("LOCK TABLE public.workspaces IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid

    def blocked_reader():
        with psycopg.connect(migrated_db, application_name="blocked-reader") as reader:
            reader.execute("SELECT count(*) FROM public.workspaces")

    reader = threading.Thread(target=blocked_reader)
    reader.start()
    time.sleep(2)
    try:
        result = c.run("engine")["lock_waits"]
    finally:
        holder.rollback()
        reader.join()
        holder.close()
    assert result.state == "breach"
    [waiter] = result.details["waiting"]
    assert waiter["application"] == "blocked-reader" and waiter["blocked_by"] == [holder_pid]
    assert [b["application"] for b in result.details["blockers"]] == ["holder"]
    assert sum("lock_waits breach" in t for t in texts(sink)) == 1
    assert c.run("engine")["lock_waits"].state == "ok"
    assert sum("lock_waits resolved" in t for t in texts(sink)) == 1


def test_cache_hit_waits_until_the_statistics_cover_a_week(checker):
    c = checker(cache_min_blocks=1)
    early = c.run("engine")["cache_hit"]
    assert early.state == "ok" and early.value is None and early.summary.startswith("too early to judge")
    with psycopg.connect(c.conn.info.dsn) as conn:  # block reads to judge, counted once the session's stats flush
        conn.execute("SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid")
    time.sleep(1.5)
    judged = c.run("engine", stats_min_days=0)["cache_hit"]
    assert judged.value is not None and "served from shared buffers" in judged.summary
