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

import fcntl
import logging
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy import KEY_CONN_ID, catalog, manifests, ops_schema, sessions
from coldcopy.alerts import reason_of
from coldcopy.crypto import (
    UntrustedObject,
    gpg_decrypt_popen,
    gpg_encrypt_argv,
    passphrase_pipe,
    relay_checked,
    spool_bound,
)
from coldcopy.object_store import PART_SIZE, MultipartUpload, read_object
from coldcopy.pg_tools import client_popen, minimal_env, pg_program

log = logging.getLogger(__name__)

PREFIX = "backups"
RETENTION = {"standard": timedelta(days=30), "compliance": timedelta(days=365)}
ORPHAN_AFTER = timedelta(hours=6)  # an object this old without its manifest is a failed backup's leftover
_KEY = re.compile(r"^backups/(?P<cls>standard|compliance)/\d{4}/\d{2}/\d{2}/(?P<name>[^/]+)-(?P<stamp>\d{8}T\d{6}Z)"
                  r"\.dump\.zst\.gpg$")


class BackupError(RuntimeError):
    """A backup, verification or restore failed; the message says which step and why."""


def _relation(conn: psycopg.Connection, table: str) -> sql.Identifier:
    """``table``, a name from a manifest or a DAG param, as the catalog spells it (:class:`BackupError` if none)."""
    try:
        return catalog.relation(conn, table)
    except catalog.UnknownRelation as error:
        raise BackupError(str(error)) from error


def _count(conn: psycopg.Connection, table: str) -> int:
    """Rows of ``table``: checked against the catalog first."""
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_relation(conn, table))).fetchone()[0]


def backup_passphrase(conn_id: str = KEY_CONN_ID) -> str:
    from airflow.sdk import BaseHook

    password = BaseHook.get_connection(conn_id).password
    if not password:
        raise BackupError(f"connection {conn_id} has no password: it is the backup encryption passphrase")
    return password


class _Pipeline:
    """Processes piped one into the next: drains their stderr, and says which failed and why."""

    def __init__(self, stages: dict[str, subprocess.Popen]) -> None:
        self.stages = stages
        self.errors: dict[str, bytes] = {}
        self.readers = [threading.Thread(target=self._drain, args=(name, process), daemon=True)
                        for name, process in stages.items()]
        for reader in self.readers:
            reader.start()

    def _drain(self, name: str, process: subprocess.Popen) -> None:
        self.errors[name] = process.stderr.read()

    def failures(self) -> str | None:
        """Wait for every stage; ``None`` when all exited 0, else what each failed one said."""
        codes = {name: process.wait() for name, process in self.stages.items()}
        for reader in self.readers:
            reader.join()
        failed = {name: code for name, code in codes.items() if code != 0}
        if not failed:
            return None
        return "; ".join(f"{name} exited {code}: {self.errors.get(name, b'').decode(errors='replace').strip()[:500]}"
                         for name, code in failed.items())

    def kill(self) -> None:
        for process in self.stages.values():
            if process.poll() is None:
                process.kill()


@dataclass(frozen=True)
class BackupResult:
    object_key: str
    manifest: dict


class BackupRunner:
    """Backups of one database into one bucket.

    :param dsn: libpq connection string of the database (a role that can read every table).
    :param client: boto3 S3 client (``S3Hook(...).get_conn()``); ``bucket``: the bucket.
    :param passphrase: OpenPGP symmetric passphrase.
    :param keyring: signs and checks the manifests (:func:`coldcopy.manifests.keyring`).
    :param zstd_threads: compression threads; default: the cores pg_dump, gpg and the upload leave over
        (cpu_count − 1). On 2 cores one zstd thread beat two (bench/backups.py).
    :param zstd_level: zstd level; negative: ``--fast=N``.
    :param pipe_bytes: size of the pipes between the stages (Linux; at most /proc/sys/fs/pipe-max-size).
    :param part_size: bytes per uploaded part.
    """

    def __init__(self, dsn: str, client, bucket: str, passphrase: str, *, keyring: manifests.Keyring,
                 zstd_threads: int | None = None, zstd_level: int = 1, pipe_bytes: int | None = None,
                 part_size: int = PART_SIZE, spool_dir: str | None = None) -> None:
        self.dsn, self.client, self.bucket, self.passphrase = dsn, client, bucket, passphrase
        self.keyring, self.spool_dir = keyring, spool_dir
        self.skipped: list[str] = []  # backups resolve() or apply_retention() passed over (refused manifests)
        self.zstd_threads = zstd_threads or max(1, (os.cpu_count() or 2) - 1)
        self.zstd_level, self.pipe_bytes, self.part_size = zstd_level, pipe_bytes, part_size

    # -- helpers -------------------------------------------------------------------------------------

    def _connect(self, **kwargs) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, **kwargs)
        sessions.track_connection(conn)
        return conn

    def _log_table(self, conn) -> None:
        ops_schema.ensure(conn, "backups")

    def retention_class(self, now: datetime, label: str) -> str:
        """``compliance`` for the month's first backup of ``label`` (the database, or its table set), else
        ``standard``: every kind of backup keeps one a month for a year."""
        month = now.strftime("%Y/%m")
        first_of_month = not any(
            (match := _KEY.match(o["Key"])) and match["name"] == label
            for o in self._list(f"{PREFIX}/compliance/{month}/"))
        return "compliance" if first_of_month else "standard"

    def _list(self, prefix: str) -> list[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        return [o for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix) for o in page.get("Contents", [])]

    # -- backup --------------------------------------------------------------------------------------

    def backup(self, *, tables: list[str] | None = None, now: datetime | None = None,
               retention_class: str | None = None) -> BackupResult:
        """Dump the database (or only ``tables``) into the bucket; returns the object key and manifest."""
        now = now or datetime.now(UTC)
        with self._connect(autocommit=True) as conn:
            self._log_table(conn)
            dbname = conn.info.dbname
            server_major = conn.info.server_version // 10000
        label = dbname + (f"-{'-'.join(t.split('.')[-1] for t in tables)}" if tables else "")
        klass = retention_class or self.retention_class(now, label)
        key = f"{PREFIX}/{klass}/{now:%Y/%m/%d}/{label}-{now:%Y%m%dT%H%M%SZ}.dump.zst.gpg"
        manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
        pg_dump = pg_program("pg_dump", server_major)
        started_at = datetime.now(UTC)

        # The exporting transaction must stay open until pg_dump has taken its snapshot (we keep it to the end).
        with self._connect() as snap_conn:
            snap_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = snap_conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            facts = snap_conn.execute(
                "SELECT pg_database_size(current_database()), current_setting('server_version')").fetchone()
            dump_args = [pg_dump, "-Fc", "-Z0", f"--snapshot={snapshot}", "--no-password"]
            # Quoted from the catalog: pg_dump reads --table as a pattern (wildcards, case folding).
            dump_args += [f"--table={_relation(snap_conn, t).as_string(snap_conn)}" for t in tables or []]
            # The counts (a scan of every table) read the dump's snapshot while pg_dump streams, not before it.
            with ThreadPoolExecutor(1, thread_name_prefix="backup-counts") as counting:
                counted = counting.submit(self._row_counts, snap_conn, tables)
                upload = self._stream(dump_args, key)
                try:
                    counts = counted.result()
                except BaseException:
                    self.client.delete_object(Bucket=self.bucket, Key=key)  # no object without its manifest
                    raise
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
        }
        try:
            self.client.put_object(Bucket=self.bucket, Key=manifest_key, ContentType="application/json",
                                   Body=manifests.dump(manifest, self.keyring, type="backup"))
        except BaseException:
            self.client.delete_object(Bucket=self.bucket, Key=key)  # no object without its manifest
            raise
        with self._connect(autocommit=True) as conn:
            conn.execute(
                "INSERT INTO coldcopy_ops.backup_log (object_key, manifest_key, kind, tables, retention_class, "
                "byte_size, sha256, started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (key, manifest_key, manifest["kind"], tables, klass, upload.size, upload.sha256, started_at,
                 finished_at))
        log.info("backup %s: %d bytes in %.1f s", key, upload.size, (finished_at - started_at).total_seconds())
        return BackupResult(key, manifest)

    def _row_counts(self, conn, tables: list[str] | None) -> dict[str, int]:
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
        level = f"-{self.zstd_level}" if self.zstd_level > 0 else f"--fast={-self.zstd_level}"
        zstd = sessions.popen(["zstd", "-q", level, f"-T{self.zstd_threads}", "-c"],
                              stdin=dump.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=minimal_env())
        gpg = sessions.popen(
            gpg_encrypt_argv(passphrase_fd, "--compress-algo", "none"),  # zstd has compressed it already
            stdin=zstd.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(passphrase_fd,),
            env=minimal_env())
        os.close(passphrase_fd)
        if self.pipe_bytes:
            for pipe in (dump.stdout, zstd.stdout, gpg.stdout):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, self.pipe_bytes)
        dump.stdout.close()
        zstd.stdout.close()
        pipeline = _Pipeline({"pg_dump": dump, "zstd": zstd, "gpg": gpg})
        try:
            with MultipartUpload(self.client, self.bucket, key, part_size=self.part_size) as upload:
                while chunk := gpg.stdout.read(self.part_size):
                    upload.write(chunk)
                if failures := pipeline.failures():
                    raise BackupError(f"{key}: backup pipeline failed ({failures}); upload aborted")
                upload.complete()
        except BaseException:
            pipeline.kill()
            raise
        return upload

    # -- restore and verification -----------------------------------------------------------------------

    def restore(self, key: str, target_dsn: str, *, tables: list[str] | None = None,
                manifest: dict | None = None) -> dict:
        """``gpg --decrypt | zstd -d | pg_restore`` from the bucket into ``target_dsn``; returns the manifest.

        Bind before trust: the object is spooled and must equal its signed ``manifest`` (read here unless
        given) in key, size and sha256 before any byte reaches gpg (:func:`coldcopy.crypto.spool_bound`), and
        gpg must report an integrity-protected AES256 decryption. With ``tables``, only their rows are loaded
        (``--data-only --disable-triggers``) into a target that already has the schema.
        """
        manifest = manifest or self.manifest(key)
        with psycopg.connect(target_dsn) as conn:
            server_major = conn.info.server_version // 10000
        args = [pg_program("pg_restore", server_major), "--no-owner", "--exit-on-error", "--single-transaction"]
        if tables:
            args += ["--data-only", "--disable-triggers"]
        for table in tables or []:
            args += ["--table", table.split(".")[-1]]
        try:
            with spool_bound(self.client, self.bucket, key, manifest, directory=self.spool_dir) as spooled, \
                    open(spooled, "rb") as source:
                gpg, status = gpg_decrypt_popen(self.passphrase, source, subprocess.PIPE)
                zstd = sessions.popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=minimal_env())
                restore = client_popen(args, target_dsn, stdin=zstd.stdout, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
                zstd.stdout.close()
                pipeline = _Pipeline({"gpg": gpg, "zstd": zstd, "pg_restore": restore})
                # Not one byte reaches zstd and pg_restore before gpg said it is decrypting AES256 with integrity
                # protection (a plain literal packet would pass `gpg --decrypt` with exit 0).
                if problem := relay_checked(gpg, status, zstd.stdin):
                    pipeline.kill()
                    pipeline.failures()
                    raise UntrustedObject(f"s3://{self.bucket}/{key}: {problem}; nothing was restored")
                failures = pipeline.failures()
        except UntrustedObject as error:
            raise BackupError(str(error)) from error
        problem = status.problem()
        if problem or failures:
            raise BackupError(f"restore of {key} failed: {problem or failures}")
        return manifest

    def _copy_schema(self, target_dsn: str) -> None:
        """The source database's schema (no data) into ``target_dsn``: ``pg_dump -s | pg_restore``."""
        with self._connect() as conn:
            major = conn.info.server_version // 10000
        dump = client_popen([pg_program("pg_dump", major), "-Fc", "-s", "--no-password"], self.dsn,
                            stdout=subprocess.PIPE)
        restore = client_popen([pg_program("pg_restore", major), "--no-owner", "--exit-on-error"], target_dsn,
                               stdin=dump.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dump.stdout.close()
        _, errors = restore.communicate()
        if dump.wait() or restore.returncode:
            raise BackupError(f"could not copy the schema for verification: {errors.decode()[:500]}")

    def resolve(self, which: str) -> tuple[str, dict]:
        """Object key and verified manifest of ``latest`` (newest whole-database backup), of the newest one on
        a ``YYYY-MM-DD``, or of ``which`` itself when it is a key. Reads the bucket only: works when the
        database is gone. A backup whose manifest is missing, forged or describes another object is skipped
        (listed in :attr:`skipped`), not fatal: the next one back is used."""
        if _KEY.match(which):
            return which, self.manifest(which)
        candidates, self.skipped = [], []
        for obj in self._list(f"{PREFIX}/"):
            match = _KEY.match(obj["Key"])
            if match and (which == "latest" or match["stamp"].startswith(which.replace("-", ""))):
                try:
                    manifest = self.manifest(obj["Key"])
                except BackupError as error:
                    self.skipped.append(str(error))
                    log.error("skipping %s: %s", obj["Key"], error)
                    continue
                if manifest["kind"] == "database":
                    candidates.append((match["stamp"], obj["Key"], manifest))
        if not candidates:
            raise BackupError(f"no whole-database backup matches {which!r} in s3://{self.bucket}/{PREFIX}/")
        _, key, manifest = max(candidates, key=lambda c: c[:2])
        return key, manifest

    def manifest(self, key: str) -> dict:
        """The backup's manifest, once its signature verifies (:class:`BackupError` otherwise)."""
        manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
        try:
            raw = b"".join(read_object(self.client, self.bucket, manifest_key))
        except self.client.exceptions.NoSuchKey:
            raise BackupError(f"s3://{self.bucket}/{manifest_key}: no manifest beside the backup") from None
        try:
            manifest = manifests.load(raw, self.keyring, where=f"s3://{self.bucket}/{manifest_key}", type="backup")
        except manifests.ManifestRejected as error:
            raise BackupError(str(error)) from error
        if manifest.get("object_key") != key:  # a genuine manifest copied beside another object
            raise BackupError(f"s3://{self.bucket}/{manifest_key}: describes {manifest.get('object_key')!r}, "
                              f"not {key!r}; refusing to use it")
        return manifest

    def verify(self, key: str, scratch_admin_dsn: str) -> dict:
        """Restore ``key`` into a scratch database, compare every table's row count with the manifest,
        drop the scratch database, and record the result in ``coldcopy_ops.backup_log``."""
        started = time.monotonic()
        scratch = f"coldcopy_verify_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
        error, manifest = None, {"row_counts": {}}
        try:
            manifest = self.manifest(key)  # refused before anything is restored if its signature fails
            with psycopg.connect(scratch_admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
            scratch_dsn = psycopg.conninfo.make_conninfo(scratch_admin_dsn, dbname=scratch)
            try:
                if manifest["tables"]:
                    self._copy_schema(scratch_dsn)
                self.restore(key, scratch_dsn, tables=manifest["tables"], manifest=manifest)
                with psycopg.connect(scratch_dsn) as conn:
                    mismatches = {}
                    for table, expected in manifest["row_counts"].items():
                        got = _count(conn, table)
                        if got != expected:
                            mismatches[table] = (expected, got)
                if mismatches:
                    raise BackupError(f"{key}: restored row counts differ from the manifest: {mismatches}")
            finally:
                with psycopg.connect(scratch_admin_dsn, autocommit=True) as admin:
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        except Exception as failure:  # noqa: BLE001 - recorded, then re-raised
            error = failure
        elapsed_ms = int((time.monotonic() - started) * 1000)
        with self._connect(autocommit=True) as conn:
            self._log_table(conn)
            conn.execute(
                "UPDATE coldcopy_ops.backup_log SET verification = %s, verified_at = now(), verification_ms = %s, "
                "verification_error = %s WHERE object_key = %s",
                ("failed" if error else "verified", elapsed_ms, reason_of(error)[:2000] if error else None, key))
        if error:
            raise error  # BackupError: the backup is bad; anything else (S3, network) is worth a retry
        log.info("verified %s: %d tables match in %d ms", key, len(manifest["row_counts"]), elapsed_ms)
        return {"object_key": key, "tables": len(manifest["row_counts"]), "verification_ms": elapsed_ms}

    # -- retention -----------------------------------------------------------------------------------------

    def expired(self, now: datetime | None = None) -> list[str]:
        """Backup objects past their class's retention, never the newest verified backup of each kind (the
        whole database, and each table set, separately)."""
        now = now or datetime.now(UTC)
        backups = []
        for obj in self._list(f"{PREFIX}/"):
            match = _KEY.match(obj["Key"])
            if match:
                stamp = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                backups.append((stamp, obj["Key"], match["cls"], match["name"]))
        with self._connect(autocommit=True) as conn:
            self._log_table(conn)
            verified = {k for (k,) in conn.execute(
                "SELECT object_key FROM coldcopy_ops.backup_log WHERE verification = 'verified'").fetchall()}
        newest_verified: dict[str, tuple] = {}
        for backup in sorted(b for b in backups if b[1] in verified):
            newest_verified[backup[3]] = backup  # sorted by stamp: the last one of each kind stays
        kept = {b[1] for b in newest_verified.values()}
        return [key for stamp, key, klass, _ in sorted(backups) if now - stamp > RETENTION[klass] and key not in kept]

    def orphans(self, now: datetime | None = None) -> list[str]:
        """Backup objects without a manifest beside them, older than :data:`ORPHAN_AFTER` (a backup writes its
        manifest right after the upload): nothing can restore them, so they are only cost and exposure."""
        now = now or datetime.now(UTC)
        listed = self._list(f"{PREFIX}/")
        keys = {o["Key"] for o in listed}
        return sorted(o["Key"] for o in listed if _KEY.match(o["Key"]) and now - o["LastModified"] > ORPHAN_AFTER
                      and o["Key"].removesuffix(".dump.zst.gpg") + ".manifest.json" not in keys)

    def apply_retention(self, *, dry_run: bool, now: datetime | None = None) -> list[str]:
        """Delete expired backups and their manifests, and objects left without a manifest (``dry_run``: only
        list them). A backup whose manifest does not verify is not ours to delete: skipped and listed in
        :attr:`skipped` (the operator alerts), and the rest still run."""
        self.skipped = []
        done = []
        for key in self.expired(now):
            try:
                self.manifest(key)
            except BackupError as error:
                self.skipped.append(str(error))
                log.error("retention skips %s: %s", key, error)
                continue
            done.append(key)
            if dry_run:
                log.info("dry run: would delete %s", key)
                continue
            self.client.delete_object(Bucket=self.bucket, Key=key)
            self.client.delete_object(Bucket=self.bucket, Key=key.removesuffix(".dump.zst.gpg") + ".manifest.json")
            with self._connect(autocommit=True) as conn:
                conn.execute("UPDATE coldcopy_ops.backup_log SET deleted_at = now() WHERE object_key = %s", (key,))
            log.info("deleted expired backup %s", key)
        for key in self.orphans(now):
            done.append(key)
            if dry_run:
                log.info("dry run: would delete %s (no manifest)", key)
                continue
            self.client.delete_object(Bucket=self.bucket, Key=key)
            log.warning("deleted %s: no manifest beside it", key)
        return done
