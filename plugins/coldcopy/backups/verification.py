"""Restore (bound to the signed manifest before any byte reaches gpg), resolution of `latest`, verification."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from coldcopy import manifests, sessions, verify_roles
from coldcopy import scratch as scratch_dbs
from coldcopy.alerts import reason_of
from coldcopy.backups import offsets, safety, spool, toc
from coldcopy.backups.common import _KEY, PREFIX, BackupError, _count, _Pipeline
from coldcopy.crypto import (
    UntrustedObject,
    gpg_decrypt_popen,
    relay_checked,
    spool_bound,
)
from coldcopy.pg_tools import client_popen, minimal_env, pg_program

log = logging.getLogger(__name__)


class Verification:
    """Restore (bound to the signed manifest before any byte reaches gpg), resolution of `latest`, verification.
    Mixed into :class:`coldcopy.backups.BackupRunner`."""

    def restore(self, key: str, target_dsn: str, *, tables: list[str] | None = None,
                manifest: dict | None = None, jobs: int = 1) -> dict:
        """``gpg --decrypt | zstd -d | pg_restore`` from the bucket into ``target_dsn``; returns the manifest.

        Bind before trust: the object is spooled and must equal its signed ``manifest`` (read here unless
        given) in key, size and sha256 before any byte reaches gpg (:func:`coldcopy.crypto.spool_bound`), and
        gpg must report an integrity-protected AES256 decryption. With ``tables``, only their rows are loaded
        (``--data-only``; ``--disable-triggers`` for a superuser) into a target that already has the schema:
        the archive's data entries of exactly those tables (and their partitions). A login that is no
        superuser (Supabase's postgres) restores what it may (:mod:`coldcopy.backups.toc`): the entries left
        out are logged and kept in :attr:`left_out`.

        ``jobs`` > 1 (a whole database into a new, private database: a scratch copy or a quarantine, dropped if
        anything fails) decrypts the bound object into a seekable file in the private spool and runs
        ``pg_restore --jobs`` on it: data and indexes load in parallel, but not in one transaction (PostgreSQL
        refuses ``--single-transaction`` with ``--jobs``), which is why only a database nobody else sees takes
        it; the data offsets a streamed dump lacks are written into it first (:mod:`coldcopy.backups.offsets`).
        The file has no name, so a killed task leaves no plaintext (:mod:`coldcopy.backups.spool`).
        :attr:`timings` says where the time went.
        """
        manifest = manifest or self.manifest(key)
        with psycopg.connect(target_dsn) as conn:
            server_major = conn.info.server_version // 10000
            can = toc.Capabilities.of(conn)
            wanted = toc.with_partitions(conn, tables) if tables else None
        program = pg_program("pg_restore", server_major)
        parallel = jobs > 1 and not tables
        args = [program, "--no-owner", "--exit-on-error"]
        args += [f"--jobs={jobs}"] if parallel else ["--single-transaction"]
        if tables:  # DISABLE TRIGGER ALL is refused to a non-superuser (the foreign keys' system triggers)
            args += ["--data-only"] + (["--disable-triggers"] if can.superuser else [])
        self.left_out = []
        self.timings = timings = {"jobs": jobs if parallel else 1}
        began = time.monotonic()
        try:
            with spool.workdir(self.spool_dir) as work, \
                    spool_bound(self.bucket, key, manifest, directory=str(work)) as spooled, \
                    spool.plaintext(work if parallel else None) as source:
                # source: the decrypted dump's descriptor (parallel), else gpg streams it each time
                timings["download_s"] = time.monotonic() - began
                if source is not None:
                    self._decrypt_into(spooled, key, source)
                    Path(spooled).unlink()  # bound, decrypted and no longer needed: half the spool back
                    timings["offsets"] = offsets.add_offsets(spool.path_of(source))  # the workers seek
                    timings["decrypt_s"] = time.monotonic() - began - timings["download_s"]
                if tables or not can.superuser:  # what to restore, chosen from the archive's own contents
                    listing = self._pg_restore(spooled, source, key, [program, "-l", "-v"], None)
                    try:
                        chosen, self.left_out = toc.restorable(listing, can, tables=wanted)
                    except LookupError as error:
                        raise BackupError(f"{key}: {error}") from error
                    (Path(work) / "restore.list").write_text(chosen)
                    args += ["-L", str(Path(work) / "restore.list")]
                    for line in toc.log_lines(self.left_out):
                        log.warning("%s: left out of the restore: %s", key, line)
                loading = time.monotonic()
                self._pg_restore(spooled, source, key, args, target_dsn)
                timings["restore_s"] = time.monotonic() - loading
        except UntrustedObject as error:
            raise BackupError(str(error)) from error
        timings["total_s"] = time.monotonic() - began
        return manifest

    def _pg_restore(self, spooled: str, source: int | None, key: str, args: list[str], target_dsn: str | None) -> str:
        """``args`` (pg_restore) on the decrypted file ``source`` (a descriptor handed down), or streamed through
        gpg from ``spooled``."""
        if source is None:
            return self._through_gpg(spooled, key, args, target_dsn)
        restore = client_popen([*args, spool.path_of(source)], target_dsn or self.dsn, pass_fds=(source,),
                               stdout=subprocess.PIPE if target_dsn is None else subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        output, errors = restore.communicate()
        if restore.returncode:
            raise BackupError(f"restore of {key} failed: pg_restore exited {restore.returncode}: "
                              f"{errors.decode(errors='replace').strip()[:500]}")
        return output.decode() if target_dsn is None else ""

    def _decrypt_into(self, spooled: str, key: str, fd: int) -> None:
        """``gpg --decrypt <spooled> | zstd -d > fd``: not one byte reaches zstd before gpg said it is
        decrypting AES256 with integrity protection, and the file is used only if both exited cleanly."""
        with open(spooled, "rb") as source:
            gpg, status = gpg_decrypt_popen(self.passphrase, source, subprocess.PIPE)
            zstd = sessions.popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=fd,
                                  stderr=subprocess.PIPE, env=minimal_env())
            pipeline = _Pipeline({"gpg": gpg, "zstd": zstd})
            if problem := relay_checked(gpg, status, zstd.stdin):
                pipeline.kill()
                pipeline.failures()
                raise UntrustedObject(f"{self.bucket.uri}/{key}: {problem}; nothing was restored")
            failures = pipeline.failures()
        if (problem := status.problem()) or failures:
            raise BackupError(f"restore of {key} failed: {problem or failures}")

    def _through_gpg(self, spooled: str, key: str, args: list[str], target_dsn: str | None) -> str:
        """``gpg --decrypt <spooled> | zstd -d | <args>`` (pg_restore); returns its output when it has no
        target (``-l``: it stops reading after the table of contents, and what it leaves unread is no failure)."""
        with open(spooled, "rb") as source:
            gpg, status = gpg_decrypt_popen(self.passphrase, source, subprocess.PIPE)
            zstd = sessions.popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=minimal_env())
            restore = client_popen(args, target_dsn or self.dsn, stdin=zstd.stdout,
                                   stdout=subprocess.PIPE if target_dsn is None else subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
            zstd.stdout.close()
            listing: list[bytes] = []
            reader = None
            if target_dsn is None:
                reader = threading.Thread(target=lambda: listing.append(restore.stdout.read()), daemon=True)
                reader.start()
            pipeline = _Pipeline({"gpg": gpg, "zstd": zstd, "pg_restore": restore})
            # Not one byte reaches zstd and pg_restore before gpg said it is decrypting AES256 with integrity
            # protection (a plain literal packet would pass `gpg --decrypt` with exit 0).
            if problem := relay_checked(gpg, status, zstd.stdin):
                pipeline.kill()
                pipeline.failures()
                raise UntrustedObject(f"{self.bucket.uri}/{key}: {problem}; nothing was restored")
            failures = pipeline.failures()
            if reader is not None:
                reader.join()
                restore.stdout.close()
                if restore.returncode == 0:
                    return b"".join(listing).decode()
        problem = status.problem()
        if problem or failures:
            raise BackupError(f"restore of {key} failed: {problem or failures}")
        return ""

    def _copy_schema(self, target_dsn: str) -> None:
        """The source database's schema (no data) into ``target_dsn``: ``pg_dump -s`` into a file, then
        ``pg_restore`` of what the login may restore there (:mod:`coldcopy.backups.toc`). Without foreign keys
        and triggers: the scratch copy only counts a table backup's rows, whose parents are not in it (a
        superuser's ``--disable-triggers`` load skipped them; a non-superuser's cannot)."""
        with self._connect() as conn:
            major = conn.info.server_version // 10000
        with psycopg.connect(target_dsn) as conn:
            can = toc.Capabilities.of(conn)
        with spool.workdir(self.spool_dir) as work:
            dump_file, list_file = str(work / "schema.dump"), work / "restore.list"
            dump = client_popen([pg_program("pg_dump", major), "-Fc", "-s", "--no-password", "-f", dump_file],
                                self.dsn, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, errors = dump.communicate()
            if dump.returncode:
                raise BackupError(f"could not dump the schema for verification: {errors.decode()[:500]}")
            args = [pg_program("pg_restore", major), "--no-owner", "--exit-on-error"]
            listing = client_popen([args[0], "-l", "-v", dump_file], target_dsn, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE).communicate()[0].decode()
            chosen, _ = toc.restorable(listing, can, without=("FK CONSTRAINT", "TRIGGER"))
            list_file.write_text(chosen)
            args += ["-L", str(list_file)]
            restore = client_popen([*args, dump_file], target_dsn, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, errors = restore.communicate()
            if restore.returncode:
                raise BackupError(f"could not copy the schema for verification: {errors.decode()[:500]}")

    def resolve(self, which: str) -> tuple[str, dict]:
        """Object key and verified manifest of ``latest`` (newest whole-database backup), of the newest one on
        a ``YYYY-MM-DD``, or of ``which`` itself when it is a key. Reads the bucket only: works when the
        database is gone. A backup whose manifest is missing, forged or describes another object is skipped
        (listed in :attr:`skipped`), not fatal: the next one back is used."""
        if _KEY.match(which):
            return which, self.manifest(which)
        self.skipped = []
        candidates = self.database_backups(None if which == "latest" else which.replace("-", ""))
        if not candidates:
            newest = sorted(self.database_backups(), key=lambda c: c[:2])[-5:] if which != "latest" else []
            hint = ("; the newest ones: " + ", ".join(key for _, key, _ in reversed(newest))
                    + " (give one of these keys, a YYYY-MM-DD, or latest)") if newest else \
                "; the bucket holds no whole-database backup that verifies: run backup_to_spaces first"
            raise BackupError(f"no whole-database backup matches {which!r} in {self.bucket.uri}/{PREFIX}/{hint}")
        _, key, manifest = max(candidates, key=lambda c: c[:2])
        return key, manifest

    def database_backups(self, stamp_prefix: str | None = None) -> list[tuple[str, str, dict]]:
        """``(stamp, key, manifest)`` of every whole-database backup whose manifest verifies (optionally only
        stamps starting with ``stamp_prefix``); the others are added to :attr:`skipped`."""
        candidates = []
        for obj in self._list(f"{PREFIX}/"):
            match = _KEY.match(obj["Key"])
            if match and (stamp_prefix is None or match["stamp"].startswith(stamp_prefix)):
                try:
                    manifest = self.manifest(obj["Key"])
                except BackupError as error:
                    self.skipped.append(str(error))
                    log.error("skipping %s: %s", obj["Key"], error)
                    continue
                if manifest["kind"] == "database":
                    candidates.append((match["stamp"], obj["Key"], manifest))
        return sorted(candidates, key=lambda c: c[:2])

    def manifest(self, key: str) -> dict:
        """The backup's manifest, once its signature verifies (:class:`BackupError` otherwise)."""
        manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
        try:
            raw = self.bucket.get(manifest_key)
        except self.bucket.client.exceptions.NoSuchKey:
            raise BackupError(f"{self.bucket.uri}/{manifest_key}: no manifest beside the backup") from None
        try:
            manifest = manifests.load(raw, self.keyring, where=f"{self.bucket.uri}/{manifest_key}", type="backup")
        except manifests.ManifestRejected as error:
            raise BackupError(str(error)) from error
        if manifest.get("object_key") != key:  # a genuine manifest copied beside another object
            raise BackupError(f"{self.bucket.uri}/{manifest_key}: describes {manifest.get('object_key')!r}, "
                              f"not {key!r}; refusing to use it")
        return manifest

    def verify(self, key: str, scratch_admin_dsn: str) -> dict:
        """Restore ``key`` into a scratch database, compare every table's row count and what matters for safety
        (row-level security, policies, the API roles' grants: :mod:`coldcopy.backups.safety`) with the manifest,
        drop the scratch database, and record the result in ``coldcopy_ops.backup_log``."""
        started = time.monotonic()
        scratch = f"coldcopy_verify_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
        error, manifest = None, {"row_counts": {}}
        try:
            manifest = self.manifest(key)  # refused before anything is restored if its signature fails
            verify_roles.prepare(self.dsn, scratch_admin_dsn)  # the roles its grants name, NOLOGIN
            with psycopg.connect(scratch_admin_dsn, autocommit=True) as admin:
                scratch_dbs.sweep(admin)
                scratch_dbs.create(admin, scratch, "verify")
            scratch_dsn = psycopg.conninfo.make_conninfo(scratch_admin_dsn, dbname=scratch)
            try:
                if manifest["tables"]:
                    self._copy_schema(scratch_dsn)
                self.restore(key, scratch_dsn, tables=manifest["tables"], manifest=manifest, jobs=self.restore_jobs)
                with psycopg.connect(scratch_dsn) as conn:
                    mismatches = {}
                    for table, expected in manifest["row_counts"].items():
                        got = _count(conn, table)
                        if got != expected:
                            mismatches[table] = (expected, got)
                    restored = safety.fingerprint(conn, manifest["tables"]) if "safety" in manifest else None
                if mismatches:
                    raise BackupError(f"{key}: restored row counts differ from the manifest: {mismatches}")
                if restored is None:
                    log.warning("%s: no safety fingerprint in its manifest (a backup from before it): row-level "
                                "security, policies and grants not compared", key)
                elif differs := safety.differences(manifest["safety"], restored):
                    raise BackupError(f"{key}: the restored copy's row-level security, policies or grants differ "
                                      f"from the source's: {'; '.join(differs)}")
            finally:
                with psycopg.connect(scratch_admin_dsn, autocommit=True) as admin:
                    scratch_dbs.drop(admin, scratch)
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
        return {"object_key": key, "tables": len(manifest["row_counts"]), "verification_ms": elapsed_ms,
                "safety": "compared" if "safety" in manifest else "not recorded"}

