"""Markers for what logical decoding does not carry: DDL. Each is a row of ``coldcopy_ops.change_markers``
(``sql/ops/change_markers.sql``), inserted and deleted again in the same transaction as the change it announces,
*before* it: the table is published with the application tables, so the decoded insert arrives at its place in
the commit order and replay (:mod:`coldcopy.pitr.replay`) does the same step at the same point: applies the
migration file, creates or detaches the month of ``email_events``. Erasures carry a marker too (their deletes
are decoded like any other; the marker names the ledger entry, for the record). The table stays empty.

Only the table's owner (the ops role) and superusers can write it. The markers were transactional
``pg_logical_emit_message`` messages before, and that function is executable by PUBLIC, even in a READ ONLY
transaction: any login could forge a ``detach`` (a restore lost a month of rows) or a message that was not JSON
(every later restore failed). Replay now trusts no message: a ``coldcopy`` message, or a marker row of the
wrong shape, is *foreign*, ignored and counted (:func:`parse`). See docs/pitr.md.
"""

from __future__ import annotations

import json

PREFIX = "coldcopy"  # the prefix the messages had: such a message is counted as foreign, never applied
TABLE = "coldcopy_ops.change_markers"
KINDS = ("migration", "partition", "erasure")
FIELDS = {"migration": {"version": int, "file": str, "checksum": str},
          "partition": {"action": str},
          "erasure": {"seq": int, "request_id": str}}


def emit(cursor, kind: str, **fields) -> bool:
    """Write the marker into the current transaction (``cursor``: a psycopg connection or cursor); returns
    ``False`` when the database has no change archive set up (no markers table: nothing decodes them)."""
    if kind not in KINDS:
        raise ValueError(f"unknown marker kind {kind!r}")
    if not cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]:
        return False
    row = cursor.execute("INSERT INTO coldcopy_ops.change_markers (marker) VALUES (%s::jsonb) RETURNING id",
                         (json.dumps({"kind": kind, **fields}, sort_keys=True),)).fetchone()[0]
    cursor.execute("DELETE FROM coldcopy_ops.change_markers WHERE id = %s", (row,))
    return True


class Foreign(ValueError):
    """A change that looks like a marker and is not one ColdCopy wrote (a message), or is malformed."""


def parse(change: dict) -> dict | None:
    """The marker a decoded change carries; ``None`` for a change that is not about markers at all (an
    application row, someone else's message, the marker row's own delete).

    :raises Foreign: a ``coldcopy`` message (anyone can emit one) or a marker row of the wrong shape.
    """
    if change.get("op") == "M":
        if change.get("prefix") == PREFIX:
            raise Foreign(f"a {PREFIX!r} message ({len(change.get('content') or '')} bytes): markers are rows of "
                          f"{TABLE}, and any login can emit a message")
        return None
    if change.get("table") != TABLE or change.get("op") != "I":
        return None
    try:
        marker = json.loads((change.get("new") or {}).get("marker") or "")
    except ValueError:
        raise Foreign(f"a {TABLE} row that is not JSON") from None
    if not isinstance(marker, dict) or marker.get("kind") not in KINDS or any(
            not isinstance(marker.get(name), kind) for name, kind in FIELDS[marker["kind"]].items()):
        raise Foreign(f"a {TABLE} row of the wrong shape ({str(marker)[:80]})")
    return marker
