"""What the GDPR modules share: constants, errors, the subject, bucket listings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from coldcopy.connections import DPO_CONN_ID, PEPPER_CONN_ID  # noqa: F401 - re-exported under this module's name

log = logging.getLogger(__name__)

BATCH = 2000
EXPORT_PREFIX = "gdpr/exports"
LEDGER_PREFIX = "gdpr/erasures"
RETENTION_PREFIX = "gdpr/retention"
EXPORT_URL_TTL = timedelta(days=7)
ERASED = "hmac:"  # prefix of a keyed subject hash standing where an address was (suppression list, requests)
LEGACY_ERASED = "sha256:"  # the unkeyed hash used before; migrated on first use (Gdpr.ensure_subject_key)
HANDLED_TYPES = {"access": "export", "portability": "export", "erasure": "erase"}
OUT_OF_SCOPE = {"public.users", "public.email_accounts"}  # the workspace's own accounts, not its recipients
NO_FOREIGN_KEY = [("public.email_events", "lead_id", "lead"), ("public.email_events", "message_id", "message")]
REFUSE_TRIGGER = "coldcopy_refuse_erased_subject"
# What retention policies (a tenant-writable table) may touch. Never the audit trail, the requests, consent
# records, the suppression list or anything outside ``public``: a policy naming another table is skipped and
# reported, so a workspace member cannot have the privileged job delete the evidence of what was done.
RETENTION_TABLES = frozenset({
    "public.leads", "public.campaign_leads", "public.lead_scores", "public.email_events", "public.email_messages",
    "public.hubspot_sync_log", "public.salesforce_sync_log",
    "public.intent_signals", "public.linkedin_messages", "public.twitter_engagements", "public.channel_touchpoints",
    "public.workflow_runs", "public.reply_classifications", "public.smart_reply_suggestions",
    "public.deliverability_metrics", "public.meeting_requests", "public.linkedin_post_engagements",
    "public.lead_notes"})
AGE_COLUMNS = ("occurred_at", "created_at", "recorded_at", "sent_at")  # what "older than retain_for" is measured on
PERSONAL_COLUMNS = ("email", "first_name", "last_name", "phone", "linkedin_url", "ip_address", "user_agent",
                    "body_text", "subject", "company", "title", "website", "custom_fields", "metadata", "url")


class GdprError(RuntimeError):
    """A request or policy that cannot be carried out as asked; the message says why."""


@dataclass
class Subject:
    workspace_id: str
    subject_hash: str
    email: str | None = None  # None when re-applying from the ledger (only one-way keys are kept)
    lead_ids: list = field(default_factory=list)
    message_ids: list = field(default_factory=list)

    def values(self, via: str) -> list:
        return {"lead": self.lead_ids, "message": self.message_ids}.get(via, [])


def subject_pepper(conn_id: str = PEPPER_CONN_ID) -> str:
    """The pepper of subject keys: the password of connection ``conn_id``."""
    from airflow.sdk import BaseHook

    password = BaseHook.get_connection(conn_id).password
    if not password or len(password) < 32:
        raise GdprError(f"connection {conn_id}: its password is the subject pepper, at least 32 characters "
                        "(openssl rand -hex 32)")
    return password
