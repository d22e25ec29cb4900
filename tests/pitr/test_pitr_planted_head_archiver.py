"""A planted, unsigned ``chain.json`` newer than the real chain stops no drain (issue 40, 8's archiver side):
before, the archiver read the newest head first with ``load_chain`` and every ``change_archive`` drain of a
restarted archiver raised ``ManifestRejected``, so nothing more was archived."""

from __future__ import annotations

import logging

from coldcopy.pitr import chain as chains
from tests.pitr.test_pitr_planted_head import UNSIGNED, plant, unsigned
from tests.support.pitr import archiver_for, write


def test_a_planted_head_is_skipped_by_the_archiver_and_named(pitr_db, spaces, caplog):
    archiver_for(pitr_db, spaces).drain_once()
    [genuine] = chains.list_chains(spaces)
    key = plant(spaces, UNSIGNED, unsigned(spaces, genuine, UNSIGNED))
    write(pitr_db, "planted")
    with caplog.at_level(logging.ERROR):
        drained = archiver_for(pitr_db, spaces).drain_once()  # a new process: it reads the chains again
    assert drained.seq is not None and drained.changes > 0
    assert chains.list_chains(spaces) == [genuine, UNSIGNED]  # no new chain: the genuine one extended
    assert f"chain {UNSIGNED} skipped" in caplog.text and "refused" in caplog.text
    assert key.endswith("chain.json")
