"""The backup itself: pg_dump | zstd | gpg into a multipart upload, counts in the dump's snapshot, signed manifest."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from coldcopy import humanize, kill_targets, manifests
from coldcopy.backups import safety
from coldcopy.backups.inventory import Inventory
from coldcopy.backups.layout import PREFIX, RETENTION, BackupError, BackupResult, _count, _Pipeline, _relation
from coldcopy.backups.log import BackupLog
from coldcopy.crypto import (
    gpg_encrypt_argv,
    passphrase_pipe,
)
from coldcopy.object_store import Bucket, MultipartUpload
from coldcopy.pg_tools import client_popen, minimal_env, pg_program
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Pipeline:
    """The backup itself: pg_dump | zstd | gpg into a multipart upload, counts in the dump's snapshot, signed manifest.
    ``settings`` is the runner (zstd threads and level, pipe and part sizes), read at each backup."""

    def __init__(self, backup_log: BackupLog, bucket: Bucket, passphrase: str, keyring: manifests.Keyring,
                 inventory: Inventory, settings) -> None:
        self.log, self.dsn, self.bucket, self.passphrase = backup_log, backup_log.dsn, bucket, passphrase
        self.keyring, self.inventory, self.settings = keyring, inventory, settings

    def backup(self, *, tables: list[str] | None = None, now: datetime | None = None,
               retention_class: str | None = None) -> BackupResult:
        """Dump the database (or only ``tables``) into the bucket; returns the object key and manifest."""
        now = now or datetime.now(UTC)
        with self.log.connect(autocommit=True) as conn:
            self.log.ensure(conn)
            dbname = conn.info.dbname
            server_major = conn.info.server_version // 10000
            # The change archive replays from here (coldcopy.pitr): read before the dump's snapshot is taken, so
            # every transaction the snapshot does not see commits after it; replay skips those it does see.
            replay_from = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        label = dbname + (f"-{'-'.join(t.split('.')[-1] for t in tables)}" if tables else "")
        klass = retention_class or self.inventory.retention_class(now, label)
        key = f"{PREFIX}/{klass}/{now:%Y/%m/%d}/{label}-{now:%Y%m%dT%H%M%SZ}.dump.zst.gpg"
        manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
        pg_dump = pg_program("pg_dump", server_major)
        started_at = datetime.now(UTC)

        # The exporting transaction must stay open until pg_dump has taken its snapshot (we keep it to the end).
        with self.log.connect() as snap_conn:
            snap_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot, seen, seen_at = snap_conn.execute(
                "SELECT pg_export_snapshot(), pg_current_snapshot()::text, clock_timestamp()").fetchone()
            facts = snap_conn.execute(
                "SELECT pg_database_size(current_database()), current_setting('server_version')").fetchone()
            dump_args = [pg_dump, "-Fc", "-Z0", f"--snapshot={snapshot}", "--no-password"]
            # Quoted from the catalog: pg_dump reads --table as a pattern (wildcards, case folding).
            dump_args += [f"--table={_relation(snap_conn, t).as_string(snap_conn)}" for t in tables or []]
            # The counts (a scan of every table) and the safety fingerprint (RLS, policies, API grants: proven
            # after a restore) read the dump's snapshot while pg_dump streams, not before it: pg_get_expr locks the
            # tables it deparses, and pg_dump, not this, is what waits for a lock (and what on_kill stops).
            def facts_of_snapshot() -> tuple[dict, dict]:
                return safety.fingerprint(snap_conn, tables), self._row_counts(snap_conn, tables)

            with ThreadPoolExecutor(1, thread_name_prefix="backup-counts") as counting:
                counted = counting.submit(facts_of_snapshot)
                upload = self._stream(dump_args, key)
                try:
                    fingerprint, counts = counted.result()
                except BaseException:
                    self.bucket.delete(key)  # no object without its manifest
                    raise
        step("backup.uploaded")  # the object is whole; its manifest not yet written
        finished_at = datetime.now(UTC)
        manifest = {
            "database": dbname, "database_size_bytes": facts[0], "server_version": facts[1],
            "pg_dump_version": subprocess.run([pg_dump, "--version"], capture_output=True, text=True).stdout.strip(),
            "kind": "tables" if tables else "database", "tables": tables,
            "row_counts": counts, "row_counts_exact_in_dump_snapshot": True,
            "object_key": key, "byte_size": upload.size, "sha256": upload.sha256,
            "format": "pg_dump custom format | zstd | OpenPGP symmetric AES256 (gpg)",
            "restore": "gpg --decrypt <object> | zstd -d | pg_restore --no-owner -d <target>",
            "retention_class": klass, "expires_after_days": RETENTION[klass].days,
            "started_at": started_at.isoformat(), "finished_at": finished_at.isoformat(),
            "pitr": {"lsn": replay_from, "snapshot": seen, "snapshot_time": seen_at.isoformat()},
            "safety": fingerprint,
        }
        try:
            self.bucket.put(manifest_key, manifests.dump(manifest, self.keyring, type="backup"), "application/json")
        except BaseException:
            self.bucket.delete(key)  # no object without its manifest
            raise
        step("backup.manifest_written")
        with self.log.connect(autocommit=True) as conn:
            conn.execute(
                "INSERT INTO coldcopy_ops.backup_log (object_key, manifest_key, kind, tables, retention_class, "
                "byte_size, sha256, started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (key, manifest_key, manifest["kind"], tables, klass, upload.size, upload.sha256, started_at,
                 finished_at))
        step("backup.logged")
        log.info("backup %s: %s in %s (every part stored after %s; the endpoint assembled the object in %s)", key,
                 humanize.size(upload.size), humanize.duration((finished_at - started_at).total_seconds()),
                 humanize.duration(upload.parts_stored_s), humanize.duration(upload.completion_s))
        return BackupResult(key, manifest, parts_stored_s=upload.parts_stored_s, completion_s=upload.completion_s)

    def _row_counts(self, conn, tables: list[str] | None) -> dict[str, int]:
        # One core for the counts: parallel workers would take the cores pg_dump, its backend and zstd share
        # (scale 32 on 2 cores: 0.12 s serial, 0.27 s with the default 2 workers).
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        names = tables or [r[0] for r in conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence = 'p' ORDER BY 1").fetchall()]
        return {name: _count(conn, name) for name in names}

    def _stream(self, dump_args: list[str], key: str) -> MultipartUpload:
        """Run ``pg_dump | zstd | gpg`` and upload gpg's output; abort the upload if any stage fails."""
        passphrase_fd = passphrase_pipe(self.passphrase)
        dump = client_popen(dump_args, self.dsn, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        zstd_level = self.settings.zstd_level
        level = f"-{zstd_level}" if zstd_level > 0 else f"--fast={-zstd_level}"
        zstd = kill_targets.popen(["zstd", "-q", level, f"-T{self.settings.zstd_threads}", "-c"],
                              stdin=dump.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=minimal_env())
        gpg = kill_targets.popen(
            gpg_encrypt_argv(passphrase_fd, "--compress-algo", "none"),  # zstd has compressed it already
            stdin=zstd.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(passphrase_fd,),
            env=minimal_env())
        os.close(passphrase_fd)
        if self.settings.pipe_bytes:
            for pipe in (dump.stdout, zstd.stdout, gpg.stdout):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, self.settings.pipe_bytes)
        dump.stdout.close()
        zstd.stdout.close()
        pipeline = _Pipeline({"pg_dump": dump, "zstd": zstd, "gpg": gpg})
        try:
            with self.bucket.upload(key, part_size=self.settings.part_size) as upload, gpg.stdout:
                while chunk := gpg.stdout.read(self.settings.part_size):
                    upload.write(chunk)
                if failures := pipeline.failures():
                    raise BackupError(f"{key}: backup pipeline failed ({failures}); upload aborted")
                upload.complete()
        except BaseException:
            pipeline.kill()
            raise
        return upload
