"""One month into the bucket: COPY, gzip, gpg, multipart upload, signed manifest."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from coldcopy import manifests
from coldcopy.object_store import Bucket
from coldcopy.partitions.common import COPY_OUT_SQL, PARENT, ROW_VERSIONS_SQL, ArchiveError, Partition
from coldcopy.partitions.streams import Encrypting, GzipInThread

log = logging.getLogger(__name__)


class Exporter:
    """One month into the bucket: COPY, gzip, gpg, multipart upload, signed manifest.
    Mixed into :class:`coldcopy.partitions.PartitionManager`."""

    conn: psycopg.Connection

    def archive(self, partition: Partition, bucket: Bucket, *, detach: bool = True) -> dict:
        """Export, verify, then (unless ``detach`` is false) detach one month. Returns its manifest.

        The DAG exports months in parallel with ``detach=False`` and detaches them in one step afterwards
        (:meth:`detach_verified`): a ``DETACH … CONCURRENTLY`` waits for every older snapshot, and the export
        of another month is one.
        """
        try:
            if partition.detach_pending or (self._state(partition) == "restored" and not self._erased_on_restore(
                    partition)):
                # A restored month's archive exists already: it must still describe the partition (rows
                # written into the month since the restore fail this, and the month stays attached).
                manifest = self.verify(partition, bucket)
            else:
                manifest = self.export(partition, bucket)
                self.verify(partition, bucket)
            if detach:
                self.detach(partition)
            return manifest
        except Exception as error:
            raise ArchiveError(f"email_events {partition.month} ({partition.name}) not archived, partition left "
                               f"attached with all its rows: {type(error).__name__}: {error}") from error

    def _erased_on_restore(self, partition: Partition) -> bool:
        """A restored month that lost erased subjects' rows no longer matches its archive: export it afresh
        (which replaces the archive with one without them)."""
        return bool(self.conn.execute("SELECT coalesce(erased_rows, 0) > 0 FROM coldcopy_ops.partition_archive "
                                      "WHERE partition_name = %s", (partition.name,)).fetchone()[0])

    def export(self, partition: Partition, bucket: Bucket) -> dict:
        """Stream the partition into the bucket as gzip'd CSV, then write its manifest; returns the manifest."""
        table = sql.Identifier(partition.name)
        if stale := bucket.abort_unfinished_uploads(partition.object_key):  # a killed try's (one archive per month)
            log.warning("%s: aborted %d unfinished upload(s) of %s left by an earlier try", partition.name, stale,
                        partition.object_key)
        # One snapshot for the data and its row versions, so the manifest describes exactly what was exported.
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows, row_versions, low, high = cur.execute(sql.SQL(ROW_VERSIONS_SQL).format(table)).fetchone()
            columns = self._columns(partition.name)
            with bucket.upload(partition.object_key) as upload:
                with Encrypting(upload, self.passphrase) as sealed:
                    gzipper = GzipInThread(sealed)
                    with gzipper, cur.copy(sql.SQL(COPY_OUT_SQL).format(table)) as copy:
                        for chunk in copy:
                            gzipper.write(chunk)
                upload.complete()
            if cur.rowcount != rows:
                raise ArchiveError(f"{partition.name}: COPY wrote {cur.rowcount} rows, the snapshot holds {rows}")
        manifest = {
            "table": PARENT, "partition": partition.name,
            "range_start": partition.range_start.isoformat(), "range_end": partition.range_end.isoformat(),
            "rows": rows, "row_versions": row_versions, "content_sha256": gzipper.content_sha256,
            "min_occurred_at": low.isoformat() if low else None, "max_occurred_at": high.isoformat() if high else None,
            "object_key": partition.object_key, "byte_size": upload.size, "sha256": upload.sha256,
            "format": "csv, header row, gzip, OpenPGP AES256 (gpg --decrypt | gunzip)", "columns": columns,
            "schema_version": self._schema_version(),
            "exported_at": self.conn.execute("SELECT now()").fetchone()[0].isoformat(),
        }
        bucket.put(partition.manifest_key, manifests.dump(manifest, self.keyring, type="archive"), "application/json")
        self._set_state(partition, manifest, "exported", fingerprint=(rows, row_versions))
        log.info("exported %s: %d rows, %d bytes, sha256 %s", partition.name, rows, upload.size, upload.sha256)
        return manifest

    def read_manifest(self, partition: Partition, bucket: Bucket) -> dict:
        """The month's manifest once its signature verifies and it describes this month's object
        (:class:`ArchiveError` otherwise)."""
        where = f"{bucket.uri}/{partition.manifest_key}"
        raw = bucket.get(partition.manifest_key)
        try:
            manifest = manifests.load(raw, self.keyring, where=where, type="archive")
        except manifests.ManifestRejected as error:
            raise ArchiveError(str(error)) from error
        if manifest.get("partition") != partition.name or not partition.owns(str(manifest.get("object_key"))):
            raise ArchiveError(f"{where}: describes {manifest.get('object_key')!r}, not an archive of "
                               f"{partition.name} (another month's manifest copied here?); refusing to use it")
        return manifest
