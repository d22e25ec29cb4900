"""
# gdpr_retention — daily at 02:30 UTC

Applies `data_retention_policies`, one mapped task per policy: in the policy's workspace, rows of its table
older than `retain_for` (measured on `occurred_at`, `created_at`, `recorded_at` or `sent_at`, the first the
table has) are

- `delete` — deleted;
- `anonymize` — personal columns blanked (nullable ones set NULL; a NOT NULL `email` replaced by its one-way
  key), so counts and dates stay for reporting;
- `archive` — written to `gdpr/retention/<table>/<workspace>/…jsonl.gz` in the bucket, checked there, then
  deleted (in the same transaction: a row is deleted only once its copy is stored).

In batches of 2,000, each batch its own transaction under `lock_timeout` with retries, so the application
never waits long. Every policy's outcome and counts go to `coldcopy_ops.retention_log`; `last_applied_at` is
set. A policy naming a table that does not exist or is not a tenant table (no `workspace_id`) is reported in
the log and the task ends *skipped*: its name is never executed as SQL text (catalog check, then identifiers).

`support_copies` drops the support copies past their expiry: one workspace restored by `restore_from_spaces`
with `target_schema` into a new schema of the live database is kept 14 days (`coldcopy_ops.support_copies`;
erasures reach it meanwhile), then dropped.

Design, the stock-tools runbook and the measured figures: `docs/gdpr.md` in the repository.
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.gdpr import ApplyRetentionOperator, ExpiredSupportCopiesOperator, RetentionPoliciesOperator

with DAG(
    dag_id="gdpr_retention",
    description="Daily 02:30 UTC: retention policies per workspace (delete, anonymize or archive) in batches",
    schedule=CronTriggerTimetable("30 2 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(pool=HEAVY_POOL),
    deadline=alerts.deadline(timedelta(hours=3), expected="retention policies applied"),
    tags=["coldcopy", "gdpr", "retention"],
    doc_md=__doc__,
):
    policies = RetentionPoliciesOperator(task_id="policies")
    ApplyRetentionOperator.partial(task_id="apply_policy", map_index_template="{{ task.policy_id }}").expand(
        policy_id=policies.output)
    ExpiredSupportCopiesOperator(task_id="support_copies")
