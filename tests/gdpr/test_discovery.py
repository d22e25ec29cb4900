"""Where personal data is (coldcopy.gdpr.discovery): found from the catalog, new tables and columns included."""

from __future__ import annotations

from coldcopy.gdpr import personal_data_map
from tests.support.gdpr import gdpr_on


def test_the_catalog_finds_personal_data_including_a_new_table(generated_db):
    conn, gdpr = gdpr_on(generated_db)
    tables = {link.table for link in personal_data_map(conn)}
    assert {"public.leads", "public.email_messages", "public.email_events", "public.campaign_leads",
            "public.consent_records", "public.reply_classifications"} <= tables
    assert "public.users" not in tables
    conn.execute("CREATE TABLE public.lead_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "workspace_id uuid NOT NULL, lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE, note text)")
    assert "public.lead_notes" in {link.table for link in personal_data_map(conn)}
    conn.close()


def test_a_new_personal_column_outside_the_registry_is_found(generated_db):
    from coldcopy.gdpr import unregistered_columns

    conn, _ = gdpr_on(generated_db)
    assert unregistered_columns(conn) == []
    conn.execute("CREATE TABLE public.lead_contacts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "workspace_id uuid NOT NULL, contact_email text, extra jsonb, email text)")
    assert unregistered_columns(conn) == ["public.lead_contacts.contact_email", "public.lead_contacts.extra"]
    conn.close()
