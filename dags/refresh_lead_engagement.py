"""
# refresh_lead_engagement — every 6 hours

Refreshes `analytics.lead_engagement` (per-lead opens, clicks, replies and engagement score) and
`analytics.lead_intent_summary` (from 301: per-lead intent signals; lead scoring reads both together).

- **Schedule**: every 6 hours (00, 06, 12, 18 UTC). **Deadline**: finished within 1 h of being queued.
- `lead_engagement` skips when no source table changed since its last refresh; `lead_intent_summary` uses a
  rolling 90-day window, so it refreshes every run. Backfilled runs whose interval a newer refresh covers
  skip. Every decision is in `coldcopy_ops.mv_refresh_log`.
- Concurrent refresh, readers never blocked. `force: true` refreshes regardless. Pool `coldcopy_db_heavy`.

**Backfill** missed refreshes (UI: the DAG's *Trigger* → *Backfill*, or the Airflow CLI):
`airflow backfill create --dag-id refresh_lead_engagement --from-date 2026-11-20T00:00:00Z --to-date 2026-11-21T00:00:00Z --max-active-runs 1`.
The first run refreshes; every later run's interval is then covered and skips in about a second.

| Symptom | Meaning | Action |
|---|---|---|
| task failed: *could not get its lock* | another session holds the view's lock | find it in `pg_stat_activity`; the task retries |
| deadline missed | the run did not finish in 1 h | look at the task log and `pg_stat_activity` |
"""

from coldcopy.refresh_dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_lead_engagement", doc_md=__doc__)
