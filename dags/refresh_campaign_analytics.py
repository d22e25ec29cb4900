"""
# refresh_campaign_analytics — hourly

Refreshes `analytics.campaign_analytics` and `analytics.sequence_step_performance` (from 301: it reads the
same campaign funnel — messages and their events — and campaign managers read both on the same page).

- **Schedule**: every hour at :00 UTC. **Deadline**: finished within 20 min of being queued, else alert.
- **Concurrent**: `REFRESH MATERIALIZED VIEW CONCURRENTLY`, so dashboards keep reading; a plain refresh
  only when a view was never populated.
- **Skips** (logged in `coldcopy_ops.mv_refresh_log` with the reason) when no source table changed since
  the last refresh, or when a newer refresh already covers this run's interval (backfills).
- Trigger with `force: true` to refresh regardless. Pool `coldcopy_db_heavy`.

**Backfill** missed refreshes (UI: the DAG's *Trigger* → *Backfill*, or the Airflow CLI):
`airflow backfill create --dag-id refresh_campaign_analytics --from-date 2026-11-20T00:00:00Z --to-date 2026-11-21T00:00:00Z --max-active-runs 1`.
The first run refreshes; every later run's interval is then covered and skips in about a second.

| Symptom | Meaning | Action |
|---|---|---|
| task failed: *could not get its lock* | another session holds the view's lock (a manual refresh?) | find it in `pg_stat_activity`; the task retries |
| task failed: *canceling statement due to statement timeout* | refresh took over 30 min | check load and bloat; raise `statement_timeout` only with a reason |
| deadline missed | the run did not finish in 20 min | look at the task log and `pg_stat_activity` |
"""

from coldcopy.refresh_dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_campaign_analytics", doc_md=__doc__)
