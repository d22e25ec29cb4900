"""Retention: expired backups and leftovers without a manifest deleted, never an untrusted one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from coldcopy import manifests
from coldcopy.backups.inventory import Inventory
from coldcopy.backups.layout import _KEY, ORPHAN_AFTER, PREFIX, RETENTION, BackupError
from coldcopy.backups.log import BackupLog
from coldcopy.object_store import Bucket
from coldcopy.steps import step

log = logging.getLogger(__name__)


class BackupRetention:
    """Retention: expired backups and leftovers without a manifest deleted, never an untrusted one."""

    def __init__(self, bucket: Bucket, keyring: manifests.Keyring, backup_log: BackupLog, inventory: Inventory,
                 skipped: list[str], extended_by: Sequence[Callable[[list[dict], bool], list[str]]] = ()) -> None:
        self.bucket, self.keyring, self.log, self.inventory, self.skipped = (bucket, keyring, backup_log, inventory,
                                                                             skipped)
        self.extended_by = list(extended_by)  # what extends the kept backups (the change archive), pruned with them

    def expired(self, now: datetime | None = None) -> list[str]:
        """Backup objects past their class's retention, never the newest verified backup of each kind (the
        whole database, and each table set, separately)."""
        now = now or datetime.now(UTC)
        backups = []
        for obj in self.inventory.list_objects(f"{PREFIX}/"):
            match = _KEY.match(obj["Key"])
            if match:
                stamp = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                backups.append((stamp, obj["Key"], match["cls"], match["name"]))
        with self.log.connect(autocommit=True) as conn:
            self.log.ensure(conn)
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
        listed = self.inventory.list_objects(f"{PREFIX}/")
        keys = {o["Key"] for o in listed}
        return sorted(o["Key"] for o in listed if _KEY.match(o["Key"]) and now - o["LastModified"] > ORPHAN_AFTER
                      and o["Key"].removesuffix(".dump.zst.gpg") + ".manifest.json" not in keys)

    def stray_manifests(self, now: datetime | None = None) -> list[str]:
        """Backup manifests without their backup beside them, older than :data:`ORPHAN_AFTER` (a retention run
        killed between its two deletes, before the manifest went first): they name a backup nothing can restore."""
        now = now or datetime.now(UTC)
        listed = self.inventory.list_objects(f"{PREFIX}/")
        keys = {o["Key"] for o in listed}
        return sorted(o["Key"] for o in listed if o["Key"].endswith(".manifest.json")
                      and _KEY.match(o["Key"].removesuffix(".manifest.json") + ".dump.zst.gpg")
                      and now - o["LastModified"] > ORPHAN_AFTER
                      and o["Key"].removesuffix(".manifest.json") + ".dump.zst.gpg" not in keys)

    def _deleted(self, key: str) -> None:
        with self.log.connect(autocommit=True) as conn:
            conn.execute("UPDATE coldcopy_ops.backup_log SET deleted_at = now() WHERE object_key = %s "
                         "AND deleted_at IS NULL", (key,))

    def apply_retention(self, *, dry_run: bool, now: datetime | None = None) -> list[str]:
        """Delete expired backups and their manifests, and objects left without a manifest (``dry_run``: only
        list them). A backup whose manifest does not verify is not ours to delete: skipped and listed in
        :attr:`skipped` (the operator alerts), and the rest still run."""
        self.skipped.clear()
        done = []
        for key in self.expired(now):
            try:
                self.inventory.manifest(key)
            except BackupError as error:
                self.skipped.append(str(error))
                log.error("retention skips %s: %s", key, error)
                continue
            done.append(key)
            if dry_run:
                log.info("dry run: would delete %s", key)
                continue
            # The manifest first: a run killed between the two leaves an object without a manifest, which the next
            # run's orphan sweep deletes; the other order left a manifest naming nothing, forever (issue 45).
            self.bucket.delete(key.removesuffix(".dump.zst.gpg") + ".manifest.json")
            step("retention.manifest_deleted")  # the object still there, now an orphan
            self.bucket.delete(key)
            step("retention.object_deleted")
            self._deleted(key)
            log.info("deleted expired backup %s", key)
        if not dry_run:  # a backup killed mid-stream leaves its upload open, under a key no later run writes
            for key in self.bucket.abort_unfinished_uploads(f"{PREFIX}/", prefix=True,
                                                            started_before=(now or datetime.now(UTC)) - ORPHAN_AFTER):
                log.warning("aborted the unfinished upload of %s: a backup killed mid-stream left it", key)
        for key in self.orphans(now) + self.stray_manifests(now):
            done.append(key)
            if dry_run:
                log.info("dry run: would delete %s (no manifest, or no backup beside it)", key)
                continue
            self.bucket.delete(key)
            self._deleted(key.removesuffix(".manifest.json") + ".dump.zst.gpg")
            log.warning("deleted %s: no manifest beside it, or no backup beside the manifest", key)
        kept = [m for _, key, m in self.inventory.database_backups() if key not in done]
        self.skipped[:] = list(dict.fromkeys(self.skipped))  # a refused manifest is reported once
        if not self.extended_by:  # the backup operators always give the change archive's pruner
            log.warning("backup retention without extended_by: the change archive's segments are not pruned with "
                        "the backups they extend (coldcopy.pitr.retention.pruner)")
        for prune in self.extended_by:  # given by whoever composes the runner (coldcopy.pitr.retention.pruner)
            done += prune(kept, dry_run)
        return done
