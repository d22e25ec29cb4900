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

from datetime import datetime, timedelta

import psycopg

from coldcopy import manifests, ops_schema
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.object_store import Bucket
from coldcopy.partitions.detacher import Detacher
from coldcopy.partitions.dropper import DROP_GRACE, Dropper
from coldcopy.partitions.exporter import Exporter
from coldcopy.partitions.importer import Importer
from coldcopy.partitions.layout import (
    ARCHIVE_PREFIX,
    COPY_OUT_SQL,
    DETACH_LOCK,
    PARENT,
    ROW_VERSIONS_SQL,
    ArchiveError,
    Partition,
    month_lock,
)
from coldcopy.partitions.premaker import Premaker
from coldcopy.partitions.signed import SignedManifests
from coldcopy.partitions.state import ArchiveState
from coldcopy.partitions.streams import Encrypting, GzipInThread, ReadBack, object_problems, read_back
from coldcopy.partitions.verifier import Verifier

__all__ = [
    "ARCHIVE_PREFIX", "ArchiveError", "COPY_OUT_SQL", "DETACH_LOCK", "Encrypting", "GzipInThread",
    "object_problems", "PARENT", "Partition", "PartitionManager", "read_back", "ReadBack", "ROW_VERSIONS_SQL",
]



class PartitionManager:
    """Partition rotation on one autocommit connection (``ColdCopyPostgresHook().session()``): a facade composing
    one object per step, each given what it needs — the archive state every step reads and writes through, the
    signed manifests, the passphrase, the lock retry schedule.

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
        self.state = ArchiveState(conn)
        self.signed = SignedManifests(keyring)
        self.premaker = Premaker(conn, self.state, lock_retry)
        self.exporter = Exporter(conn, self.state, self.signed, passphrase)
        self.verifier = Verifier(conn, self.state, self.signed, passphrase)
        self.detacher = Detacher(conn, self.state, lock_retry)
        self.dropper = Dropper(conn, self.signed, lock_retry)
        self.importer = Importer(conn, self.state, self.signed, passphrase, lock_retry)

    # What the months are
    def partitions(self) -> list[Partition]:
        return self.state.partitions()

    def future_months(self, now: datetime | None = None) -> int:
        return self.state.future_months(now)

    def archive_candidates(self, retain_months: int = 12, now: datetime | None = None) -> list[Partition]:
        return self.state.archive_candidates(retain_months, now)

    def held(self, now: datetime | None = None) -> list[tuple[str, datetime, str | None]]:
        return self.state.held(now)

    # The steps
    def premake(self, months_ahead: int = 3, now: datetime | None = None) -> list[str]:
        return self.premaker.premake(months_ahead, now)

    def archive(self, partition: Partition, bucket: Bucket, *, detach: bool = True) -> dict:
        """Export, verify, then (unless ``detach`` is false) detach one month. Returns its manifest.

        The DAG exports months in parallel with ``detach=False`` and detaches them in one step afterwards
        (:meth:`detach_verified`): a ``DETACH … CONCURRENTLY`` waits for every older snapshot, and the export
        of another month is one.
        """
        try:
            with month_lock(self.conn, partition.name):  # a second run of the job (a double start) waits here
                if self.state.state(partition) in ("detached", "dropped") or not self.state.attached(partition):
                    # archived by another run meanwhile: its archive is the one the ledger names; exporting the
                    # month again would replace the object a drop verified (issue 45)
                    return self.read_manifest(partition, bucket)
                if partition.detach_pending or (self.state.state(partition) == "restored"
                                                and not self.state.erased_on_restore(partition)):
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

    def export(self, partition: Partition, bucket: Bucket) -> dict:
        return self.exporter.export(partition, bucket)

    def verify(self, partition: Partition, bucket: Bucket) -> dict:
        return self.verifier.verify(partition, bucket)

    def read_manifest(self, partition: Partition, bucket: Bucket) -> dict:
        return self.signed.read(partition, bucket)

    def detach(self, partition: Partition) -> None:
        self.detacher.detach(partition)

    def detach_verified(self) -> list[str]:
        return self.detacher.detach_verified()

    def drop_detached(self, bucket: Bucket, grace: timedelta = DROP_GRACE) -> list[str]:
        return self.dropper.drop_detached(bucket, grace)

    def next_drop(self, grace: timedelta = DROP_GRACE) -> tuple[str, object] | None:
        return self.dropper.next_drop(grace)

    def restore(self, month: datetime, bucket: Bucket, *, hold: timedelta = timedelta(days=30),
                restored_by: str | None = None) -> dict:
        return self.importer.restore(month, bucket, hold=hold, restored_by=restored_by)
