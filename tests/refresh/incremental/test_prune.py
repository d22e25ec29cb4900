"""The captured keys go once every summary reading them has applied them, whatever else runs in the cluster."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.refresh.incremental.maintainer import SummaryMaintainer
from tests.support.incremental import apply_all, assert_all_equal

pytestmark = pytest.mark.integration


def test_keys_applied_by_every_reader_go_while_another_database_holds_an_old_transaction(generated_db, admin_dsn):
    """Before: prune kept every key above the readers' oldest snapshot xmin, which a transaction running in any
    database of the cluster holds back: an erased lead's id stayed in ivm_delta_email_events after the erasure
    had applied every summary (tests/gdpr's no-trace test failed whenever another test ran beside it)."""
    apply_all(generated_db)
    with psycopg.connect(admin_dsn) as elsewhere:  # another database, an xid older than the write below
        elsewhere.execute("SELECT pg_current_xact_id()")
        with psycopg.connect(generated_db, autocommit=True) as conn:
            lead = conn.execute("SELECT lead_id FROM email_events WHERE lead_id IS NOT NULL LIMIT 1").fetchone()[0]
            conn.execute("DELETE FROM email_events WHERE lead_id = %s", (lead,))
            assert conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_delta_email_events WHERE lead_id = %s",
                                (lead,)).fetchone()[0] > 0
            apply_all(generated_db)  # every reader applied the delete
            SummaryMaintainer(conn, "analytics.lead_engagement").prune()  # what a refresh does after its apply
            left = conn.execute("SELECT count(*) FROM coldcopy_ops.ivm_delta_email_events WHERE lead_id = %s",
                                (lead,)).fetchone()[0]
        assert left == 0
        elsewhere.rollback()
    assert_all_equal(generated_db, "after a prune beside an old transaction")
