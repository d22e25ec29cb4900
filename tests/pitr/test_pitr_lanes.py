"""Replay on several lanes (issue 40, 3): a TRUNCATE or a partition's DETACH marker followed by writes to the same
table finishes instead of hanging (lane 0 took the table's lock and the table's own lane waited for it, while the
replay waited for that lane), and any other wait between lanes is a named error within seconds, never a hang."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from coldcopy import markers
from coldcopy.pitr.bulk import LanesWaited
from coldcopy.pitr.replay import Replayer

DEADLINE_S = 30  # a hang fails the test after this (statement_timeout would wait 15 min)


def within(dsn: str, work, seconds: float = DEADLINE_S):
    """``work()``'s result, or the test fails after ``seconds``: the database's other sessions are terminated so
    a replay stuck on a lock ends (and its threads with it)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
        thread.join(30)
        pytest.fail(f"the replay still ran after {seconds} s: its lanes waited on each other")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def tables(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("lane_a", "lane_b"):
            conn.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, v text)")
            conn.execute(f"INSERT INTO public.{name} SELECT g, 'base' FROM generate_series(1, 10) g")


def insert(table: str, key: int, value: str = "new") -> dict:
    return {"op": "I", "table": table, "new": {"id": str(key), "v": value}}


def transaction(xid: int, *changes: dict) -> dict:
    return {"xid": xid, "commit_time": "2026-01-01T00:00:00+00:00", "changes": list(changes)}


def replayer(dsn: str) -> Replayer:
    return Replayer(psycopg.connect(dsn), connect=lambda: psycopg.connect(dsn), lanes=2)


def a_month_and_a_row_of_another(dsn: str) -> tuple[str, dict]:
    """A month of email_events that has rows, and a row of another month (as text, as decoded)."""
    with psycopg.connect(dsn) as conn:
        month = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE "
                             "i.inhparent = 'public.email_events'::regclass ORDER BY c.relname LIMIT 1").fetchone()[0]
        row = conn.execute("SELECT to_jsonb(e) FROM public.email_events e WHERE tableoid <> %s::regclass LIMIT 1",
                           (f"public.{month}",)).fetchone()[0]
    return month, {k: None if v is None else (json.dumps(v) if isinstance(v, dict | list) else str(v))
                   for k, v in row.items()}


@pytest.mark.parametrize("boundary", ["truncate", "detach"])
def test_writes_after_a_truncate_or_a_detach_on_two_lanes_finish(pitr_db, boundary):
    tables(pitr_db)
    replay = replayer(pitr_db)
    if boundary == "truncate":
        table = "public.lane_b"
        step = {"op": "T", "tables": [table], "cascade": False, "restart_identity": False}
        after = insert(table, 100)
        warm = insert(table, 11)
    else:
        table = "public.email_events"
        month, row = a_month_and_a_row_of_another(pitr_db)
        step = {"op": "I", "table": markers.TABLE, "new": {"id": "1", "marker": json.dumps(
            {"kind": "partition", "action": "detach", "table": month})}}
        after = {"op": "U", "table": table, "new": row}
        warm = after

    def run() -> None:
        # the first table seen goes to lane 0, the next to lane 1: the one truncated or detached from is on lane 1
        replay.apply(transaction(1000, insert("public.lane_a", 11), warm))
        replay.apply(transaction(1001, step))
        replay.apply(transaction(1002, after, insert("public.lane_a", 12)))
        assert replay._lanes.lane_of(table) == 1
        replay.finish()

    started = time.monotonic()
    within(pitr_db, run)
    with psycopg.connect(pitr_db) as conn:
        if boundary == "truncate":
            assert conn.execute("SELECT array_agg(id ORDER BY id) FROM public.lane_b").fetchone()[0] == [100]
        else:
            assert not conn.execute("SELECT 1 FROM pg_inherits WHERE inhrelid = %s::regclass",
                                    (f"public.{month}",)).fetchone()
        assert conn.execute("SELECT count(*) FROM public.lane_a").fetchone()[0] == 12
    assert time.monotonic() - started < DEADLINE_S
    replay.conn.close()


def test_lanes_waiting_on_each_other_fail_fast_with_a_named_error(pitr_db):
    """The guard for the class: whatever makes one lane wait for another's lock (here lane 0 holds lane_b's lock
    in its open transaction) ends after the lanes' short lock_timeout with an error that says so."""
    tables(pitr_db)
    replay = replayer(pitr_db)
    replay.apply(transaction(1000, insert("public.lane_a", 11), insert("public.lane_b", 11)))
    replay.commit()
    assert replay._lanes.lane_of("public.lane_b") == 1
    replay.conn.execute("LOCK TABLE public.lane_b IN ACCESS EXCLUSIVE MODE")  # lane 0, not committed
    replay.apply(transaction(1001, insert("public.lane_b", 12)))
    started = time.monotonic()
    with pytest.raises(LanesWaited, match="lanes waited on each other"):
        within(pitr_db, replay.commit)
    assert time.monotonic() - started < 15  # the lanes' lock_timeout, not statement_timeout's 15 min
    replay.conn.rollback()
    replay.close()
    replay.conn.close()
