"""
# change_archive — the continuous change archive behind point-in-time recovery

**Hourly, one long task.** `drain` keeps the logical replication slot `coldcopy_pitr` drained into Spaces:
every committed change of every table in the `coldcopy_pitr` publication becomes part of an ordered,
gzip'd, gpg-encrypted segment with a signed manifest linked to the previous one. The slot advances only
after the segment is uploaded and read back. A drain every 5 s holds the recovery point within a minute;
the task ends 20 s before the next run is due, and `max_active_runs=1` makes the next one start where the
slot stands.

**Pausing this DAG** lets the slot keep WAL on the database server. `db_health` reports the retained WAL
and the archive's lag (warning 1 GB / 5 min, breach 5 GB / 30 min) and, past the hard budget (20 GB), drops
the slot and alerts that the chain is broken and from when: point-in-time recovery then reaches back only
to the first backup after the archive restarts. Pause it only with that in mind.

| Symptom | Meaning | Action |
|---|---|---|
| `chain … is broken` | a segment is missing, swapped or refused | find who wrote the bucket; drop the slot (`SELECT pg_drop_replication_slot('coldcopy_pitr')`): a new chain starts, the next backup is its base |
| `lacks REPLICATION` | the connection's role cannot read a slot | `ALTER ROLE … WITH REPLICATION` (Supabase: the `postgres` role has it) |
| `wal_level is 'replica'` | logical decoding is off | Supabase runs `logical`; elsewhere set it and restart |
| lag alert from `db_health` | the drain stopped or falls behind | look at this DAG's last run |

Setup, restore `as_of`, figures: docs/pitr.md.
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable, Param

from coldcopy import alerts
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.pitr import ChangeArchiveOperator

with DAG(
    dag_id="change_archive",
    description="Hourly, one long task: the logical slot drained into signed, chained segments in Spaces (PITR)",
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=3, retry_delay=timedelta(seconds=30)),
    deadline=alerts.deadline(timedelta(minutes=70), expected="an hour of the change archive"),
    params={"run_for_s": Param(0, type="integer", minimum=0,
                               description="0: until the next run is due; else stop after this many seconds")},
    tags=["coldcopy", "pitr", "backups"],
    doc_md=__doc__,
):
    ChangeArchiveOperator(task_id="drain", run_for_s="{{ params.run_for_s }}")
