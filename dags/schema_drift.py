"""
# schema_drift — is the live schema still what its migration files built?

**Daily 04:40 UTC.** Builds the schema the applied files build (the files `coldcopy_ops.schema_migrations` records,
in order) in an empty scratch database on the **verification server** (`coldcopy_verify_db`; never the live
server), reads the live database's catalog (catalog reads only: no table is scanned) and compares them object by
object: schemas, tables, columns, constraints, indexes, views, triggers, RLS enabled/forced, policies, functions,
grants to `anon`/`authenticated`/`service_role`/PUBLIC, sequences, extensions. Left out by design: the platform's
schemas, `coldcopy_ops`, partitions made by rotation, the refresh jobs' capture triggers (docs/migrations.md,
*Schema drift*).

Each check is a row of `coldcopy_ops.schema_drift` (per object: expected vs live and the SQL that brings either
side to the other). `db_health`'s `schema_drift` check is *warning* on any drift and **breach** on a
security-relevant one: RLS disabled or not forced, a policy added or changed, a grant to an API role, a
SECURITY DEFINER function without `search_path = pg_catalog, pg_temp`. One alert per new drift (not one a day
while it stays). Metric: `coldcopy_schema_drift_objects{security=…}`.

| Symptom | Meaning | Action |
|---|---|---|
| *security-relevant* drift | someone loosened tenant isolation outside the migrations | treat as an incident: run the row's `to_live` SQL (repair), then find who did it |
| drift, not security-relevant | a column, index or function changed by hand (Studio, SQL editor) | repair with `to_live`, or adopt it: `python -m coldcopy.migrations.drift.adopt` writes the migration file |
| *not checked: no coldcopy_verify_db* | no server of its own to build the expected schema on | add the connection (docs/connections.md) |
| task failed: *applied migration file(s) changed on disk* | a file was edited after it was applied | restore it from git; put the change in a new file |
"""

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from coldcopy import alerts
from coldcopy.dag_defaults import START_DATE, default_args
from coldcopy.operators.drift import SchemaDriftOperator

with DAG(
    dag_id="schema_drift",
    description="Daily 04:40 UTC: the live schema against what its applied migration files build",
    schedule=CronTriggerTimetable("40 4 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    deadline=alerts.deadline(timedelta(hours=2), expected="the daily schema drift check"),
    tags=["coldcopy", "migrations", "schema"],
    doc_md=__doc__,
):
    SchemaDriftOperator(task_id="find_drift")
