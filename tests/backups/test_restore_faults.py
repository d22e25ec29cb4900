"""A whole-database restore cut short (issue 45's campaign found it): killed after the quarantine was renamed to
the target and before the hand-over, it left a whole target closed to everyone, which the retry refused
(populated) — a restore nobody could finish without a hand."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg

from coldcopy.backups import BackupRunner
from coldcopy.testing import local_env
from tests.conftest import KEYRING

RESTORE = """
import os
from coldcopy.operators.restore import RestoreFromSpacesOperator
RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=os.environ["TARGET"]).execute({})
"""


def test_a_restore_killed_at_its_hand_over_is_finished_by_the_retry(generated_db, spaces, backup_key, coldcopy_conn,
                                                                   admin_dsn):
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    coldcopy_conn(generated_db)
    BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup()
    target = f"restored_{uuid.uuid4().hex[:8]}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COLDCOPY_")}, "TARGET": target,
           "COLDCOPY_KILL_AT": "restore.renamed"}
    try:
        killed = subprocess.run([sys.executable, "-c", RESTORE], env=env, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -9, killed.stderr[-2000:]
        RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target).execute({})  # retry
        with psycopg.connect(admin_dsn) as admin:
            assert admin.execute("SELECT has_database_privilege('public', %s, 'CONNECT'), "
                                 "shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                 (target, target)).fetchone() == (True, None)  # handed over, no scratch label
        with psycopg.connect(generated_db) as source, \
                psycopg.connect(local_env.database_dsn(generated_db, target)) as copy:
            query = "SELECT count(*) FROM leads"
            assert copy.execute(query).fetchone()[0] == source.execute(query).fetchone()[0] > 0
    finally:
        local_env.drop_database(admin_dsn, target)
        local_env.drop_database(admin_dsn, f"{target}__restoring")
