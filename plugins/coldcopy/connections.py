"""Every Airflow connection the DAGs read, by id: one place, matched by the README's connections table
(``tests/test_connections.py``). What each holds is documented there."""

DB_CONN_ID = "coldcopy_db"  # the target database of every DAG
SPACES_CONN_ID = "coldcopy_spaces"  # the archive bucket
KEY_CONN_ID = "coldcopy_backup_key"  # its password is the backup encryption passphrase
MANIFEST_KEY_CONN_ID = "coldcopy_manifest_key"  # signs every manifest and erasure-ledger entry
PEPPER_CONN_ID = "coldcopy_subject_pepper"  # keys the one-way hashes of erased people (its password)
DPO_CONN_ID = "coldcopy_dpo"  # where an export's link and passphrase go (http webhook or smtp)
WEBHOOK_CONN_ID = "coldcopy_alerts_webhook"  # alerts as JSON POSTs
SMTP_CONN_ID = "coldcopy_alerts_smtp"  # alerts by e-mail
VERIFY_CONN_ID = "coldcopy_verify_db"  # a server of its own: rehearsals, restore verification, drills
PGBOUNCER_CONN_ID = "coldcopy_pgbouncer"  # PgBouncer's admin console (optional)
TOKEN_CONN_ID = "coldcopy_metrics_token"  # the bearer token Prometheus presents

ALL = (DB_CONN_ID, SPACES_CONN_ID, KEY_CONN_ID, MANIFEST_KEY_CONN_ID, PEPPER_CONN_ID, DPO_CONN_ID, WEBHOOK_CONN_ID,
       SMTP_CONN_ID, VERIFY_CONN_ID, PGBOUNCER_CONN_ID, TOKEN_CONN_ID)
