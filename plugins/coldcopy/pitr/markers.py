"""Markers for what logical decoding does not carry: DDL. Each is a transactional
``pg_logical_emit_message`` in the same transaction as the change it announces, emitted *before* it, so replay
(:mod:`coldcopy.pitr.replay`) does the same step at the same point of the commit order: applies the migration
file, creates or detaches the month of ``email_events``. Erasures carry a marker too (their deletes are decoded
like any other; the marker names the ledger entry, for the record). Cheap when nothing decodes them: one WAL
record. See docs/pitr.md.
"""

from __future__ import annotations

import json

PREFIX = "coldcopy"
KINDS = ("migration", "partition", "erasure")


def emit(cursor, kind: str, **fields) -> None:
    """Write the marker into the current transaction (``cursor``: a psycopg connection or cursor)."""
    if kind not in KINDS:
        raise ValueError(f"unknown marker kind {kind!r}")
    cursor.execute("SELECT pg_logical_emit_message(true, %s, %s)",
                   (PREFIX, json.dumps({"kind": kind, **fields}, sort_keys=True)))


def parse(change: dict) -> dict | None:
    """The marker a decoded message carries, or ``None`` for anyone else's message."""
    if change.get("op") != "M" or change.get("prefix") != PREFIX:
        return None
    marker = json.loads(change["content"])
    return marker if marker.get("kind") in KINDS else None
