"""Data-subject requests (coldcopy.gdpr.requests): claimed once, handled once, their deadlines."""

from __future__ import annotations

import pytest

from coldcopy.gdpr import GdprError
from tests.support.gdpr import gdpr_on, request, subject_of


def test_nothing_found_unknown_types_and_unverified_requests(generated_db, spaces, backup_key):
    subject = {**subject_of(generated_db), "email": "nobody-here@example.org"}
    conn, gdpr = gdpr_on(generated_db)
    for kind in ("access", "erasure"):
        request_id = request(generated_db, subject, kind)
        assert gdpr.handle(request_id, spaces)["note"].startswith("nothing found")
    manual = request(generated_db, subject, "rectification")
    received = request(generated_db, subject, "erasure", status="received")
    assert manual not in gdpr.pending() and received not in gdpr.pending()
    with pytest.raises(GdprError, match="'rectification' is not handled by a job"):
        gdpr.handle(manual, spaces)
    with pytest.raises(GdprError, match="only verified requests are processed"):
        gdpr.handle(received, spaces)
    conn.close()


def test_a_zombie_task_cannot_handle_a_request_being_handled(generated_db, spaces, backup_key):
    subject = subject_of(generated_db)
    request_id = request(generated_db, subject, "erasure")
    zombie_conn, zombie = gdpr_on(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    with zombie.requests._claim(request_id):  # the first try, still running somewhere
        with pytest.raises(GdprError, match="another session is handling it"):
            gdpr.handle(request_id, spaces)
        assert conn.execute("SELECT status FROM data_subject_requests WHERE id = %s",
                            (request_id,)).fetchone()[0] == "in_progress"
    zombie_conn.close()  # gone: its retry goes ahead
    assert gdpr.handle(request_id, spaces)["type"] == "erasure"
    conn.close()


def test_deadline_warnings_once_per_request_per_day(generated_db, backup_key):
    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    soon = request(generated_db, subject, "erasure", status="received")
    conn.execute("UPDATE data_subject_requests SET due_at = now() + interval '2 days' WHERE id = %s", (soon,))
    request(generated_db, subject, "access", status="received")  # due in 30 days
    assert [str(r["id"]) for r in gdpr.due_soon()] == [soon]
    assert gdpr.due_soon() == []
    conn.close()
