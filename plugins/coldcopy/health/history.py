"""History and alerts: each result recorded, an alert only on a change worth a message."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timedelta

import psycopg

from coldcopy import alerts
from coldcopy.health.results import RANK, Result, Thresholds

log = logging.getLogger(__name__)


# -- history and alerts ---------------------------------------------------------------------------------

def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def alert_for(result: Result, previous: dict | None, now: datetime, t: Thresholds) -> str | None:
    """Why to alert about ``result`` given what was last alerted (``health_alert_state`` row), or None.

    ``entered`` a warning or breach; ``worse`` (higher state, or the value moved ``worse_margin`` further than
    last alerted); ``reminder`` of a breach every ``reminder_hours``; ``resolved`` once back to ok.
    """
    if result.state == "unknown":
        return None  # the check did not measure: nothing to announce or clear (a failed check fails its task)
    before = previous["alerted_state"] if previous and previous["alerted_state"] else "ok"
    if result.state == "ok":
        return "resolved" if before != "ok" else None
    if RANK[result.state] > RANK[before]:
        return "entered" if before == "ok" else "worse"
    last_value = previous["alerted_value"]
    # From an alerted value of 0 (a warning that was not about the value: an inactive slot retaining 0.00 GB) any
    # growth is "infinitely" worse: only a higher state says worse then.
    if result.worse_by_value and result.value is not None and last_value:
        moved = result.value - last_value if result.higher_is_worse else last_value - result.value
        if moved > abs(last_value) * t.worse_margin and moved > 0:
            return "worse"
    if result.state == "breach" and now - previous["alerted_at"] >= timedelta(hours=t.reminder_hours):
        return "reminder"
    return None


def _message(result: Result, reason: str, run_id: str | None) -> alerts.Alert:
    kind = "resolved" if reason == "resolved" else "threshold_breached"
    lead = {"entered": result.state, "worse": f"{result.state}, worse", "reminder": f"still {result.state}",
            "resolved": "resolved"}[reason]
    return alerts.Alert(kind=kind, summary=f"{result.check} {lead}: {result.summary}", dag_id="db_health",
                        run_id=run_id, details={"check": result.check, "state": result.state, "value": result.value,
                                 "unit": result.unit, "reason": reason})


def record(conn: psycopg.Connection, results: list[Result], t: Thresholds, run_id: str | None = None) -> list[str]:
    """Write each result to the history and send the alerts it calls for; returns the alerts' texts."""
    sent = []
    for result in results:
        with conn.transaction():
            now = conn.execute("SELECT now() AS now").fetchone()["now"]
            conn.execute(
                "WITH s AS (INSERT INTO coldcopy_ops.health_snapshot "
                "(check_name, state, value, unit, summary, details, run_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING check_name, id) "
                "INSERT INTO coldcopy_ops.health_latest SELECT check_name, id FROM s "
                "ON CONFLICT (check_name) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id",
                (result.check, result.state, result.value, result.unit, result.summary,
                 psycopg.types.json.Jsonb(_jsonable(result.details)), run_id))
            if result.state == "unknown":
                continue
            previous = conn.execute("SELECT * FROM coldcopy_ops.health_alert_state WHERE check_name = %s FOR UPDATE",
                                    (result.check,)).fetchone()
            reason = alert_for(result, previous, now, t)
            if reason:
                alert = _message(result, reason, run_id)
                alerts.send(alert)  # before the state is saved: a crash here repeats the alert, never loses it
                sent.append(alert.text)
            changed = previous is None or previous["state"] != result.state
            conn.execute("""
                INSERT INTO coldcopy_ops.health_alert_state AS s (check_name, state, since, alerted_at, alerted_state,
                                                                  alerted_value)
                VALUES (%(check)s, %(state)s, %(now)s, %(alerted_at)s, %(alerted_state)s, %(value)s)
                ON CONFLICT (check_name) DO UPDATE SET
                  state = EXCLUDED.state, since = CASE WHEN %(changed)s THEN EXCLUDED.since ELSE s.since END,
                  alerted_at = coalesce(EXCLUDED.alerted_at, s.alerted_at),
                  alerted_state = CASE WHEN %(alerted)s THEN EXCLUDED.alerted_state ELSE s.alerted_state END,
                  alerted_value = CASE WHEN %(alerted)s THEN EXCLUDED.alerted_value ELSE s.alerted_value END""",
                {"check": result.check, "state": result.state, "now": now, "changed": changed,
                 "alerted": bool(reason), "alerted_at": now if reason else None,
                 "alerted_state": result.state if reason else None, "value": result.value})
    return sent


def prune(conn: psycopg.Connection, days: int, batch: int = 5000) -> int:
    """Delete snapshots older than ``days`` in batches (each its own transaction); returns how many."""
    total = 0
    while deleted := conn.execute(
            "DELETE FROM coldcopy_ops.health_snapshot WHERE id IN (SELECT id FROM coldcopy_ops.health_snapshot "
            "WHERE taken_at < now() - make_interval(days => %s) LIMIT %s)", (days, batch)).rowcount:
        total += deleted
    return total


def as_dict(result: Result) -> dict:
    return _jsonable(asdict(result))
