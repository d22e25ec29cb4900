"""Subject keys (coldcopy.gdpr.keys): keyed with the pepper, old unkeyed entries migrated."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.gdpr import Gdpr, GdprError
from coldcopy.refresh.erasures import Dashboards
from tests.support.gdpr import KEY, gdpr_on, request, subjects_of


def test_subject_keys_are_keyed_and_old_unkeyed_entries_are_migrated(generated_db, spaces, backup_key):
    """Who was erased cannot be learnt by hashing candidate addresses: the suppression list and the ledger keep
    an HMAC under a pepper that is not in the tenant tables or the bucket. Entries made before are migrated."""
    import hashlib


    client, bucket = spaces.client, spaces.name
    subject, other = subjects_of(generated_db, 2)
    with psycopg.connect(generated_db, autocommit=True) as conn:  # an entry as the unkeyed scheme wrote it
        legacy = hashlib.sha256(f"{other['workspace_id']}:{other['email'].lower()}".encode()).hexdigest()
        conn.execute("INSERT INTO suppression_list (workspace_id, email, reason) VALUES (%s, %s, 'gdpr_erasure')",
                     (other["workspace_id"], f"sha256:{legacy}"))
    conn, gdpr = gdpr_on(generated_db)
    gdpr.handle(request(generated_db, subject, "erasure"), spaces)
    guess = hashlib.sha256(f"{subject['workspace_id']}:{subject['email'].lower()}".encode()).hexdigest()
    stored = [e for (e,) in conn.execute("SELECT email FROM suppression_list WHERE reason = 'gdpr_erasure'")]
    assert stored and all(e.startswith("hmac:") for e in stored)
    assert not any(guess in e for e in stored) and not any(legacy in e for e in stored)  # the guess finds nothing
    ledger = client.get_object(Bucket=bucket, Key="gdpr/erasures/000000000001.json")["Body"].read().decode()
    assert guess not in ledger
    assert conn.execute("SELECT has_table_privilege('authenticated', 'coldcopy_ops.subject_key', 'SELECT')"
                        ).fetchone()[0] is False
    gdpr.ensure_refuse_trigger()
    for person in (subject, other):  # the migrated entry still refuses its address
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO leads (workspace_id, email) VALUES (%s, %s)",
                         (person["workspace_id"], person["email"]))
    with pytest.raises(GdprError, match="another pepper"):
        Gdpr(conn, dashboards=Dashboards, keyring=KEY, pepper="another pepper of thirty-two characters or more")
    conn.close()
