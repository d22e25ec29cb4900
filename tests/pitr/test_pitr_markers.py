"""Markers only ColdCopy can write (issue 31, 3). ``pg_logical_emit_message`` is executable by PUBLIC, even in a
READ ONLY transaction: before, a role with no grants forged a ``detach`` marker that made a restore lose a month
of email_events, and a message that was not JSON made every later restore fail. Markers are now rows of
``coldcopy_ops.change_markers``, which only its owner writes; every ``coldcopy`` message is foreign: ignored,
counted, reported."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from coldcopy import markers
from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.pitr import recovery
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
from tests.support.pitr import archiver_for, restored_base, tagged, write

NOBODY = "no_grants_at_all"


def busiest_month(dsn: str) -> tuple[str, int]:
    with psycopg.connect(dsn) as conn:
        months = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "WHERE i.inhparent = 'public.email_events'::regclass").fetchall()
        counts = {m: conn.execute(f'SELECT count(*) FROM public."{m}"').fetchone()[0] for (m,) in months}
    name = max(counts, key=counts.get)
    return name, counts[name]


def test_a_marker_forged_by_a_login_with_no_grants_changes_no_restore(pitr_db, spaces, logical):
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()  # the publication, the markers table, the slot
    runner = BackupRunner(pitr_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    month, rows = busiest_month(pitr_db)
    assert rows > 0
    with psycopg.connect(pitr_db, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {NOBODY}")
        conn.execute(f"CREATE ROLE {NOBODY} LOGIN")
    write(pitr_db, "before")
    with psycopg.connect(make_conninfo(pitr_db, user=NOBODY)) as nobody:
        nobody.execute("SET TRANSACTION READ ONLY")
        nobody.execute("SELECT pg_logical_emit_message(true, 'coldcopy', %s)",
                       (f'{{"kind": "partition", "action": "detach", "table": "{month}"}}',))
        nobody.execute("SELECT pg_logical_emit_message(true, 'coldcopy', 'not json at all')")
        nobody.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            nobody.execute("INSERT INTO coldcopy_ops.change_markers (marker) VALUES "
                           f"('{{\"kind\": \"partition\", \"action\": \"detach\", \"table\": \"{month}\"}}')")
    write(pitr_db, "after")
    plan, target = restored_base(archiver, runner, pitr_db, logical.dsn)
    report = recovery.replay(runner, plan, target, migrate=marker_applier(target))
    assert busiest_month(target) == (month, rows)  # still attached, every row there
    assert [t.split("-")[0] for t in tagged(target)] == [t.split("-")[0] for t in tagged(pitr_db)]
    assert len(report["foreign_markers"]) == 2 and all("any login can emit" in f for f in report["foreign_markers"])


def test_a_marker_row_of_the_wrong_shape_is_foreign_and_a_genuine_one_applies():
    genuine = {"op": "I", "table": markers.TABLE,
               "new": {"id": "1", "marker": '{"kind": "partition", "action": "create", "month": "2027-01-01"}'}}
    assert markers.parse(genuine) == {"kind": "partition", "action": "create", "month": "2027-01-01"}
    assert markers.parse({"op": "D", "table": markers.TABLE, "old": {"id": "1"}}) is None  # its own delete
    assert markers.parse({"op": "M", "prefix": "somebody_else", "content": "x"}) is None
    for new in ('{"kind": "migration", "file": 3}', '[1, 2]', "{", '{"kind": "drop everything"}'):
        with pytest.raises(markers.Foreign):
            markers.parse({"op": "I", "table": markers.TABLE, "new": {"id": "2", "marker": new}})
