"""Migration files (coldcopy.migrations): discovery, phases, transactional detection."""

from __future__ import annotations

import pytest

from coldcopy.migrations import MigrationError, discover_migrations
from tests.support.migrations import write


def test_transactional_detection_ignores_comments():
    migrations = {m.version: m for m in discover_migrations()}
    assert migrations[109].transactional is False  # CREATE INDEX CONCURRENTLY
    assert migrations[305].transactional is False  # one CONCURRENTLY part, then a transaction
    assert migrations[307].transactional is False  # likewise
    assert all(m.transactional for v, m in migrations.items() if v not in (109, 305, 307))


def test_discovery_rejects_stray_files(tmp_path):
    directory = write(tmp_path / "m", {"100_ok.sql": "SELECT 1;", "notes.txt": "x"})
    with pytest.raises(MigrationError, match="notes.txt: not a migration file name"):
        discover_migrations(directory)
    (directory / "notes.txt").unlink()
    write(directory, {"100_dup.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="version 100 also used"):
        discover_migrations(directory)
