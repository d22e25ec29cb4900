"""
# partition_maintenance — daily at 01:00 UTC

Rotates the monthly partitions of `email_events` (no DEFAULT partition: a month without a partition
refuses inserts).

1. **premake** — partitions for the current month and the next 3 (UTC), created then ATTACHed under
   `lock_timeout` with retries, so it never queues in front of application writes.
2. **horizon_check** — alerts and fails if fewer than 2 future months have a partition.
3. **archive** (one mapped task per month older than 12 months, in parallel within the pool) —
   `COPY … TO STDOUT` → gzip → gpg (AES256, the backup passphrase) → multipart upload to the `coldcopy_spaces` bucket at
   `archive/email_events/YYYY/MM/`, a signed `manifest.json` beside it, verified by streaming the object
   back once (its sha256, the CSV's sha256) and by the partition's row versions (unchanged since the
   export: no row written, changed or deleted in between). Any failure: that month stays attached with
   all its rows, the alert names the month, and the next run starts it over.
4. **detach_archived** — `DETACH PARTITION … CONCURRENTLY` of each verified month, one at a time
   (PostgreSQL allows one pending detach per table; an advisory lock serializes detaches across runs),
   finalizing an interrupted detach (`… FINALIZE`) first. Runs after the exports, whatever their outcome,
   so a failed month does not hold back the verified ones.
5. **drop_detached** — drops months detached over 7 days ago, only if still detached and their archive
   still verifies.
6. **scrub_erased** — every archived month (detached or dropped) not yet rewritten since the newest erasure
   of the GDPR ledger is streamed back (bound to its signed manifest), rewritten without the erased people's
   records (the others byte for byte), encrypted, uploaded under a new key with a new signed manifest; the old
   object is deleted last. Each object at most once a day.

Idempotent: a second run, or a week of catch-up, changes nothing more than one run. State per month:
`coldcopy_ops.partition_archive`. Pool `coldcopy_db_heavy`; deadline 3 h from queued.
Manual run from the Airflow UI or CLI: `airflow dags trigger partition_maintenance`.

| Symptom | Meaning | Action |
|---|---|---|
| horizon_check failed | premake kept failing; future months are missing | read premake's log (lock timeouts? permissions?) and run it again |
| archive[YYYY_MM] failed: *archive does not verify* | the object in the bucket is not what was exported | check the bucket; the retry re-exports |
| detach_archived failed: *could not get its lock* | a long transaction holds the partition | find it in `pg_stat_activity`; the retry finalizes the detach |
| drop_detached failed | an archive no longer matches its sha256 | the month is kept; investigate the bucket before anything else |

To bring a month back, run `partition_restore` (runbook: docs/partitions.md).
"""

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, TriggerRule

from coldcopy import alerts
from coldcopy.dag_defaults import HEAVY_POOL, START_DATE, default_args
from coldcopy.operators.partitions import (
    ArchivePartitionOperator,
    DetachArchivedPartitionsOperator,
    DropDetachedPartitionsOperator,
    HorizonCheckOperator,
    ListArchiveCandidatesOperator,
    PremakePartitionsOperator,
    ScrubErasedArchivesOperator,
)

with DAG(
    dag_id="partition_maintenance",
    description="Daily 01:00 UTC: email_events partitions 3 months ahead; months past 12 archived, detached, dropped",
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(pool=HEAVY_POOL),
    deadline=alerts.deadline(timedelta(hours=3), expected="partition rotation of email_events"),
    tags=["coldcopy", "partitions", "archive"],
    doc_md=__doc__,
):
    premake = PremakePartitionsOperator(task_id="premake", months_ahead=3)
    horizon = HorizonCheckOperator(task_id="horizon_check", min_future_months=2)
    candidates = ListArchiveCandidatesOperator(task_id="archive_candidates", retain_months=12)
    archive = ArchivePartitionOperator.partial(task_id="archive", map_index_template="{{ task.partition }}").expand(
        partition=candidates.output
    )
    # After every export, failed or not: the months that verified are detached either way.
    detach = DetachArchivedPartitionsOperator(task_id="detach_archived", trigger_rule=TriggerRule.ALL_DONE)
    drop = DropDetachedPartitionsOperator(task_id="drop_detached")
    # GDPR: archived months rewritten without the people erased since (each object at most once a day).
    scrub = ScrubErasedArchivesOperator(task_id="scrub_erased", trigger_rule=TriggerRule.ALL_DONE)
    premake >> horizon >> candidates >> archive >> detach >> drop >> scrub
