"""A planted ``pitr/<name>/chain.json`` (issue 40, 8): someone who can write the bucket but holds no key puts an
unsigned head, or a genuine head copied under another name, newer than every real chain. Before, ``plan()`` and
the drill's ``window()`` raised ``ManifestRejected`` on it, so every PITR restore and drill failed (and the drill
was retried). Now such a head is skipped and named, as a backup's refused manifest is; with no head left that
verifies, the error names every refused key, and it fails the drill for good."""

from __future__ import annotations

import json

import pytest

from coldcopy.pitr import chain as chains
from coldcopy.pitr import recovery
from coldcopy.pitr.drills.drill import DrillError
from tests.pitr.drills.test_drill import archived, drills  # noqa: F401 - the fixture

UNSIGNED, COPIED = "99990101T000000000000Z", "99990102T000000000000Z"


def plant(spaces, name: str, raw: bytes) -> str:
    key = chains.chain_key(name)
    spaces.put(key, raw, "application/json")
    return key


def unsigned(spaces, genuine: str, name: str) -> bytes:
    head = json.loads(spaces.get(chains.chain_key(genuine)))
    head.pop("signature")
    return json.dumps({**head, "chain": name, "start_lsn": "0/0"}).encode()


def test_a_planted_chain_head_blocks_no_restore_and_is_named(archived, pitr_db, spaces):  # noqa: F811
    [genuine] = chains.list_chains(spaces)
    planted = sorted([plant(spaces, UNSIGNED, unsigned(spaces, genuine, UNSIGNED)),
                      plant(spaces, COPIED, spaces.get(chains.chain_key(genuine)))])  # a real head, another name
    drill = archived()
    plan = recovery.plan(drill.runner, archived.at)
    assert plan.chain.name == genuine and plan.refused == planted
    assert plan.describe()["chain_heads_refused"] == planted
    earliest, latest = drill.window()  # the newest chain whose head verifies
    assert earliest <= archived.at <= latest
    row = drill.run()  # a random second of that window, restored from the genuine chain
    assert row["outcome"] == "passed" and row["chain"] == genuine
    assert row["checks"]["chain_heads_refused"] == planted

    # the genuine head forged too: nothing valid remains, and the error names every refused key
    plant(spaces, genuine, unsigned(spaces, genuine, genuine))
    with pytest.raises(recovery.RecoveryError, match="refused chain heads") as raised:
        recovery.plan(drill.runner, archived.at)
    assert all(key in str(raised.value) for key in [*planted, chains.chain_key(genuine)])
    with pytest.raises(DrillError, match="no change archive chain in the bucket has a head that verifies") as raised:
        drill.run()
    assert all(key in str(raised.value) for key in [*planted, chains.chain_key(genuine)])
    assert [d["outcome"] for d in drills(pitr_db)] == ["failed", "passed"]
