"""Erasure reaches the archives: months of ``email_events`` archived in the bucket are rewritten without the
rows of people erased since (the GDPR erasure ledger), so no archive holds an erased person more than a day
after the request (the promise is 30 days; the job runs daily).

One object at a time, at most once a day each, whatever the number of erasures (batched): the object is
streamed back once (bound to its signed manifest before anything is committed: the new object is uploaded
only if the old one verified), records of erased leads or messages are left out *byte for byte* (every other
record is copied exactly as COPY wrote it, so NULL and empty strings keep their meaning), the result is
gzip'd, encrypted and uploaded under a new key with a new signed manifest, the month's record follows, and
only then is the old object deleted. A run cut off anywhere leaves either the old archive or the new one
described by the manifest; the next run reconciles the record with the manifest and removes the leftover.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from coldcopy.object_store import Bucket
from coldcopy.partitions import (
    ArchiveError,
    Encrypting,
    GzipInThread,
    Partition,
    PartitionManager,
    object_problems,
    read_back,
)

log = logging.getLogger(__name__)


def id_hash(value: str) -> str:
    """``coldcopy_ops.id_hash``: the one-way key of an erased row id, as the ledger keeps it."""
    return hashlib.sha256(value.encode()).hexdigest()


class _RecordFilter:
    """Splits a CSV stream (as COPY writes it: header, then records that may span lines inside quotes) into
    records and passes on those whose ``lead_id``/``message_id`` are not erased, unchanged."""

    def __init__(self, sink, erased: set[str]) -> None:
        self.sink, self.erased = sink, erased
        self.pending, self.record = b"", b""
        self.columns: list[int] | None = None
        self.kept = self.removed = 0

    def write(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self._line(line + b"\n")

    def _line(self, line: bytes) -> None:
        self.record += line
        if self.record.count(b'"') % 2:  # inside a quoted field: the record goes on
            return
        record, self.record = self.record, b""
        fields = next(csv.reader([record.decode()]))
        if self.columns is None:
            self.columns = [fields.index(c) for c in ("lead_id", "message_id") if c in fields]
            self.sink.write(record)
            return
        if any(fields[i] and id_hash(fields[i]) in self.erased for i in self.columns):
            self.removed += 1
            return
        self.kept += 1
        self.sink.write(record)

    def close(self) -> None:
        if self.pending:
            self._line(self.pending)
            self.pending = b""
        if self.record:
            raise ArchiveError("the archive's CSV ends inside a quoted field")


@dataclass(frozen=True)
class Scrubbed:
    partition: str
    removed: int
    rows: int
    object_key: str


class ArchiveScrubber:
    """Rewrites archived months holding erased subjects (:mod:`coldcopy.partitions.scrubber`)."""

    def __init__(self, manager: PartitionManager) -> None:
        self.manager, self.conn = manager, manager.conn

    def ledger(self) -> tuple[int, set[str]]:
        """The newest ledger sequence number and every erased id's one-way key."""
        if not self.conn.execute("SELECT to_regclass('coldcopy_ops.erasure_ledger') IS NOT NULL").fetchone()[0]:
            return 0, set()
        seq, hashes = self.conn.execute(
            "SELECT coalesce(max(seq), 0), coalesce(array_agg(DISTINCT h) FILTER (WHERE h IS NOT NULL), '{}') "
            "FROM coldcopy_ops.erasure_ledger LEFT JOIN LATERAL unnest(id_hashes) h ON true").fetchone()
        return seq, set(hashes)

    def due(self, seq: int) -> list[Partition]:
        """Archived months not yet scrubbed through ``seq`` and not rewritten in the last day."""
        rows = self.conn.execute(
            "SELECT partition_name, range_start, range_end FROM coldcopy_ops.partition_archive "
            "WHERE state IN ('detached', 'dropped') AND scrubbed_seq < %s "
            "AND (scrubbed_at IS NULL OR scrubbed_at < now() - interval '1 day') ORDER BY range_start", (seq,))
        return [Partition(*row) for row in rows]

    def run(self, bucket: Bucket) -> list[Scrubbed]:
        seq, erased = self.ledger()
        return [self.scrub(partition, bucket, seq, erased) for partition in self.due(seq)]

    def scrub(self, partition: Partition, bucket: Bucket, seq: int, erased: set[str]) -> Scrubbed:
        manifest = self.manager.signed.read(partition, bucket)
        old_key = manifest["object_key"]
        new_key = f"{partition.object_key.removesuffix('.csv.gz.gpg')}.s{seq}.csv.gz.gpg"
        with bucket.upload(new_key) as upload:
            with Encrypting(upload, self.manager.passphrase) as sealed:
                gzipper = GzipInThread(sealed)
                with gzipper:
                    records = _RecordFilter(gzipper, erased)
                    read = read_back(bucket, old_key, self.manager.passphrase, into=records.write)
                    records.close()
            problems = object_problems(manifest, read)
            if problems:
                raise ArchiveError(f"{partition.name}: archive does not verify, not rewritten: {'; '.join(problems)}")
            if records.removed:
                upload.complete()
            else:
                upload.abort()
        if records.removed:
            manifest = {**manifest, "object_key": new_key, "byte_size": upload.size, "sha256": upload.sha256,
                        "content_sha256": gzipper.content_sha256, "rows": records.kept,
                        "erased_rows": manifest.get("erased_rows", 0) + records.removed,
                        "scrubbed_through_seq": seq, "rewritten_at": datetime.now(UTC).isoformat()}
            manifest.pop("type", None)
            self.manager.signed.write(partition, bucket, manifest)
        self.conn.execute(
            "UPDATE coldcopy_ops.partition_archive SET object_key = %s, sha256 = %s, byte_size = %s, row_count = %s, "
            "scrubbed_seq = %s, scrubbed_at = now(), updated_at = now() WHERE partition_name = %s",
            (manifest["object_key"], manifest["sha256"], manifest["byte_size"], manifest["rows"], seq,
             partition.name))
        if records.removed and old_key != new_key:
            bucket.delete(old_key)
        log.info("%s: %d erased subjects' rows removed from its archive (%d rows kept)", partition.name,
                 records.removed, records.kept)
        return Scrubbed(partition.name, records.removed, manifest["rows"], manifest["object_key"])
