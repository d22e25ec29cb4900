"""A whole-database restore cut short (issue 45's campaign found it): killed after the quarantine was renamed to
the target and before the hand-over, it left a whole target closed to everyone, which the retry refused
(populated) — a restore nobody could finish without a hand."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.backups import BackupRunner, restored_mark
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
            public, comment = admin.execute("SELECT has_database_privilege('public', %s, 'CONNECT'), "
                                            "shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                            (target, target)).fetchone()
            assert public and restored_mark.read(comment) is not None  # handed over: no scratch label, its mark
        with psycopg.connect(generated_db) as source, \
                psycopg.connect(local_env.database_dsn(generated_db, target)) as copy:
            query = "SELECT count(*) FROM leads"
            assert copy.execute(query).fetchone()[0] == source.execute(query).fetchone()[0] > 0
    finally:
        local_env.drop_database(admin_dsn, target)
        local_env.drop_database(admin_dsn, f"{target}__restoring")


def test_a_restore_killed_after_its_hand_over_is_done_on_retry(generated_db, spaces, backup_key, coldcopy_conn,
                                                               admin_dsn):
    """The campaign again: killed after the hand-over committed (its alerts, its log line not yet out), the retry
    refused the whole, handed-over target as populated — a restore that had worked, reported failed."""
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    coldcopy_conn(generated_db)
    key = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup().object_key
    target = f"restored_{uuid.uuid4().hex[:8]}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COLDCOPY_")}, "TARGET": target,
           "COLDCOPY_KILL_AT": "restore.handed_over"}
    try:
        killed = subprocess.run([sys.executable, "-c", RESTORE], env=env, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -9, killed.stderr[-2000:]
        done = RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target).execute({})
        assert done["object_key"] == key and done["target_database"] == target
        other = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup().object_key  # a newer one
        with pytest.raises(AirflowFailException, match="has [0-9]+ tables"):  # another restore: still refused
            RestoreFromSpacesOperator(task_id="restore", backup=other, target_database=target).execute({})
    finally:
        local_env.drop_database(admin_dsn, target)
        local_env.drop_database(admin_dsn, f"{target}__restoring")
