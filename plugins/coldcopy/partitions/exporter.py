"""One month into the bucket: COPY, gzip, gpg, multipart upload, signed manifest."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from coldcopy.object_store import Bucket
from coldcopy.partitions.layout import COPY_OUT_SQL, PARENT, ROW_VERSIONS_SQL, ArchiveError, Partition
from coldcopy.partitions.signed import SignedManifests
from coldcopy.partitions.state import ArchiveState
from coldcopy.partitions.streams import Encrypting, GzipInThread
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Exporter:
    """One month into the bucket: COPY, gzip, gpg, multipart upload, signed manifest."""

    def __init__(self, conn: psycopg.Connection, state: ArchiveState, signed: SignedManifests,
                 passphrase: str) -> None:
        self.conn, self.state, self.signed, self.passphrase = conn, state, signed, passphrase

    def export(self, partition: Partition, bucket: Bucket) -> dict:
        """Stream the partition into the bucket as gzip'd CSV, then write its manifest; returns the manifest."""
        table = sql.Identifier(partition.name)
        if stale := bucket.abort_unfinished_uploads(partition.object_key):  # a killed try's (one archive per month)
            log.warning("%s: aborted %d unfinished upload(s) of %s left by an earlier try", partition.name, len(stale),
                        partition.object_key)
        # One snapshot for the data and its row versions, so the manifest describes exactly what was exported.
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows, row_versions, low, high = cur.execute(sql.SQL(ROW_VERSIONS_SQL).format(table)).fetchone()
            columns = self.state.columns(partition.name)
            with bucket.upload(partition.object_key) as upload:
                with Encrypting(upload, self.passphrase) as sealed:
                    gzipper = GzipInThread(sealed)
                    with gzipper, cur.copy(sql.SQL(COPY_OUT_SQL).format(table)) as copy:
                        for chunk in copy:
                            gzipper.write(chunk)
                upload.complete()
            step("partition.uploaded")  # the archive is whole; no manifest yet
            if cur.rowcount != rows:
                raise ArchiveError(f"{partition.name}: COPY wrote {cur.rowcount} rows, the snapshot holds {rows}")
        manifest = {
            "table": PARENT, "partition": partition.name,
            "range_start": partition.range_start.isoformat(), "range_end": partition.range_end.isoformat(),
            "rows": rows, "row_versions": row_versions, "content_sha256": gzipper.content_sha256,
            "min_occurred_at": low.isoformat() if low else None, "max_occurred_at": high.isoformat() if high else None,
            "object_key": partition.object_key, "byte_size": upload.size, "sha256": upload.sha256,
            "format": "csv, header row, gzip, OpenPGP AES256 (gpg --decrypt | gunzip)", "columns": columns,
            "schema_version": self.state.schema_version(),
            "exported_at": self.conn.execute("SELECT now()").fetchone()[0].isoformat(),
        }
        self.signed.write(partition, bucket, manifest)
        step("partition.manifest_written")
        self.state.set_state(partition, manifest, "exported", fingerprint=(rows, row_versions))
        log.info("exported %s: %d rows, %d bytes, sha256 %s", partition.name, rows, upload.size, upload.sha256)
        return manifest
