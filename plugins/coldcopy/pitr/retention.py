"""Retention of the change archive follows the backups it extends: a segment is kept while a retained
whole-database backup may need it (from the segment before that backup's LSN on), a chain no retained
backup uses is deleted, except the newest chain of each database (its first backup may not exist yet).

What was deleted is recorded first, signed (``pitr/<chain>/pruned.json``: the last deleted segment's seq,
hash and end), so the chain still verifies from the first kept segment, and an interrupted prune resumes.
Only segments whose manifests verify are counted or deleted. See docs/pitr.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from coldcopy import manifests
from coldcopy.object_store import Bucket
from coldcopy.pitr import chain as chains
from coldcopy.pitr.pgoutput import lsn_int

log = logging.getLogger(__name__)


def pruner(bucket: Bucket, keys: manifests.Keyring) -> Callable[[list[dict], bool], list[str]]:
    """:func:`prune` as a backup runner's ``extended_by`` (:class:`coldcopy.backups.BackupRunner`): the change archive
    is pruned with the backups it extends, by whoever composes the two (the backup operators)."""
    return lambda kept, dry_run: prune(bucket, keys, kept, dry_run=dry_run)


def prune(bucket: Bucket, keys: manifests.Keyring, backups: list[dict], *, dry_run: bool) -> list[str]:
    """Delete what no retained backup (``backups``: their verified manifests) needs; returns the keys."""
    by_database: dict[str, list[chains.Chain]] = {}
    for name in chains.list_chains(bucket):
        try:
            chain = chains.load_chain(bucket, name, keys)
        except manifests.ManifestRejected as error:
            log.error("change archive retention skips chain %s: %s", name, error)
            continue
        by_database.setdefault(chain.head["database"], []).append(chain)
    deleted: list[str] = []
    for database, found in by_database.items():
        points = sorted(lsn_int(b["pitr"]["lsn"]) for b in backups if b.get("pitr") and b["database"] == database)
        for index, chain in enumerate(found):
            newest = index == len(found) - 1
            extended = [p for p in points if p >= chain.start_lsn and (newest or p < found[index + 1].start_lsn)]
            if not extended and not newest:
                deleted += _delete_chain(bucket, chain, dry_run)
            elif extended:
                deleted += _prune_before(bucket, keys, chain, extended[0], dry_run)
    return deleted


def _delete_chain(bucket: Bucket, chain: chains.Chain, dry_run: bool) -> list[str]:
    doomed = sorted(bucket.list_keys(f"{chains.PREFIX}/{chain.name}/"))
    doomed.sort(key=lambda k: k.endswith("chain.json"))  # the head last: an interrupted delete is found again
    for key in doomed:
        if not dry_run:
            bucket.delete(key)
    log.info("%s chain %s (%d objects): no retained backup uses it", "would delete" if dry_run else "deleted",
             chain.name, len(doomed))
    return doomed


def _prune_before(bucket: Bucket, keys: manifests.Keyring, chain: chains.Chain, oldest: int,
                  dry_run: bool) -> list[str]:
    good = chain.consistent_prefix()
    first = next((i for i, s in enumerate(good) if lsn_int(s["end_lsn"]) >= oldest), len(good))
    doomed = good[:max(first - 1, 0)]  # the segment before the backup's LSN stays (see recovery.plan)
    if not doomed:
        return []
    last = doomed[-1]
    keys_out = [k for s in doomed for k in (s["object_key"], chains.manifest_key(s["object_key"]))]
    if dry_run:
        return keys_out
    record = {"chain": chain.name, "through_seq": last["seq"], "last_hash": chains.segment_hash(last),
              "end_lsn": last["end_lsn"], "last_commit": last["last_commit"],
              "pruned_at": datetime.now(UTC).isoformat()}
    bucket.put(f"{chains.PREFIX}/{chain.name}/pruned.json", manifests.dump(record, keys, type="pruned"),
               "application/json")
    for key in keys_out:
        bucket.delete(key)
    log.info("chain %s: deleted segments %d..%d (before the oldest retained backup)", chain.name,
             doomed[0]["seq"], last["seq"])
    return keys_out
