"""Access and portability (coldcopy.gdpr.access): every row about the subject, encrypted, to the DPO."""

from __future__ import annotations

import json

import pytest

from tests.conftest import stock_decrypt as decrypt
from tests.support.gdpr import gdpr_on, request, subject_of


def test_access_export_holds_exactly_the_subjects_rows_encrypted(generated_db, spaces, backup_key, monkeypatch,
                                                                 caplog):
    from coldcopy.testing.alert_sink import AlertSink

    client, bucket = spaces.client, spaces.name
    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    conn.execute("CREATE TABLE public.lead_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "workspace_id uuid NOT NULL, lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE, note text)")
    conn.execute("INSERT INTO public.lead_notes (workspace_id, lead_id, note) SELECT workspace_id, id, 'called' "
                 "FROM leads WHERE workspace_id = %s AND id <> %s ORDER BY id LIMIT 5",
                 (subject["workspace_id"], subject["lead_id"]))
    conn.execute("INSERT INTO public.lead_notes (workspace_id, lead_id, note) VALUES (%s, %s, 'mine')",
                 (subject["workspace_id"], subject["lead_id"]))
    request_id = request(generated_db, subject, "access")
    monkeypatch.delenv("AIRFLOW_CONN_COLDCOPY_DPO", raising=False)
    with pytest.raises(RuntimeError, match="coldcopy_dpo is not configured"):  # a secret with nowhere to go
        gdpr.handle(request_id, spaces)
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="gdpr/exports/")  # undelivered: deleted
    with AlertSink() as dpo:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DPO", dpo.airflow_connection())
        result = gdpr.handle(request_id, spaces)
    status, notes = conn.execute("SELECT status, notes FROM data_subject_requests WHERE id = %s",
                                 (request_id,)).fetchone()
    [delivered] = [r["body"] for r in dpo.received]
    url, passphrase = delivered["url"], delivered["passphrase"]
    assert status == "completed" and "valid 7 days" in notes and "delivered to the data protection officer" in notes
    assert passphrase not in notes and url not in notes and passphrase not in json.dumps(result, default=str)
    assert passphrase not in caplog.text  # nor in the task's log
    import httpx

    encrypted = httpx.get(url).content
    assert b'"tables"' not in encrypted  # really encrypted
    document = json.loads(decrypt(encrypted, passphrase))
    tables = document["tables"]
    assert [r["id"] for r in tables["public.leads"]] == [str(subject["lead_id"])]
    assert {r["note"] for r in tables["public.lead_notes"]} == {"mine"}  # the new table, and only the subject's
    expected = {
        "public.email_events": "SELECT count(*) FROM email_events WHERE lead_id = %s",
        "public.email_messages": "SELECT count(*) FROM email_messages WHERE lead_id = %s",
        "public.campaign_leads": "SELECT count(*) FROM campaign_leads WHERE lead_id = %s",
    }
    for table, query in expected.items():
        assert len(tables[table]) == conn.execute(query, (subject["lead_id"],)).fetchone()[0] > 0, table
    for table, rows in tables.items():
        for row in rows:
            assert row.get("workspace_id") in (None, str(subject["workspace_id"])), table
            if "lead_id" in row and table != "public.data_subject_requests":
                assert row["lead_id"] in (None, str(subject["lead_id"])), table
    # exports expire: 7 days after, the object is gone (its link was valid that long)
    from datetime import UTC, datetime, timedelta

    assert gdpr.delete_expired_exports(spaces, now=datetime.now(UTC) + timedelta(days=6)) == []
    assert len(gdpr.delete_expired_exports(spaces, now=datetime.now(UTC) + timedelta(days=8))) == 1
    assert httpx.get(url).status_code == 404
    conn.close()
