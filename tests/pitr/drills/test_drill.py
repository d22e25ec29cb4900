"""Restore drills (coldcopy.pitr.drills): a point-in-time restore on the verification server, checked against the
archive. The live database is on the throwaway logical cluster; the verification server is the shared one."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.operators.restore import RestoreFromSpacesOperator
from coldcopy.pitr import chain as chains
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.pitr.drills import record
from coldcopy.pitr.drills.drill import DrillError, RestoreDrill
from coldcopy.pitr.recovery import RecoveryError
from coldcopy.testing import local_env
from tests.conftest import BACKUP_PASSPHRASE, KEYRING


def busy(dsn: str, tag: str) -> None:
    """Inserts, updates and deletes on several tables, in separate transactions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.suppression_list (workspace_id, email, reason) SELECT workspace_id, "
                     "%s || '-' || id || '@example.com', 'manual' FROM public.leads ORDER BY id LIMIT 40", (tag,))
        conn.execute("UPDATE public.campaigns SET name = name || %s WHERE id IN (SELECT id FROM public.campaigns "
                     "ORDER BY id LIMIT 60)", (f" {tag}",))
        conn.execute("UPDATE public.leads SET first_name = %s WHERE id IN (SELECT id FROM public.leads "
                     "ORDER BY id DESC LIMIT 80)", (tag,))
        conn.execute("DELETE FROM public.suppression_list WHERE id IN (SELECT id FROM public.suppression_list "
                     "WHERE reason = 'manual' ORDER BY id LIMIT 10)")


@pytest.fixture
def archived(pitr_db, spaces, backup_key, admin_dsn):
    """A chain, a base backup, writes before and after it drained into segments; a drill on the shared server."""
    archiver = ChangeArchiver(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    archiver.tip_every_s = 0
    archiver.drain_once()
    busy(pitr_db, "before")
    archiver.drain_once()
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING, restore_jobs=2)
    runner.backup()
    for round_ in range(3):
        busy(pitr_db, f"after{round_}")
        archiver.drain_once()
    time.sleep(1.1)
    draining = datetime.now(UTC)
    archiver.drain_once()
    local_env.prepare_verify_server(admin_dsn)

    def drill(verify: str = admin_dsn, **options) -> RestoreDrill:
        options.setdefault("sample_one_in", 2)  # scale 1 has 20 campaigns: one in 8 may sample none of them
        return RestoreDrill(runner, pitr_db, verify, jobs=2, migrate=marker_applier, reapply=lambda manifest, dsn: (
            RestoreFromSpacesOperator.reapply_erasures(runner, manifest, dsn)), **options)

    # the newest whole second the archive holds (however long a loaded machine takes to reach the test)
    drill.at = draining.replace(microsecond=0) - timedelta(seconds=1)
    return drill


def drill_check(conn):
    from coldcopy import health

    return [r for r in health.run_group(health.Context(conn, health.Thresholds()), "ops_freshness")
            if r.check == "restore_drill"]


def drills(dsn: str) -> list[dict]:
    with psycopg.connect(dsn) as conn:
        return record.recent(conn)


def scratch_left(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [d for (d,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'coldcopy_drill_%'")]


def test_a_drill_on_a_good_archive_passes_and_is_recorded(archived, pitr_db, admin_dsn, monkeypatch):
    from coldcopy.backups import BackupRunner

    events, read, restore = [], chains.read_segment, BackupRunner.restore
    monkeypatch.setattr(chains, "read_segment", lambda *a: events.append("segment read") or read(*a))
    monkeypatch.setattr(BackupRunner, "restore", lambda *a, **k: (restore(*a, **k), events.append("restored"))[0])
    row = archived().run(archived.at)
    assert events.index("segment read") < events.index("restored")  # the first segment read beside the restore
    assert row["outcome"] == "passed" and row["error"] is None
    assert row["segments"] >= 2 and row["changes_replayed"] > 0 and row["rows"] > 1000
    assert row["rto_s"] == pytest.approx(sum(row[p] for p in ("download_s", "restore_s", "replay_s", "verify_s",
                                                               "erasures_s")))
    assert row["rpo_s"] >= 0 and row["bytes"] > 0 and row["jobs"] == 2
    checked = row["checks"]
    assert checked["sampled_keys"] > 10 and not checked["problems"]
    assert {"public.suppression_list", "public.campaigns", "public.leads"} <= set(checked["sampled"])
    assert checked["tables"]["public.suppression_list"]["expected"] == checked["tables"][
        "public.suppression_list"]["restored"]
    [stored] = drills(pitr_db)
    assert stored["outcome"] == "passed" and stored["rto_s"] == pytest.approx(row["rto_s"])
    assert scratch_left(admin_dsn) == []  # the copy is dropped
    picked = archived().run()  # a random second of the window
    assert picked["outcome"] == "passed"
    earliest, latest = archived().window()
    assert earliest <= picked["as_of"] <= latest
    shown_on_the_page_and_served_as_metrics(pitr_db, picked)


def shown_on_the_page_and_served_as_metrics(dsn: str, newest: dict) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from coldcopy import health_page, metrics

    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row, autocommit=True) as conn:
        [check] = drill_check(conn)
        assert check.state == "ok" and check.value == pytest.approx(newest["rto_s"])
        assert len(check.details["drills"]) == 2
        shown = {"check_name": check.check, "state": check.state, "value": check.value, "unit": check.unit,
                 "summary": check.summary, "details": check.details, "taken_at": newest["finished_at"].isoformat()}
        page = health_page.render({"checks": [shown], "series": {}})
    assert "Restore drills" in page and "RTO (s)" in page and "not enough history" not in page.split("RTO (s)")[1][:300]
    with psycopg.connect(dsn) as conn:
        families = {f.name: f for f in text_string_to_metric_families(metrics.collect(conn).decode())}
    assert families["coldcopy_restore_drill_rto_seconds"].samples[0].value == pytest.approx(newest["rto_s"])
    assert families["coldcopy_restore_drill_rpo_seconds"].samples[0].value == pytest.approx(newest["rpo_s"])
    assert families["coldcopy_restore_drill_last_success_timestamp"].samples[0].value == pytest.approx(
        newest["finished_at"].timestamp())
    assert families["coldcopy_restore_drill_failed"].samples[0].value == 0
    assert {s.labels["phase"] for s in families["coldcopy_restore_drill_rto_phase_seconds"].samples} == {
        "download", "restore", "replay", "verify", "erasures"}


@pytest.mark.parametrize("fault", ["a delete lost", "an update's value changed"])
def test_a_wrong_replay_cannot_pass(archived, pitr_db, admin_dsn, monkeypatch, fault):
    """Faults below the replay's own bookkeeping (it counts every change as applied): only the drill's checks
    against the archive can see them."""
    from coldcopy.pitr import bulk

    if fault == "a delete lost":
        original = bulk._delete_keys
        monkeypatch.setattr(bulk, "_delete_keys", lambda conn, table, keys: original(conn, table, keys[1:]))
    else:
        original = bulk.NetEffect.add

        def add(self, table, change):
            if change["op"] == "U" and change["table"] == "public.leads":
                change = {**change, "new": {**change["new"], "first_name": "wrong"}}
            return original(self, table, change)

        monkeypatch.setattr(bulk.NetEffect, "add", add)
    with pytest.raises(DrillError, match="differs from the archive") as raised:
        archived().run(archived.at)
    if fault == "a delete lost":
        assert "public.suppression_list:" in str(raised.value) and "rows restored, the archive implies" in str(
            raised.value)
    else:
        assert re.search(r"public\.leads: (\d+) of \1 sampled keys differ", str(raised.value))
    [stored] = drills(pitr_db)
    assert stored["outcome"] == "failed" and "differs from the archive" in stored["error"]
    assert scratch_left(admin_dsn) == []


def test_a_tampered_or_missing_segment_fails_the_drill(archived, pitr_db, spaces):
    at = archived.at
    chain = chains.load_chain(spaces, chains.list_chains(spaces)[-1], KEYRING)
    middle = chain.segments[-2]
    original = spaces.get(middle["object_key"])
    spaces.put(middle["object_key"], original[:-1] + bytes([original[-1] ^ 1]), "application/pgp-encrypted")
    with pytest.raises(Exception, match="does not match its signed manifest"):
        archived().run(at)
    spaces.put(middle["object_key"], original, "application/pgp-encrypted")
    spaces.delete(middle["object_key"])
    spaces.delete(chains.manifest_key(middle["object_key"]))
    with pytest.raises(RecoveryError, match="lacks segments"):
        archived().run(at)
    # a second of its own choosing is not moved before the loss either (it once was, when the machine was slow
    # enough for the segment before the lost one to end a whole second after the base backup)
    with pytest.raises(DrillError, match="lacks segments"):
        archived().run()
    assert [d["outcome"] for d in drills(pitr_db)] == ["failed", "failed", "failed"]


def test_another_chains_pruned_record_copied_in_is_skipped_and_a_lost_segment_object_fails(archived, pitr_db,
                                                                                            spaces):
    """helper-13: retention's genuine, signed pruned.json of another chain, copied into the newest chain by a bucket
    writer without keys, made every drill (and every restore) fail, "lacking segments"; and a segment's object
    deleted with its manifest kept failed only the drills whose second needed it."""
    from coldcopy import manifests

    name = chains.list_chains(spaces)[-1]
    now = datetime.now(UTC).isoformat()
    foreign = {"chain": "20000101T000000Z", "through_seq": 3, "last_hash": "0" * 64, "end_lsn": "0/1000000",
               "last_commit": now, "pruned_at": now}
    spaces.put(f"pitr/{name}/pruned.json", manifests.dump(foreign, KEYRING, type="pruned"), "application/json")
    drill = archived()
    assert drill.window()  # skipped, named among the chain's problems: no gap
    assert "the pruned record of chain '20000101T000000Z'" in "; ".join(
        chains.load_chain(spaces, name, KEYRING).problems)
    spaces.delete(f"pitr/{name}/pruned.json")
    first = chains.load_chain(spaces, name, KEYRING).segments[0]
    spaces.delete(first["object_key"])
    with pytest.raises(DrillError, match=rf"lacks the objects of segments {first['seq']}\b"):
        drill.run()
    assert [d["outcome"] for d in drills(pitr_db)] == ["failed"]


def test_a_failed_drill_breaches_and_pages(archived, pitr_db):
    from prometheus_client.parser import text_string_to_metric_families

    from coldcopy import metrics

    archived().run(archived.at)
    with pytest.raises(DrillError, match="is in the future"):
        archived().run(datetime.now(UTC) + timedelta(days=1))  # the future: refused, recorded as failed
    with psycopg.connect(pitr_db, row_factory=psycopg.rows.dict_row, autocommit=True) as conn:
        [check] = drill_check(conn)
    assert check.state == "breach" and "failed" in check.summary
    with psycopg.connect(pitr_db) as conn:
        families = {f.name: f for f in text_string_to_metric_families(metrics.collect(conn).decode())}
    assert families["coldcopy_restore_drill_failed"].samples[0].value == 1
    assert families["coldcopy_restore_drill_rto_seconds"].samples  # the newest passed one is still served


def test_a_drill_never_runs_on_the_live_server(archived, pitr_db, logical):
    with pytest.raises(DrillError, match="live database's own server"):
        archived(verify=local_env.database_dsn(logical.dsn, "postgres")).run()
    assert scratch_left(logical.dsn) == []
    [stored] = drills(pitr_db)
    assert stored["outcome"] == "failed" and "own server" in stored["error"]


def test_the_dag_drills_and_a_tampered_archive_fails_it_with_one_alert(archived, pitr_db, admin_dsn, spaces, dagbag,
                                                                      coldcopy_conn, sink, monkeypatch):
    from coldcopy.testing.in_process import result_lines, run_dag

    coldcopy_conn(pitr_db)
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", local_env.airflow_connection(admin_dsn))
    at = f"{archived.at:%Y-%m-%dT%H:%M:%SZ}"
    run = run_dag(dagbag.get_dag("restore_drill"), conf={"as_of": at, "jobs": 2})
    assert run.state == "success"
    assert "passed: RTO" in result_lines(run)["drill"] and sink.received == []
    chain = chains.load_chain(spaces, chains.list_chains(spaces)[-1], KEYRING)
    key = chain.segments[-1]["object_key"]
    spaces.put(key, spaces.get(key) + b"\0", "application/pgp-encrypted")
    run = run_dag(dagbag.get_dag("restore_drill"), conf={"as_of": at, "jobs": 2}, require_results=False)
    assert run.state == "failed"
    assert len(sink.received) == 1 and sink.received[0]["body"]["alert"]["dag_id"] == "restore_drill"
    assert [d["outcome"] for d in drills(pitr_db)] == ["failed", "passed"]
