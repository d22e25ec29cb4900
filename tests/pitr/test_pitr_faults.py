"""The change archive under faults and bad input: a drain interrupted after its segment (task killed, database
restarted) or by the endpoint going away loses and doubles nothing; a deleted or swapped segment is refused
with the gap named; an undrained slot past its budget is dropped with an alert-worthy breach and the archive
starts a new chain; an ``as_of`` the archive cannot serve is refused with the nearest point, nothing created."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from coldcopy.backups import BackupRunner
from coldcopy.crypto import UntrustedObject
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.object_store import Bucket
from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery
from coldcopy.testing import local_env
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
from tests.support.pitr import archiver_for, confirmed, restore_now, restored_base, tagged, write


def archived_inserts(bucket: Bucket, keys, table: str = "public.suppression_list") -> int:
    [name] = chains.list_chains(bucket)
    return sum(s["tables"].get(table, {}).get("I", 0) for s in chains.load_chain(bucket, name, keys).segments)


def test_a_drain_killed_after_its_segment_neither_loses_nor_doubles(pitr_db, spaces, logical):
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    write(pitr_db, "killed")
    before = confirmed(pitr_db)

    def killed(conn, lsn):  # the task dies between the verified segment and the slot's advance
        raise KeyboardInterrupt("SIGTERM")

    real_advance, archiver._advance = archiver._advance, killed
    with pytest.raises(KeyboardInterrupt):
        archiver.drain_once()
    archiver._advance = real_advance
    assert confirmed(pitr_db) == before  # the slot did not move
    assert archiver.drain_once().seq is None  # the next drain finds the segment and finishes the advance
    assert confirmed(pitr_db) != before
    write(pitr_db, "after")
    # the database restarts while the next segment is being written: its connection dies before the advance
    real_write = archiver._write_segment

    def write_then_restart(*args, **kwargs):
        manifest = real_write(*args, **kwargs)
        logical.restart("fast")
        return manifest

    archiver._write_segment = write_then_restart
    with pytest.raises(psycopg.OperationalError):
        archiver.drain_once()
    archiver._write_segment = real_write
    archiver.drain_once()
    assert archived_inserts(spaces, KEYRING) == 10  # 5 + 5 inserts, each archived once
    target = restore_now(archiver, runner, pitr_db, logical.dsn)
    assert tagged(target) == tagged(pitr_db) and len(tagged(target)) == 10


def test_an_endpoint_going_away_mid_upload_leaves_the_slot_and_the_retry_archives_it(
        pitr_db, faulty_spaces, logical):
    proxy, flaky = faulty_spaces
    archiver = archiver_for(pitr_db, flaky)
    archiver.drain_once()
    runner = BackupRunner(pitr_db, flaky, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    write(pitr_db, "cut", rows=400)
    before = confirmed(pitr_db)
    proxy.fail_after(2_000)
    with pytest.raises(Exception):  # noqa: B017 - botocore's connection errors vary by where it was cut
        archiver.drain_once()
    proxy.heal()
    assert confirmed(pitr_db) == before
    archiver.drain_once()
    assert archived_inserts(flaky, KEYRING) == 400
    target = restore_now(archiver, runner, pitr_db, logical.dsn)
    assert tagged(target) == tagged(pitr_db)


def test_a_deleted_or_swapped_segment_is_refused_with_the_gap_named(pitr_db, spaces, logical):
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    time.sleep(1.1)
    commits = []
    for tag in ("one", "two", "three"):
        write(pitr_db, tag)
        archiver.drain_once()
        commits.append(datetime.now(UTC))
        time.sleep(1.1)
    archiver.tip_every_s = 0
    archiver.drain_once()
    [name] = chains.list_chains(spaces)
    one, two, three = chains.load_chain(spaces, name, KEYRING).segments
    sealed_two = spaces.get(two["object_key"])
    spaces.put(two["object_key"], spaces.get(three["object_key"]))  # swapped: a genuine segment, the wrong one
    plan = recovery.plan(runner, commits[2].replace(microsecond=0))
    target = local_env.create_database(logical.dsn, f"{psycopg.conninfo.conninfo_to_dict(pitr_db)['dbname']}_x")
    runner.restore(plan.backup_key, target, manifest=plan.backup)
    with pytest.raises(UntrustedObject, match="does not match its signed manifest"):
        recovery.replay(runner, plan, target, migrate=marker_applier(target))
    spaces.put(two["object_key"], sealed_two)
    spaces.delete(two["object_key"])
    spaces.delete(chains.manifest_key(two["object_key"]))  # deleted: the chain has a gap after segment 1
    with pytest.raises(recovery.RecoveryError, match=f"gap after segment {one['seq']}: the newest possible point "
                                                     f"is {one['last_commit'][:10]}"):
        recovery.plan(runner, commits[2].replace(microsecond=0))
    newest = datetime.fromisoformat(one["last_commit"]).replace(microsecond=0) - timedelta(seconds=1)
    assert recovery.plan(runner, newest).chain.name == name  # up to the point it names: fine
    with pytest.raises(chains.ChainError, match="refusing to extend it"):
        archiver.drain_once()


def test_an_undrained_slot_past_its_budget_is_dropped_and_the_archive_starts_a_new_chain(pitr_db, spaces):
    from coldcopy.health import Thresholds
    from coldcopy.health.change_archive import check_change_archive
    from coldcopy.health.results import Context

    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    write(pitr_db, "undrained", rows=2000)  # nobody drains: the slot keeps the WAL
    with psycopg.connect(pitr_db, autocommit=True, row_factory=dict_row) as conn:
        roomy = check_change_archive(Context(conn, Thresholds()))[0]
        assert roomy.state == "ok" and "retains" in roomy.summary
        [result] = check_change_archive(Context(conn, Thresholds(change_archive_budget_gb=0.0001)))
        assert result.state == "breach" and "broken" in result.summary and "over the" in result.summary
        assert conn.execute("SELECT count(*) AS n FROM pg_replication_slots").fetchone()["n"] == 0
        [again] = check_change_archive(Context(conn, Thresholds()))
        assert again.state == "breach"  # stays a breach until the archive restarts
    archiver.drain_once()  # a new slot, a new chain
    assert len(chains.list_chains(spaces)) == 2
    with psycopg.connect(pitr_db, autocommit=True, row_factory=dict_row) as conn:
        [healed] = check_change_archive(Context(conn, Thresholds()))
        assert healed.state == "ok"


def test_as_of_in_the_future_unparseable_or_outside_the_archive_is_refused_before_anything_is_created(
        pitr_db, spaces, backup_key, coldcopy_conn, logical):
    from airflow.sdk.exceptions import AirflowFailException

    from coldcopy.operators.restore import RestoreFromSpacesOperator
    from tests.conftest import FakeTaskInstance

    future = datetime.now(UTC) + timedelta(hours=1)
    for bad, message in (("yesterday", "not a timestamp"), ("2026-11-29 16:00:05", "no time zone"),
                         (f"{future:%Y-%m-%dT%H:%M:%SZ}", "in the future"),
                         ("2026-11-29T16:00:05.5Z", "whole seconds")):
        with pytest.raises(recovery.RecoveryError, match=message):
            recovery.parse_as_of(bad)
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    with pytest.raises(recovery.RecoveryError, match="no whole-database backup records a point"):
        recovery.plan(runner, datetime.now(UTC).replace(microsecond=0))
    taken = datetime.fromisoformat(runner.backup().manifest["pitr"]["snapshot_time"])
    with pytest.raises(recovery.RecoveryError, match=f"earliest possible point is {taken:%Y-%m-%dT%H:%M:%S}Z"):
        recovery.plan(runner, taken.replace(microsecond=0) - timedelta(hours=1))
    write(pitr_db, "late")
    archiver.drain_once()
    with pytest.raises(recovery.RecoveryError, match="newest possible point is"):
        recovery.plan(runner, datetime.now(UTC).replace(microsecond=0))  # this second is not over yet
    coldcopy_conn(pitr_db)
    target = "pitr_never_created"
    ti = FakeTaskInstance(dag_id="restore_from_spaces", run_id="r", task_id="restore")
    for as_of in ("tomorrow", f"{taken - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"):
        with pytest.raises(AirflowFailException, match="not a timestamp|earliest possible point"):
            RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target,
                                      as_of=as_of).execute({"ti": ti, "params": {}})
    with psycopg.connect(logical.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pitr_never%'").fetchone()[0] == 0


@pytest.mark.parametrize("jobs", [1, 2])
def test_rows_swapping_a_unique_value_replay_change_by_change(pitr_db, spaces, logical, jobs):
    """The bulk replay applies a run's net effect; two rows swapping a value of another unique key (UNIQUE
    (workspace_id, email)) collide there and nowhere else: that run is applied change by change instead."""
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    write(pitr_db, "swap", rows=2)  # in the base backup: the swap's net effect meets them there
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    write(pitr_db, "warm", rows=1)  # the tables are known to the replay before the swap: one run holds it all
    with psycopg.connect(pitr_db, autocommit=True) as conn:
        first, second = conn.execute("SELECT id, email FROM public.suppression_list WHERE email LIKE 'swap-%' "
                                     "ORDER BY email").fetchall()
        conn.execute("UPDATE public.suppression_list SET email = 'swap-tmp@example.com' WHERE id = %s", (first[0],))
        conn.execute("UPDATE public.suppression_list SET email = %s WHERE id = %s", (first[1], second[0]))
        conn.execute("UPDATE public.suppression_list SET email = %s WHERE id = %s", (second[1], first[0]))
    plan, target = restored_base(archiver, runner, pitr_db, logical.dsn, f"swap{jobs}")
    report = recovery.replay(runner, plan, target, jobs=jobs, migrate=marker_applier(target))
    assert report["runs_applied_one_by_one"] == 1
    with psycopg.connect(target) as conn:
        swapped = dict(conn.execute("SELECT id, email FROM public.suppression_list WHERE email LIKE 'swap-%'"))
    assert swapped == {first[0]: second[1], second[0]: first[1]}


def test_a_drain_reads_the_chain_again_only_when_it_changed(pitr_db, spaces, monkeypatch):
    """The chain's manifests are fetched and checked when the archiver starts and whenever its signed
    documents change in the bucket, not on every drain (a chain holds thousands of segments)."""
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    loads, real = [], chains.load_chain
    monkeypatch.setattr(chains, "load_chain", lambda bucket, name, keys: loads.append(name) or real(bucket, name, keys))
    for tag in ("one", "two", "three"):
        write(pitr_db, tag)
        assert archiver.drain_once().seq is not None
    assert loads == []
    [name] = chains.list_chains(spaces)
    second = chains.manifest_key(chains.segment_key(name, 2))
    edited = json.loads(spaces.get(second))
    edited["changes"] += 1
    spaces.put(second, json.dumps(edited).encode())  # edited behind the archiver's back
    with pytest.raises(chains.ChainError, match="refusing to extend it"):
        archiver.drain_once()
    assert loads == [name]


def test_the_chains_own_documents_edited_in_the_bucket_are_not_trusted(pitr_db, spaces):
    """The tip (how current the archive is), the retention record and the chain's head are read back from the
    bucket too: each is refused when edited, never taken for what it claims."""

    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    write(pitr_db, "doc")
    archiver.tip_every_s = 0
    archiver.drain_once()
    time.sleep(2.2)
    later = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)  # after the tip: not yet archived
    [name] = chains.list_chains(spaces)
    tip_key = f"{chains.PREFIX}/{name}/tip.json"
    tip = json.loads(spaces.get(tip_key))
    tip["drained_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()  # "current until tomorrow"
    spaces.put(tip_key, json.dumps(tip).encode())
    with pytest.raises(recovery.RecoveryError, match="newest possible point"):
        recovery.plan(runner, later)

    first = chains.manifest_key(chains.segment_key(name, 1))
    pruned = {"chain": name, "through_seq": 1, "last_hash": "0" * 64, "end_lsn": "0/0",
              "last_commit": datetime.now(UTC).isoformat(), "pruned_at": datetime.now(UTC).isoformat(),
              "type": "pruned", "signature": {"algorithm": "HMAC-SHA256", "key_id": "0" * 16, "value": "0" * 64}}
    spaces.put(f"{chains.PREFIX}/{name}/pruned.json", json.dumps(pruned).encode())  # "segment 1 is gone: skip it"
    assert spaces.exists(first)
    with pytest.raises(chains.ChainError, match="refusing to extend it"):
        archiver.drain_once()
    spaces.delete(f"{chains.PREFIX}/{name}/pruned.json")

    head_key = chains.chain_key(name)
    head = json.loads(spaces.get(head_key))
    head["start_lsn"] = "0/0"
    spaces.put(head_key, json.dumps(head).encode())
    # skipped and named, as every refused head is (issue 40, 8): nothing else extends the backup
    with pytest.raises(recovery.RecoveryError, match="refused chain heads, skipped: .*signature does not verify"):
        recovery.plan(runner, later)
