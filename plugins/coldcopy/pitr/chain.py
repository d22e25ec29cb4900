"""The change archive in the bucket: chains of signed, hash-linked segments.

Layout: ``pitr/<chain>/chain.json`` (signed: database, slot, publication, the LSN the chain starts at) and
``pitr/<chain>/<seq:010d>.jsonl.gz.gpg`` with ``<seq:010d>.manifest.json`` beside it. A chain starts when the
slot is created and ends when the slot is lost (dropped past its WAL budget, or by hand); the next backup after
a new chain starts is the first one it extends. Each segment's manifest carries :func:`segment_hash` of its
predecessor's, and its ``start_lsn`` is its predecessor's ``end_lsn``: a segment missing, swapped or replaced
breaks the chain at a point :meth:`Chain.problems` names.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import msgspec
from botocore.exceptions import ClientError
from psycopg.rows import tuple_row

from coldcopy import manifests
from coldcopy.crypto import get_bound, gpg_open
from coldcopy.object_store import Bucket
from coldcopy.pitr.pgoutput import lsn_int

log = logging.getLogger(__name__)

PREFIX = "pitr"
_LINES = msgspec.json.Decoder()  # JSON lines, several times faster than json.loads (replay is bound by it)


class ChainError(RuntimeError):
    """The archive cannot serve the request: a gap, a refused segment, or a point outside what it holds."""


def segment_hash(manifest: dict) -> str:
    """The hash the next segment links to: over the manifest's signed fields (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def chain_key(chain: str) -> str:
    return f"{PREFIX}/{chain}/chain.json"


def segment_key(chain: str, seq: int) -> str:
    return f"{PREFIX}/{chain}/{seq:010d}.jsonl.gz.gpg"


def manifest_key(object_key: str) -> str:
    return object_key.removesuffix(".jsonl.gz.gpg") + ".manifest.json"


@dataclass
class Chain:
    """One chain as the bucket holds it: its signed head, its valid segments in order, and what is wrong."""

    name: str
    head: dict
    segments: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    pruned: dict | None = None  # retention deleted the segments up to pruned["through_seq"] (signed)
    objects: set[str] = field(default_factory=set)  # the keys the bucket holds under the chain, as listed

    @property
    def start_lsn(self) -> int:
        return lsn_int(self.head["start_lsn"])

    @property
    def tip(self) -> dict | None:
        return self.segments[-1] if self.segments else None

    def consistent_prefix(self) -> list[dict]:
        """The segments from the first up to the first break (a missing seq, a wrong link or LSN)."""
        good: list[dict] = []
        start = self.pruned or {"through_seq": 0, "last_hash": None, "end_lsn": self.head["start_lsn"]}
        for segment in (s for s in self.segments if s["seq"] > start["through_seq"]):
            expected_seq = good[-1]["seq"] + 1 if good else start["through_seq"] + 1
            expected_prev = segment_hash(good[-1]) if good else start["last_hash"]
            expected_lsn = good[-1]["end_lsn"] if good else start["end_lsn"]
            if (segment["seq"], segment["prev_hash"]) != (expected_seq, expected_prev) \
                    or lsn_int(segment["start_lsn"]) < lsn_int(expected_lsn):  # the slot may move on in between
                break
            good.append(segment)
        return good

    def anchor_gap(self, anchor: dict | None, *, newest_for_slot: str | None = None) -> str | None:
        """What this chain lacks against the database's record of what it archived (``anchor``: chain, newest
        segment, its hash; ``coldcopy_ops.change_archive``), ``None`` when nothing (or no record). The archiver
        (before it extends the bucket's newest chain of slot ``newest_for_slot``) and a restore's plan (for each
        chain it could use) ask the same question here. With ``newest_for_slot``, an anchor on another chain is
        a gap too: that newer chain was deleted."""
        if not anchor:
            return None
        if anchor["chain"] != self.name:
            return None if newest_for_slot is None else (
                f"the database records chain {anchor['chain']} at segment {anchor['seq']}, and the bucket's newest "
                f"chain for slot {newest_for_slot} is {self.name} (chain {anchor['chain']} deleted?)")
        good = self.consistent_prefix()
        newest = good[-1]["seq"] if good else (self.pruned or {}).get("through_seq", 0)
        if newest < anchor["seq"]:
            return (f"the chain {self.name} lacks segments {newest + 1}..{anchor['seq']}, which the database "
                    f"records as archived: the bucket's newest whole one is {newest} (deleted from the bucket?)")
        held = next((s for s in good if s["seq"] == anchor["seq"]), None)
        if held and anchor.get("segment_hash") and segment_hash(held) != anchor["segment_hash"]:
            return f"segment {anchor['seq']} of chain {self.name} is not the one the database recorded (replaced?)"
        return None

    def break_after(self) -> dict | None:
        """The last good segment before a break (``None`` when the chain is whole)."""
        prefix = self.consistent_prefix()
        kept = [s for s in self.segments if s["seq"] > (self.pruned or {}).get("through_seq", 0)]
        if len(prefix) == len(kept) and not self.problems:
            return None
        if prefix:
            return prefix[-1]
        if self.pruned:
            return {"seq": self.pruned["through_seq"], "last_commit": self.pruned["last_commit"]}
        return {"seq": 0, "last_commit": self.head["created_at"]}


def recorded_anchor(conn, slot: str | None = None) -> dict | None:
    """What the database recorded as archived (``coldcopy_ops.change_archive``: chain, newest segment, its hash)
    for ``slot`` (``None``: the newest record of any), or ``None`` when it has no record of an unbroken chain."""
    cursor = conn.cursor(row_factory=tuple_row)
    if not cursor.execute("SELECT to_regclass('coldcopy_ops.change_archive') IS NOT NULL").fetchone()[0]:
        return None
    row = cursor.execute(
        "SELECT chain, seq, to_jsonb(a) ->> 'segment_hash' FROM coldcopy_ops.change_archive a "
        "WHERE broken_at IS NULL AND (%s::text IS NULL OR slot = %s) ORDER BY updated_at DESC LIMIT 1",
        (slot, slot)).fetchone()
    return dict(zip(("chain", "seq", "segment_hash"), row, strict=True)) if row else None


def load_chain(bucket: Bucket, name: str, keys: manifests.Keyring) -> Chain:
    """The chain ``name``: every segment manifest that verifies (refused ones listed in ``problems``)."""
    head = manifests.load(bucket.get(chain_key(name)), keys, where=bucket.url(chain_key(name)), type="chain")
    if head["chain"] != name:
        raise ChainError(f"{bucket.url(chain_key(name))}: describes chain {head['chain']!r}")
    chain = Chain(name, head)
    pruned_key = f"{PREFIX}/{name}/pruned.json"
    chain.objects = set(bucket.list_keys(f"{PREFIX}/{name}/"))
    for key in sorted(chain.objects):
        if key == pruned_key:
            try:
                pruned = manifests.load(bucket.get(key), keys, where=bucket.url(key), type="pruned")
                if pruned.get("chain") != name:  # another chain's genuine record, copied here (helper-13)
                    raise manifests.ManifestRejected(f"{bucket.url(key)}: the pruned record of chain "
                                                     f"{pruned.get('chain')!r}")
                chain.pruned = pruned
            except manifests.ManifestRejected as error:
                chain.problems.append(str(error))
            continue
        if not key.endswith(".manifest.json"):
            continue
        try:
            manifest = manifests.load(bucket.get(key), keys, where=bucket.url(key), type="segment")
            if manifest["chain"] != name or manifest_key(segment_key(name, manifest["seq"])) != key:
                raise manifests.ManifestRejected(f"{bucket.url(key)}: stored under the wrong key")
            chain.segments.append(manifest)
        except manifests.ManifestRejected as error:
            chain.problems.append(str(error))
    chain.segments.sort(key=lambda m: m["seq"])
    return chain


def load_trusted(bucket: Bucket, name: str, keys: manifests.Keyring, refused: dict[str, str]) -> Chain | None:
    """The chain ``name``, or ``None`` when its head is refused (unsigned, forged, another chain's head copied
    here): logged and recorded in ``refused`` (key → why). One ``chain.json`` planted by someone who can write the
    bucket but holds no key then blocks no restore: it is skipped and named, as a backup's refused manifest is."""
    try:
        return load_chain(bucket, name, keys)
    except (manifests.ManifestRejected, ChainError, ClientError) as error:  # ClientError: gone since listed
        refused[chain_key(name)] = str(error)
        log.error("change archive: chain %s skipped, its head is refused: %s", name, error)
        return None


def refused_note(refused: dict[str, str]) -> str:
    """`` (refused chain heads, skipped: …)`` naming each key and why, or nothing."""
    return f" (refused chain heads, skipped: {'; '.join(refused.values())})" if refused else ""


def list_chains(bucket: Bucket) -> list[str]:
    """Chain names, oldest first (they are UTC timestamps)."""
    return sorted({m[1] for k in bucket.list_keys(f"{PREFIX}/") if (m := _CHAIN_KEY.fullmatch(k))})


# exactly pitr/<name>/chain.json: a planted pitr/<name>/x/chain.json names no chain
_CHAIN_KEY = re.compile(rf"{PREFIX}/([^/]+)/chain\.json")


def read_segment(bucket: Bucket, manifest: dict, passphrase: str) -> list[dict]:
    """The segment's transactions, once the object is bound to its signed manifest (key, size, sha256),
    decrypted as ours, and its counts equal the manifest's."""
    key = manifest["object_key"]
    if key != segment_key(manifest["chain"], manifest["seq"]):
        raise ChainError(f"{bucket.url(key)}: manifest of segment {manifest['seq']} names another object")
    transactions = _LINES.decode_lines(gzip.decompress(gpg_open(get_bound(bucket, key, manifest), passphrase)))
    counted = count_changes(transactions)
    if (len(transactions), sum(sum(c.values()) for c in counted.values()), counted) != \
            (manifest["transactions"], manifest["changes"], manifest["tables"]):
        raise ChainError(f"{bucket.url(key)}: content does not match its manifest's counts")
    return transactions


def count_changes(transactions: list[dict]) -> dict[str, dict[str, int]]:
    """Per table: how many inserts (I), updates (U), deletes (D) and truncates (T) the transactions hold."""
    counted: Counter = Counter()
    for transaction in transactions:
        for change in transaction["changes"]:
            if names := change.get("tables"):
                counted.update((table, change["op"]) for table in names)
            elif (table := change.get("table")) is not None:
                counted[(table, change["op"])] += 1
    tables: dict[str, dict[str, int]] = {}
    for (table, op), n in counted.items():
        tables.setdefault(table, {})[op] = n
    return tables
