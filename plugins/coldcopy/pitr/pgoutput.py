"""PostgreSQL's built-in ``pgoutput`` logical decoding output, protocol version 1, read through the SQL
interface (``pg_logical_slot_peek_binary_changes``) and turned into whole committed transactions.

Only what the change archive needs: Begin, Relation, Insert, Update, Delete, Truncate, Message (the markers of
:mod:`coldcopy.markers`) and Commit; Origin and Type messages are skipped. Column values arrive in their
text form (what ``COPY`` and the types' input functions read back); an unchanged TOASTed value (``u``) is left
out of the row, so replay keeps the stored one. See docs/pitr.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class DecodeError(RuntimeError):
    """The slot sent something this decoder does not understand (a protocol it was not asked for)."""


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def lsn_int(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Relation:
    oid: int
    schema: str
    name: str
    columns: list[str]
    key: list[str]  # the replica identity's columns (the primary key)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Transaction:
    """One committed transaction: its changes in order, each a dict (see :meth:`Decoder.feed`)."""

    xid: int
    commit_lsn: int = 0
    end_lsn: int = 0
    commit_time: datetime | None = None
    changes: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"xid": self.xid, "commit_lsn": lsn_text(self.commit_lsn), "end_lsn": lsn_text(self.end_lsn),
                "commit_time": self.commit_time.isoformat(), "changes": self.changes}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("!" + fmt, self.data, self.at)
        self.at += struct.calcsize("!" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        value = self.data[self.at:end].decode()
        self.at = end + 1
        return value

    def raw(self, length: int) -> bytes:
        value = self.data[self.at:self.at + length]
        self.at += length
        return value

    def tuple(self, columns: list[str]) -> dict:
        count = self.take("h")
        row = {}
        for index in range(count):
            kind = self.raw(1)
            if kind == b"n":
                row[columns[index]] = None
            elif kind == b"t":
                row[columns[index]] = self.raw(self.take("i")).decode()
            elif kind == b"u":
                continue  # unchanged TOAST value: replay keeps the stored one
            else:
                raise DecodeError(f"tuple column kind {kind!r}")
        return row


def _timestamp(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


class Decoder:
    """Feed it the slot's messages in order; it returns each transaction once its Commit arrives.

    Changes are dicts: ``{"op": "I", "table": "public.leads", "new": {...}}``, ``{"op": "U", "table", "new",
    "old"}`` (``old``: the key before, when it changed), ``{"op": "D", "table", "old"}`` (the key),
    ``{"op": "T", "tables": [...], "cascade", "restart_identity"}``, ``{"op": "M", "prefix", "content"}``.
    """

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self.current: Transaction | None = None

    def feed(self, data: bytes) -> Transaction | None:
        reader = _Reader(bytes(data))
        kind = reader.raw(1)
        if kind == b"B":
            _final_lsn, micros, xid = reader.take("qqI")
            self.current = Transaction(xid=xid, commit_time=_timestamp(micros))
        elif kind == b"C":
            _flags, commit_lsn, end_lsn, micros = reader.take("bqqq")
            done, self.current = self.current, None
            if done is None:
                raise DecodeError("Commit without Begin")
            done.commit_lsn, done.end_lsn, done.commit_time = commit_lsn, end_lsn, _timestamp(micros)
            return done
        elif kind == b"R":
            oid = reader.take("I")
            schema, name = reader.string(), reader.string()
            reader.take("b")  # replica identity setting
            columns, key = [], []
            for _ in range(reader.take("h")):
                flags = reader.take("b")
                column = reader.string()
                reader.take("ii")  # type oid, typmod: replay reads the target's own catalog
                columns.append(column)
                if flags & 1:
                    key.append(column)
            self.relations[oid] = Relation(oid, schema, name, columns, key)
        elif kind == b"I":
            relation = self.relations[reader.take("I")]
            reader.raw(1)  # N
            self._add({"op": "I", "table": relation.qualified, "new": reader.tuple(relation.columns)})
        elif kind == b"U":
            relation = self.relations[reader.take("I")]
            change: dict = {"op": "U", "table": relation.qualified}
            marker = reader.raw(1)
            if marker in (b"K", b"O"):
                old = reader.tuple(relation.columns)
                change["old"] = {k: old[k] for k in relation.key if k in old}
                marker = reader.raw(1)
            if marker != b"N":
                raise DecodeError(f"update without a new tuple ({marker!r})")
            change["new"] = reader.tuple(relation.columns)
            self._add(change)
        elif kind == b"D":
            relation = self.relations[reader.take("I")]
            reader.raw(1)  # K or O
            old = reader.tuple(relation.columns)
            self._add({"op": "D", "table": relation.qualified, "old": {k: old[k] for k in relation.key if k in old}})
        elif kind == b"T":
            count, options = reader.take("ib")
            oids = [reader.take("I") for _ in range(count)]
            self._add({"op": "T", "tables": [self.relations[o].qualified for o in oids],
                       "cascade": bool(options & 1), "restart_identity": bool(options & 2)})
        elif kind == b"M":
            flags, _lsn = reader.take("bq")
            prefix = reader.string()
            content = reader.raw(reader.take("i")).decode()
            if flags & 1:  # transactional: in its transaction's place
                self._add({"op": "M", "prefix": prefix, "content": content})
        elif kind in (b"O", b"Y"):
            pass
        else:
            raise DecodeError(f"pgoutput message {kind!r}")
        return None

    def _add(self, change: dict) -> None:
        if self.current is None:
            raise DecodeError(f"{change['op']} outside a transaction")
        self.current.changes.append(change)
