"""
# restore_from_spaces — restore a backup from Spaces

**Trigger by hand.** Params:

- `backup`: `latest` (newest whole-database backup), a date `YYYY-MM-DD` (newest of that day), or an
  object key `backups/…dump.zst.gpg`;
- `target_database`: where to restore: a new database (created) or an empty one. A populated database is
  refused (`pg_restore --clean` cannot replace partitioned tables, and a half-overwritten database is
  worse than none): restore into a new database and point the application at it. The live database of
  `coldcopy_db` is refused unless `confirm_overwrite_live` is true (for a live database that was lost and
  recreated empty);
- `tables`: optional list, e.g. `["public.workspaces"]`: only their rows, into a target that already has
  the schema (`pg_restore --data-only --disable-triggers`).

The stream is `gpg --decrypt | zstd -d | pg_restore --single-transaction --exit-on-error`: a failure leaves
the target as it was. The same by hand with stock tools: see the README runbook.
CLI: `airflow dags trigger restore_from_spaces --conf '{"backup": "latest", "target_database": "coldcopy_restored"}'`.
"""

from airflow.sdk import DAG, Param

from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.backups import RestoreFromSpacesOperator

with DAG(
    dag_id="restore_from_spaces",
    description="By hand: restore a backup from Spaces into a database (refuses the live one without confirm)",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    params={
        "backup": Param("latest", type="string", description="latest, YYYY-MM-DD, or an object key"),
        "target_database": Param("coldcopy_restored", type="string", minLength=1),
        "tables": Param([], type="array", description="only these tables' rows (schema-qualified)"),
        "confirm_overwrite_live": Param(False, type="boolean"),
    },
    tags=["coldcopy", "backups", "restore"],
    doc_md=__doc__,
):
    RestoreFromSpacesOperator(
        task_id="restore", backup="{{ params.backup }}", target_database="{{ params.target_database }}",
        tables="{{ params.tables | join(',') }}", confirm_overwrite_live="{{ params.confirm_overwrite_live }}",
    )
