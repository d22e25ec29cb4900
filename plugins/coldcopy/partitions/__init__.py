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

import psycopg

from coldcopy import manifests, ops_schema
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.partitions.common import (
    ARCHIVE_PREFIX,
    COPY_OUT_SQL,
    DETACH_LOCK,
    PARENT,
    ROW_VERSIONS_SQL,
    ArchiveError,
    Partition,
)
from coldcopy.partitions.detacher import Detacher
from coldcopy.partitions.dropper import Dropper
from coldcopy.partitions.exporter import Exporter
from coldcopy.partitions.importer import Importer
from coldcopy.partitions.premaker import Premaker
from coldcopy.partitions.state import ArchiveState
from coldcopy.partitions.streams import Encrypting, GzipInThread, ReadBack, object_problems, read_back
from coldcopy.partitions.verifier import Verifier

__all__ = [
    "ARCHIVE_PREFIX", "ArchiveError", "COPY_OUT_SQL", "DETACH_LOCK", "Encrypting", "GzipInThread",
    "object_problems", "PARENT", "Partition", "PartitionManager", "read_back", "ReadBack", "ROW_VERSIONS_SQL",
]



class PartitionManager(ArchiveState, Premaker, Exporter, Verifier, Detacher, Dropper, Importer):
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
