"""The change archive's long task in a live Airflow: two runs of it back to back (``max_active_runs=1``)
while the application writes without pause — the second starts where the first left the slot, nothing is lost
or doubled across the handover, and every transaction is archived within the recovery point objective."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from coldcopy import manifests
from coldcopy.backups import BackupRunner
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.object_store import Bucket
from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.testing import generate_data, local_env
from tests.e2e.conftest import MANIFEST_SECRET, PASSPHRASE, metadata_query


def test_two_hourly_drains_hand_over_under_constant_writes_and_lose_nothing(live, api):
    dsn = local_env.create_database(live.logical.dsn, "coldcopy", replace=True)
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="e2e")
    generate_data.generate(dsn, scale=1)
    bucket = Bucket(live.s3_client, live.bucket)
    keys = manifests.Keyring.from_secret(MANIFEST_SECRET)
    stop, written = threading.Event(), []

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            workspace = conn.execute("SELECT id FROM public.workspaces ORDER BY id LIMIT 1").fetchone()[0]
            while not stop.is_set():
                email = f"handover-{len(written):05d}@example.com"
                conn.execute("INSERT INTO public.suppression_list (workspace_id, email, reason) "
                             "VALUES (%s, %s, 'manual')", (workspace, email))
                written.append(email)
                time.sleep(0.05)

    first = live.trigger(api, "e2e_change_archive", run_for_s=20)
    deadline = time.monotonic() + 120
    with psycopg.connect(dsn, autocommit=True) as conn:  # the first run sets up the slot: the chain starts
        while not conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]:
            assert time.monotonic() < deadline, "the first drain never created its slot"
            time.sleep(0.5)
    runner = BackupRunner(dsn, bucket, PASSPHRASE, keyring=keys)
    runner.backup()
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        second = live.trigger(api, "e2e_change_archive", run_for_s=10)  # queued behind the first
        assert live.wait_run(api, "e2e_change_archive", first) == "success"
        assert live.wait_run(api, "e2e_change_archive", second) == "success"
    finally:
        stop.set()
        thread.join()
    [one] = live.task_instances(api, "e2e_change_archive", first)
    [two] = live.task_instances(api, "e2e_change_archive", second)
    assert two["start_date"] >= one["end_date"]  # never two drains at once
    results = [json.loads(v) if isinstance(v, str) else v for (v,) in metadata_query(
        live, "SELECT value FROM xcom WHERE dag_id = 'e2e_change_archive' AND task_id = 'drain' "
        "AND key = 'return_value' AND run_id IN (%s, %s)", (first, second))]
    assert len(results) == 2
    assert all(r["segments"] >= 1 for r in results), results
    assert max(r["max_lag_s"] for r in results) < 60, results  # the recovery point objective
    time.sleep(1.1)
    as_of = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    archiver = ChangeArchiver(dsn, bucket, PASSPHRASE, keyring=keys)
    archiver.tip_every_s = 0
    archiver.drain_once()  # what the writer did after the second run ended
    [name] = chains.list_chains(bucket)
    chain = chains.load_chain(bucket, name, keys)
    assert chain.break_after() is None and not chain.problems
    assert sum(s["tables"].get("public.suppression_list", {}).get("I", 0) for s in chain.segments) == len(written)
    target = local_env.create_database(live.logical.dsn, "coldcopy_as_of", replace=True)
    plan = recovery.plan(runner, as_of)
    runner.restore(plan.backup_key, target, manifest=plan.backup)
    recovery.replay(runner, plan, target, migrate=marker_applier(target))
    with psycopg.connect(target) as conn:
        restored = [r[0] for r in conn.execute(
            "SELECT email FROM public.suppression_list WHERE email LIKE 'handover-%' ORDER BY email")]
    assert restored == sorted(written)
