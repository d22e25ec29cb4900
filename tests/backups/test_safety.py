"""What matters for safety, proven after a verification restore (:mod:`coldcopy.backups.safety`): the source's
row-level security, policies and API grants recorded in the signed manifest, compared with the restored copy."""

from __future__ import annotations

import logging

import psycopg
import pytest

from coldcopy import manifests
from coldcopy.backups import BackupError, BackupRunner, safety
from tests.conftest import KEYRING


def losing(runner: BackupRunner, statements: str) -> None:
    """Make ``runner``'s restores lose something: ``statements`` run on the restored copy after each one."""
    real = runner.restorer.restore

    def restore(key, target_dsn, **kwargs):
        manifest = real(key, target_dsn, **kwargs)
        with psycopg.connect(target_dsn, autocommit=True) as conn:
            conn.execute(statements)
        return manifest

    runner.restorer.restore = restore


def test_the_manifest_holds_the_sources_fingerprint_and_an_honest_restore_verifies(generated_db, spaces,
                                                                                   backup_key):
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    backup = runner.backup()
    recorded = backup.manifest["safety"]
    leads = recorded["tables"]["public.leads"]
    assert leads["rls"] and leads["force_rls"] and "workspace_isolation" in leads["policies"], leads
    assert leads["policies"]["workspace_isolation"]["roles"] == ["authenticated"]
    assert "auth.users" not in recorded["tables"] and "coldcopy_ops.backup_log" in recorded["tables"]
    with psycopg.connect(generated_db) as conn:
        assert safety.fingerprint(conn) == recorded
    assert runner.verify(backup.object_key, generated_db)["safety"] == "compared"


@pytest.mark.parametrize(("statements", "named"), [
    ("DROP POLICY workspace_isolation ON public.leads", "public.leads: policy workspace_isolation (ALL TO "
                                                         "authenticated) is missing"),
    ("ALTER TABLE public.workspaces NO FORCE ROW LEVEL SECURITY",
     "public.workspaces: FORCE ROW LEVEL SECURITY was on in the source, is off restored"),
])
def test_a_restored_copy_that_lost_a_policy_or_force_fails_verification_naming_it(generated_db, spaces, backup_key,
                                                                                  statements, named):
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    backup = runner.backup()
    losing(runner, statements)
    with pytest.raises(BackupError, match="row-level security, policies or grants") as failed:
        runner.verify(backup.object_key, generated_db)
    assert named in str(failed.value), failed.value
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT verification, verification_error FROM coldcopy_ops.backup_log "
                            "WHERE object_key = %s", (backup.object_key,)).fetchone()[0] == "failed"


def test_a_table_backup_compares_its_tables_and_an_old_manifest_verifies_with_a_note(generated_db, spaces,
                                                                                     backup_key, caplog):
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    table = runner.backup(tables=["public.leads"])
    assert list(table.manifest["safety"]["tables"]) == ["public.leads"]
    losing(runner, "REVOKE SELECT ON public.leads FROM authenticated")
    with pytest.raises(BackupError, match="public.leads: authenticated lost SELECT"):
        runner.verify(table.object_key, generated_db)

    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    old = {k: v for k, v in runner.backup().manifest.items() if k not in ("safety", "type")}
    spaces.put(old["object_key"].removesuffix(".dump.zst.gpg") + ".manifest.json",
               manifests.dump(old, KEYRING, type="backup"), "application/json")
    losing(runner, "DROP POLICY workspace_isolation ON public.leads")  # nothing recorded to compare with
    with caplog.at_level(logging.WARNING, logger="coldcopy.backups"):
        assert runner.verify(old["object_key"], generated_db)["safety"] == "not recorded"
    assert any("no safety fingerprint" in r.getMessage() for r in caplog.records)
