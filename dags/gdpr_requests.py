"""
# gdpr_requests — every 15 minutes

Carries out the data-subject requests a person has **verified** (`status = 'verified'`; `received` ones are
never touched), one mapped task per request so each shows in the grid. GDPR Art. 12(3): one month.

- **access / portability** — every row about the subject in the workspace (by address, by its lead ids and
  message ids, across every table the catalog shows holding them: see `coldcopy.gdpr`), one JSON document,
  OpenPGP-encrypted (AES256) with a passphrase of its own, at `gdpr/exports/<workspace>/<request>.json.gpg`;
  the request's notes get a presigned URL valid 7 days and the passphrase (send them by separate channels).
  Open with `gpg --decrypt export.json.gpg`.
- **erasure** — deletes (or, where another record only points at them, nulls the reference) every row about
  the subject, in batches of 2,000 under `lock_timeout` with retries, children first; the request keeps the
  address only as a one-way key; the key goes to `suppression_list` (`gdpr_erasure`), and a trigger on `leads`
  refuses the address in that workspace from then on; the audit trail records the erasure (request id, tables,
  counts — no personal data); materialized views reading the touched tables are refreshed (forced); the
  erasure ledger (`coldcopy_ops.erasure_ledger`, mirrored signed to `gdpr/erasures/`) makes every restore of a
  backup and of an archived month drop the subject again.
- **deadlines** — an open request due within 3 days alerts (`threshold_breached`) once per request per day.

A request ends `completed` (`completed_at`, notes say what was done, or "nothing found"); a failure leaves it
`in_progress` with the reason in its notes, the next try or run picks it up again, and the task alerts once
after its last try. `rectification`, `restriction` and `objection` need a person: the job leaves them alone.

| Symptom | Meaning | Action |
|---|---|---|
| request stuck `in_progress` | a try failed; notes say why | fix the cause; the next run retries it |
| `could not get its lock` | the application held a row or table lock through every retry | retried next run |
| deadline alert | a request is due within 3 days | verify it (status `verified`) or act on it by hand |
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from coldcopy import alerts
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.gdpr import HandleRequestOperator, PendingRequestsOperator, RequestDeadlinesOperator

with DAG(
    dag_id="gdpr_requests",
    description="Every 15 min: verified access/portability/erasure requests, and request deadline warnings",
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay=timedelta(minutes=1)),
    deadline=alerts.deadline(timedelta(minutes=45), expected="data subject requests processed"),
    tags=["coldcopy", "gdpr"],
    doc_md=__doc__,
):
    pending = PendingRequestsOperator(task_id="pending_requests")
    pending >> HandleRequestOperator.partial(task_id="handle_request", map_index_template="{{ task.request_id }}"
                                             ).expand(request_id=pending.output)
    RequestDeadlinesOperator(task_id="deadlines")
