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

Backfill steps and the symptom table below are shared by the four refresh DAGs: Airflow shows them from
`coldcopy.refresh.dag.RUNBOOK`, written once.

Design, the stock-tools runbook and the measured figures: `docs/refresh.md` in the repository.
"""

from coldcopy.refresh.dag import build_refresh_dag

dag = build_refresh_dag(dag_id="refresh_campaign_analytics", doc_md=__doc__)
