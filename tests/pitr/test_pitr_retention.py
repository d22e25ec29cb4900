"""Retention of the change archive follows the backups it extends: segments only an expired backup needed
go (a signed record keeps the rest of the chain verifiable), a chain no retained backup uses goes, and
what is kept still restores."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery, retention
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.pitr.setup import Setup
from coldcopy.testing import local_env
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
from tests.support.pitr import tagged, write


def test_retention_of_segments_follows_the_backups_they_extend(pitr_db, spaces, logical):
    archiver = ChangeArchiver(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING,
                          extended_by=[retention.pruner(spaces, KEYRING)])  # as the backup operators compose it
    now = datetime.now(UTC)
    archiver.drain_once()
    first = runner.backup(retention_class="standard")
    for tag in ("a", "b"):
        write(pitr_db, tag)
        archiver.drain_once()
    time.sleep(1.1)
    second = runner.backup(retention_class="compliance", now=now + timedelta(minutes=1))
    for tag in ("c", "d"):
        write(pitr_db, tag)
        archiver.drain_once()
    with psycopg.connect(pitr_db, autocommit=True) as conn:
        conn.execute("UPDATE coldcopy_ops.backup_log SET verification = 'verified'")
    [name] = chains.list_chains(spaces)
    assert [s["seq"] for s in chains.load_chain(spaces, name, KEYRING).segments] == [1, 2, 3, 4]

    assert first.object_key in runner.apply_retention(dry_run=True, now=now + timedelta(days=40))
    assert len(chains.load_chain(spaces, name, KEYRING).segments) == 4  # a dry run deletes nothing
    deleted = runner.apply_retention(dry_run=False, now=now + timedelta(days=40))
    assert first.object_key in deleted and second.object_key not in deleted
    chain = chains.load_chain(spaces, name, KEYRING)
    assert [s["seq"] for s in chain.segments] == [2, 3, 4]  # 1 only served the first backup; 2 precedes the second
    assert chain.pruned["through_seq"] == 1 and chain.break_after() is None and not chain.problems
    time.sleep(1.1)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    archiver.tip_every_s = 0
    archiver.drain_once()
    plan = recovery.plan(runner, at)
    assert plan.backup_key == second.object_key
    target = local_env.create_database(logical.dsn, f"{psycopg.conninfo.conninfo_to_dict(pitr_db)['dbname']}_kept")
    runner.restore(plan.backup_key, target, manifest=plan.backup)
    recovery.replay(runner, plan, target, migrate=marker_applier(target))
    assert tagged(target) == tagged(pitr_db)
    with pytest.raises(recovery.RecoveryError, match="earliest possible point"):
        recovery.plan(runner, datetime.fromisoformat(first.manifest["pitr"]["snapshot_time"]).replace(microsecond=0))

    with psycopg.connect(pitr_db, autocommit=True) as conn:  # the chain breaks; a new one starts
        Setup(conn).drop_slot()
    archiver.drain_once()
    time.sleep(1.1)
    third = runner.backup(retention_class="compliance", now=now + timedelta(minutes=2))
    with psycopg.connect(pitr_db, autocommit=True) as conn:
        conn.execute("UPDATE coldcopy_ops.backup_log SET verification = 'verified'")
    assert len(chains.list_chains(spaces)) == 2
    deleted = runner.apply_retention(dry_run=False, now=now + timedelta(days=400))
    assert second.object_key in deleted and third.object_key not in deleted
    assert chains.list_chains(spaces) != [name] and name not in chains.list_chains(spaces)  # nothing uses it now
    assert not [k for k in spaces.list_keys(f"{chains.PREFIX}/{name}/")]
