"""Parallel restore (``pg_restore --jobs`` on the bound, decrypted spool) against the single-stream one."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.backups import BackupError, BackupRunner
from tests.conftest import KEYRING


def every_row(dsn: str) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1")]
        return {t: [r[0] for r in conn.execute(f"SELECT x::text FROM {t} x ORDER BY 1")] for t in tables}


def test_parallel_restore_gives_the_single_stream_database_and_refuses_an_unbound_object(
        generated_db, new_database, spaces, backup_key):
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    backup = runner.backup()
    single, parallel = new_database(), new_database()
    runner.restore(backup.object_key, single, manifest=backup.manifest, jobs=1)
    assert runner.timings["jobs"] == 1 and "decrypt_s" not in runner.timings
    runner.restore(backup.object_key, parallel, manifest=backup.manifest, jobs=2)
    assert runner.timings["jobs"] == 2 and runner.timings["decrypt_s"] >= 0
    assert runner.timings["offsets"] >= 20  # the streamed dump's data offsets written: workers seek, not scan
    rows = every_row(parallel)
    assert sum(map(len, rows.values())) > 10_000 and rows == every_row(single)
    stored = spaces.get(backup.object_key)
    spaces.put(backup.object_key, stored[:-1] + bytes([stored[-1] ^ 1]), "application/pgp-encrypted")
    untouched = new_database()
    with pytest.raises(BackupError, match="does not match its signed manifest"):
        runner.restore(backup.object_key, untouched, manifest=backup.manifest, jobs=2)
    assert every_row(untouched) == {}
