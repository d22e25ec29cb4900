"""
# refresh_email_deliverability — every 2 hours

Refreshes `analytics.email_deliverability` (bounce and complaint rates per sending account and day) and
`analytics.daily_workspace_activity` (from 301: daily event counts per workspace, the same events over the
same 90-day window, so one pass of the cache serves both).

- **Schedule**: every 2 hours at :00 UTC. **Deadline**: finished within 40 min of being queued, else alert.
- Both views depend on the clock (a rolling 90-day window), so they refresh every run unless a newer
  refresh already covers the run's interval (backfills); see `coldcopy_ops.mv_refresh_log`.
- Concurrent refresh, readers never blocked. `force: true` refreshes regardless. Pool `coldcopy_db_heavy`.

**Backfill** missed refreshes (UI: the DAG's *Trigger* → *Backfill*, or the Airflow CLI):
`airflow backfill create --dag-id refresh_email_deliverability --from-date 2026-11-20T00:00:00Z --to-date 2026-11-21T00:00:00Z --max-active-runs 1`.
The first run refreshes; every later run's interval is then covered and skips in about a second.

| Symptom | Meaning | Action |
|---|---|---|
| task failed: *could not get its lock* | another session holds the view's lock | find it in `pg_stat_activity`; the task retries |
| deadline missed | the run did not finish in 40 min | look at the task log and `pg_stat_activity` |
"""

from coldcopy.refresh_dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_email_deliverability", doc_md=__doc__)
