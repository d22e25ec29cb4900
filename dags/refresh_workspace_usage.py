"""
# refresh_workspace_usage — daily at 02:00 UTC

Refreshes `analytics.workspace_usage` (members, leads, active campaigns, e-mails sent this month and in
the last 30 days against the plan's quota), read by billing and the workspace dashboard.

- **Schedule**: daily at 02:00 UTC, the quiet hour. **Deadline**: finished within 2 h of being queued.
- The view depends on the clock (this month, last 30 days), so every scheduled run refreshes; backfilled
  days that a newer refresh already covers skip. Decisions are in `coldcopy_ops.mv_refresh_log`.
- Concurrent refresh, readers never blocked. `force: true` refreshes regardless. Pool `coldcopy_db_heavy`.

**Backfill** missed refreshes (UI: the DAG's *Trigger* → *Backfill*, or the Airflow CLI):
`airflow backfill create --dag-id refresh_workspace_usage --from-date 2026-11-20T00:00:00Z --to-date 2026-11-21T00:00:00Z --max-active-runs 1`.
The first run refreshes; every later run's interval is then covered and skips in about a second.

| Symptom | Meaning | Action |
|---|---|---|
| task failed: *could not get its lock* | another session holds the view's lock | find it in `pg_stat_activity`; the task retries |
| deadline missed | not finished by about 04:00 UTC | look at the task log and `pg_stat_activity` |
"""

from coldcopy.refresh_dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_workspace_usage", doc_md=__doc__)
