"""Verification: a backup restored into a scratch database, its row counts and safety fingerprint compared with
the signed manifest, the result recorded in the backup log."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime

import psycopg

from coldcopy import scratch as scratch_dbs
from coldcopy import verify_roles
from coldcopy.backups import safety
from coldcopy.backups.inventory import Inventory
from coldcopy.backups.layout import BackupError, _count
from coldcopy.backups.log import BackupLog
from coldcopy.backups.restorer import Restorer
from coldcopy.failure_reasons import reason_of
from coldcopy.steps import step

log = logging.getLogger(__name__)


class Verifier:
    """A backup restored into a scratch database, compared with its manifest, and the result recorded."""

    def __init__(self, backup_log: BackupLog, inventory: Inventory, restorer: Restorer) -> None:
        self.log, self.dsn, self.inventory, self.restorer = backup_log, backup_log.dsn, inventory, restorer

    def verify(self, key: str, scratch_admin_dsn: str, *, jobs: int) -> dict:
        """Restore ``key`` into a scratch database, compare every table's row count and what matters for safety
        (row-level security, policies, the API roles' grants: :mod:`coldcopy.backups.safety`) with the manifest,
        drop the scratch database, and record the result in ``coldcopy_ops.backup_log``."""
        started = time.monotonic()
        scratch = f"coldcopy_verify_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
        error, manifest = None, {"row_counts": {}}
        try:
            manifest = self.inventory.manifest(key)  # refused before anything is restored if its signature fails
            try:
                verify_roles.prepare(self.dsn, scratch_admin_dsn)  # the roles its grants name, NOLOGIN
            except verify_roles.MissingRoles as missing:  # no retry creates them: failed for good, the command in it
                raise BackupError(str(missing)) from missing
            with psycopg.connect(scratch_admin_dsn, autocommit=True) as admin:
                scratch_dbs.sweep(admin)
                scratch_dbs.create(admin, scratch, "verify")
            scratch_dsn = psycopg.conninfo.make_conninfo(scratch_admin_dsn, dbname=scratch)
            try:
                if manifest["tables"]:
                    self.restorer.copy_schema(scratch_dsn)
                self.restorer.restore(key, scratch_dsn, tables=manifest["tables"], manifest=manifest, jobs=jobs)
                step("backup_verify.restored")  # the scratch copy exists, full of production's rows
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
        with self.log.connect(autocommit=True) as conn:
            self.log.ensure(conn)
            conn.execute(
                "UPDATE coldcopy_ops.backup_log SET verification = %s, verified_at = now(), verification_ms = %s, "
                "verification_error = %s WHERE object_key = %s",
                ("failed" if error else "verified", elapsed_ms, reason_of(error)[:2000] if error else None, key))
        if error:
            raise error  # BackupError: the backup is bad; anything else (S3, network) is worth a retry
        log.info("verified %s: %d tables match in %d ms", key, len(manifest["row_counts"]), elapsed_ms)
        return {"object_key": key, "tables": len(manifest["row_counts"]), "verification_ms": elapsed_ms,
                "safety": "compared" if "safety" in manifest else "not recorded"}

