"""Support copies (issue 31, 8): one workspace restored into a schema of the live database is registered, reached
by every erasure (also one re-applied after a restore) and dropped once expired. Before, ``gdpr/discovery.py``
walked ``public`` only: after an erasure the address was still in ``support_ws.leads`` with its events, and went
into every backup after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from coldcopy import support_copies
from coldcopy.pitr.workspace import copy_into_schema, keep_only
from tests.support.gdpr import gdpr_on, occurrences, request, subject_of


def support_copy(generated_db: str, new_database, generated_template: str, workspace_id: str) -> None:
    """What ``restore_from_spaces`` with ``target_schema`` leaves: the workspace, alone, in ``support_ws``."""
    scratch = new_database(template=generated_template)
    keep_only(scratch, workspace_id)
    copied = copy_into_schema(scratch, generated_db, "support_ws", workspace_id=workspace_id, origin="test")
    assert copied["support_ws.leads"] > 0 and copied["support_ws.email_events"] > 0


def test_an_erasure_reaches_the_support_copies_even_of_a_lead_deleted_since(generated_db, new_database,
                                                                           generated_template, spaces, backup_key):
    subject = subject_of(generated_db)
    workspace = str(subject["workspace_id"])
    support_copy(generated_db, new_database, generated_template, workspace)
    with psycopg.connect(generated_db, autocommit=True) as conn:
        [(schema, registered_ws, expires)] = conn.execute(
            "SELECT schema_name, workspace_id::text, expires_at FROM coldcopy_ops.support_copies").fetchall()
        assert (schema, registered_ws) == ("support_ws", workspace)
        assert timedelta(days=13) < expires - datetime.now(UTC) <= timedelta(days=14)
        assert conn.execute("SELECT has_schema_privilege('public', 'support_ws', 'USAGE')").fetchone()[0] is False
        # A second person of the workspace, whose lead was deleted from the live tables after the copy was made:
        # only the copy still knows them, by address.
        other_id, other_email = conn.execute(
            "SELECT l.id, l.email FROM support_ws.leads l WHERE l.id <> %s AND EXISTS (SELECT 1 FROM "
            "support_ws.email_events e WHERE e.lead_id = l.id) ORDER BY l.id LIMIT 1",
            (subject["lead_id"],)).fetchone()
        conn.execute("DELETE FROM public.email_events WHERE lead_id = %s", (other_id,))
        conn.execute("DELETE FROM public.leads WHERE id = %s", (other_id,))  # the customer's mistake, cascaded
    assert any(hit.startswith("support_ws.") for hit in occurrences(generated_db, subject["email"]))

    conn, gdpr = gdpr_on(generated_db)
    for person in (subject, {**subject, "lead_id": other_id, "email": other_email}):
        result = gdpr.handle(request(generated_db, person, "erasure"), spaces)
        assert result["rows"].get("support_ws.email_events", 0) > 0 and result["rows"]["support_ws.leads"] == 1
        assert occurrences(generated_db, person["email"]) == []
        assert occurrences(generated_db, str(person["lead_id"])) == []  # nor its id, in any schema
    assert conn.execute("SELECT count(*) FROM support_ws.leads").fetchone()[0] > 0  # the others stay for support
    conn.close()


def test_an_erasure_reapplied_after_a_restore_reaches_the_copy_in_the_backup(generated_db, new_database,
                                                                            generated_template, spaces, backup_key):
    from coldcopy.backups import BackupRunner
    from coldcopy.operators.restore import RestoreFromSpacesOperator
    from tests.conftest import BACKUP_PASSPHRASE, KEYRING

    subject = subject_of(generated_db)
    support_copy(generated_db, new_database, generated_template, str(subject["workspace_id"]))
    runner = BackupRunner(generated_db, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    key = runner.backup().object_key  # the backup takes the copy along
    conn, gdpr = gdpr_on(generated_db)
    gdpr.handle(request(generated_db, subject, "erasure"), spaces)
    conn.close()
    target = new_database()
    runner.restore(key, target)
    assert any(hit.startswith("support_ws.") for hit in occurrences(target, subject["email"]))
    done, problems = RestoreFromSpacesOperator.reapply_erasures(runner, runner.manifest(key), target)
    assert problems == [] and next(iter(done.values())).get("support_ws.leads") == 1
    assert occurrences(target, subject["email"]) == [] and occurrences(target, str(subject["lead_id"])) == []


def test_an_expired_support_copy_breaches_health_and_is_dropped(generated_db, new_database, generated_template):
    from psycopg.rows import dict_row

    from coldcopy.health import Thresholds
    from coldcopy.health.operations import scratch_databases
    from coldcopy.health.results import Context

    def reported(context) -> str:  # other scratch databases of the shared server are not this test's
        result = scratch_databases(context)
        assert result.details["support_copies"] or "support_ws" not in result.summary
        return result.summary if "support cop" in result.summary else ""

    with psycopg.connect(generated_db) as conn:
        workspace = str(conn.execute("SELECT id FROM public.workspaces ORDER BY id LIMIT 1").fetchone()[0])
    support_copy(generated_db, new_database, generated_template, workspace)
    with pytest.raises(ValueError, match="positive"):
        support_copies.register(None, "x", workspace, ttl=timedelta(0))
    with psycopg.connect(generated_db, autocommit=True, row_factory=dict_row) as conn:
        context = Context(conn, Thresholds())
        assert "1 support copy, none expired" in reported(context)
        assert support_copies.sweep(conn) == []  # not expired: kept
        conn.execute("UPDATE coldcopy_ops.support_copies SET created_at = now() - interval '15 days', "
                     "expires_at = now() - interval '1 day'")
        breach = scratch_databases(context)
        assert breach.state == "breach" and "support copies past their expiry: support_ws" in breach.summary
        assert support_copies.sweep(conn) == ["support_ws"]
        assert conn.execute("SELECT to_regnamespace('support_ws') AS n").fetchone()["n"] is None
        assert conn.execute("SELECT dropped_at FROM coldcopy_ops.support_copies").fetchone()["dropped_at"]
        assert "0 support copies, none expired" in reported(context) and support_copies.active(conn) == []
