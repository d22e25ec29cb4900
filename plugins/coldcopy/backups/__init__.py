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
from datetime import datetime

import psycopg

from coldcopy import manifests, ops_schema, sessions
from coldcopy.backups.common import (  # noqa: F401 - used by bench and tests
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
from coldcopy.backups.pipeline import Pipeline
from coldcopy.backups.retention import Retention
from coldcopy.backups.verification import Verification
from coldcopy.object_store import PART_SIZE, Bucket

log = logging.getLogger(__name__)

__all__ = [
    "backup_passphrase", "BackupError", "BackupResult", "BackupRunner", "ORPHAN_AFTER", "PREFIX", "RETENTION",
]


DEFAULT_ZSTD_THREADS = os.cpu_count() or 2  # bench/backups.py "threads and levels" (docs/benchmarks.md)
# pg_restore --jobs of a whole-database restore into a private database (bench/restore.py: docs/benchmarks.md);
# the verify server's own cores when its connection says (extra "cores"), see restore_jobs_for
DEFAULT_RESTORE_JOBS = os.cpu_count() or 2


class BackupRunner(Pipeline, Verification, Retention):
    """Backups of one database into one bucket.

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
    """

    def __init__(self, dsn: str, bucket: Bucket, passphrase: str, *, keyring: manifests.Keyring,
                 zstd_threads: int | None = None, zstd_level: int = 1, pipe_bytes: int | None = None,
                 part_size: int = PART_SIZE, spool_dir: str | None = None, restore_jobs: int | None = None) -> None:
        self.dsn, self.bucket, self.passphrase = dsn, bucket, passphrase
        self.keyring, self.spool_dir = keyring, spool_dir
        self.restore_jobs = restore_jobs or DEFAULT_RESTORE_JOBS  # a whole database into a private one (restore)
        self.skipped: list[str] = []  # backups resolve() or apply_retention() passed over (refused manifests)
        self.zstd_threads = zstd_threads or DEFAULT_ZSTD_THREADS
        self.zstd_level, self.pipe_bytes, self.part_size = zstd_level, pipe_bytes, part_size

    def _connect(self, **kwargs) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, **kwargs)
        sessions.track_connection(conn)
        return conn

    def _log_table(self, conn) -> None:
        ops_schema.ensure(conn, "backups")

    def newest_verified(self) -> tuple[str, dict]:
        """The key and manifest of the newest whole-database backup whose restore was verified
        (``coldcopy_ops.backup_log``), else of the newest whole-database backup (a rehearsal's copy)."""
        with self._connect(autocommit=True) as conn:
            self._log_table(conn)
            verified = {k for (k,) in conn.execute(
                "SELECT object_key FROM coldcopy_ops.backup_log WHERE verification = 'verified' "
                "AND kind = 'database' AND deleted_at IS NULL")}
        candidates = self.database_backups()
        chosen = [c for c in candidates if c[1] in verified] or candidates
        if not chosen:
            raise BackupError("no whole-database backup to rehearse on: run backup_to_spaces first")
        _, key, manifest = chosen[-1]
        return key, manifest

    def retention_class(self, now: datetime, label: str) -> str:
        """``compliance`` for the month's first backup of ``label`` (the database, or its table set), else
        ``standard``: every kind of backup keeps one a month for a year."""
        month = now.strftime("%Y/%m")
        first_of_month = not any(
            (match := _KEY.match(o["Key"])) and match["name"] == label
            for o in self._list(f"{PREFIX}/compliance/{month}/"))
        return "compliance" if first_of_month else "standard"

    def _list(self, prefix: str) -> list[dict]:
        return self.bucket.list_objects(prefix)
