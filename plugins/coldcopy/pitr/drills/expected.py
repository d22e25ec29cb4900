"""What a restore as of a second must hold, folded from the archive itself, not from the replay.

The replay (:mod:`coldcopy.pitr.replay`) is clever: it skips what the base backup's snapshot saw, collapses runs
into their net effect and upserts in bulk. The drill's expectation is deliberately simple, so a bug in that
cleverness cannot also hide in it:

* **Row counts.** A table's rows as of ``until`` are its rows in the base backup plus the inserts minus the
  deletes of every archived transaction the backup's snapshot did not see (a truncate starts it again from 0).
  A detach or drop of a month moves rows out of ``email_events`` without a change per row: its count is then
  not checked (:attr:`Expectation.unchecked`).
* **Sampled keys.** For about one key in :data:`SAMPLE_ONE_IN` (chosen by a CRC of the table and key, the same
  in every process), the final image the archive holds: the last change to that key before ``until`` wins,
  whether the base backup already had it or not, and an update that did not carry an unchanged TOASTed value
  keeps the one before it (a column never carried in the window is not compared). A deleted key must be absent.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from coldcopy import markers
from coldcopy.pitr.snapshot import Snapshot

SAMPLE_ONE_IN = 8


def sampled(table: str, key: tuple, one_in: int = SAMPLE_ONE_IN) -> bool:
    return zlib.crc32("\x1f".join([table, *map(str, key)]).encode()) % one_in == 0


@dataclass
class Expectation:
    """Fed every archived transaction committed before ``until``, in commit order (:meth:`add`)."""

    snapshot: Snapshot
    primary_key: Callable[[str], list[str]]  # table → its primary key's columns (the restored catalog's)
    one_in: int = SAMPLE_ONE_IN
    deltas: dict[str, list] = field(default_factory=dict)  # table → [from zero (truncated), inserts − deletes]
    images: dict[str, dict[tuple, dict | None]] = field(default_factory=dict)  # table → key → image | None
    unchecked: dict[str, str] = field(default_factory=dict)  # table → why its count is not checked
    transactions: int = 0
    changes: int = 0

    def add(self, transaction: dict) -> None:
        unseen = not self.snapshot.visible(transaction["xid"])
        self.transactions += 1
        for change in transaction["changes"]:
            op = change["op"]
            if op == "M" or change.get("table") == markers.TABLE:
                self._marker(change)
                continue
            self.changes += 1
            if op == "T":
                for table in change["tables"]:
                    if table == markers.TABLE:
                        continue
                    if unseen:
                        self.deltas[table] = [True, 0]
                    rows = self.images.setdefault(table, {})
                    for key in rows:
                        rows[key] = None
                continue
            table = change["table"]
            if unseen and op in ("I", "D"):
                self.deltas.setdefault(table, [False, 0])[1] += 1 if op == "I" else -1
            pk = self.primary_key(table)
            if not pk:
                continue  # not in the restored database, or keyless: the replay refuses it anyway
            rows = self.images.setdefault(table, {})
            old = change.get("old")
            if old and (op == "D" or any(old.get(k) != change["new"].get(k) for k in pk)):
                key = tuple(old.get(k) for k in pk)
                if sampled(table, key, self.one_in):
                    rows[key] = None
            if op in ("I", "U"):
                new = change["new"]
                key = tuple(new.get(k) for k in pk)
                if sampled(table, key, self.one_in):
                    before = rows.get(key)
                    rows[key] = {**before, **new} if op == "U" and before is not None else dict(new)

    def _marker(self, change: dict) -> None:
        try:
            marker = markers.parse(change)
        except markers.Foreign:
            return  # never applied by the replay either
        if marker and marker["kind"] == "partition" and marker["action"] in ("detach", "drop"):
            self.unchecked["public.email_events"] = f"month {marker.get('table')} {marker['action']}ed in the window"

    def expected_count(self, table: str, base: int) -> int | None:
        """Rows ``table`` must have after the replay, given ``base`` rows after the base restore."""
        if table in self.unchecked or table not in self.deltas:
            return None if table in self.unchecked else base
        from_zero, delta = self.deltas[table]
        return (0 if from_zero else base) + delta

    @property
    def sampled_keys(self) -> int:
        return sum(len(rows) for rows in self.images.values())
