"""
# gdpr_requests — every 15 minutes

Carries out the data-subject requests a person has **verified** (`status = 'verified'`; `received` ones are
never touched), one mapped task per request so each shows in the grid. GDPR Art. 12(3): one month.

- **access / portability** — every row about the subject in the workspace (by address, by its lead ids and
  message ids, across every table the catalog shows holding them: see `coldcopy.gdpr`), one JSON document,
  OpenPGP-encrypted (AES256) with a passphrase of its own, at `gdpr/exports/<workspace>/<request>.json.gpg`;
  its presigned URL (7 days) and passphrase go to the data protection officer through `coldcopy_dpo` only
  (send them to the requester by separate channels); never in the notes, a log or XCom. Exports are deleted
  after 7 days and when the subject is erased. Open with `gpg --decrypt export.json.gpg`.
- **erasure** — deletes (or, where another record only points at them, nulls the reference) every row about
  the subject (foreign keys followed transitively, detached months of `email_events`, registered payload and
  address columns), in batches of 2,000 under `lock_timeout` with retries, children first; the request keeps
  the address only as a keyed one-way hash (`coldcopy_subject_pepper`); the key goes to `suppression_list` (`gdpr_erasure`), and a trigger on `leads`
  refuses the address in that workspace from then on; the audit trail records the erasure (request id, tables,
  counts — no personal data); materialized views reading the touched tables are refreshed (forced); the
  erasure ledger (`coldcopy_ops.erasure_ledger`, written before the first delete, mirrored signed and chained
  to `gdpr/erasures/<sequence>.json`) makes every restore of a backup and of an archived month drop the
  subject again. Each run first deletes expired exports and cross-checks the ledger's two copies.
- **deadlines** — an open request due within 3 days alerts (`threshold_breached`) once per request per day.

A request ends `completed` (`completed_at`, notes say what was done, or "nothing found"); a failure leaves it
`in_progress` with the reason in its notes, the next try or run picks it up again, and the task alerts once
after its last try. `rectification`, `restriction` and `objection` need a person: the job leaves them alone.

| Symptom | Meaning | Action |
|---|---|---|
| request stuck `in_progress` | a try failed; notes say why | fix the cause; the next run retries it |
| `could not get its lock` | the application held a row or table lock through every retry | retried next run |
| deadline alert | a request is due within 3 days | verify it (status `verified`) or act on it by hand |
| `erasure ledger: … problem(s)` | a ledger object in the bucket is junk, forged, missing or out of order | find who wrote the bucket; a missing entry was published again from the database |
| `column(s) that look personal are in no GDPR rule` | a migration added an address/payload/json column | classify it in `PERSONAL_COLUMNS_REGISTRY` |
| `another session is handling it` | a zombie try of the same request still runs | nothing: the next try goes ahead once it is gone |
| `coldcopy_dpo is not configured` | an export had nowhere to go (it was deleted) | set the `coldcopy_dpo` connection |

Design, the stock-tools runbook and the measured figures: `docs/gdpr.md` in the repository.
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
