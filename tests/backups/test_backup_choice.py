"""Which backup a restore uses, and what it says when none matches (issue 41 item 8: the nearest valid choices)."""

from __future__ import annotations

import pytest

from coldcopy.backups import BackupRunner
from coldcopy.backups.layout import BackupError
from tests.conftest import BACKUP_PASSPHRASE, KEYRING

pytestmark = pytest.mark.integration


def test_no_matching_backup_names_the_newest_keys_and_latest(migrated_db, spaces):
    runner = BackupRunner(migrated_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    with pytest.raises(BackupError, match="holds no whole-database backup that verifies: run backup_to_spaces"):
        runner.resolve("latest")
    key = runner.backup().object_key
    with pytest.raises(BackupError, match="no whole-database backup matches '1999-01-01'") as raised:
        runner.resolve("1999-01-01")
    assert f"the newest ones: {key} (give one of these keys, a YYYY-MM-DD, or latest)" in str(raised.value)
    assert runner.resolve("latest")[0] == key
