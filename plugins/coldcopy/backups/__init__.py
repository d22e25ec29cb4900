"""Backups to Spaces: streamed ``pg_dump | zstd | gpg`` into a multipart upload, verified by a real restore.

* **Format** anyone can open in an emergency with stock tools: ``pg_dump -Fc`` (custom format, so
  ``pg_restore`` can restore single tables), compressed by multi-threaded ``zstd -1`` (level 1 was both faster
  and smaller than 3 on our dumps), encrypted by
  ``gpg --symmetric --cipher-algo AES256`` (OpenPGP). Restore by hand:
  ``gpg --decrypt backup.dump.zst.gpg | zstd -d | pg_restore -d target``.
* **Streamed**: the pipeline's output goes to S3 part by part; memory holds one 8 MiB part, nothing
  touches local disk, and a failed pipeline or upload aborts the multipart upload (no object, no manifest).
* **Consistent counts**: the manifest's per-table row counts are taken in the very snapshot pg_dump uses
  (``pg_export_snapshot()`` + ``pg_dump --snapshot``).
* **Key**: the password of the Airflow connection ``coldcopy_backup_key``, handed to gpg on a pipe
  (never argv, environment, repository or bucket).
* **Keys in the bucket**: ``backups/<standard|compliance>/YYYY/MM/DD/<db>[-<tables>]-<UTC stamp>.dump.zst.gpg``
  and ``….manifest.json`` beside it. The first backup of a month is *compliance* (kept 1 year), the others
  *standard* (kept 30 days).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime

from coldcopy import manifests
from coldcopy.backups.inventory import Inventory
from coldcopy.backups.layout import (  # noqa: F401 - used by bench and tests
    _KEY,
    ORPHAN_AFTER,
    PREFIX,
    RETENTION,
    BackupError,
    BackupResult,
    _count,
    _Pipeline,
    _relation,
    backup_passphrase,
)
from coldcopy.backups.log import BackupLog
from coldcopy.backups.pipeline import Pipeline
from coldcopy.backups.restorer import Restorer
from coldcopy.backups.retention import BackupRetention
from coldcopy.backups.verification import Verifier
from coldcopy.object_store import PART_SIZE, Bucket

log = logging.getLogger(__name__)

__all__ = [
    "backup_passphrase", "BackupError", "BackupResult", "BackupRunner", "ORPHAN_AFTER", "PREFIX", "RETENTION",
]


DEFAULT_ZSTD_THREADS = os.cpu_count() or 2  # bench/backups.py "threads and levels" (docs/benchmarks.md)
# pg_restore --jobs of a whole-database restore into a private database (bench/restore.py: docs/benchmarks.md);
# the verify server's own cores when its connection says (extra "cores"), see restore_jobs_for
DEFAULT_RESTORE_JOBS = os.cpu_count() or 2


class BackupRunner:
    """Backups of one database into one bucket: a facade composing one object per step — the backup pipeline, the
    bucket's inventory, the restorer, the verifier, retention — each given what it needs.

    :param dsn: libpq connection string of the database (a role that can read every table).
    :param bucket: the bucket (:meth:`coldcopy.object_store.Bucket.from_connection`).
    :param passphrase: OpenPGP symmetric passphrase.
    :param keyring: signs and checks the manifests (:func:`coldcopy.manifests.keyring`).
    :param zstd_threads: compression threads; default: every core (``cpu_count``). Measured side by side
        (bench/backups.py, alternating, at three scales on a 2-core machine): in the whole backup, one thread
        ("cores − 1" there) and every core are within the run-to-run spread of each other (a few per cent, the
        winner changing between runs); where compression is the bottleneck (the pipeline alone) every core was
        15 % faster, so it stays the default. Override per call, or for the DAG with the task's ``zstd_threads``.
    :param zstd_level: zstd level; negative: ``--fast=N``.
    :param pipe_bytes: size of the pipes between the stages (Linux; at most /proc/sys/fs/pipe-max-size).
    :param part_size: bytes per uploaded part.
    :param restore_jobs: ``pg_restore --jobs`` of a whole-database restore into a private database (a scratch
        copy, a quarantine); default: this machine's cores. 1: single-stream, in one transaction.
    :param extended_by: what extends the backups and is pruned with them: each called with the kept
        whole-database backups' manifests and ``dry_run``, returning what it deleted
        (:func:`coldcopy.pitr.retention.pruner`: the change archive's segments no kept backup anchors).
    """

    def __init__(self, dsn: str, bucket: Bucket, passphrase: str, *, keyring: manifests.Keyring,
                 zstd_threads: int | None = None, zstd_level: int = 1, pipe_bytes: int | None = None,
                 part_size: int = PART_SIZE, spool_dir: str | None = None, restore_jobs: int | None = None,
                 extended_by: Sequence[Callable[[list[dict], bool], list[str]]] = ()) -> None:
        self.dsn, self.bucket, self.passphrase = dsn, bucket, passphrase
        self.keyring, self.spool_dir = keyring, spool_dir
        self.restore_jobs = restore_jobs or DEFAULT_RESTORE_JOBS  # a whole database into a private one (restore)
        self.skipped: list[str] = []  # backups resolve() or apply_retention() passed over (refused manifests)
        self.zstd_threads = zstd_threads or DEFAULT_ZSTD_THREADS
        self.zstd_level, self.pipe_bytes, self.part_size = zstd_level, pipe_bytes, part_size
        self.log = BackupLog(dsn)
        self.inventory = Inventory(bucket, keyring, self.log, self.skipped)
        self.pipeline = Pipeline(self.log, bucket, passphrase, keyring, self.inventory, settings=self)
        self.restorer = Restorer(self.log, bucket, passphrase, self.inventory, spool_dir)
        self.verifier = Verifier(self.log, self.inventory, self.restorer)
        self.retention = BackupRetention(bucket, keyring, self.log, self.inventory, self.skipped, extended_by)

    # Backing up
    def backup(self, *, tables: list[str] | None = None, now: datetime | None = None,
               retention_class: str | None = None) -> BackupResult:
        return self.pipeline.backup(tables=tables, now=now, retention_class=retention_class)

    # What the bucket holds
    def resolve(self, which: str) -> tuple[str, dict]:
        return self.inventory.resolve(which)

    def database_backups(self, stamp_prefix: str | None = None) -> list[tuple[str, str, dict]]:
        return self.inventory.database_backups(stamp_prefix)

    def manifest(self, key: str) -> dict:
        return self.inventory.manifest(key)

    def newest_verified(self) -> tuple[str, dict]:
        return self.inventory.newest_verified()

    # Restoring and verifying
    def restore(self, key: str, target_dsn: str, *, tables: list[str] | None = None,
                manifest: dict | None = None, jobs: int = 1) -> dict:
        return self.restorer.restore(key, target_dsn, tables=tables, manifest=manifest, jobs=jobs)

    @property
    def timings(self) -> dict:
        """Where the last restore's time went."""
        return self.restorer.timings

    @property
    def left_out(self) -> list[str]:
        """What the last restore left out (entries a non-superuser may not restore)."""
        return self.restorer.left_out

    def verify(self, key: str, scratch_admin_dsn: str) -> dict:
        return self.verifier.verify(key, scratch_admin_dsn, jobs=self.restore_jobs)

    # Retention
    def orphans(self, now: datetime | None = None) -> list[str]:
        return self.retention.orphans(now)

    def apply_retention(self, *, dry_run: bool, now: datetime | None = None) -> list[str]:
        return self.retention.apply_retention(dry_run=dry_run, now=now)
