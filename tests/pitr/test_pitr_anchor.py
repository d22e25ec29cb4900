"""A change archive anchored outside the bucket (issue 31, 2): someone who can delete objects but holds no key
removes the newest segment (its manifest, the tip) or the whole newest chain. Before, the next drain reused the
sequence number and linked to the segment before (or fell back to the older chain and extended it across the
gap), and a restore "as of now" succeeded without those transactions. The database records what it archived
(``coldcopy_ops.change_archive``): the archiver refuses, db_health breaches, a restore names the gap."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from coldcopy.backups import BackupRunner
from coldcopy.health import Thresholds
from coldcopy.health.change_archive import check_change_archive
from coldcopy.health.results import Context
from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
from tests.support.pitr import archiver_for, write


def delete_chain_objects(bucket, prefix: str) -> None:
    for key in bucket.list_keys(prefix):
        bucket.delete(key)


def health(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        [result] = check_change_archive(Context(conn, Thresholds()))
    return result


def test_the_newest_segment_deleted_is_refused_by_the_archiver_health_and_the_restore(pitr_db, spaces):
    archiver = archiver_for(pitr_db, spaces)
    archiver.tip_every_s = 0
    archiver.drain_once()
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    for tag in ("alpha", "bravo"):
        write(pitr_db, tag)
        archiver.drain_once()
    [name] = chains.list_chains(spaces)
    bravo = chains.load_chain(spaces, name, KEYRING).tip
    for key in (bravo["object_key"], chains.manifest_key(bravo["object_key"]), f"{chains.PREFIX}/{name}/tip.json"):
        spaces.delete(key)  # the slot has moved past bravo: only the database remembers it
    write(pitr_db, "charlie")
    with pytest.raises(chains.ChainError, match=f"lacks segments {bravo['seq']}..{bravo['seq']}, which the database "
                                                f"records as archived: the bucket's newest whole one is "
                                                f"{bravo['seq'] - 1}"):
        archiver.drain_once()
    assert chains.load_chain(spaces, name, KEYRING).tip["seq"] == bravo["seq"] - 1  # nothing reused its number
    result = health(pitr_db)
    assert result.state == "breach" and "differs from the database's record" in result.summary
    time.sleep(1.1)
    now = datetime.now(UTC).replace(microsecond=0)
    with pytest.raises(recovery.RecoveryError, match=f"lacks segments {bravo['seq']}..{bravo['seq']}, which the "
                                                     "database records as archived"):
        recovery.plan(runner, now, anchor=recovery.read_anchor(pitr_db))
    with pytest.raises(chains.ChainError):  # still refused: the gap does not heal by itself
        archiver.drain_once()


def test_a_whole_newest_chain_deleted_is_not_bridged_by_the_older_one(pitr_db, spaces):
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    write(pitr_db, "old")
    archiver.drain_once()
    with psycopg.connect(pitr_db, autocommit=True) as conn:  # the slot lost: the next drain starts a new chain
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
    archiver.drain_once()
    write(pitr_db, "new")
    archiver.drain_once()
    older, newer = chains.list_chains(spaces)
    delete_chain_objects(spaces, f"{chains.PREFIX}/{newer}/")
    write(pitr_db, "after")
    with pytest.raises(chains.ChainError, match=f"database records chain {newer} at segment 1, and the bucket's "
                                                f"newest chain for slot .* is {older}"):
        archiver.drain_once()
    assert [s["seq"] for s in chains.load_chain(spaces, older, KEYRING).segments] == [1]  # not extended
    assert health(pitr_db).state == "breach"
