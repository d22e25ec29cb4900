"""A backup back into a database: bound to its signed manifest before any byte reaches gpg, then
``gpg --decrypt | zstd -d | pg_restore``, streamed or (parallel) from a private spool."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path

import psycopg

from coldcopy import kill_targets
from coldcopy.backups import offsets, spool, toc
from coldcopy.backups.inventory import Inventory
from coldcopy.backups.layout import BackupError, _Pipeline
from coldcopy.backups.log import BackupLog
from coldcopy.crypto import (
    UntrustedObject,
    gpg_decrypt_popen,
    relay_checked,
    spool_bound,
)
from coldcopy.object_store import Bucket
from coldcopy.pg_tools import client_popen, minimal_env, pg_program

log = logging.getLogger(__name__)


class Restorer:
    """Restores from the bucket; :attr:`timings` and :attr:`left_out` describe the last restore."""

    def __init__(self, backup_log: BackupLog, bucket: Bucket, passphrase: str, inventory: Inventory,
                 spool_dir: str | None) -> None:
        self.log, self.dsn, self.bucket, self.passphrase = backup_log, backup_log.dsn, bucket, passphrase
        self.inventory, self.spool_dir = inventory, spool_dir
        self.timings: dict = {}
        self.left_out: list[str] = []

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
        manifest = manifest or self.inventory.manifest(key)
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
            zstd = kill_targets.popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=fd,
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
            zstd = kill_targets.popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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

    def copy_schema(self, target_dsn: str) -> None:
        """The source database's schema (no data) into ``target_dsn``: ``pg_dump -s`` into a file, then
        ``pg_restore`` of what the login may restore there (:mod:`coldcopy.backups.toc`). Without foreign keys
        and triggers: the scratch copy only counts a table backup's rows, whose parents are not in it (a
        superuser's ``--disable-triggers`` load skipped them; a non-superuser's cannot)."""
        with self.log.connect() as conn:
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
