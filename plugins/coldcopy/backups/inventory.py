"""What the bucket holds: the backups whose signed manifests verify, `latest` and a day resolved to one of them,
the newest verified one, and a backup's retention class. Reads the bucket only (and the backup log for what
verified): works when the database is gone."""

from __future__ import annotations

import logging
from datetime import datetime

from coldcopy import manifests
from coldcopy.backups.layout import _KEY, PREFIX, BackupError
from coldcopy.backups.log import BackupLog
from coldcopy.object_store import Bucket

log = logging.getLogger(__name__)


class Inventory:
    """The bucket's backups, each bound to its signed manifest. A refused manifest is added to ``skipped`` (the
    runner's list, shared with retention), never fatal."""

    def __init__(self, bucket: Bucket, keyring: manifests.Keyring, backup_log: BackupLog, skipped: list[str]) -> None:
        self.bucket, self.keyring, self.log, self.skipped = bucket, keyring, backup_log, skipped

    def list_objects(self, prefix: str) -> list[dict]:
        return self.bucket.list_objects(prefix)

    def resolve(self, which: str) -> tuple[str, dict]:
        """Object key and verified manifest of ``latest`` (newest whole-database backup), of the newest one on
        a ``YYYY-MM-DD``, or of ``which`` itself when it is a key. Reads the bucket only: works when the
        database is gone. A backup whose manifest is missing, forged or describes another object is skipped
        (listed in :attr:`skipped`), not fatal: the next one back is used."""
        if _KEY.match(which):
            return which, self.manifest(which)
        self.skipped.clear()
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
        for obj in self.list_objects(f"{PREFIX}/"):
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

    def retention_class(self, now: datetime, label: str) -> str:
        """``compliance`` for the month's first backup of ``label`` (the database, or its table set), else
        ``standard``: every kind of backup keeps one a month for a year."""
        month = now.strftime("%Y/%m")
        first_of_month = not any(
            (match := _KEY.match(o["Key"])) and match["name"] == label
            for o in self.list_objects(f"{PREFIX}/compliance/{month}/"))
        return "compliance" if first_of_month else "standard"

    def newest_verified(self) -> tuple[str, dict]:
        """The key and manifest of the newest whole-database backup whose restore was verified
        (``coldcopy_ops.backup_log``), else of the newest whole-database backup (a rehearsal's copy)."""
        with self.log.connect(autocommit=True) as conn:
            self.log.ensure(conn)
            verified = {k for (k,) in conn.execute(
                "SELECT object_key FROM coldcopy_ops.backup_log WHERE verification = 'verified' "
                "AND kind = 'database' AND deleted_at IS NULL")}
        candidates = self.database_backups()
        chosen = [c for c in candidates if c[1] in verified] or candidates
        if not chosen:
            raise BackupError("no whole-database backup to rehearse on: run backup_to_spaces first")
        _, key, manifest = chosen[-1]
        return key, manifest
