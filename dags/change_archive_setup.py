"""
# change_archive_setup — publication and slot for the change archive (airflow, by hand)

**Trigger by hand**, first with `dry_run` true (the default): the log lists what would run —
`CREATE PUBLICATION coldcopy_pitr FOR TABLE … WITH (publish_via_partition_root = true)` over every application
table with a primary key, and `pg_create_logical_replication_slot('coldcopy_pitr', 'pgoutput')` — and any
problem (`wal_level`, a role without `REPLICATION`, a table without a key whose updates publishing would
break): a dry run that finds one **fails**, naming it and its fix; a clean one succeeds with the run note
*dry run: nothing applied — …*. With `dry_run` false it applies them and starts a chain; `change_archive` then keeps it drained.

On Supabase: use a **direct** connection for `coldcopy_db` (not the transaction pooler: a slot needs a
session); the `postgres` role has `REPLICATION`; `wal_level` is already `logical`. Cost: the WAL the slot
holds between drains (seconds), and one segment per drain in Spaces. docs/pitr.md.
"""

from airflow.sdk import DAG, Param

from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.pitr import ChangeArchiveSetupOperator

with DAG(
    dag_id="change_archive_setup",
    description="By hand: publication + slot for the change archive (dry run by default)",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),  # idempotent: a retry completes what is missing
    params={"dry_run": Param(True, type="boolean", description="List what would run; change nothing.")},
    tags=["coldcopy", "pitr"],
    doc_md=__doc__,
):
    ChangeArchiveSetupOperator(task_id="setup", dry_run="{{ params.dry_run }}")
