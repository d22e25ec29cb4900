"""The email_events partition manager: premake, archive to Spaces, detach, drop after a grace period, restore.

Each step is one named piece (like GitLab's partition manager and detached-partition dropper) that the
``partition_maintenance`` and ``partition_restore`` DAGs call:

* :meth:`PartitionManager.premake` — partitions for the current month and N ahead, via
  ``app.create_email_events_partition`` (create, then ATTACH: SHARE UPDATE EXCLUSIVE on the parent), under
  ``lock_timeout`` with retries;
* :meth:`PartitionManager.archive` — for one month: export (``COPY … TO STDOUT`` → gzip → multipart upload,
  streamed), manifest, verify by reading the object back, then ``DETACH PARTITION … CONCURRENTLY`` (or
  ``FINALIZE`` an interrupted one). A failure stops that month where it is, with the partition attached;
  a retry starts the month over from the export;
* :meth:`PartitionManager.drop_detached` — drops a detached month only after the grace period, only if it
  is still detached and its archive still verifies;
* :meth:`PartitionManager.restore` — brings a month back from its archive as an attached partition,
  verified against the manifest.

Archives are ``archive/email_events/YYYY/MM/email_events_YYYY_MM.csv.gz`` (CSV with a header row, gzip: any
stock tool reads it back) with ``manifest.json`` beside it.

The export reads the partition once for its data (``COPY``, gzip'd in a second thread while the next rows
arrive) and once, in the same snapshot, for its *row versions*: the count and an order-independent sum over
``(id, xmin)``. Every insert, update or delete gives a row a new version, so the same sum later proves the
partition unchanged since the export without turning every row into text again (freezing, ``VACUUM FULL`` and
``CLUSTER`` keep ``xmin``). The manifest holds the sha256 of the CSV as exported; verification streams the
object back once, through gunzip and that hash.
A restore streams the object into ``COPY`` inside one transaction and commits only once the object's size,
sha256 and CSV hash equal the signed manifest's: unverified bytes are never committed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy import manifests, ops_schema, sessions
from coldcopy.crypto import gpg_decrypt_popen, gpg_encrypt_argv, passphrase_pipe
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout
from coldcopy.object_store import MultipartUpload, object_exists, object_sha256, read_object
from coldcopy.pg_tools import minimal_env
from coldcopy.refresh import TRACKING_TRIGGER, create_tracking_trigger, record_change

log = logging.getLogger(__name__)

PARENT = "public.email_events"
ARCHIVE_PREFIX = "archive/email_events"
DETACH_LOCK = f"coldcopy: detach from {PARENT}"  # advisory lock key (hashed) serializing detaches
# Order-independent fingerprint of a partition's row versions (see the module docstring), with the range of
# occurred_at the manifest records: one scan of three columns.
ROW_VERSIONS_SQL = ("SELECT count(*), coalesce(sum(hashint8extended(id, xmin::text::bigint)), 0)::text, "
                    "min(occurred_at), max(occurred_at) FROM {}")
COPY_OUT_SQL = "COPY (SELECT * FROM {} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"


class ArchiveError(RuntimeError):
    """A month could not be archived, verified, dropped or restored; the message says which and why."""


@dataclass(frozen=True)
class Partition:
    name: str
    range_start: datetime
    range_end: datetime
    detach_pending: bool = False

    @property
    def month(self) -> str:
        return self.range_start.strftime("%Y-%m")

    @property
    def object_key(self) -> str:
        return f"{ARCHIVE_PREFIX}/{self.range_start:%Y/%m}/{self.name}.csv.gz.gpg"

    def owns(self, key: str) -> bool:
        """Whether ``key`` is one of this month's archive objects (the first export, or a rewrite of it)."""
        return (key.startswith(f"{ARCHIVE_PREFIX}/{self.range_start:%Y/%m}/{self.name}.")
                and key.endswith(".csv.gz.gpg") and "/" not in key.rsplit("/", 1)[1])

    @property
    def manifest_key(self) -> str:
        return f"{ARCHIVE_PREFIX}/{self.range_start:%Y/%m}/manifest.json"


class PartitionManager:
    """Partition rotation on one autocommit connection (``ColdCopyPostgresHook().session()``).

    :param keyring: signs and checks the archives' manifests (:func:`coldcopy.manifests.keyring`).
    :param lock_retry: lock_timeout and retry schedule for every step that locks the parent.
    """

    def __init__(self, conn: psycopg.Connection, *, keyring: manifests.Keyring, passphrase: str,
                 lock_retry: LockRetryPolicy = LockRetryPolicy()) -> None:
        self.conn = conn
        self.keyring, self.passphrase = keyring, passphrase
        self.lock_retry = lock_retry
        self.conn.execute("SET TimeZone = 'UTC'")
        ops_schema.ensure(conn, "partition_rotation")

    # -- reading -------------------------------------------------------------------------------------

    def partitions(self) -> list[Partition]:
        rows = self.conn.execute(
            "SELECT name, range_start, range_end, detach_pending FROM app.email_events_partitions "
            "ORDER BY range_start").fetchall()
        return [Partition(*row) for row in rows]

    def month_start(self, offset: int = 0, now: datetime | None = None) -> datetime:
        return self.conn.execute("SELECT app.month_start_utc(coalesce(%s, now()), %s)", (now, offset)).fetchone()[0]

    def future_months(self, now: datetime | None = None) -> int:
        """Partitions wholly after the current month: how far ahead inserts are safe."""
        boundary = self.month_start(1, now)
        return sum(1 for p in self.partitions() if p.range_start >= boundary)

    def archive_candidates(self, retain_months: int = 12, now: datetime | None = None) -> list[Partition]:
        """Attached months whose whole range is older than ``retain_months`` before the current month, except
        restored months still held (:meth:`held`)."""
        cutoff = self.month_start(-retain_months, now)
        held = {name for name, _, _ in self.held(now)}
        return [p for p in self.partitions() if p.range_end <= cutoff and p.name not in held]

    def held(self, now: datetime | None = None) -> list[tuple[str, datetime, str | None]]:
        """``(partition, held_until, restored_by)`` of restored months whose hold has not ended."""
        return self.conn.execute(
            "SELECT partition_name, held_until, restored_by FROM coldcopy_ops.partition_archive "
            "WHERE state = 'restored' AND held_until > coalesce(%s, now()) ORDER BY 1", (now,)).fetchall()

    def _state(self, partition: Partition) -> str | None:
        row = self.conn.execute("SELECT state FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
                                (partition.name,)).fetchone()
        return row[0] if row else None

    # -- premake ---------------------------------------------------------------------------------------

    def premake(self, months_ahead: int = 3, now: datetime | None = None) -> list[str]:
        """Create the missing partitions from the current month to ``months_ahead``; returns the created ones."""
        existing = {p.range_start for p in self.partitions()}
        created = []
        for offset in range(months_ahead + 1):
            month = self.month_start(offset, now)
            if month in existing:
                continue

            def create(month=month) -> str | None:
                name = self.conn.execute("SELECT app.create_email_events_partition(%s)", (month,)).fetchone()[0]
                if name:
                    self._track_changes_on(name)
                return name

            name = under_lock_timeout(self.conn, create, self.lock_retry, what=f"premake of email_events {month:%Y-%m}")
            if name:
                log.info("created partition %s", name)
                created.append(name)
        return created

    def _track_changes_on(self, partition: str) -> None:
        """Give a new partition the refresh jobs' change trigger, if they track email_events already."""
        tracked = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s)",
            (PARENT, TRACKING_TRIGGER),
        ).fetchone()[0]
        if tracked:
            create_tracking_trigger(
                self.conn, self.conn.execute("SELECT %s::regclass::oid", (f"public.{partition}",)).fetchone()[0])

    def _record_parent_change(self) -> None:
        """Attaching or detaching changes what email_events returns: tell the refresh jobs (DDL fires no trigger)."""
        if self.conn.execute("SELECT to_regclass('coldcopy_ops.source_changes') IS NOT NULL").fetchone()[0]:
            record_change(self.conn, PARENT)

    # -- archive ---------------------------------------------------------------------------------------

    def archive(self, partition: Partition, client, bucket: str, *, detach: bool = True) -> dict:
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
                manifest = self.verify(partition, client, bucket)
            else:
                manifest = self.export(partition, client, bucket)
                self.verify(partition, client, bucket)
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

    def _row_versions(self, table: str) -> tuple[int, str]:
        rows, versions, _, _ = self.conn.execute(sql.SQL(ROW_VERSIONS_SQL).format(sql.Identifier(table))).fetchone()
        return rows, versions

    def _columns(self, table: str) -> list[str]:
        return [c.name for c in self.conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(
            sql.Identifier(table))).description]

    def _schema_version(self) -> int | None:
        if not self.conn.execute("SELECT to_regclass('coldcopy_ops.schema_migrations') IS NOT NULL").fetchone()[0]:
            return None
        return self.conn.execute("SELECT max(version) FROM coldcopy_ops.schema_migrations").fetchone()[0]

    def export(self, partition: Partition, client, bucket: str) -> dict:
        """Stream the partition into the bucket as gzip'd CSV, then write its manifest; returns the manifest."""
        table = sql.Identifier(partition.name)
        # One snapshot for the data and its row versions, so the manifest describes exactly what was exported.
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows, row_versions, low, high = cur.execute(sql.SQL(ROW_VERSIONS_SQL).format(table)).fetchone()
            columns = self._columns(partition.name)
            with MultipartUpload(client, bucket, partition.object_key) as upload:
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
        client.put_object(Bucket=bucket, Key=partition.manifest_key, ContentType="application/json",
                          Body=manifests.dump(manifest, self.keyring, type="archive"))
        self._set_state(partition, manifest, "exported", fingerprint=(rows, row_versions))
        log.info("exported %s: %d rows, %d bytes, sha256 %s", partition.name, rows, upload.size, upload.sha256)
        return manifest

    def read_manifest(self, partition: Partition, client, bucket: str) -> dict:
        """The month's manifest once its signature verifies and it describes this month's object
        (:class:`ArchiveError` otherwise)."""
        where = f"s3://{bucket}/{partition.manifest_key}"
        raw = b"".join(read_object(client, bucket, partition.manifest_key))
        try:
            manifest = manifests.load(raw, self.keyring, where=where, type="archive")
        except manifests.ManifestRejected as error:
            raise ArchiveError(str(error)) from error
        if manifest.get("partition") != partition.name or not partition.owns(str(manifest.get("object_key"))):
            raise ArchiveError(f"{where}: describes {manifest.get('object_key')!r}, not an archive of "
                               f"{partition.name} (another month's manifest copied here?); refusing to use it")
        return manifest

    def verify(self, partition: Partition, client, bucket: str) -> dict:
        """The archive in the bucket matches its manifest, and the live partition still holds what it describes."""
        manifest = self.read_manifest(partition, client, bucket)
        problems = object_problems(manifest, read_back(client, bucket, manifest["object_key"], self.passphrase))
        recorded = self.conn.execute(
            "SELECT row_count, row_checksum, sha256 FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
            (partition.name,)).fetchone()
        if recorded is None or recorded[2] != manifest["sha256"]:
            problems.append("this database has no record of exporting or restoring this archive")
        else:
            live = self._row_versions(partition.name)
            if live != (recorded[0], recorded[1]):
                problems.append(f"the partition changed since the archive was made (rows {live[0]}, "
                                f"{recorded[0]} then)")
            if recorded[0] != manifest["rows"]:
                problems.append(f"rows: recorded {recorded[0]}, manifest {manifest['rows']}")
        if self._columns(partition.name) != manifest["columns"]:
            problems.append(f"columns differ from the manifest's: {manifest['columns']}")
        if problems:
            raise ArchiveError(f"{partition.name}: archive does not verify: " + "; ".join(problems))
        self._set_state(partition, manifest, "verified", fingerprint=(recorded[0], recorded[1]))
        return manifest

    def detach(self, partition: Partition) -> None:
        """``DETACH PARTITION … CONCURRENTLY`` (outside a transaction block), finishing an interrupted one.

        PostgreSQL allows one pending detach per partitioned table, and archive tasks of several months run
        in parallel: a session advisory lock on the parent serializes the detaches (exports stay parallel),
        and a detach some earlier session left pending is finalized first.
        """
        with self._detach_lock():
            for pending in [p for p in self.partitions() if p.detach_pending and p.name != partition.name]:
                log.warning("%s: a detach left pending by an interrupted run; finalizing it first", pending.name)
                self._detach_one(pending.name)
            self._detach_one(partition.name)
        log.info("detached %s", partition.name)

    def detach_verified(self) -> list[str]:
        """Detach every attached month whose archive verified (``partition_archive.state = 'verified'``)."""
        verified = {name for (name,) in self.conn.execute(
            "SELECT partition_name FROM coldcopy_ops.partition_archive WHERE state = 'verified'")}
        detached = []
        for partition in self.partitions():
            if partition.name in verified:
                self.detach(partition)
                detached.append(partition.name)
        return detached

    @contextmanager
    def _detach_lock(self, poll_s: float = 0.5) -> Iterator[None]:
        # Polled with pg_try_advisory_lock, never waited for in a statement: a waiting statement holds a
        # snapshot, and the DETACH CONCURRENTLY that holds the lock waits for every older snapshot.
        waited = 0.0
        while not self.conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (DETACH_LOCK,)
                                    ).fetchone()[0]:
            if waited % 60 < poll_s:
                log.info("waiting for another detach from %s to finish (%.0f s so far)", PARENT, waited)
            time.sleep(poll_s)
            waited += poll_s
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (DETACH_LOCK,))

    def _detach_one(self, name: str) -> None:
        def detach() -> None:
            pending = self.conn.execute(
                "SELECT detach_pending FROM app.email_events_partitions WHERE name = %s", (name,)
            ).fetchone()
            if pending is None:
                return  # already detached
            mode = "FINALIZE" if pending[0] else "CONCURRENTLY"
            self.conn.execute(sql.SQL("ALTER TABLE public.email_events DETACH PARTITION public.{} " + mode)
                              .format(sql.Identifier(name)))

        # DETACH … CONCURRENTLY refuses a transaction block.
        under_lock_timeout(self.conn, detach, self.lock_retry, what=f"detach of {name}", transaction=False)
        with self.conn.transaction():
            self._record_parent_change()
            self.conn.execute("UPDATE coldcopy_ops.partition_archive SET state = 'detached', detached_at = now(), "
                              "updated_at = now() WHERE partition_name = %s", (name,))

    def _set_state(self, partition: Partition, manifest: dict, state: str, fingerprint: tuple[int, str]) -> None:
        """Record ``state`` and ``fingerprint`` (rows, and row versions or row checksum): what the live partition
        must keep showing for the archive to describe it."""
        stamp = {"exported": "exported_at", "verified": "verified_at", "restored": "restored_at"}[state]
        self.conn.execute(
            "INSERT INTO coldcopy_ops.partition_archive (partition_name, range_start, range_end, object_key, "
            "manifest_key, row_count, row_checksum, sha256, byte_size, state, exported_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (partition_name) DO UPDATE SET row_count = EXCLUDED.row_count, "
            "row_checksum = EXCLUDED.row_checksum, sha256 = EXCLUDED.sha256, byte_size = EXCLUDED.byte_size, "
            f"object_key = EXCLUDED.object_key, state = EXCLUDED.state, {stamp} = now(), updated_at = now()",
            (partition.name, partition.range_start, partition.range_end, manifest["object_key"],
             partition.manifest_key, *fingerprint, manifest["sha256"], manifest["byte_size"], state),
        )

    # -- drop after the grace period -------------------------------------------------------------------

    def drop_detached(self, client, bucket: str, grace: timedelta = timedelta(days=7)) -> list[str]:
        """Drop months detached longer than ``grace`` ago that are still detached and whose archive verifies."""
        due = self.conn.execute(
            "SELECT partition_name, object_key, sha256, byte_size, range_start, range_end "
            "FROM coldcopy_ops.partition_archive WHERE state = 'detached' AND detached_at <= now() - %s "
            "ORDER BY range_start", (grace,),
        ).fetchall()
        dropped = []
        for name, key, sha256, size, range_start, range_end in due:
            manifest = self.read_manifest(Partition(name, range_start, range_end), client, bucket)
            if (manifest["sha256"], manifest["byte_size"]) != (sha256, size):
                raise ArchiveError(f"{name}: its signed manifest does not describe the archive recorded; not dropping")
            attached = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s))", (f"public.{name}",)
            ).fetchone()[0]
            if attached:
                log.warning("%s is attached again; not dropping it", name)
                continue
            if object_sha256(client, bucket, key) != (sha256, size):
                raise ArchiveError(f"{name}: its archive {key} no longer matches the recorded sha256; not dropping")
            rows = self.conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(name))
                                     ).fetchone()[0]
            if rows != self.conn.execute("SELECT row_count FROM coldcopy_ops.partition_archive "
                                         "WHERE partition_name = %s", (name,)).fetchone()[0]:
                raise ArchiveError(f"{name}: row count changed since it was archived; not dropping")

            def drop(name=name) -> None:
                self.conn.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(name)))
                self.conn.execute("UPDATE coldcopy_ops.partition_archive SET state = 'dropped', "
                                  "dropped_at = now(), updated_at = now() WHERE partition_name = %s", (name,))

            under_lock_timeout(self.conn, drop, self.lock_retry, what=f"drop of detached {name}")
            log.info("dropped %s (archived at %s)", name, key)
            dropped.append(name)
        return dropped

    # -- restore ---------------------------------------------------------------------------------------

    def restore(self, month: datetime, client, bucket: str, *, hold: timedelta = timedelta(days=30),
                restored_by: str | None = None) -> dict:
        """Load a month back from its archive into a new table, verify it, and attach it, held there for
        ``hold`` (rotation leaves it alone until then). Returns the manifest."""
        start = self.month_start(0, month)
        partition = Partition(
            self.conn.execute("SELECT app.email_events_partition_name(%s)", (start,)).fetchone()[0],
            start, self.month_start(1, month))
        if any(p.name == partition.name for p in self.partitions()):
            raise ArchiveError(f"{partition.name} is attached: nothing to restore")
        if self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{partition.name}",)).fetchone()[0]:
            raise ArchiveError(f"{partition.name} exists detached (in its grace period): re-attach it instead: "
                               f"ALTER TABLE email_events ATTACH PARTITION {partition.name} FOR VALUES FROM "
                               f"('{partition.range_start.isoformat()}') TO ('{partition.range_end.isoformat()}')")
        if not object_exists(client, bucket, partition.manifest_key):
            raise ArchiveError(f"no archive for {partition.month} under "
                               f"s3://{bucket}/{partition.manifest_key.rsplit('/', 1)[0]}/ (never archived?)")
        manifest = self.read_manifest(partition, client, bucket)
        table = sql.Identifier(partition.name)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in manifest["columns"])
        with self.conn.transaction():
            self.conn.execute(sql.SQL("CREATE TABLE public.{} (LIKE public.email_events INCLUDING DEFAULTS "
                                      "INCLUDING CONSTRAINTS INCLUDING STORAGE)").format(table))
            with self.conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY public.{} ({}) FROM STDIN WITH (FORMAT csv, HEADER)").format(
                        table, columns)) as copy:
                    read = read_back(client, bucket, manifest["object_key"], self.passphrase, into=copy.write)
                loaded = cur.rowcount
            # Bound before anything is committed: the bytes COPY parsed are kept only if they are the signed ones.
            problems = object_problems(manifest, read)
            if loaded != manifest["rows"]:
                problems.append(f"loaded {loaded} rows, manifest says {manifest['rows']}")
            if problems:
                raise ArchiveError(f"{partition.name}: not restored (rolled back): " + "; ".join(problems))
            erased = self._drop_erased(partition.name)
            fingerprint = self._row_versions(partition.name)
        self._attach(partition)
        # Recorded also when this database never archived the month itself.
        self._set_state(partition, manifest, "restored", fingerprint=fingerprint)
        self.conn.execute("UPDATE coldcopy_ops.partition_archive SET restored_by = %s, held_until = now() + %s, "
                          "erased_rows = %s WHERE partition_name = %s", (restored_by, hold, erased, partition.name))
        log.info("restored %s: %d rows", partition.name, manifest["rows"])
        return manifest

    def _drop_erased(self, table: str) -> int:
        """Rows of subjects erased since the month was archived (the GDPR erasure ledger) never come back."""
        if not self.conn.execute("SELECT to_regclass('coldcopy_ops.erasure_ledger') IS NOT NULL").fetchone()[0]:
            return 0
        from coldcopy.gdpr import drop_erased_rows

        erased = drop_erased_rows(self.conn, f"public.{table}")
        if erased:
            log.info("%s: %d rows of erased subjects left out of the restore", table, erased)
        return erased

    def _attach(self, partition: Partition) -> None:
        def attach() -> None:
            self.conn.execute(
                sql.SQL("ALTER TABLE public.email_events ATTACH PARTITION public.{} FOR VALUES FROM ({}) TO ({})")
                .format(sql.Identifier(partition.name), sql.Literal(partition.range_start),
                        sql.Literal(partition.range_end)))
            self._record_parent_change()

        under_lock_timeout(self.conn, attach, self.lock_retry, what=f"attach of {partition.name}")


class GzipInThread:
    """Hashes what is written (the CSV as exported) and gzips it in a second thread into ``sink.write``, so
    compressing overlaps reading the next rows (zlib and hashlib release the GIL on large buffers)."""

    BATCH = 1 << 20

    def __init__(self, sink, level: int = 6) -> None:
        self.sink, self.content = sink, hashlib.sha256()
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container
        self.batch = bytearray()
        self.batches: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._compress, daemon=True)
        self.thread.start()

    def write(self, data) -> None:
        self.batch += data
        if len(self.batch) >= self.BATCH:
            self._hand_over()

    def _hand_over(self) -> None:
        if self.error:
            raise self.error
        batch, self.batch = bytes(self.batch), bytearray()
        self.content.update(batch)
        self.batches.put(batch)

    def _compress(self) -> None:
        while (batch := self.batches.get()) is not None:
            if self.error is None:
                try:
                    self.sink.write(self.compressor.compress(batch))
                except BaseException as error:  # noqa: BLE001 - raised in the writer's thread
                    self.error = error

    def __enter__(self) -> GzipInThread:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.batch:
            self._hand_over()
        self.batches.put(None)
        self.thread.join()
        if exc_type is None:
            if self.error:
                raise self.error
            self.sink.write(self.compressor.flush())

    @property
    def content_sha256(self) -> str:
        return self.content.hexdigest()


class Encrypting:
    """A writer whose bytes go through ``gpg --symmetric`` (AES256, like the backups) into ``sink.write``, gpg's
    output read by a thread of its own. Leaving it with an exception kills gpg."""

    def __init__(self, sink, passphrase: str) -> None:
        read = passphrase_pipe(passphrase)
        try:
            self.gpg = sessions.popen(gpg_encrypt_argv(read, "--compress-algo", "none"), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(read,),
                                      env=minimal_env())
        finally:
            os.close(read)
        self.error: BaseException | None = None
        self.errors = b""
        self.stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self.reader = threading.Thread(target=self._forward, args=(sink,), daemon=True)
        self.stderr_reader.start()
        self.reader.start()

    def _drain_stderr(self) -> None:
        self.errors = self.gpg.stderr.read()

    def _forward(self, sink) -> None:
        try:
            while chunk := self.gpg.stdout.read(1 << 20):
                sink.write(chunk)
        except BaseException as error:  # noqa: BLE001 - raised in the writer's thread
            self.error = error
            self.gpg.kill()

    def write(self, data: bytes) -> None:
        if self.error:
            raise self.error
        self.gpg.stdin.write(data)

    def __enter__(self) -> Encrypting:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.gpg.kill()
        try:
            self.gpg.stdin.close()
        except BrokenPipeError:
            pass
        self.reader.join()
        self.stderr_reader.join()
        code = self.gpg.wait()
        if exc_type is None:
            if self.error:
                raise self.error
            if code:
                raise ArchiveError(f"gpg exited {code}: {self.errors.decode(errors='replace').strip()[:300]}")


@dataclass(frozen=True)
class ReadBack:
    sha256: str
    byte_size: int
    content_sha256: str
    problem: str | None = None


def read_back(client, bucket: str, key: str, passphrase: str, into=None) -> ReadBack:
    """Stream an archive object once: hash it, decrypt it (gpg must say AES256 with integrity protection before
    one byte is handed on), gunzip it, hash the CSV and hand it to ``into``, if given. The caller commits what
    ``into`` received only when the result matches the signed manifest (:func:`object_problems`)."""
    stored, content, size = hashlib.sha256(), hashlib.sha256(), 0
    gpg, status = gpg_decrypt_popen(passphrase, subprocess.PIPE, subprocess.PIPE)
    failure: list[BaseException] = []

    def feed() -> None:
        nonlocal size
        try:
            for chunk in read_object(client, bucket, key):
                stored.update(chunk)
                size += len(chunk)
                gpg.stdin.write(chunk)
        except BrokenPipeError:
            pass
        except BaseException as error:  # noqa: BLE001 - re-raised below
            failure.append(error)
        finally:
            try:
                gpg.stdin.close()
            except BrokenPipeError:
                pass

    errors = threading.Thread(target=lambda: gpg.stderr.read(), daemon=True)
    feeder = threading.Thread(target=feed, daemon=True)
    errors.start()
    feeder.start()
    decompressor = zlib.decompressobj(31)
    try:
        chunk = gpg.stdout.read(1 << 20)
        if problem := status.first_verdict():
            gpg.kill()
            return ReadBack("", 0, "", problem)
        while chunk:
            data = decompressor.decompress(chunk)
            content.update(data)
            if into is not None and data:
                into(data)
            chunk = gpg.stdout.read(1 << 20)
        tail = decompressor.flush()
        content.update(tail)
        if into is not None and tail:
            into(tail)
    except zlib.error as error:
        gpg.kill()
        return ReadBack("", 0, "", f"not gzip inside: {error}")
    finally:
        feeder.join()
        gpg.wait()
        errors.join()
    if failure:
        raise failure[0]
    return ReadBack(stored.hexdigest(), size, content.hexdigest(), status.problem())


def object_problems(manifest: dict, read: ReadBack) -> list[str]:
    problems = []
    if read.problem:
        problems.append(read.problem)
    elif (read.sha256, read.byte_size) != (manifest["sha256"], manifest["byte_size"]):
        problems.append(f"object sha256/size {read.sha256[:12]}…/{read.byte_size} ≠ manifest "
                        f"{manifest['sha256'][:12]}…/{manifest['byte_size']}")
    elif read.content_sha256 != manifest["content_sha256"]:
        problems.append("the object's CSV does not hash to the manifest's content_sha256")
    return problems
