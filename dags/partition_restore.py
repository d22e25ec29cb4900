"""
# partition_restore — bring an archived month of email_events back

**Trigger by hand** with param `month` = `YYYY-MM`. Reads `archive/email_events/YYYY/MM/` from the
`coldcopy_spaces` bucket and, in one pass, checks the object's sha256 and size, gunzips it, hashes the CSV
and loads it into a new table with `COPY … FROM STDIN`; all of them and the loaded row count must match the
signed manifest (rolled back if any differs); then ATTACHes it as the month's partition under
`lock_timeout` with retries.

The month is **held** attached for `hold_days` (default 30; recorded in `coldcopy_ops.partition_archive`
with who restored it and until when): `partition_maintenance` leaves it alone, saying so in its log, until
the hold ends; then it verifies the month against its existing archive (no re-upload), detaches it, and
drops it after the usual grace period. Rows written into the month meanwhile fail that verification and
keep it attached (alert).

Refuses when the month is attached already, or still exists detached (in its grace period: re-attach it,
as the error message shows). CLI: `airflow dags trigger partition_restore --conf '{"month": "2025-10"}'`.

Design, the stock-tools runbook and the measured figures: `docs/partitions.md` in the repository.
"""

from airflow.sdk import DAG, Param

from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.partitions import RestorePartitionOperator

with DAG(
    dag_id="partition_restore",
    description="By hand: bring an archived month of email_events back from Spaces (param month=YYYY-MM)",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    params={"month": Param("2025-01", type="string", pattern=r"^\d{4}-\d{2}$",
                           description="The month to restore, YYYY-MM (UTC)."),
            "hold_days": Param(30, type="integer", minimum=1, maximum=366,
                               description="Days partition_maintenance leaves the month attached.")},
    tags=["coldcopy", "partitions", "restore"],
    doc_md=__doc__,
):
    RestorePartitionOperator(task_id="restore", month="{{ params.month }}", hold_days="{{ params.hold_days }}")
