"""A drill's ``as_of`` (issue 41 item 8): a second past what the archive holds moves to the newest reachable one
(said in the log and the drill's checks) instead of failing for good and paging; one before the window fails
naming the seconds a drill can reach."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from coldcopy.pitr.drills.drill import DrillError
from tests.pitr.drills.test_drill import archived  # noqa: F401 - the fixture


def test_an_as_of_too_recent_drills_the_newest_reachable_second(archived, caplog):  # noqa: F811
    drill = archived()
    time.sleep(2.1)
    requested = datetime.now(UTC).replace(microsecond=0)  # a past second, not drained yet
    _, latest = drill.window()
    assert requested > latest
    row = drill.run(as_of=requested)
    assert row["outcome"] == "passed" and row["as_of"] == latest
    assert row["checks"]["as_of_requested"] == requested.isoformat()
    assert "past the newest second the change archive holds" in caplog.text
    with pytest.raises(DrillError, match=r"before the seconds a drill can reach \(.* to .*\): give one of those"):
        drill.run(as_of=datetime(1999, 1, 1, tzinfo=UTC))
